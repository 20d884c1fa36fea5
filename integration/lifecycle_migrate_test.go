package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// lcRows is the size of the table the lifecycle test migrates.
const lcRows = 200_000

// lcSchema is a plaintext table of customers, and the log of the writes
// that the load makes through pgcloak (to know every row's final value).
const lcSchema = `
CREATE TABLE customers (
  id     int PRIMARY KEY,
  email  text,
  birth  date,
  amount numeric(12,2),
  note   text
);
CREATE TABLE touched (
  seq bigserial PRIMARY KEY,
  id  int NOT NULL,
  r   int NOT NULL
);`

var lcRules = []lcRule{
	{"public.customers", "email", "{type: text, key: pii}"},
	{"public.customers", "birth", "{type: date, key: pii}"},
	{"public.customers", "amount", `{type: "numeric(12,2)", key: pii}`},
}

// lcScript is the load: a read of one random row and a write of another
// with values derived from a random r, logged with r in touched in the same
// transaction. The row lock of the UPDATE orders the writes of one row, so
// the largest seq of an id is its last write: the row must end up holding
// the values of that r. \gset makes the values from r on the server (the
// SELECT reads no protected column); the UPDATE sends them as parameters,
// which pgcloak encrypts.
const lcScript = `\set id random(1, ` + "200000" + `)
\set r random(1, 1000000000)
\set id2 random(1, ` + "200000" + `)
SELECT email, birth, amount FROM customers WHERE id = :id2;
SELECT 'bench-' || (:r)::int || '@example.org' AS e, date '2000-01-01' + (:r)::int % 9000 AS d, (:r)::int % 100000 + 100000 AS a \gset
BEGIN;
UPDATE customers SET email = :e, birth = :d, amount = :a WHERE id = :id;
INSERT INTO touched (id, r) VALUES (:id, :r);
END;
`

// lcScriptSimple is lcScript for the simple query protocol, where pgbench
// pastes the variables into the SQL text: the strings need quotes, and
// pgcloak encrypts the literals.
var lcScriptSimple = strings.NewReplacer("email = :e", "email = ':e'", "birth = :d", "birth = ':d'").Replace(lcScript)

// lcValues are the three protected values of a row in canonical text form.
type lcValues [3]string

// lcBenchValues are the values the load writes for r (see lcScript).
func lcBenchValues(r int) lcValues {
	d := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r%9000)
	return lcValues{fmt.Sprintf("bench-%d@example.org", r), d.Format("2006-01-02"), fmt.Sprintf("%d.00", r%100000+100000)}
}

// lcLoadCustomers fills customers with n rows by COPY, with values unique
// enough that a heap scan can tell them apart from anything else: an e-mail
// starting with 8 random hex digits, a date, an amount of 8 characters.
func lcLoadCustomers(t testing.TB, c *pgx.Conn, n int) map[int]lcValues {
	t.Helper()
	orig := make(map[int]lcValues, n)
	rnd := make([]byte, 8*n)
	rand.Read(rnd)
	rows := make([][]any, n)
	base := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		id := i + 1
		x := binary.LittleEndian.Uint64(rnd[8*i:])
		email := fmt.Sprintf("%08x.%d@orig.example", uint32(x), id)
		birth := base.AddDate(0, 0, int(x>>32)%25000)
		cents := int64(1_000_000 + (x>>40)%9_000_000) // 10000.00 … 99999.99
		orig[id] = lcValues{email, birth.Format("2006-01-02"), fmt.Sprintf("%d.%02d", cents/100, cents%100)}
		rows[i] = []any{int32(id), email, birth, pgtype.Numeric{Int: big.NewInt(cents), Exp: -2, Valid: true}, "note"}
	}
	begin := time.Now()
	got, err := c.CopyFrom(context.Background(), pgx.Identifier{"customers"}, []string{"id", "email", "birth", "amount", "note"}, pgx.CopyFromRows(rows))
	if err != nil || got != int64(n) {
		t.Fatalf("COPY: %d rows, %v", got, err)
	}
	if _, err := c.Exec(context.Background(), "VACUUM ANALYZE customers"); err != nil {
		t.Fatal(err)
	}
	t.Logf("COPY of %d rows in %v", n, time.Since(begin).Round(time.Millisecond))
	return orig
}

// TestMigrateLifecycle adopts a 200,000-row plaintext table with three
// protected columns (text, date, numeric) under a concurrent read/write load
// that pgbench sends through pgcloak, following docs/lifecycle.md with the
// CLI built as a binary:
//
//  1. migrate plan, and its DDL run directly;
//  2. pgcloak restarted with state: migrating, the load started;
//  3. migrate encrypt killed with SIGKILL half-way, then run again: it
//     resumes and finishes, adds the CHECK backstops;
//  4. checks: every value is ciphertext that decrypts, once, to the value the
//     row must hold (the original, or the last write of the load: no lost
//     update, no skipped row, no double encryption); VACUUM FULL and
//     CHECKPOINT, then none of the 600,000 original values is in the table's
//     heap files;
//  5. pgcloak restarted with state: encrypted; keys rotate and migrate
//     rotate under load: every value under the new key version;
//  6. pgcloak restarted with state: migrating; migrate decrypt under load,
//     then --restore-type: the table is plaintext again with its original
//     types and the values the rows must hold.
//
// Every pgbench run must end without a failed transaction or an aborted
// client.
func TestMigrateLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 200k-row lifecycle test takes about two minutes")
	}
	bin := lcBuildPgcloak(t)
	pgbench := harness.RequireBinary(t, "pgbench")
	e := newLCEnv(t, lcSchema, lcRules)
	ctx := context.Background()
	d := e.direct()
	orig := lcLoadCustomers(t, d, lcRows)
	migrating, encrypted := e.config("migrating"), e.config("encrypted")
	keys := e.keys()

	// 1. The plan, run directly (the load has not started: the type change
	// is the one step that needs the writers paused).
	script := lcRunCLI(t, bin, "migrate", "plan", "--table", "customers", "--config", migrating)
	if _, err := d.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("plan DDL: %v\n%s", err, script)
	}
	// Positive control for the heap scan: every value is in the heap now,
	// as the UTF-8 bytes of its text form.
	if found, distinct := lcScanHeap(t, e, d, "customers", orig), lcDistinct(orig); len(found) != distinct {
		t.Fatalf("heap scan of the plaintext table found %d of the %d distinct original values; the scan does not work", len(found), distinct)
	}

	// 2. pgcloak with state: migrating, and the load through it.
	a := e.startProxy(migrating)
	load := lcNewBenchLoad(t, pgbench, e.db, lcScript, lcScriptSimple)
	load.start(a.addr)

	// 3. encrypt, killed half-way, then again.
	lcKillHalfWay(t, e, d, bin, migrating)
	partial := lcCountCiphertext(t, d)
	if partial == 0 || partial >= 3*lcRows {
		t.Fatalf("after the kill %d of %d values are ciphertext; want some, not all", partial, 3*lcRows)
	}
	t.Logf("after SIGKILL: %d of %d values encrypted", partial, 3*lcRows)
	out := lcRunCLI(t, bin, "migrate", "encrypt", "--table", "customers", "--yes", "--config", migrating)
	if !strings.Contains(out, "resumed after primary key") {
		t.Fatalf("the second run did not resume:\n%s", out)
	}
	t.Logf("resumed encrypt: %s", lcRateLine(out))
	load.stop()

	// 4. Every value as it must be; the backstops; the heap scan.
	want := lcExpectedValues(t, d, orig)
	lcCheckDirect(t, d, keys, want, 1)
	lcCheckThrough(t, e, a, want)
	lcCheckBackstops(t, d, true)
	if _, err := d.Exec(ctx, "INSERT INTO customers (id, email) VALUES (0, 'plain@around.pgcloak')"); pgErrorCode(err) != "23514" {
		t.Fatalf("plaintext written around pgcloak: %v, want check_violation", err)
	}
	if _, err := d.Exec(ctx, "VACUUM FULL customers"); err != nil {
		t.Fatal(err)
	}
	if found := lcScanHeap(t, e, d, "customers", orig); len(found) > 0 {
		t.Fatalf("after VACUUM FULL the heap still holds %d original plaintext values, e.g. %q", len(found), found[:min(3, len(found))])
	}

	// 5. state: encrypted; rotate under load.
	b := e.startProxy(encrypted)
	a.stop()
	load.start(b.addr)
	lcRunCLI(t, bin, "keys", "rotate", "pii", "--config", encrypted)
	lcWaitActive(t, b, 2)
	out = lcRunCLI(t, bin, "migrate", "rotate", "--table", "customers", "--config", encrypted)
	t.Logf("rotate: %s", lcRateLine(out))
	load.stop()
	want = lcExpectedValues(t, d, orig)
	lcCheckDirect(t, d, keys, want, 2)
	lcCheckThrough(t, e, b, want)

	// 6. The way back: state: migrating, decrypt under load, then the types.
	c := e.startProxy(migrating)
	b.stop()
	load.start(c.addr)
	out = lcRunCLI(t, bin, "migrate", "decrypt", "--table", "customers", "--confirm-decrypt", "--config", migrating)
	t.Logf("decrypt: %s", lcRateLine(out))
	lcCheckBackstops(t, d, false)
	load.stop()
	out = lcRunCLI(t, bin, "migrate", "decrypt", "--table", "customers", "--confirm-decrypt", "--restore-type", "--config", migrating)
	c.stop()
	if !strings.Contains(out, "restored the column types") {
		t.Fatalf("restore:\n%s", out)
	}
	lcCheckRestored(t, d, lcExpectedValues(t, d, orig))

	runs, txns := load.totals()
	t.Logf("load: %d pgbench runs, %d transactions through pgcloak, no failure", runs, txns)
	if txns == 0 {
		t.Fatal("the load made no transaction")
	}
}

// lcKillHalfWay starts migrate encrypt as a process, throttled, and kills it
// with SIGKILL once pgcloak.migrations says it has gone through 40% of the
// rows.
func lcKillHalfWay(t *testing.T, e *lcEnv, d *pgx.Conn, bin, config string) {
	t.Helper()
	var out bytes.Buffer
	p := exec.Command(bin, "migrate", "encrypt", "--table", "customers", "--batch", "500", "--throttle", "10ms", "--yes", "--config", config)
	p.Stdout, p.Stderr = &out, &out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- p.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var done int64
		err := d.QueryRow(context.Background(), `SELECT rows_done FROM pgcloak.migrations WHERE table_name = 'public.customers' AND operation = 'encrypt'`).Scan(&done)
		if err == nil && done >= lcRows*2/5 {
			break
		}
		select {
		case err := <-waited:
			t.Fatalf("migrate encrypt ended before it could be killed: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("migrate encrypt made no progress:\n%s", out.String())
		}
	}
	if err := p.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-waited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("migrate encrypt was not killed: %v\n%s", err, out.String())
	}
	var done int64
	var finished bool
	if err := d.QueryRow(context.Background(), `SELECT rows_done, finished_at IS NOT NULL FROM pgcloak.migrations
		WHERE table_name = 'public.customers' AND operation = 'encrypt'`).Scan(&done, &finished); err != nil {
		t.Fatal(err)
	}
	if finished || done >= lcRows {
		t.Fatalf("killed run: rows_done %d, finished %v", done, finished)
	}
	t.Logf("killed migrate encrypt after %d rows", done)
}

// lcRunCLI runs the pgcloak binary and returns its standard output; a
// non-zero exit fails the test.
func lcRunCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = &out, &errb
	begin := time.Now()
	if err := c.Run(); err != nil {
		t.Fatalf("pgcloak %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	t.Logf("pgcloak %s (%v)\n%s%s", strings.Join(args, " "), time.Since(begin).Round(time.Millisecond), out.String(), errb.String())
	return out.String()
}

var lcRateRE = regexp.MustCompile(`(\d+) rows in ([^ ]+) \((\d+) rows/s\)`)

// lcRateLine is the "N rows in T (R rows/s)" part of a migrate summary.
func lcRateLine(out string) string { return lcRateRE.FindString(out) }

// lcExpectedValues is what every row must hold: the value of its last write
// by the load, or the original.
func lcExpectedValues(t *testing.T, d *pgx.Conn, orig map[int]lcValues) map[int]lcValues {
	t.Helper()
	want := make(map[int]lcValues, len(orig))
	for id, v := range orig {
		want[id] = v
	}
	rows, err := d.Query(context.Background(), `SELECT DISTINCT ON (id) id, r FROM touched ORDER BY id, seq DESC`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, r int32
		if err := rows.Scan(&id, &r); err != nil {
			t.Fatal(err)
		}
		want[int(id)] = lcBenchValues(int(r))
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows were written by the load", n)
	return want
}

// lcCheckDirect reads the table directly: every value is pgcloak ciphertext
// under key version version that decrypts to the value the row must hold,
// which is not itself ciphertext.
func lcCheckDirect(t *testing.T, d *pgx.Conn, keys crypto.Keyrings, want map[int]lcValues, version uint32) {
	t.Helper()
	kr, err := keys.Keyring("pii")
	if err != nil {
		t.Fatal(err)
	}
	var ids [3]crypto.ColumnID
	for i, c := range []string{"email", "birth", "amount"} {
		if ids[i], err = crypto.NewColumnID("public", "customers", c); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := d.Query(context.Background(), `SELECT id, email, birth, amount FROM customers`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n, bad := 0, 0
	for rows.Next() {
		var id int32
		var v [3][]byte
		if err := rows.Scan(&id, &v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		n++
		for i := range v {
			h, herr := crypto.ParseHeader(v[i])
			plain, derr := kr.Decrypt(nil, v[i], ids[i])
			switch {
			case herr != nil || derr != nil:
				t.Errorf("row %d column %d: not ciphertext that decrypts (%v, %v): %q", id, i, herr, derr, v[i][:min(len(v[i]), 40)])
			case h.KeyVersion != version:
				t.Errorf("row %d column %d: key version %d, want %d", id, i, h.KeyVersion, version)
			case crypto.IsCiphertext(plain):
				t.Errorf("row %d column %d: encrypted twice", id, i)
			case string(plain) != want[int(id)][i]:
				t.Errorf("row %d column %d: %q, want %q (lost update?)", id, i, plain, want[int(id)][i])
			default:
				continue
			}
			if bad++; bad > 10 {
				t.FailNow()
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%d rows, want %d", n, len(want))
	}
}

// lcCheckThrough reads every row through pgcloak: what the application sees.
func lcCheckThrough(t *testing.T, e *lcEnv, p *lcProxy, want map[int]lcValues) {
	t.Helper()
	c := e.connect(e.dsn(p))
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), `SELECT id, email, birth, amount FROM customers`, pgx.QueryExecModeSimpleProtocol)
	lcCompareRows(t, "through pgcloak", rows, err, want)
}

// lcCheckRestored reads the restored plaintext table directly.
func lcCheckRestored(t *testing.T, d *pgx.Conn, want map[int]lcValues) {
	t.Helper()
	var types string
	if err := d.QueryRow(context.Background(), `SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname IN ('email', 'birth', 'amount')`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types != "text, date, numeric(12,2)" {
		t.Fatalf("restored types: %s", types)
	}
	rows, err := d.Query(context.Background(), `SELECT id, email, birth::text, amount::text FROM customers`)
	lcCompareRows(t, "restored", rows, err, want)
}

// lcCompareRows checks that rows (id and three values) are exactly want.
func lcCompareRows(t *testing.T, what string, rows pgx.Rows, err error, want map[int]lcValues) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int32
		var v lcValues
		if err := rows.Scan(&id, &v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		if v != want[int(id)] {
			t.Fatalf("%s row %d = %q, want %q", what, id, v, want[int(id)])
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, n, len(want))
	}
}

// lcCheckBackstops checks that the three CHECK constraints are there and
// validated (or that none is).
func lcCheckBackstops(t *testing.T, d *pgx.Conn, present bool) {
	t.Helper()
	var n int
	if err := d.QueryRow(context.Background(), `SELECT count(*) FROM pg_constraint WHERE conrelid = 'customers'::regclass
		AND conname IN ('pgcloak_email_encrypted', 'pgcloak_birth_encrypted', 'pgcloak_amount_encrypted') AND convalidated`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{true: 3, false: 0}[present]; n != want {
		t.Fatalf("%d validated backstops, want %d", n, want)
	}
}

// lcCountCiphertext counts the values of the three columns that have the
// pgcloak header.
func lcCountCiphertext(t *testing.T, d *pgx.Conn) int {
	t.Helper()
	var n int
	err := d.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FILTER (WHERE %s) + count(*) FILTER (WHERE %s) + count(*) FILTER (WHERE %s) FROM customers`,
		crypto.CheckExpr("email"), crypto.CheckExpr("birth"), crypto.CheckExpr("amount"))).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lcWaitActive waits until pgcloak instance p encrypts with key version v.
func lcWaitActive(t *testing.T, p *lcProxy, v uint32) {
	t.Helper()
	kr, err := p.keys.Keyring("pii")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, _ := kr.Active(); a == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgcloak did not load key version %d", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lcDistinct is the number of distinct values in orig.
func lcDistinct(orig map[int]lcValues) int {
	set := map[string]bool{}
	for _, vs := range orig {
		for _, v := range vs {
			set[v] = true
		}
	}
	return len(set)
}

// lcScanHeap runs CHECKPOINT, reads the heap (and TOAST) files of table and
// returns the original values found in them (each once). It looks up every 8-byte window of the
// files in an index of the values' first 8 bytes, then compares the whole
// value: one pass, whatever the number of values.
func lcScanHeap(t *testing.T, e *lcEnv, d *pgx.Conn, table string, orig map[int]lcValues) []string {
	t.Helper()
	// What is in shared buffers only is not in the files yet.
	if _, err := d.Exec(context.Background(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	index := map[uint64][]string{}
	for _, vs := range orig {
		for _, v := range vs {
			if len(v) < 8 {
				t.Fatalf("value %q is shorter than 8 bytes", v)
			}
			k := binary.LittleEndian.Uint64([]byte(v))
			index[k] = append(index[k], v)
		}
	}
	var paths []string
	rows, err := d.Query(context.Background(), `SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = $1::regclass
		UNION ALL SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c WHERE c.oid = $1::regclass AND c.reltoastrelid <> 0`, table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	rows.Close()
	seen := map[string]bool{}
	var found []string
	size := 0
	for _, rel := range paths {
		for seg := 0; ; seg++ {
			path := filepath.Join(e.pg.DataDir, rel)
			if seg > 0 {
				path += "." + strconv.Itoa(seg)
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			size += len(data)
			for i := 0; i+8 <= len(data); i++ {
				cands, ok := index[binary.LittleEndian.Uint64(data[i:])]
				if !ok {
					continue
				}
				for _, v := range cands {
					if !seen[v] && bytes.HasPrefix(data[i:], []byte(v)) {
						seen[v] = true
						found = append(found, v)
					}
				}
			}
		}
	}
	t.Logf("heap scan of %s: %d bytes in %d file(s), %d original values found, %v", table, size, len(paths), len(found), time.Since(begin).Round(time.Millisecond))
	return found
}

// lcBenchLoad runs pgbench against a pgcloak instance in a loop of short
// runs, going through the simple, extended and prepared protocols in turn,
// until stopped; a run that fails, or reports a failed transaction or an
// aborted client, fails the test.
type lcBenchLoad struct {
	t       *testing.T
	pgbench string
	db      string
	script  string // for -M extended and prepared
	simple  string // for -M simple
	stopReq chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	runs    int
	txns    int
}

func lcNewBenchLoad(t *testing.T, pgbench, db, script, simple string) *lcBenchLoad {
	dir := t.TempDir()
	l := &lcBenchLoad{t: t, pgbench: pgbench, db: db, script: filepath.Join(dir, "load.sql"), simple: filepath.Join(dir, "load-simple.sql")}
	for path, text := range map[string]string{l.script: script, l.simple: simple} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if l.stopReq != nil {
			l.stop()
		}
	})
	return l
}

var lcProcessedRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

// start runs the loop against addr (host:port of pgcloak).
func (l *lcBenchLoad) start(addr string) {
	host, port, _ := strings.Cut(addr, ":")
	l.stopReq, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopReq:
				return
			default:
			}
			mode := []string{"extended", "simple", "prepared"}[i%3]
			script := l.script
			if mode == "simple" {
				script = l.simple
			}
			c := exec.Command(l.pgbench, "-n", "-c", "4", "-j", "2", "-T", "2", "-R", "400", "-M", mode, "-f", script,
				"-h", host, "-p", port, "-U", harness.SuperUser, l.db)
			c.Env = append(os.Environ(), "PGSSLMODE=disable")
			out, err := c.CombinedOutput()
			s := string(out)
			m := lcProcessedRE.FindStringSubmatch(s)
			if err != nil || m == nil || strings.Contains(s, "aborted") || (strings.Contains(s, "number of failed transactions") && !strings.Contains(s, "number of failed transactions: 0 ")) {
				l.t.Errorf("pgbench -M %s through pgcloak %s: %v\n%s", mode, addr, err, s)
				return
			}
			n, _ := strconv.Atoi(m[1])
			l.mu.Lock()
			l.runs++
			l.txns += n
			l.mu.Unlock()
		}
	}()
}

// stop ends the loop after the run in progress.
func (l *lcBenchLoad) stop() {
	close(l.stopReq)
	<-l.done
	l.stopReq = nil
	if l.t.Failed() {
		l.t.FailNow()
	}
}

func (l *lcBenchLoad) totals() (runs, txns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs, l.txns
}

// BenchmarkMigrateEncrypt measures the backfill rate of migrate encrypt on
// an idle machine: a 200,000-row table with three protected columns (text,
// date, numeric(12,2)), plaintext after the plan's DDL, encrypted through
// admin_dsn by the same code the CLI runs. rows/s is the batch pass alone;
// ns/op is the whole command, the validation of the three CHECK constraints
// included; WAL-MB is the WAL the command wrote; plan-DDL-s is the time of
// the plan's table rewrite (not in ns/op). It starts its own PostgreSQL and
// Vault.
//
//	go test ./integration -run '^$' -bench MigrateEncrypt -benchtime 1x
func BenchmarkMigrateEncrypt(b *testing.B) {
	pg := harness.StartPostgres(b, harness.PostgresOptions{})
	vault := harness.StartVault(b, harness.VaultOptions{})
	for _, batch := range []int{500, 1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var rows, wal int64
			var pass, plan time.Duration
			for range b.N {
				b.StopTimer()
				e := newLCEnvOn(b, pg, vault, lcSchema, lcRules)
				d := e.direct()
				lcLoadCustomers(b, d, lcRows)
				cfg := e.config("migrating")
				script := e.mustMigrate(cfg, "plan", "--table", "customers")
				begin := time.Now()
				if _, err := d.Exec(context.Background(), script); err != nil {
					b.Fatal(err)
				}
				plan += time.Since(begin)
				if _, err := d.Exec(context.Background(), "VACUUM ANALYZE customers"); err != nil {
					b.Fatal(err)
				}
				var lsn string
				if err := d.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				out := e.mustMigrate(cfg, "encrypt", "--table", "customers", "--batch", strconv.Itoa(batch), "--yes")
				b.StopTimer()
				var walBytes int64
				if err := d.QueryRow(context.Background(), "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint", lsn).Scan(&walBytes); err != nil {
					b.Fatal(err)
				}
				wal += walBytes
				m := lcRateRE.FindStringSubmatch(out)
				if m == nil {
					b.Fatalf("no rate in:\n%s", out)
				}
				n, _ := strconv.ParseInt(m[1], 10, 64)
				el, err := time.ParseDuration(m[2])
				if err != nil {
					b.Fatal(err)
				}
				rows += n
				pass += el
			}
			b.ReportMetric(float64(rows)/pass.Seconds(), "rows/s")
			b.ReportMetric(float64(wal)/float64(b.N)/(1<<20), "WAL-MB/op")
			b.ReportMetric(plan.Seconds()/float64(b.N), "plan-DDL-s/op")
		})
	}
}
