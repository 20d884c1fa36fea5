package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// The COPY (query) tests and the dump tests share these tables: customers
// with six protected columns (one deterministic) of several logical types,
// each with the CHECK backstop a DBA would have (pgcloak_<col>_encrypted,
// as pgcloak migrate adds it), and orders, unprotected, to join with.
var exportProtected = []string{"full_name", "email", "phone", "birth_date", "credit_limit", "vip"}

// exportSchema is the schema of the protected database.
func exportSchema() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE customers (id int PRIMARY KEY, full_name bytea, email bytea UNIQUE, phone bytea, birth_date bytea, credit_limit bytea, vip bytea, note text")
	for _, c := range exportProtected {
		fmt.Fprintf(&b, ",\n  CONSTRAINT pgcloak_%s_encrypted CHECK (%s)", c, crypto.CheckExpr(c))
	}
	b.WriteString(");\nCREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, note text);\n")
	return b.String()
}

// exportPlainSchema is the plaintext twin: the same tables with the
// logical types.
const exportPlainSchema = `CREATE TABLE customers (id int PRIMARY KEY, full_name text, email text UNIQUE, phone varchar(32), birth_date date, credit_limit numeric(12,2), vip bool, note text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, note text);
`

const exportTables = `
public.customers:
  full_name: {type: text, key: pii}
  email: {type: text, key: pii, mode: deterministic}
  phone: {type: varchar(32), key: pii}
  birth_date: {type: date, key: pii}
  credit_limit:
    type: numeric(12,2)
    key: pii
  vip: {type: bool, key: pii}
`

// exportRows is the number of customers; orders are twice as many.
const exportRows = 2000

// exportMarker is in every customer's full_name and e-mail address: a dump
// that holds it holds plaintext.
const exportMarker = "zq7marker"

// exportData is the customers' rows as COPY text: NULLs, and values that
// need escaping in text, quoting in CSV, and non-ASCII.
func exportData() []byte {
	var b bytes.Buffer
	for i := 1; i <= exportRows; i++ {
		name := fmt.Sprintf(`山田 "%s%d"; a\b	c,d`, exportMarker, i)
		phone := fmt.Sprintf("+81-%04d", i)
		birth := fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28)
		limit := fmt.Sprintf("%d.%02d", i*37%100000, i%100)
		vip := []string{"t", "f"}[i%2]
		if i%10 == 0 {
			name, phone, birth, limit, vip = `\N`, `\N`, `\N`, `\N`, `\N`
		} else {
			name = strings.NewReplacer(`\`, `\\`, "\t", `\t`).Replace(name)
		}
		fmt.Fprintf(&b, "%d\t%s\tuser%d.%s@example.com\t%s\t%s\t%s\t%s\tnote %d\n", i, name, i, exportMarker, phone, birth, limit, vip, i)
	}
	return b.Bytes()
}

// exportOrders fills orders (plain SQL, the same on both sides).
const exportOrders = `INSERT INTO orders SELECT g, (g - 1) % 2000 + 1, 'order ' || g FROM generate_series(1, 4000) g;`

// psqlRun runs psql with the commands on one database and fails the test
// on an error.
func psqlRun(t *testing.T, dsn string, cmds ...string) string {
	t.Helper()
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command(harness.RequireBinary(t, "psql"), append(args, dsn)...).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v\n%s", cmds, err, out)
	}
	return string(out)
}

// newPlainTwin creates a database with the plaintext twin of the tables on
// e's cluster and returns its name.
func newPlainTwin(t *testing.T, e *encEnv, schema string) string {
	t.Helper()
	return newDatabase(t, e.pg, "plain_", schema)
}

// loadExport fills the protected database through pgcloak and the twin
// directly, from the same COPY text.
func loadExport(t *testing.T, e *encEnv, twin string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "customers.txt")
	if err := os.WriteFile(in, exportData(), 0o644); err != nil {
		t.Fatal(err)
	}
	psqlRun(t, e.dsn(), fmt.Sprintf(`\copy customers FROM '%s'`, in), exportOrders)
	psqlRun(t, e.pg.DSN(harness.SuperUser, twin), fmt.Sprintf(`\copy customers FROM '%s'`, in), exportOrders)
}

// TestCopyQueryExport: psql \copy (query) TO through pgcloak gives, in
// text, CSV and binary format, byte for byte what the same query gives on
// the plaintext twin directly: plain columns, aliases, joins, FROM
// subqueries, CTEs, *, a deterministic lookup, and a query whose only
// protected column is in its WHERE clause.
func TestCopyQueryExport(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
	twin := newPlainTwin(t, e, exportPlainSchema)
	start := time.Now()
	loadExport(t, e, twin)
	t.Logf("loaded %d customers both ways in %v", exportRows, time.Since(start))

	queries := []string{
		// The example.
		`SELECT id, email, phone FROM customers WHERE id > 5 ORDER BY id`,
		`SELECT c.id AS customer, c.full_name AS name, c.birth_date, c.credit_limit, c.vip, c.note FROM customers c ORDER BY 1`,
		`SELECT o.id AS order_id, c.full_name, c.email AS mail, o.note FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id % 7 = 0 ORDER BY o.id`,
		`WITH rich AS (SELECT id, credit_limit FROM customers WHERE id % 3 = 0) SELECT s.id, s.e, rich.credit_limit, s.b FROM (SELECT id, email AS e, birth_date AS b FROM customers) s JOIN rich ON rich.id = s.id ORDER BY s.id`,
		`SELECT * FROM customers ORDER BY id`,
		`SELECT c.*, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.id > 3990 ORDER BY c.id, o.id`,
		`SELECT id, full_name, vip FROM customers WHERE email = 'user7.` + exportMarker + `@example.com'`,
		`SELECT id, note FROM customers WHERE email IN ('user3.` + exportMarker + `@example.com', 'user4.` + exportMarker + `@example.com') ORDER BY id`,
		`SELECT id, phone FROM customers WHERE full_name IS NULL ORDER BY id`,
	}
	formats := []struct{ name, opts string }{
		{"text", ""},
		{"csv", "WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NULL', FORCE_QUOTE *)"},
		{"binary", "WITH (FORMAT binary)"},
	}
	dir := t.TempDir()
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			for i, q := range queries {
				through, direct := filepath.Join(dir, fmt.Sprintf("%s-%d-through", f.name, i)), filepath.Join(dir, fmt.Sprintf("%s-%d-direct", f.name, i))
				start := time.Now()
				psqlRun(t, e.dsn(), fmt.Sprintf(`\copy (%s) TO '%s' %s`, q, through, f.opts))
				took := time.Since(start)
				psqlRun(t, e.pg.DSN(harness.SuperUser, twin), fmt.Sprintf(`\copy (%s) TO '%s' %s`, q, direct, f.opts))
				got, err := os.ReadFile(through)
				if err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(direct)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s\nthrough pgcloak (%d bytes) differs from the plaintext twin (%d bytes) at byte %d:\n got %q\nwant %q",
						q, len(got), len(want), firstDiff(got, want), around(got, firstDiff(got, want)), around(want, firstDiff(got, want)))
					continue
				}
				if f.name == "text" && bytes.Count(want, []byte("\n")) == 0 {
					t.Errorf("%s: no rows", q)
				}
				t.Logf("%s: %d bytes, identical (%v through pgcloak)", q, len(got), took)
			}
		})
	}

	// pgx's CopyTo (a simple Query too) gets the same.
	ctx := context.Background()
	const q = `COPY (SELECT id, email, phone FROM customers WHERE id > 5 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)`
	var through, direct bytes.Buffer
	if _, err := e.connect().PgConn().CopyTo(ctx, &through, q); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, e.pg.DSN(harness.SuperUser, twin)).PgConn().CopyTo(ctx, &direct, q); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(through.Bytes(), direct.Bytes()) || !strings.Contains(through.String(), "user6."+exportMarker+"@example.com,+81-0006\n") {
		t.Errorf("pgx CopyTo through pgcloak differs from the twin:\n%.300s\n---\n%.300s", through.String(), direct.String())
	}
}

// TestCopyQueryRefusals: COPY (query) TO whose protected output pgcloak
// cannot attribute is refused with 0A000, naming the column and what to do;
// the session goes on.
func TestCopyQueryRefusals(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
	ctx := context.Background()
	c := e.connect()
	if _, err := c.Exec(ctx, `INSERT INTO customers (id, full_name, email) VALUES (1, 'Ada', 'ada@example.org')`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sql, msg string }{
		{`COPY (SELECT id, lower(full_name) FROM customers) TO STDOUT`,
			"pgcloak: cannot apply lower() to public.customers.full_name: functions would see ciphertext, not the value"},
		{`COPY (SELECT email::text FROM customers) TO STDOUT (FORMAT csv)`,
			"pgcloak: cannot cast public.customers.email: a cast would see ciphertext; select the column plainly"},
		{`COPY (SELECT email FROM customers UNION ALL SELECT email FROM customers) TO STDOUT`,
			"pgcloak: cannot copy public.customers.email: the rows of a UNION, INTERSECT or EXCEPT carry no column identity, so pgcloak could not decrypt them; run one COPY (query) TO per branch"},
		{`COPY (SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id) TO STDOUT`,
			"pgcloak: cannot copy public.customers.full_name: COPY (query) TO identifies a protected column only by its position, and pgcloak cannot tell where this query's * puts it"},
		{`COPY (SELECT (SELECT email FROM customers LIMIT 1)) TO STDOUT`,
			"pgcloak: cannot return public.customers.email: a subquery's value loses the column's identity"},
		{`COPY (SELECT id, full_name FROM customers ORDER BY full_name) TO STDOUT`,
			"pgcloak: cannot order by public.customers.full_name: encrypted values have no order"},
		{`COPY (SELECT email FROM customers) TO '/tmp/pgcloak-copy-query'`,
			"pgcloak: cannot copy public.customers.email: COPY (query) TO a server-side file or program would write ciphertext where pgcloak cannot decrypt it; use COPY (query) TO STDOUT (psql \\copy)"},
	} {
		_, err := c.PgConn().CopyTo(ctx, &bytes.Buffer{}, tc.sql)
		pe := requirePgError(t, err, "0A000", tc.msg)
		t.Logf("%s\n  → %s %s", tc.sql, pe.Code, pe.Message)
		if got := queryString(t, c, "SELECT 'still usable'"); got != "still usable" {
			t.Fatal(got)
		}
	}

	// psql shows the same error and exits non-zero.
	out, err := exec.Command(harness.RequireBinary(t, "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-c",
		`\copy (SELECT upper(email) FROM customers) TO '/dev/null'`, e.dsn()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ERROR:  pgcloak: cannot apply upper() to public.customers.email") {
		t.Errorf("psql: %v\n%s", err, out)
	}

	if got := queryString(t, c, "SELECT count(*)::text FROM customers"); got != "1" {
		t.Errorf("%s rows after the refusals, want 1", got)
	}
}

// TestCopyExtended: COPY sent with Parse/Bind/Execute is rewritten as for a
// simple Query: FROM STDIN encrypts, TO STDOUT (table or query) decrypts.
func TestCopyExtended(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
	ctx := context.Background()
	conn, fe := rawSessionDB(t, e.addr, e.db)
	defer conn.Close()
	expect := func(want ...string) []pgproto3.BackendMessage {
		t.Helper()
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []pgproto3.BackendMessage
		for _, w := range want {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("ErrorResponse %s: %s (want %s)", e.Code, e.Message, w)
			}
			if name := fmt.Sprintf("%T", m); name != "*pgproto3."+w {
				t.Fatalf("got %s, want %s", name, w)
			}
			got = append(got, m)
			if d, ok := m.(*pgproto3.CopyData); ok {
				got[len(got)-1] = &pgproto3.CopyData{Data: append([]byte(nil), d.Data...)}
			}
		}
		return got
	}
	fe.SendParse(&pgproto3.Parse{Query: "COPY customers (id, email, phone) FROM STDIN"})
	fe.SendBind(&pgproto3.Bind{})
	fe.SendExecute(&pgproto3.Execute{})
	fe.Send(&pgproto3.Flush{})
	expect("ParseComplete", "BindComplete", "CopyInResponse")
	fe.Send(&pgproto3.CopyData{Data: []byte("42\text@example.org\t+81-42\n43\t\\N\t+81-43\n")})
	fe.Send(&pgproto3.CopyDone{})
	fe.SendSync(&pgproto3.Sync{})
	expect("CommandComplete", "ReadyForQuery")

	var raw []byte
	if err := e.direct().QueryRow(ctx, `SELECT email FROM customers WHERE id = 42`).Scan(&raw); err != nil || !crypto.IsCiphertext(raw) {
		t.Fatalf("stored through extended COPY: %q, %v", raw, err)
	}
	for _, q := range []string{
		`COPY (SELECT id, email, phone FROM customers WHERE id >= 42 ORDER BY id) TO STDOUT`,
		`COPY customers (id, email, phone) TO STDOUT`,
	} {
		fe.SendParse(&pgproto3.Parse{Query: q})
		fe.SendBind(&pgproto3.Bind{})
		fe.SendExecute(&pgproto3.Execute{})
		fe.SendSync(&pgproto3.Sync{})
		got := expect("ParseComplete", "BindComplete", "CopyOutResponse", "CopyData", "CopyData", "CopyDone", "CommandComplete", "ReadyForQuery")
		data := string(got[3].(*pgproto3.CopyData).Data) + string(got[4].(*pgproto3.CopyData).Data)
		if data != "42\text@example.org\t+81-42\n43\t\\N\t+81-43\n" {
			t.Errorf("%s: %q", q, data)
		}
	}
}

// rawSessionDB is rawSession to database db as the superuser.
func rawSessionDB(t *testing.T, addr, db string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	c := rawConn(t, addr)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": harness.SuperUser, "database": db}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("startup: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s %s: %s", m.Severity, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return c, fe
		}
	}
}

// around is up to 60 bytes of b around offset i.
func around(b []byte, i int) []byte {
	return b[max(0, i-30):min(len(b), i+30)]
}
