package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/cmd"
)

// TestSubjectForget forgets one of two subjects with two pgcloak instances
// in front of the database: both read the forgotten subject's values as
// NULL (in both of its tables), the other subject's stay, a new write makes
// a new key, and the SQL form works inside an application's transaction.
func TestSubjectForget(t *testing.T) {
	e := newSubjEnv(t, subjEnvOptions{})
	a, b := e.start(), e.start()
	ca, cb := e.through(a), e.through(b)
	ctx := context.Background()
	mustExec(t, ca, `INSERT INTO customers (id, email, phone) VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)`,
		int64(1), "one@x", "111", int64(2), "two@x", "222", int64(3), "three@x", "333")
	mustExec(t, cb, `INSERT INTO orders (customer_id, address) VALUES ($1, $2), ($3, $4), ($5, $6)`,
		int64(1), "1 First St", int64(2), "2 Second St", int64(3), "3 Third St")
	for _, c := range []*pgx.Conn{ca, cb} { // both instances hold every key now
		if got := subjectEmails(t, c); got[1] != "one@x" || got[2] != "two@x" || got[3] != "three@x" {
			t.Fatalf("before: %v", got)
		}
	}
	d := e.direct()
	old := keyIDs(t, d, "customers", "id", "email")[1][0]

	code, out, _ := e.run(cmd.RunForget, "--table", "public.customers", "--subject", "001")
	if code != 0 || !strings.Contains(out, "forgot subject 001 of public.customers: its protected values in public.customers, public.orders are erased") {
		t.Fatalf("forget: %d %s", code, out)
	}
	for name, c := range map[string]*pgx.Conn{"A": ca, "B": cb} {
		waitFor(t, time.Minute, name+" reads subject 1 as NULL", func() bool {
			got := subjectEmails(t, c)
			return got[1] == "<null>" && strings.Join(addresses(t, c, 1), "|") == "<null>"
		})
		if got := subjectEmails(t, c); got[2] != "two@x" || got[3] != "three@x" || strings.Join(addresses(t, c, 2), "") != "2 Second St" {
			t.Fatalf("%s: the other subjects changed: %v", name, got)
		}
		var email, phone *string
		if err := c.QueryRow(ctx, `SELECT email, phone FROM customers WHERE id = 1`).Scan(&email, &phone); err != nil || email != nil || phone != nil {
			t.Fatalf("%s: forgotten row: %v %v %v", name, email, phone, err)
		}
	}
	// Directly: the key row is gone; the tombstone names the key, not the subject.
	var keys, tomb int
	if err := d.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgcloak.subject_keys WHERE key_id = decode($1, 'hex')),
		(SELECT count(*) FROM pgcloak.forgotten WHERE key_id = decode($1, 'hex') AND reason = 'forget')`, old).Scan(&keys, &tomb); err != nil || keys != 0 || tomb != 1 {
		t.Fatalf("key rows %d, tombstones %d, %v", keys, tomb, err)
	}
	if code, out, _ := e.run(cmd.RunForget, "--table", "public.orders", "--subject", "1"); code != 0 || !strings.Contains(out, "nothing to forget") {
		t.Fatalf("forget again: %d %s", code, out)
	}

	// A new write for the subject makes a new key; the old values stay erased.
	mustExec(t, cb, `UPDATE customers SET email = $1 WHERE id = $2`, "one@new", int64(1))
	if got := subjectEmails(t, ca); got[1] != "one@new" {
		t.Fatalf("after a new write: %v", got)
	}
	if k := keyIDs(t, d, "customers", "id", "email")[1][0]; k == old {
		t.Fatal("the new value is under the forgotten key")
	}
	if got := addresses(t, ca, 1); strings.Join(got, "|") != "<null>" {
		t.Fatalf("old order of 1: %v", got)
	}

	// The SQL form, in the application's own transaction, through pgcloak.
	tx, err := ca.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, tx.Conn(), `DELETE FROM orders WHERE customer_id = $1`, int64(3))
	var had bool
	if err := tx.QueryRow(ctx, `SELECT pgcloak.forget('customers', $1)`, "3").Scan(&had); err != nil || !had {
		t.Fatalf("pgcloak.forget: %v %v", had, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "B reads subject 3 as NULL", func() bool { return subjectEmails(t, cb)[3] == "<null>" })
	if got := subjectEmails(t, cb); got[2] != "two@x" {
		t.Fatalf("subject 2 after forgetting 3: %v", got)
	}
}

// TestSubjectForgottenReadsError: with forgotten_reads: error a read of a
// forgotten subject's value fails with 22000 instead of returning NULL.
func TestSubjectForgottenReadsError(t *testing.T) {
	e := newSubjEnv(t, subjEnvOptions{reads: "error"})
	p := e.start()
	c := e.through(p)
	mustExec(t, c, `INSERT INTO customers (id, email) VALUES ($1, $2), ($3, $4)`, int64(1), "one@x", int64(2), "two@x")
	if code, _, _ := e.run(cmd.RunForget, "--table", "public.customers", "--subject", "1"); code != 0 {
		t.Fatal("forget failed")
	}
	waitFor(t, time.Minute, "the read of subject 1 fails", func() bool {
		c2 := e.through(p) // a fresh session: the error ends the one it happens in
		var s *string
		err := c2.QueryRow(context.Background(), `SELECT email FROM customers WHERE id = 1`).Scan(&s)
		return isSQLState(err, "22000") && strings.Contains(err.Error(), "its subject was forgotten")
	})
	var s string
	if err := c.QueryRow(context.Background(), `SELECT email FROM customers WHERE id = 2`).Scan(&s); err != nil || s != "two@x" {
		t.Fatalf("subject 2: %q %v", s, err)
	}
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
