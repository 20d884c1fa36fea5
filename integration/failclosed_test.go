package integration

// TestFailClosedCorpus runs every write probe of failclosed_corpus_test.go
// through pgcloak against real PostgreSQL, in two setups (a: no CHECK
// backstop, b: with it), each probe in a database of its own, and holds
// pgcloak to its promise (issue 10): plaintext never reaches a protected
// column, whatever the client sends.
//
// After each probe:
//   - every non-NULL value of a protected column (found by relation OID and
//     attribute number, so renames and moves do not hide it, plus the
//     configured names and inheriting tables) is pgcloak ciphertext that
//     decrypts under its own column;
//   - the probe's marker is in no table but the ones it may be in, in no
//     heap file of the database, in no WAL written since the probe began (after
//     CHECKPOINT), and was never sent by pgcloak to PostgreSQL;
//   - the client never received pgcloak ciphertext as a value;
//   - the probe's sessions still run SELECT 1 (after a ROLLBACK if a
//     transaction failed), and a new session through pgcloak works.
//
// The outcome of a probe is the first error it was not built to provoke:
// refused-by-pgcloak (an ErrorResponse starting "pgcloak:", which must carry
// a real SQLSTATE and name the protected table or column), refused-by-database
// (23514, the backstop), other-error; or, without error, stored-encrypted,
// stored-plaintext, stored-unprotected (in a table the probe allows) or
// no-effect. Setup a accepts refused-by-pgcloak, stored-encrypted,
// stored-unprotected and no-effect; setup b accepts refused-by-database too.
//
// Run alone:
//
//	PGCLOAK_PG_REGRESS=off PGCLOAK_DRIVER_SUITES=off go test ./integration/ -run 'TestFailClosedCorpus' -count=1 -v
//	go test ./integration/ -run 'TestFailClosedCorpus/a/ps-' -count=1 -v     # one class, one setup
//	PGCLOAK_FAILCLOSED_REPORT=/tmp/fc.tsv go test ./integration/ -run TestFailClosed -count=1   # the summary as a file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// fcProbe is one write probe: a way a client might get a plaintext value
// into a protected column.
type fcProbe struct {
	name  string
	class string
	// preStart is SQL run directly on the database before pgcloak starts:
	// objects a DBA made around pgcloak (functions, views, rules, …).
	preStart string
	// params are runtime parameters of the probe's first session.
	params map[string]string
	// startup, if set, are the runtime parameters of the first session in
	// the order the startup packet carries them (params has Go map order).
	startup [][2]string
	// steps run in order; each is a simple Query on the probe's session
	// unless prefixed:
	//   "d: "  directly on PostgreSQL, around pgcloak (must succeed)
	//   "x: "  through pgcloak, part of the scenario: may fail
	//   "n: "  through pgcloak, on a new session opened for this step
	//   "e: "  through pgcloak, extended protocol (unnamed statement)
	steps []string
	// run is used instead of steps for protocol-level probes.
	run func(r *fcRun)
	// allow are relations (as regclass prints them) where the marker may
	// land: the probe sends it there on purpose. They are UNLOGGED or
	// TEMP, so the WAL scan stays meaningful.
	allow []string
	// wire: the marker may reach PostgreSQL in plaintext (it is meant for
	// an allowed table).
	wire bool
	// only limits the probe to one setup ("a" or "b").
	only string
	// notReady, when set, is what pgcloak's refusal of new sessions must
	// name after the probe: the probe changes the database around pgcloak
	// so that a rule no longer matches it (a protected column renamed),
	// and pgcloak must keep the database out of service until it does.
	notReady string
	// limit, when set, is a documented limit (README, Known limits): the
	// probe's problems are logged, not failures.
	limit string
	// asPlanned is the SQLSTATE of the server's error when it refuses a
	// statement that pgcloak bound to the relation it planned for (a name
	// qualified with its schema, which is gone): nothing is stored, and
	// that counts as refused, in both setups.
	asPlanned string
	// want, if set, is the plaintext (UTF-8, placeholders expanded) a
	// stored-encrypted outcome must decrypt to: the value the application
	// meant, not bytes of another encoding or unprocessed escapes.
	want string
}

// fcRun is one probe being run in one setup.
type fcRun struct {
	t       *testing.T
	e       *fcEnv
	p       *fcProbe
	M       string // the probe's marker
	markers []string
	main    *fcConn
	conns   []*fcConn
	results []*fcResult // every exchange, in order
	broken  []string    // set-up steps that failed: the probe proves nothing
}

// fcNewMarker returns a marker no other probe uses: lower-case letters and
// hex digits only, so it reads the same as text, in JSON and in row text.
func fcNewMarker() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "fcm" + hex.EncodeToString(b)
}

// sub expands the placeholders of probe text:
//
//	{M}   the marker            {MH}  its hex (for '\x…' bytea literals)
//	{RM}  the marker reversed   {FORGED} hex of a value that wears the
//	{DB}  the database           pgcloak header but holds the marker
//	{PORT} the server's port
func (r *fcRun) sub(s string) string {
	rev := []byte(r.M)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	forged := append([]byte("PGC\x01\x01\x00\x00\x00\x01"), []byte(r.M+"-padding-to-pass-the-length-check-of-the-backstop")...)
	return strings.NewReplacer(
		"{M}", r.M,
		"{MH}", hex.EncodeToString([]byte(r.M)),
		"{RM}", string(rev),
		"{FORGED}", hex.EncodeToString(forged),
		"{DB}", r.e.db,
		"{PORT}", fmt.Sprint(r.e.c.pg.Port),
	).Replace(s)
}

// record keeps an exchange's result in the probe's order.
func (r *fcRun) record(res *fcResult) *fcResult {
	r.results = append(r.results, res)
	return res
}

// open starts a new session through pgcloak with runtime parameters.
func (r *fcRun) open(label string, params map[string]string) *fcConn {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	c, err := fcDial(ctx, label, r.e.dsn(params))
	if err != nil {
		// A session pgcloak will not open is the probe's result.
		res := &fcResult{what: "connect " + label, errs: []*fcErr{fcConnectErr(label, err)}}
		r.record(res)
		c = &fcConn{label: label, dead: "connect failed: " + err.Error()}
		r.conns = append(r.conns, c)
		return c
	}
	r.conns = append(r.conns, c)
	r.t.Cleanup(c.close)
	return c
}

// c is the probe's session, opened on first use with the probe's params.
func (r *fcRun) c() *fcConn {
	if r.main == nil && r.p.startup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		c, err := fcDialOrdered(ctx, "session", r.e.addr, harness.SuperUser, r.e.db, r.p.startup)
		if err != nil {
			r.record(&fcResult{what: "connect session", errs: []*fcErr{fcConnectErr("session", err)}})
			c = &fcConn{label: "session", dead: "connect failed: " + err.Error()}
		} else {
			r.t.Cleanup(c.close)
		}
		r.conns = append(r.conns, c)
		r.main = c
	}
	if r.main == nil {
		r.main = r.open("session", r.p.params)
	}
	return r.main
}

// q runs sql (placeholders expanded) as a simple Query on the session.
func (r *fcRun) q(sql string) *fcResult { return r.record(r.c().query(r.sub(sql))) }

// qx is q for a step the scenario expects may fail.
func (r *fcRun) qx(sql string) *fcResult { return r.expect(r.q(sql)) }

// ext runs sql with the unnamed statement and text parameters.
func (r *fcRun) ext(sql string, params ...string) *fcResult {
	for i := range params {
		params[i] = r.sub(params[i])
	}
	return r.record(r.c().ext(r.sub(sql), params...))
}

// rt sends messages on the session and reads the answers.
func (r *fcRun) rt(what string, msgs ...pgproto3.FrontendMessage) *fcResult {
	return r.record(r.c().roundTrip(what, msgs...))
}

// expect marks res's errors as part of the scenario.
func (r *fcRun) expect(res *fcResult) *fcResult {
	for _, e := range res.errs {
		e.expected = true
	}
	return res
}

// direct runs sql straight on PostgreSQL, around pgcloak; it must succeed.
func (r *fcRun) direct(sql string) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	d := r.e.directConn(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, r.sub(sql)); err != nil {
		r.broken = append(r.broken, fmt.Sprintf("direct step %q: %v", fcShorten(sql, 120), err))
	}
}

// step runs one entry of fcProbe.steps.
func (r *fcRun) step(s string) {
	switch {
	case strings.HasPrefix(s, "d: "):
		r.direct(s[3:])
	case strings.HasPrefix(s, "x: "):
		r.qx(s[3:])
	case strings.HasPrefix(s, "n: "):
		c := r.open("new session", nil)
		r.record(c.query(r.sub(s[3:])))
	case strings.HasPrefix(s, "e: "):
		r.ext(s[3:])
	default:
		r.q(s)
	}
}

// refused reports whether the last exchange got an unexpected refusal from
// pgcloak.
func (r *fcRun) refused() bool {
	if len(r.results) == 0 {
		return false
	}
	for _, e := range r.results[len(r.results)-1].errs {
		if !e.expected && strings.HasPrefix(e.message, "pgcloak:") {
			return true
		}
	}
	return false
}

// fcConnectErr turns a failed connection into the error the client saw.
func fcConnectErr(label string, err error) *fcErr {
	if pe := pgError(err); pe != nil {
		return &fcErr{step: "connect " + label, severity: pe.Severity, code: pe.Code, message: pe.Message, detail: pe.Detail}
	}
	return &fcErr{step: "connect " + label, severity: "CLIENT", message: err.Error()}
}

// fcOutcome is the verdict on one probe in one setup.
type fcOutcome struct {
	class    string
	summary  string
	problems []string
	notes    []string
}

// fcProtectedNames are the names a refusal may use for what it is about:
// the protected tables and columns, or the setting whose change it refuses.
var fcProtectedNames = []string{"customers", "email", "phone", "Clients", "Email", "clients",
	"standard_conforming_strings", "search_path", "client_encoding", "bytea_output",
	"prepared statement"} // a statement pgcloak does not know: it cannot tell what it touches

// verdict runs the checks and classifies the outcome.
func (r *fcRun) verdict(setup string) *fcOutcome {
	o := &fcOutcome{}
	if len(r.broken) > 0 {
		o.class = "probe-broken"
		o.problems = append(o.problems, r.broken...)
	}

	// The sessions: each must still serve, unless it ended with FATAL,
	// which a write probe never expects.
	for _, c := range r.conns {
		if len(c.ciphertext) > 0 {
			for _, v := range c.ciphertext {
				o.problems = append(o.problems, "CIPHERTEXT TO CLIENT: "+v)
			}
		}
		if c.nc == nil {
			continue // never connected: reported as the outcome
		}
		if c.fatal != nil {
			o.problems = append(o.problems, fmt.Sprintf("SESSION ENDED by %s", c.fatal))
			continue
		}
		if why := c.usable(); why != "" {
			o.problems = append(o.problems, fmt.Sprintf("SESSION UNUSABLE after the probe (%s): %s", c.label, why))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	fresh, err := fcDial(ctx, "fresh", r.e.dsn(nil))
	cancel()
	if err != nil && r.p.notReady != "" {
		// The probe leaves the rules and the database at odds: pgcloak must
		// keep sessions out, saying which column and why.
		if pe := pgError(err); pe == nil || pe.Code != "57P03" || !strings.Contains(pe.Message, r.p.notReady) {
			o.problems = append(o.problems, fmt.Sprintf("NOT READY WITHOUT SAYING WHY: a new session: %v (want 57P03 naming %s)", err, r.p.notReady))
		} else {
			o.notes = append(o.notes, "pgcloak is not ready, as it must be: "+pe.Message)
		}
	} else if err != nil {
		o.problems = append(o.problems, fmt.Sprintf("PGCLOAK NO LONGER SERVES: a new session: %v", err))
	} else if r.p.notReady != "" {
		o.problems = append(o.problems, "STILL READY although the rules do not match the database any more")
		fresh.close()
	} else {
		if why := fresh.usable(); why != "" {
			o.problems = append(o.problems, "PGCLOAK NO LONGER SERVES: a new session: "+why)
		}
		// Whatever the probe did to the tables, reading them through
		// pgcloak gives plaintext or an error, never ciphertext.
		fresh.query(`SELECT * FROM public.customers`)
		fresh.query(`SELECT * FROM "Crm"."Clients"`)
		for _, v := range fresh.ciphertext {
			o.problems = append(o.problems, "CIPHERTEXT TO CLIENT reading back in a new session: "+v)
		}
		fresh.close()
	}
	for _, c := range r.conns {
		if c.nc != nil {
			c.close()
		}
	}

	f := r.e.check(r.markers, r.p.allow, r.p.wire)
	o.problems = append(o.problems, f.problems...)
	o.notes = append(o.notes, f.notes...)

	var first *fcErr
	for _, res := range r.results {
		for _, e := range res.errs {
			if !e.expected {
				first = e
				break
			}
		}
		if first != nil {
			break
		}
	}
	switch {
	case o.class != "":
	case first != nil && fcErrIsPgcloak(first.message):
		o.class = "refused-by-pgcloak"
	case first != nil && first.code == "23514":
		o.class = "refused-by-database"
	case first != nil && r.p.asPlanned != "" && first.code == r.p.asPlanned:
		o.class = "refused-as-planned"
	case first != nil:
		o.class = "other-error"
	case len(f.storedPlain) > 0:
		o.class = "stored-plaintext"
	case len(f.storedEncrypted) > 0:
		o.class = "stored-encrypted"
	case len(f.unprotected) > 0:
		o.class = "stored-unprotected"
	default:
		o.class = "no-effect"
	}
	o.summary = o.class
	if first != nil {
		o.summary += " " + first.String() + " at " + fcShorten(first.step, 100)
	}
	switch o.class {
	case "refused-by-pgcloak":
		if first.code == "" || strings.HasPrefix(first.code, "XX") || len(first.code) != 5 {
			o.problems = append(o.problems, fmt.Sprintf("REFUSAL WITHOUT A REAL SQLSTATE: %s", first))
		}
		named := false
		for _, n := range fcProtectedNames {
			named = named || strings.Contains(first.message, n)
		}
		if !named {
			o.problems = append(o.problems, fmt.Sprintf("REFUSAL DOES NOT NAME the protected table, column or setting: %s", first))
		}
	case "refused-by-database":
		if setup == "a" {
			o.problems = append(o.problems, "GAP: only the database refused the plaintext")
		} else if len(f.storedPlain) == 0 {
			o.notes = append(o.notes, "pgcloak let the plaintext through; the backstop refused it")
		}
	}
	// Plaintext on its way to PostgreSQL is a finding unless the backstop
	// was there to refuse it (setup b accepts that).
	if f.wireLeak != "" {
		if o.class == "refused-by-database" && setup == "b" {
			o.notes = append(o.notes, f.wireLeak)
		} else {
			o.problems = append(o.problems, f.wireLeak)
		}
	}
	switch o.class {
	case "other-error":
		o.problems = append(o.problems, fmt.Sprintf("OTHER ERROR (neither pgcloak's refusal nor the backstop): %s at %s", first, fcShorten(first.step, 160)))
	}
	if len(f.storedEncrypted) > 0 {
		o.notes = append(o.notes, "stored encrypted: "+strings.Join(f.storedEncrypted, "; "))
		if r.p.want != "" {
			want := r.sub(r.p.want)
			for _, pt := range f.plaintexts {
				if pt != want {
					o.problems = append(o.problems, fmt.Sprintf("STORED WRONG VALUE: a protected value decrypts to %q, the application wrote %q", pt, want))
				}
			}
		}
	}
	if len(f.unprotected) > 0 {
		o.notes = append(o.notes, "in allowed tables: "+strings.Join(f.unprotected, "; "))
	}
	return o
}

// transcript renders what the probe did and got, for a failure message.
func (r *fcRun) transcript() string {
	var b strings.Builder
	for _, res := range r.results {
		fmt.Fprintf(&b, "    %s\n", fcShorten(res.what, 220))
		for _, e := range res.errs {
			mark := ""
			if e.expected {
				mark = " (expected by the scenario)"
			}
			fmt.Fprintf(&b, "      → %s%s\n", e, mark)
		}
		if len(res.tags) > 0 {
			fmt.Fprintf(&b, "      → %s\n", strings.Join(res.tags, ", "))
		}
	}
	return b.String()
}

// fcSetups are the two setups every probe runs in.
var fcSetups = []string{"a", "b"}

func TestFailClosedCorpus(t *testing.T) {
	if len(fcCorpus) < 60 {
		t.Fatalf("the corpus has %d write probes, the issue asks for at least 60", len(fcCorpus))
	}
	seen := map[string]bool{}
	for _, p := range fcCorpus {
		if seen[p.name] {
			t.Fatalf("two probes are called %s", p.name)
		}
		seen[p.name] = true
	}
	c := newFCCluster(t)
	report := &fcReport{}
	begin := time.Now()
	for _, setup := range fcSetups {
		t.Run(setup, func(t *testing.T) {
			fcEach(t, len(fcCorpus), func(i int) {
				p := &fcCorpus[i]
				if p.only != "" && p.only != setup {
					return
				}
				t.Run(p.name, func(t *testing.T) {
					o, r := fcRunProbeLogged(t, c, p, setup)
					report.add(fcReportRow{probe: p.name, class: p.class, setup: setup, outcome: o.summary, problems: o.problems})
					if len(o.problems) > 0 && p.limit != "" {
						t.Logf("probe %s [%s]: known limit (%s): outcome %s; problems: %s", p.name, setup, p.limit, o.summary, strings.Join(o.problems, "; "))
					} else if len(o.problems) > 0 {
						t.Errorf("probe %s [%s] (%s): outcome %s\n  problems:\n    %s\n  notes: %s\n  marker %s; transcript:\n%s  pgcloak's warnings and errors:\n    %s",
							p.name, setup, p.class, o.summary, strings.Join(o.problems, "\n    "), strings.Join(o.notes, "; "), r.M, r.transcript(), r.e.logTail(10))
					} else {
						t.Logf("probe %s [%s]: %s; %s", p.name, setup, o.summary, strings.Join(o.notes, "; "))
					}
				})
			})
		})
	}
	t.Logf("corpus ran in %v", time.Since(begin).Round(time.Second))
	report.write(t, "fail-closed write corpus")
}

// fcEach calls f(0) … f(n-1) from PGCLOAK_FAILCLOSED_PARALLEL goroutines
// (default 4) and waits for them. Each probe mostly waits for PostgreSQL
// (cloning a database is two checkpoints), so more probes than cores run
// at once; t.Run may be called from several goroutines, and -parallel does
// not limit these.
func fcEach(t *testing.T, n int, f func(i int)) {
	workers := fcWorkers(t)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// fcWorkers is PGCLOAK_FAILCLOSED_PARALLEL, default 4.
func fcWorkers(t *testing.T) int {
	s := os.Getenv("PGCLOAK_FAILCLOSED_PARALLEL")
	if s == "" {
		return 4
	}
	w, err := strconv.Atoi(s)
	if err != nil || w <= 0 {
		t.Fatalf("PGCLOAK_FAILCLOSED_PARALLEL=%q: want a positive number", s)
	}
	return w
}

// fcRunProbeLogged is fcRunProbe returning the run too, for the transcript.
func fcRunProbeLogged(t *testing.T, c *fcCluster, p *fcProbe, setup string) (*fcOutcome, *fcRun) {
	e := newFCEnv(t, c, fcEnvOptions{setup: setup, preStart: p.preStart})
	r := &fcRun{t: t, e: e, p: p, M: fcNewMarker()}
	r.markers = []string{r.M}
	if p.run != nil {
		p.run(r)
	} else {
		for _, s := range p.steps {
			r.step(s)
			if r.refused() {
				// The steps after a refusal presume what was refused
				// (a rename, a PREPARE): they would test a session that
				// does not exist.
				break
			}
		}
	}
	return r.verdict(setup), r
}

// fcWriteServerFile writes data to a new file the server can read, for COPY
// FROM 'file', and returns its path.
func fcWriteServerFile(t *testing.T, data string) string {
	f, err := os.CreateTemp("", "pgcloak-fc-*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name()
}
