package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// The database-side layer of fail closed (issue 10, part 1): every
// protected column carries a CHECK constraint that refuses anything but
// pgcloak ciphertext; serve does not relay sessions to a database whose
// protected columns lack it; `pgcloak protect` adds it; and the catalog is
// followed while pgcloak runs.

const backstopSchema = `CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text);`

const backstopTables = `
public.customers:
  email: {type: text, key: pii}
  phone: {type: text, key: pii}
`

// eventually retries f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// protect runs `pgcloak protect` on the env's config and returns its exit
// code, its output (the script, without --apply) and its output and errors.
func (e *encEnv) protect(args ...string) (code int, stdout, all string) {
	var out, errb bytes.Buffer
	code = cmd.RunProtect(append([]string{"--config", e.config, "--log-level", "warn"}, args...), &out, &errb)
	return code, out.String(), out.String() + errb.String()
}

// TestBackstopRequired: without its backstops the protected database is
// not served (the reason and the fix in Ready and in the refusal), protect
// prints an idempotent script and --apply adds them, pgcloak then serves by
// itself; a backstop dropped around pgcloak takes the table out of service
// again; a column holding plaintext does not get one and loses nothing.
func TestBackstopRequired(t *testing.T) {
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{schema: backstopSchema, tables: backstopTables,
		extra: "catalog_refresh: 100ms"}, unprotected: true})
	ctx := context.Background()

	ok, why := e.srv.Ready()
	if ok || !strings.Contains(why, "public.customers.email") || !strings.Contains(why, "pgcloak protect") {
		t.Fatalf("Ready() = %v, %q; want not ready naming the column and the fix", ok, why)
	}
	_, err := tryConnect(t, e.dsn())
	requirePgError(t, err, "57P03", "public.customers.email", "no CHECK constraint pgcloak_email_encrypted", "pgcloak protect")
	// Other databases on the same server are relayed as ever.
	other := connect(t, dsn(e.pg, e.addr, "postgres", "dbname", "postgres"))
	other.Close(ctx)

	// The printed script is idempotent: run twice, directly.
	code, script, _ := e.protect()
	if code != 1 || !strings.Contains(script, "ADD CONSTRAINT \"pgcloak_email_encrypted\"") || !strings.Contains(script, "pgcloak_phone_encrypted") {
		t.Fatalf("protect (print) = %d:\n%s", code, script)
	}
	d := e.direct()
	for i := range 2 {
		if _, err := d.Exec(ctx, script); err != nil {
			t.Fatalf("running the script (%d): %v\n%s", i+1, err, script)
		}
	}
	eventually(t, 10*time.Second, "pgcloak ready after the backstops were added", func() error {
		if ok, why := e.srv.Ready(); !ok {
			return errorString(why)
		}
		return nil
	})
	c := e.connect()
	if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (1, 'ada@example.org', '555', 'n')`); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, `SELECT email FROM customers WHERE id = 1`); got != "ada@example.org" {
		t.Fatalf("read %q", got)
	}
	if code, _, out := e.protect(); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("protect after the script = %d:\n%s", code, out)
	}
	// The database itself refuses plaintext written around pgcloak.
	_, err = d.Exec(ctx, `INSERT INTO customers VALUES (2, 'plain'::bytea, NULL, NULL)`)
	requirePgError(t, err, "23514", "pgcloak_email_encrypted")

	// The backstop dropped around pgcloak: statements on the table are
	// refused, new sessions too, until protect --apply puts it back.
	if _, err := d.Exec(ctx, `ALTER TABLE customers DROP CONSTRAINT pgcloak_email_encrypted`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "statements refused once the backstop is gone", func() error {
		_, err := c.Exec(ctx, `SELECT id FROM customers`)
		if pgErrorCode(err) != "55000" {
			return errorString("got " + errText(err))
		}
		return nil
	})
	_, err = c.Exec(ctx, `SELECT email FROM customers`)
	requirePgError(t, err, "55000", "public.customers", "email", "no CHECK constraint")
	if got := queryString(t, c, `SELECT 41 + 1`); got != "42" {
		t.Fatalf("the session does not go on: %q", got)
	}
	_, err = tryConnect(t, e.dsn())
	requirePgError(t, err, "57P03", "public.customers.email")

	// Plaintext written while the backstop was away: protect refuses to
	// add it, and nothing is lost.
	if _, err := d.Exec(ctx, `INSERT INTO customers VALUES (4, 'plain'::bytea, NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	code, _, out := e.protect("--apply")
	if code != 1 || !strings.Contains(out, "without the pgcloak header") {
		t.Fatalf("protect --apply over plaintext = %d:\n%s", code, out)
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM customers WHERE id IN (1, 4)`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after the refused protect: %d, %v", n, err)
	}
	if _, err := d.Exec(ctx, `DELETE FROM customers WHERE id = 4`); err != nil {
		t.Fatal(err)
	}
	if code, _, out := e.protect("--apply"); code != 0 || !strings.Contains(out, "pgcloak_email_encrypted in place and validated") {
		t.Fatalf("protect --apply = %d:\n%s", code, out)
	}
	eventually(t, 10*time.Second, "serving again", func() error {
		_, err := c.Exec(ctx, `SELECT email FROM customers`)
		return err
	})
}

// TestAllowMissingBackstop: the roll-out setting serves without backstops.
func TestAllowMissingBackstop(t *testing.T) {
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{schema: backstopSchema, tables: backstopTables}, noBackstop: true})
	if ok, why := e.srv.Ready(); !ok {
		t.Fatalf("not ready with allow_missing_backstop: %s", why)
	}
	c := e.connect()
	if _, err := c.Exec(context.Background(), `INSERT INTO customers VALUES (1, 'ada@example.org', NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, `SELECT email FROM customers`); got != "ada@example.org" {
		t.Fatalf("read %q", got)
	}
}

// TestCatalogFollowsChanges: changes made around pgcloak while it runs are
// noticed. catalog_refresh is an hour where only the triggered refresh may
// explain the result, and short where the periodic one must.
func TestCatalogFollowsChanges(t *testing.T) {
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{schema: backstopSchema, tables: backstopTables,
		extra: "catalog_refresh: 1h"}})
	ctx := context.Background()
	c, d := e.connect(), e.direct()
	if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (1, 'ada@example.org', '555', 'n')`); err != nil {
		t.Fatal(err)
	}

	t.Run("table re-created", func(t *testing.T) {
		// A test suite's set-up, a migration: the table gets a new OID.
		if _, err := d.Exec(ctx, `DROP TABLE customers`); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec(ctx, `CREATE TABLE customers (id int PRIMARY KEY, email bytea, phone bytea, note text, `+
			backstop("email")+", "+backstop("phone")+")"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (1, 'grace@example.org', '556', 'n')`); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
			var email string
			if err := c.QueryRow(ctx, `SELECT email FROM customers WHERE id = 1`, mode).Scan(&email); err != nil || email != "grace@example.org" {
				t.Fatalf("%v: read %q, %v; want the plaintext, not the ciphertext", mode, email, err)
			}
		}
	})

	t.Run("view created around pgcloak", func(t *testing.T) {
		if _, err := d.Exec(ctx, `CREATE VIEW cv AS SELECT c.id, c.email FROM customers c`); err != nil {
			t.Fatal(err)
		}
		if got := queryString(t, c, `SELECT email FROM cv WHERE id = 1`); got != "grace@example.org" {
			t.Fatalf("read through the view: %q", got)
		}
		// An auto-updatable view is written like its table.
		if _, err := c.Exec(ctx, `INSERT INTO cv (id, email) VALUES (2, 'alan@example.org')`); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		if err := d.QueryRow(ctx, `SELECT email FROM customers WHERE id = 2`).Scan(&raw); err != nil || !crypto.IsCiphertext(raw) {
			t.Fatalf("written through the view: %q, %v", raw, err)
		}
		if got := queryString(t, c, `SELECT email FROM customers WHERE id = 2`); got != "alan@example.org" {
			t.Fatalf("read back: %q", got)
		}
	})

	t.Run("view created through pgcloak", func(t *testing.T) {
		// Refused, saying to create it directly (as above): pgcloak could
		// not follow writes through it before its next catalog read.
		for _, q := range []string{
			`CREATE VIEW cv2 AS SELECT * FROM customers`,
			`CREATE VIEW cv3 AS SELECT id FROM customers WHERE email = 'grace@example.org'`, // would store the literal
			`CREATE MATERIALIZED VIEW cmv AS SELECT id, email FROM customers`,               // a copy without backstops
		} {
			_, err := c.Exec(ctx, q)
			requirePgError(t, err, "0A000", "public.customers")
		}
	})

	t.Run("unattributable results", func(t *testing.T) {
		if _, err := d.Exec(ctx, `CREATE FUNCTION get_customers() RETURNS SETOF customers LANGUAGE sql AS 'SELECT * FROM customers';
			CREATE FUNCTION get_email(int) RETURNS bytea LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1'`); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`SELECT * FROM get_customers()`, `SELECT get_email(1)`} {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
				s := e.connect()
				rows, err := s.Query(ctx, q, mode)
				var got [][]byte
				if err == nil {
					for rows.Next() {
						vals := rows.RawValues()
						got = append(got, append([]byte(nil), vals[len(vals)-1]...))
					}
					rows.Close()
					err = rows.Err()
				}
				for _, v := range got {
					if bytes.Contains(v, []byte("PGC")) || bytes.Contains(v, []byte("504743")) {
						t.Fatalf("%s (%v): ciphertext handed to the client: %q", q, mode, v)
					}
				}
				requirePgError(t, err, "0A000", "cannot attribute")
				s.Close(ctx)
			}
		}
		// pgcloak still serves.
		if got := queryString(t, e.connect(), `SELECT email FROM customers WHERE id = 1`); got != "grace@example.org" {
			t.Fatalf("after the refusals: %q", got)
		}
	})

	t.Run("column renamed around pgcloak", func(t *testing.T) {
		if _, err := d.Exec(ctx, `ALTER TABLE customers RENAME COLUMN email TO e2`); err != nil {
			t.Fatal(err)
		}
		// Nothing passes through pgcloak here: a statement that meets the
		// old OID and attnum triggers the refresh (a bytea column of a
		// relation now known).
		eventually(t, 10*time.Second, "the rule taken out of service", func() error {
			e.prot.RefreshCatalog(ctx)
			_, err := c.Exec(ctx, `SELECT id FROM customers`)
			if pgErrorCode(err) != "55000" {
				return errorString("got " + errText(err))
			}
			return nil
		})
		_, err := c.Exec(ctx, `INSERT INTO customers (id, e2) VALUES (9, 'plain')`)
		requirePgError(t, err, "55000", "email", "not in the table")
		if _, err := d.Exec(ctx, `ALTER TABLE customers RENAME COLUMN e2 TO email`); err != nil {
			t.Fatal(err)
		}
		e.prot.RefreshCatalog(ctx)
		if got := queryString(t, c, `SELECT email FROM customers WHERE id = 1`); got != "grace@example.org" {
			t.Fatalf("after renaming it back: %q", got)
		}
	})
}

// TestDDLThroughPgcloak: a protected table created through pgcloak gets its
// backstops in the same statement and works at once; DDL that would leave a
// rule behind is refused.
func TestDDLThroughPgcloak(t *testing.T) {
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{tables: `
public.accounts:
  email: {type: text, key: pii}
  phone: {type: text, key: pii}
`}})
	ctx := context.Background()
	c, d := e.connect(), e.direct()
	_, err := c.Exec(ctx, `CREATE TABLE accounts (id int PRIMARY KEY, email text)`)
	requirePgError(t, err, "0A000", "public.accounts.email", "must be bytea")
	if _, err := c.Exec(ctx, `CREATE TABLE accounts (id int PRIMARY KEY, email bytea NOT NULL, note text)`); err != nil {
		t.Fatal(err)
	}
	var valid bool
	if err := d.QueryRow(ctx, `SELECT convalidated FROM pg_constraint WHERE conname = 'pgcloak_email_encrypted' AND conrelid = 'accounts'::regclass`).Scan(&valid); err != nil || !valid {
		t.Fatalf("backstop of accounts.email: %v, %v", valid, err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO accounts VALUES (1, 'ada@example.org', 'n')`); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, `SELECT email FROM accounts`); got != "ada@example.org" {
		t.Fatalf("read %q", got)
	}
	if _, err := c.Exec(ctx, `ALTER TABLE accounts ADD COLUMN phone bytea`); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(ctx, `SELECT convalidated FROM pg_constraint WHERE conname = 'pgcloak_phone_encrypted' AND conrelid = 'accounts'::regclass`).Scan(&valid); err != nil {
		t.Fatalf("backstop of accounts.phone: %v", err)
	}
	for _, q := range []string{
		`ALTER TABLE accounts RENAME COLUMN email TO e2`,
		`ALTER TABLE accounts RENAME TO clients`,
		`ALTER TABLE accounts DROP COLUMN phone`,
		`ALTER TABLE accounts ALTER COLUMN email TYPE text`,
		`ALTER TABLE accounts DROP CONSTRAINT pgcloak_email_encrypted`,
		`DROP TABLE accounts`,
	} {
		_, err := c.Exec(ctx, q)
		requirePgError(t, err, "0A000", "public.accounts")
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname IN ('email', 'phone')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("columns after the refused DDL: %d, %v", n, err)
	}
	if got := queryString(t, c, `SELECT email FROM accounts`); got != "ada@example.org" {
		t.Fatalf("read after the refusals: %q", got)
	}
}

func backstop(column string) string { return catalog.BackstopConstraint(column) }

type errorString string

func (e errorString) Error() string { return string(e) }

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
