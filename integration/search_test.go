package integration

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/integration/harness"
)

const searchSchema = `
CREATE TABLE people (id int PRIMARY KEY, email bytea UNIQUE, phone bytea, country text);
CREATE INDEX people_phone ON people (phone);
CREATE TABLE contacts (id int PRIMARY KEY, email bytea, note text);
`

const searchTables = `
public.people:
  email: {type: text, key: pii, mode: deterministic, search_group: email}
  phone: {type: text, key: pii, mode: deterministic}
public.contacts:
  email: {type: text, key: pii, mode: deterministic, search_group: email}
`

// TestDeterministicSearch runs every search form on deterministic columns
// through pgcloak, in both protocols.
func TestDeterministicSearch(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: searchSchema, tables: searchTables})
	ctx := context.Background()
	c := e.connect()
	for i, email := range []string{"ada@example.org", "grace@example.com", "taro@example.jp"} {
		if _, err := c.Exec(ctx, `INSERT INTO people VALUES ($1, $2, $3, $4)`, i+1, email, fmt.Sprintf("+81-%d", i), "X"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `INSERT INTO people VALUES (4, NULL, '+81-9', 'Y')`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO contacts VALUES (10, 'grace@example.com', 'n1'), (11, 'nobody@example.net', 'n2')`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}

	ids := func(t *testing.T, sql string, args ...any) string {
		t.Helper()
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var out []string
		for rows.Next() {
			var v any
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(v))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	simple := pgx.QueryExecModeSimpleProtocol
	for _, tc := range []struct {
		name, sql string
		args      []any
		want      string
	}{
		{"= literal (simple)", `SELECT id FROM people WHERE email = 'grace@example.com'`, []any{simple}, "2"},
		{"= literal (extended)", `SELECT id FROM people WHERE email = 'grace@example.com'`, nil, "2"},
		{"= parameter", `SELECT id FROM people WHERE email = $1`, []any{"taro@example.jp"}, "3"},
		{"literal = column", `SELECT id FROM people WHERE 'ada@example.org' = email`, []any{simple}, "1"},
		{"IN", `SELECT id FROM people WHERE email IN ('ada@example.org', $1)`, []any{"taro@example.jp"}, "1,3"},
		{"<>", `SELECT id FROM people WHERE email <> 'ada@example.org'`, nil, "2,3"},
		{"IS NULL", `SELECT id FROM people WHERE email IS NULL`, nil, "4"},
		{"IS NOT NULL", `SELECT id FROM people WHERE email IS NOT NULL`, nil, "1,2,3"},
		{"second column", `SELECT id FROM people WHERE phone = $1`, []any{"+81-9"}, "4"},
		{"GROUP BY decrypts groups", `SELECT country FROM people GROUP BY country`, nil, "X,Y"},
		{"GROUP BY protected", `SELECT email FROM people WHERE email IS NOT NULL GROUP BY email`, nil, "ada@example.org,grace@example.com,taro@example.jp"},
		{"DISTINCT", `SELECT DISTINCT email FROM people WHERE id < 3`, []any{simple}, "ada@example.org,grace@example.com"},
		{"JOIN within a search group", `SELECT p.id FROM people p JOIN contacts c ON p.email = c.email`, nil, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(t, tc.sql, tc.args...); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.sql, got, tc.want)
			}
		})
	}

	t.Run("UPDATE and DELETE by protected value", func(t *testing.T) {
		if _, err := c.Exec(ctx, `UPDATE people SET country = 'Z' WHERE email = $1`, "ada@example.org"); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, `SELECT country FROM people WHERE id = 1`); got != "Z" {
			t.Errorf("country = %q", got)
		}
		if _, err := c.Exec(ctx, `DELETE FROM contacts WHERE email = 'nobody@example.net'`, simple); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, `SELECT id FROM contacts`); got != "10" {
			t.Errorf("contacts = %q", got)
		}
	})
	t.Run("unique violation", func(t *testing.T) {
		_, err := c.Exec(ctx, `INSERT INTO people VALUES (5, $1, NULL, 'X')`, "grace@example.com")
		requirePgError(t, err, "23505", "people_email_key")
	})
	t.Run("ON CONFLICT on the protected column", func(t *testing.T) {
		if _, err := c.Exec(ctx, `INSERT INTO people VALUES (6, $1, $2, 'X') ON CONFLICT (email) DO UPDATE SET phone = EXCLUDED.phone`, "grace@example.com", "+1-555"); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, `SELECT phone FROM people WHERE email = $1`, "grace@example.com"); got != "+1-555" {
			t.Errorf("phone = %q", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, sql := range []string{
			`SELECT p.id FROM people p JOIN contacts c ON p.phone = c.email`, // different keys
			`SELECT id FROM people WHERE email LIKE '%example%'`,
			`SELECT id FROM people ORDER BY email`,
			`SELECT id FROM people WHERE email > 'a'`,
		} {
			_, err := c.Exec(ctx, sql)
			requirePgError(t, err, "0A000", "public.")
		}
		if got := ids(t, `SELECT id FROM people WHERE email = 'ada@example.org'`); got != "1" {
			t.Errorf("after refusals: %q", got)
		}
	})
	t.Run("equal values encrypt equally, across a search group", func(t *testing.T) {
		d := e.direct()
		var same bool
		if err := d.QueryRow(ctx, `SELECT p.email = c.email FROM people p, contacts c WHERE p.id = 2 AND c.id = 10`).Scan(&same); err != nil || !same {
			t.Fatalf("ciphertexts of grace@example.com in people and contacts equal: %v, %v", same, err)
		}
	})
}

// TestDeterministicIndexScan shows that a lookup by a deterministic column
// uses its index: the plan PostgreSQL reports through pgcloak.
func TestDeterministicIndexScan(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: searchSchema, tables: searchTables})
	ctx := context.Background()
	c := e.connect()
	const n = 100000
	batch := &pgx.Batch{}
	for i := range n {
		batch.Queue(`INSERT INTO people (id, email, country) VALUES ($1, $2, 'X')`, i, fmt.Sprintf("user%d@example.com", i))
		if batch.Len() == 5000 || i == n-1 {
			if err := c.SendBatch(ctx, batch).Close(); err != nil {
				t.Fatal(err)
			}
			batch = &pgx.Batch{}
		}
	}
	if _, err := c.Exec(ctx, `ANALYZE people`); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, `EXPLAIN SELECT id FROM people WHERE email = 'user4242@example.com'`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	t.Logf("plan:\n%s", strings.Join(plan, "\n"))
	if !strings.Contains(strings.Join(plan, "\n"), "Index") || !strings.Contains(strings.Join(plan, "\n"), "people_email_key") {
		t.Fatalf("lookup does not use the index on email:\n%s", strings.Join(plan, "\n"))
	}
	var id int
	if err := c.QueryRow(ctx, `SELECT id FROM people WHERE email = $1`, "user4242@example.com").Scan(&id); err != nil || id != 4242 {
		t.Fatalf("lookup: %d, %v", id, err)
	}
}

// TestDeterministicSearchPsql runs the search forms through psql (simple
// protocol, literals) and compares the output with the same statements on
// a plaintext twin of the tables, directly in PostgreSQL.
func TestDeterministicSearchPsql(t *testing.T) {
	psql := harness.RequireBinary(t, "psql")
	e := newEncEnv(t, encEnvOptions{schema: searchSchema + `
CREATE TABLE people_plain (id int PRIMARY KEY, email text UNIQUE, phone text, country text);
CREATE TABLE contacts_plain (id int PRIMARY KEY, email text, note text);`, tables: searchTables})
	load := `INSERT INTO %[1]s VALUES (1, 'ada@example.org', '+81-0', 'X'), (2, 'grace@example.com', '+81-1', 'X'), (3, 'taro@example.jp', '+81-2', 'Y'), (4, NULL, '+81-9', 'Y');
INSERT INTO %[2]s VALUES (10, 'grace@example.com', 'n1'), (11, 'nobody@example.net', 'n2');
`
	queries := `SELECT id FROM %[1]s WHERE email = 'grace@example.com';
SELECT id FROM %[1]s WHERE email IN ('ada@example.org', 'taro@example.jp') ORDER BY id;
SELECT id FROM %[1]s WHERE email <> 'ada@example.org' ORDER BY id;
SELECT id FROM %[1]s WHERE email IS NULL;
SELECT count(*) FROM (SELECT email FROM %[1]s WHERE email IS NOT NULL GROUP BY email) g;
SELECT p.email, count(*) FROM %[1]s p WHERE p.email = 'taro@example.jp' GROUP BY p.email;
SELECT count(DISTINCT email) FROM %[1]s;
SELECT p.id, c.note FROM %[1]s p JOIN %[2]s c ON p.email = c.email;
UPDATE %[1]s SET country = 'Z' WHERE email = 'ada@example.org';
DELETE FROM %[2]s WHERE email = 'nobody@example.net';
INSERT INTO %[1]s VALUES (5, 'grace@example.com', NULL, 'X') ON CONFLICT (email) DO UPDATE SET phone = EXCLUDED.phone;
SELECT id, email, phone, country FROM %[1]s ORDER BY id;
`
	run := func(dsn, people, contacts string) string {
		t.Helper()
		script := fmt.Sprintf(load+queries, people, contacts)
		cmd := exec.Command(psql, "-X", "-A", "-q", "-v", "ON_ERROR_STOP=1", dsn)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		return string(out)
	}
	through := run(e.dsn(), "people", "contacts")
	direct := run(e.directDSN(), "people_plain", "contacts_plain")
	if through != direct {
		t.Fatalf("through pgcloak:\n%s\nplaintext tables directly:\n%s", through, direct)
	}
	_, err := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT id FROM people WHERE email LIKE '%example%'", e.dsn()).CombinedOutput()
	if err == nil {
		t.Fatal("LIKE on a deterministic column was not refused")
	}
}

// TestDeterministicSearchJDBC runs the search forms with PgJDBC
// PreparedStatements (testdata/clients/Search.java; unnamed statements, then
// named ones from the fifth execution) and compares the output with the
// plaintext twin tables read directly.
func TestDeterministicSearchJDBC(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java not found in PATH; to install: apt-get install -y openjdk-17-jdk-headless libpostgresql-jdbc-java")
	}
	e := newEncEnv(t, encEnvOptions{schema: searchSchema + `
CREATE TABLE people_plain (id int PRIMARY KEY, email text UNIQUE, phone text, country text);
CREATE TABLE contacts_plain (id int PRIMARY KEY, email text, note text);`, tables: searchTables})
	run := func(dsn, people, contacts string) string {
		t.Helper()
		cmd := exec.Command(java, "-cp", jdbcJar, "Search.java", jdbcURL(t, dsn, "default"), people, contacts)
		cmd.Dir = "testdata/clients"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("java Search.java: %v\n%s", err, out)
		}
		return string(out)
	}
	through := run(e.dsn(), "people", "contacts")
	direct := run(e.directDSN(), "people_plain", "contacts_plain")
	if through != direct {
		t.Fatalf("through pgcloak:\n%s\nplaintext tables directly:\n%s", through, direct)
	}
	if !strings.Contains(through, "duplicate 23505") {
		t.Fatalf("no unique violation:\n%s", through)
	}
}

// TestErrorDetailDecrypted checks that the values PostgreSQL quotes in an
// error's DETAIL (the key of a unique violation, the failing row of a check
// violation) reach the application as it wrote them, as they would
// directly, and not as the stored ciphertext; values PostgreSQL cut short
// (it shows 64 bytes of each in a failing row) are named as such.
func TestErrorDetailDecrypted(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: searchSchema + `ALTER TABLE people ADD CHECK (country <> 'ZZ');`, tables: searchTables})
	ctx := context.Background()
	c := e.connect()
	if _, err := c.Exec(ctx, `INSERT INTO people VALUES (1, 'ada@example.org', '+81-1', 'X')`); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		_, err := c.Exec(ctx, `INSERT INTO people VALUES ($1, $2, $3, $4)`, mode, 2, "ada@example.org", "+81-2", "X")
		if d := requirePgError(t, err, "23505", "people_email_key").Detail; d != "Key (email)=(ada@example.org) already exists." {
			t.Errorf("%v: unique violation DETAIL %q", mode, d)
		}
		_, err = c.Exec(ctx, `INSERT INTO people VALUES ($1, $2, $3, $4)`, mode, 3, "zed@example.org", "+81-3", "ZZ")
		if d := requirePgError(t, err, "23514", "people_country_check").Detail; d != "Failing row contains (3, (pgcloak ciphertext, cut short), +81-3, ZZ)." {
			t.Errorf("%v: check violation DETAIL %q", mode, d)
		}
	}
	// The session goes on.
	if got := queryString(t, c, `SELECT email FROM people WHERE id = 1`); got != "ada@example.org" {
		t.Fatalf("after the errors: %q", got)
	}
}
