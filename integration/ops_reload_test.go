package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// reloadSchema: bench_a is protected from the start; bench_b's note gets
// its rule in a reload (its column is bytea with the backstop already, as
// after pgcloak protect).
var reloadSchema = fmt.Sprintf(`
CREATE TABLE bench_a (id int PRIMARY KEY, email bytea, n int, %s);
CREATE TABLE bench_b (id serial PRIMARY KEY, note bytea, %s);`,
	catalog.BackstopConstraint("email"), catalog.BackstopConstraint("note"))

const reloadRows = 500

// reloadScript writes a number into bench_a.email (encrypted by pgcloak)
// and n, and reads the row back.
const reloadScript = `\set id random(1, ` + "500" + `)
\set r random(1, 1000000000)
BEGIN;
UPDATE bench_a SET email = :r, n = :r WHERE id = :id;
SELECT email, n FROM bench_a WHERE id = :id;
END;
`

// TestReloadUnderLoad reloads a serve process while pgbench runs through
// it over TLS (two clients on long sessions, one reconnecting for every
// transaction): a new certificate and a new rule by SIGHUP, then two bad
// files (a value the loader refuses, a rule on a column that is not bytea). No
// client statement may fail; new connections get the new certificate, new
// sessions the new rule, sessions older than the reload keep their rules
// (the backstop refuses what they would store unencrypted), and the bad
// files leave the running configuration in force.
func TestReloadUnderLoad(t *testing.T) {
	pgbench := harness.RequireBinary(t, "pgbench")
	e := newOpsEnv(t, reloadSchema)
	ca := harness.NewCA(t, "pgcloak-reload-ca")
	cert1, cert2 := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	ruleA := lcRule{"public.bench_a", "email", "{type: text, key: pii}"}
	ruleB := lcRule{"public.bench_b", "note", "{type: text, key: pii}"}
	tlsYAML := func(c harness.CertPair) string {
		return fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", c.CertFile, c.KeyFile)
	}
	e.write("encrypted", []lcRule{ruleA}, tlsYAML(cert1))
	e.start()
	ctx := stepCtx(t)
	tlsParams := []string{"sslmode", "verify-full", "sslrootcert", ca.CertFile}
	dsn := e.dsn(harness.SuperUser, e.db, tlsParams...)
	dsn = strings.Replace(dsn, "sslmode=disable&", "", 1)

	seed := connect(t, dsn)
	for i := 1; i <= reloadRows; i++ {
		if _, err := seed.Exec(ctx, "INSERT INTO bench_a VALUES ($1, $2, $3)", i, strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	if got := peerSerial(t, seed); got != serialOf(t, cert1) {
		t.Fatalf("pgcloak shows certificate %s, want the first one", got)
	}
	old := seed // a session that starts before the reload

	// The load: pgbench -M prepared over TLS, on long sessions and
	// reconnecting for every transaction (-C: each one a new TLS handshake
	// and login through pgcloak).
	script := e.dir + "/reload.sql"
	if err := os.WriteFile(script, []byte(reloadScript), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i, args := range [][]string{{"-c", "2"}, {"-c", "1", "-C"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runPgbenchUntil(t, pgbench, dsn, script, args, stop)
		}()
	}

	waitFor(t, 30*time.Second, "pgbench to run", func() bool {
		n, _ := strconv.Atoi(e.metric("pgcloak_client_connections"))
		return n >= 4 // seed and three pgbench clients
	})

	// 1. A new certificate and bench_b's rule, by SIGHUP.
	e.write("encrypted", []lcRule{ruleA, ruleB}, tlsYAML(cert2))
	e.hup("ok")
	fresh := connect(t, dsn)
	if got := peerSerial(t, fresh); got != serialOf(t, cert2) {
		t.Errorf("after the reload pgcloak shows certificate %s, want the new one %s", got, serialOf(t, cert2))
	}
	if _, err := fresh.Exec(ctx, "INSERT INTO bench_b (note) VALUES ($1)", "after reload"); err != nil {
		t.Fatalf("a new session writing the newly protected column: %v", err)
	}
	checkCiphertext(t, e, "SELECT note FROM bench_b WHERE id = (SELECT max(id) FROM bench_b)")
	var note string
	if err := fresh.QueryRow(ctx, "SELECT note FROM bench_b ORDER BY id DESC LIMIT 1").Scan(&note); err != nil || note != "after reload" {
		t.Errorf("a new session reads %q, %v", note, err)
	}
	// The session older than the reload keeps its rules: the note is not
	// encrypted by it, and the backstop refuses it.
	if _, err := old.Exec(ctx, "INSERT INTO bench_b (note) VALUES ($1::text::bytea)", "old session"); pgErrorCode(err) != "23514" {
		t.Errorf("an old session writing the newly protected column: %v, want the backstop's 23514", err)
	}
	if n := e.metric("pgcloak_rule_sets"); n != "2" {
		t.Errorf("pgcloak_rule_sets = %q, want 2 (the old sessions' and the new)", n)
	}

	// 2. Two bad files: each refused as a whole, the running configuration
	// stays (certificate 2, bench_b protected).
	e.write("encrypted", []lcRule{ruleA, ruleB}, tlsYAML(cert1)+"limits:\n  login_timeout: forever\n")
	e.hup("error")
	e.write("encrypted", []lcRule{ruleA, ruleB, {"public.bench_a", "n", "{type: int4, key: pii}"}}, tlsYAML(cert1))
	e.hup("error")
	if !strings.Contains(e.logs.String(), "tables.public.bench_a.n") {
		t.Error("the log does not say which rule made the reload fail")
	}
	again := connect(t, dsn)
	if got := peerSerial(t, again); got != serialOf(t, cert2) {
		t.Errorf("after the bad reloads pgcloak shows certificate %s, want %s (the one in force)", got, serialOf(t, cert2))
	}
	if _, err := again.Exec(ctx, "INSERT INTO bench_b (note) VALUES ($1)", "after bad reloads"); err != nil {
		t.Fatalf("after the bad reloads: %v", err)
	}
	checkCiphertext(t, e, "SELECT note FROM bench_b WHERE id = (SELECT max(id) FROM bench_b)")

	close(stop)
	wg.Wait()
	// The old rules are let go with their last session.
	old.Close(ctx)
	waitFor(t, 30*time.Second, "the old rule set to be released", func() bool { return e.metric("pgcloak_rule_sets") == "1" })
	for i, out := range results {
		t.Logf("pgbench %d:\n%s", i, out)
		if !strings.Contains(out, "number of failed transactions: 0 ") || failedTx.MatchString(out) || strings.Contains(out, "aborted") {
			t.Errorf("pgbench %d had failures:\n%s", i, out)
		}
	}
	// Every row holds what was written last: its email (decrypted through
	// pgcloak) equals n.
	rows, err := again.Query(ctx, "SELECT email, n FROM bench_a")
	if err != nil {
		t.Fatal(err)
	}
	var seen, bad int
	for rows.Next() {
		var email string
		var n int
		if err := rows.Scan(&email, &n); err != nil {
			t.Fatal(err)
		}
		seen++
		if email != strconv.Itoa(n) {
			bad++
		}
	}
	if rows.Err() != nil || seen != reloadRows || bad != 0 {
		t.Errorf("bench_a: %d rows, %d whose email does not match n (%v)", seen, bad, rows.Err())
	}
}

// failedTx matches pgbench's summary line of a run with failures.
var failedTx = regexp.MustCompile(`number of failed transactions: [1-9]`)

// runPgbenchUntil runs pgbench with script through dsn in runs of a few
// seconds until stop is closed, and returns the output of every run.
func runPgbenchUntil(t *testing.T, pgbench, dsn, script string, args []string, stop <-chan struct{}) string {
	var all strings.Builder
	for {
		select {
		case <-stop:
			return all.String()
		default:
		}
		c := exec.Command(pgbench, append([]string{"-n", "-M", "prepared", "-T", "2", "-f", script}, append(args, dsn)...)...)
		out, err := c.CombinedOutput()
		all.Write(out)
		if err != nil {
			fmt.Fprintf(&all, "aborted: pgbench: %v\n", err)
			return all.String()
		}
	}
}

// peerSerial is the serial number of the certificate pgcloak showed c.
func peerSerial(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	tc, ok := c.PgConn().Conn().(*tls.Conn)
	if !ok {
		t.Fatal("the connection is not TLS")
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, c harness.CertPair) string {
	t.Helper()
	b, _ := pem.Decode(c.CertPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// checkCiphertext reads one value straight from PostgreSQL and fails
// unless it is pgcloak ciphertext.
func checkCiphertext(t *testing.T, e *opsEnv, query string) {
	t.Helper()
	var raw []byte
	if err := e.direct().QueryRow(context.Background(), query).Scan(&raw); err != nil || !crypto.IsCiphertext(raw) {
		t.Errorf("%s: %q, %v; want ciphertext", query, raw, err)
	}
}

// TestReloadAccessRules: a reload gives the sessions that log in afterwards
// the new access rules, while a session that logged in before keeps the
// access it started with; a file that changes audit: is refused as a whole
// (the log is opened at start), and the rules in force stay.
func TestReloadAccessRules(t *testing.T) {
	e := newOpsEnv(t, "CREATE TABLE people (id int PRIMARY KEY, email bytea, "+catalog.BackstopConstraint("email")+")")
	rules := []lcRule{{"public.people", "email", "{type: text, key: pii}"}}
	accessYAML := func(read string) string {
		return fmt.Sprintf("access:\n  default: deny\n  roles:\n    %s: {read: %s, mask: email, write: true}\n", harness.SuperUser, read)
	}
	plain := strings.Replace(accessYAML("plaintext"), ", mask: email", "", 1)
	e.write("encrypted", rules, plain)
	e.start()
	ctx := stepCtx(t)
	dsn := e.dsn(harness.SuperUser, e.db)
	old := connect(t, dsn)
	if _, err := old.Exec(ctx, "INSERT INTO people VALUES (1, 'alice@example.jp')"); err != nil {
		t.Fatal(err)
	}
	read := func(c *pgx.Conn) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SELECT email FROM people WHERE id = 1").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	e.write("encrypted", rules, accessYAML("masked"))
	e.hup("ok")
	if got := read(connect(t, dsn)); got != "a***@example.jp" {
		t.Errorf("a session after the reload reads %q, want the mask a***@example.jp", got)
	}
	if got := read(old); got != "alice@example.jp" {
		t.Errorf("a session from before the reload reads %q, want the plaintext it logged in with", got)
	}

	e.write("encrypted", rules, plain+"audit: {file: "+filepath.Join(e.dir, "audit.log")+", transit_key: pgcloak-audit}\n")
	e.hup("error")
	if !strings.Contains(e.logs.String(), "restart pgcloak to change it") {
		t.Error("the log does not say that audit: needs a restart")
	}
	if got := read(connect(t, dsn)); got != "a***@example.jp" {
		t.Errorf("after the refused reload a new session reads %q, want the mask still in force", got)
	}
}
