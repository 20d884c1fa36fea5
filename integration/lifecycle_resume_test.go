package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/migrate"
)

// resumeSchema has a composite primary key whose text order differs from
// its byte order ('Beta' < 'acme' in the C collation), and a table without
// a primary key.
const resumeSchema = `
CREATE TABLE accounts (tenant text, id int, email text, joined date, PRIMARY KEY (tenant, id));
INSERT INTO accounts SELECT t, i, 'user' || i || '@' || t || '.example', date '2020-01-01' + i
  FROM unnest(ARRAY['acme', 'Beta', 'zeta']) t, generate_series(1, 20) i;
CREATE TABLE nopk (email bytea);`

var resumeRules = []lcRule{
	{"public.accounts", "email", "{type: text, key: pii}"},
	{"public.accounts", "joined", "{type: date, key: pii}"},
	{"public.nopk", "email", "{type: text, key: pii}"},
}

// TestMigrateResumeAndRefusals covers what the lifecycle test does not: a
// composite primary key; a value that is not valid for its logical type,
// which stops the run at its batch (naming the row) and, once fixed, lets
// a rerun resume after the last committed batch; a second migrate on the
// same table waiting for the first; and the refusals (text column before
// the plan, table without a primary key).
func TestMigrateResumeAndRefusals(t *testing.T) {
	e := newLCEnv(t, resumeSchema, resumeRules)
	ctx := context.Background()
	d := e.direct()
	cfg := e.config("migrating")

	code, _, errs := e.migrate(cfg, "encrypt", "--table", "accounts", "--yes")
	if code != 1 || !strings.Contains(errs, "is text, not bytea: run pgcloak migrate plan") {
		t.Fatalf("encrypt before the plan: exit %d %s", code, errs)
	}
	code, _, errs = e.migrate(cfg, "encrypt", "--table", "nopk", "--yes")
	if code != 1 || !strings.Contains(errs, "has no primary key") {
		t.Fatalf("table without a primary key: exit %d %s", code, errs)
	}
	code, _, errs = e.migrate(cfg, "encrypt", "--table", "accounts")
	if code != 1 || !strings.Contains(errs, "pass --yes") {
		t.Fatalf("without a terminal and --yes: exit %d %s", code, errs)
	}
	code, _, errs = e.migrate(cfg, "encrypt", "--table", "accounts", "--column", "phone", "--yes")
	if code != 1 || !strings.Contains(errs, "phone is not a protected column") {
		t.Fatalf("unknown column: exit %d %s", code, errs)
	}

	script := e.mustMigrate(cfg, "plan", "--table", "public.accounts")
	if _, err := d.Exec(ctx, script); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, `UPDATE accounts SET joined = convert_to('not a date', 'UTF8') WHERE tenant = 'acme' AND id = 10`); err != nil {
		t.Fatal(err)
	}
	// In (tenant, id) order Beta's 20 rows come first, then acme's: with
	// batches of 7 the fifth batch (rows 29-35) holds (acme, 10).
	code, out, errs := e.migrate(cfg, "encrypt", "--table", "accounts", "--batch", "7", "--yes")
	if code != 1 || !strings.Contains(errs, "public.accounts.joined, row with primary key (acme, 10): invalid input syntax for type date") ||
		!strings.Contains(out, "encrypt public.accounts: 28 rows") {
		t.Fatalf("invalid date: exit %d\n%s%s", code, out, errs)
	}
	if n := countHeaders(t, d, "accounts", "email", "joined"); n != 56 {
		t.Fatalf("%d values encrypted after the failed run, want 56 (4 batches of 7 rows)", n)
	}
	if _, err := d.Exec(ctx, `UPDATE accounts SET joined = convert_to('2020-01-11', 'UTF8') WHERE tenant = 'acme' AND id = 10`); err != nil {
		t.Fatal(err)
	}

	// A second migrate waits for the first one's lock.
	conn, err := migrate.Connect(ctx, e.directDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rel, err := migrate.Inspect(ctx, conn, "public", "accounts")
	if err != nil {
		t.Fatal(err)
	}
	release, err := migrate.Lock(ctx, conn, rel, 0)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := e.migrate(cfg, "encrypt", "--table", "accounts", "--batch", "7", "--yes")
		done <- result{code, out, errs}
	}()
	select {
	case r := <-done:
		t.Fatalf("encrypt ran while another held the table: %+v", r)
	case <-time.After(time.Second):
	}
	release()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("encrypt did not go on after the lock was released")
	}
	if r.code != 0 || !strings.Contains(r.out, "resumed after primary key (acme, 8): the earlier runs had gone through 28 rows") ||
		!strings.Contains(r.out, "encrypt public.accounts: 32 rows") {
		t.Fatalf("rerun: exit %d\n%s%s", r.code, r.out, r.errs)
	}

	keys := e.keys()
	kr, _ := keys.Keyring("pii")
	email, _ := crypto.NewColumnID("public", "accounts", "email")
	joined, _ := crypto.NewColumnID("public", "accounts", "joined")
	rows, err := d.Query(ctx, `SELECT tenant, id, email, joined FROM accounts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var tenant string
		var id int32
		var ev, jv []byte
		if err := rows.Scan(&tenant, &id, &ev, &jv); err != nil {
			t.Fatal(err)
		}
		pe, err1 := kr.Decrypt(nil, ev, email)
		pj, err2 := kr.Decrypt(nil, jv, joined)
		wantJ := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(id)).Format("2006-01-02")
		if err1 != nil || err2 != nil || string(pe) != fmt.Sprintf("user%d@%s.example", id, tenant) || string(pj) != wantJ {
			t.Fatalf("(%s, %d): %q %q %v %v", tenant, id, pe, pj, err1, err2)
		}
		n++
	}
	if n != 60 {
		t.Fatalf("%d rows", n)
	}
}

// countHeaders counts the values of the columns that have the pgcloak
// header.
func countHeaders(t *testing.T, d *pgx.Conn, table string, cols ...string) int {
	t.Helper()
	var parts []string
	for _, c := range cols {
		parts = append(parts, fmt.Sprintf("count(*) FILTER (WHERE %s)", crypto.CheckExpr(c)))
	}
	var n int
	if err := d.QueryRow(context.Background(), "SELECT "+strings.Join(parts, " + ")+" FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
