package integration

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSubjectKeys writes subject-keyed values every way pgcloak accepts
// (literals, parameters, COPY, UPDATE pinned to a subject, a foreign-key
// subject) and reads them back; directly, each value is a Subject value
// whose key id is its subject's, the same across tables and spellings of
// the subject, and different between subjects.
func TestSubjectKeys(t *testing.T) {
	e := newSubjEnv(t, subjEnvOptions{})
	p := e.start()
	c := e.through(p)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Literals in a simple query, the subject written two ways.
	exec(`INSERT INTO customers (id, email, phone) VALUES (1, 'one@x', '111'), ('0002', 'two@x', NULL)`, pgx.QueryExecModeSimpleProtocol)
	// Parameters (extended protocol), the subject a parameter and a literal.
	exec(`INSERT INTO customers (email, id) VALUES ($1, $2)`, "three@x", int64(3))
	exec(`INSERT INTO orders (customer_id, address) VALUES ($1, $2), (2, $3)`, int64(1), "1 First St", "2 Second St")
	// COPY FROM (pgx: binary).
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"customer_id", "address"},
		pgx.CopyFromRows([][]any{{int64(1), "1 Copy Rd"}, {int64(3), "3 Copy Rd"}, {int64(2), nil}})); err != nil {
		t.Fatal(err)
	}
	// COPY FROM in text.
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("3\t3 Text Ln\n"), "COPY orders (customer_id, address) FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	// UPDATE pinned to the subject, by parameter and by literal.
	exec(`UPDATE customers SET phone = $1 WHERE id = $2`, "222", int64(2))
	exec(`UPDATE customers SET email = 'one@y' WHERE id = 1`, pgx.QueryExecModeSimpleProtocol)
	// SQL PREPARE / EXECUTE.
	exec(`PREPARE ins AS INSERT INTO orders (customer_id, address) VALUES ($1, $2)`, pgx.QueryExecModeSimpleProtocol)
	exec(`EXECUTE ins(2, '2 Exec Ave')`, pgx.QueryExecModeSimpleProtocol)

	if got := subjectEmails(t, c); got[1] != "one@y" || got[2] != "two@x" || got[3] != "three@x" {
		t.Fatalf("emails through pgcloak: %v", got)
	}
	if got := addresses(t, c, 1); strings.Join(got, "|") != "1 First St|1 Copy Rd" {
		t.Fatalf("addresses of 1: %v", got)
	}
	if got := addresses(t, c, 2); strings.Join(got, "|") != "2 Second St|<null>|2 Exec Ave" {
		t.Fatalf("addresses of 2: %v", got)
	}
	if got := addresses(t, c, 3); strings.Join(got, "|") != "3 Copy Rd|3 Text Ln" {
		t.Fatalf("addresses of 3: %v", got)
	}
	var phone string
	if err := c.QueryRow(ctx, `SELECT phone FROM customers WHERE id = 2`).Scan(&phone); err != nil || phone != "222" {
		t.Fatalf("phone = %q, %v", phone, err)
	}
	// COPY TO decrypts too.
	var out strings.Builder
	if _, err := c.PgConn().CopyTo(ctx, &out, "COPY (SELECT id, email FROM customers ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if out.String() != "1\tone@y\n2\ttwo@x\n3\tthree@x\n" {
		t.Fatalf("COPY TO: %q", out.String())
	}

	// Directly: one key per subject, shared by its rows of both tables.
	d := e.direct()
	cust, ords := keyIDs(t, d, "customers", "id", "email"), keyIDs(t, d, "orders", "customer_id", "address")
	phones := keyIDs(t, d, "customers", "id", "phone")
	for id := int64(1); id <= 3; id++ {
		all := append(append(append([]string{}, cust[id]...), ords[id]...), phones[id]...)
		for _, k := range all {
			if k != all[0] {
				t.Fatalf("subject %d has values under keys %v", id, all)
			}
		}
	}
	if cust[1][0] == cust[2][0] || cust[2][0] == cust[3][0] || cust[1][0] == cust[3][0] {
		t.Fatalf("subjects share a key: %v", cust)
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM pgcloak.subject_keys WHERE scope = 'public.customers'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("subject keys: %d, %v", n, err)
	}
	// The keyring column of the same database is untouched by subjects.
	exec(`INSERT INTO notes VALUES (1, $1)`, "plain keyring")
	var mode []byte
	if err := d.QueryRow(ctx, `SELECT substring(body from 5 for 1) FROM notes`).Scan(&mode); err != nil || mode[0] != 1 {
		t.Fatalf("notes.body mode %x, %v", mode, err)
	}
	// The backstop refuses a keyring value in a subject column.
	if _, err := d.Exec(ctx, `UPDATE customers SET email = (SELECT body FROM notes) WHERE id = 1`); !isSQLState(err, "23514") {
		t.Fatalf("a keyring value in a subject column: %v", err)
	}

	// Refused: pgcloak cannot tell the subject.
	for _, tc := range []struct {
		sql  string
		args []any
		want string
	}{
		{`UPDATE customers SET email = $1`, []any{"x"}, "does not pin the row's subject"},
		{`UPDATE customers SET email = $1 WHERE id > $2`, []any{"x", int64(0)}, "does not pin the row's subject"},
		{`INSERT INTO orders (address) VALUES ($1)`, []any{"x"}, "does not name customer_id"},
		{`UPDATE orders SET customer_id = $1 WHERE id = $2`, []any{int64(2), int64(1)}, "cannot change the subject of public.orders"},
		{`INSERT INTO customers (id, email) SELECT 9, $1`, []any{"x"}, "INSERT … SELECT computes the row's subject"},
	} {
		_, err := c.Exec(ctx, tc.sql, tc.args...)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, tc.want) {
			t.Errorf("%s: %v; want 0A000 with %q", tc.sql, err, tc.want)
		}
	}
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader("x\n"), "COPY orders (address) FROM STDIN"); err == nil || !strings.Contains(err.Error(), "does not name customer_id") {
		t.Errorf("COPY without the subject: %v", err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO customers (id, email) VALUES ($1, $2)`, nil, "x"); err == nil || !strings.Contains(err.Error(), "is NULL") {
		t.Errorf("NULL subject: %v", err)
	}
}

func isSQLState(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
