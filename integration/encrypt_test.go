package integration

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

const customersSchema = `
CREATE TABLE customers (
  id         int PRIMARY KEY,
  full_name  bytea,
  email      bytea,
  age        bytea,
  note       text
);`

const customersTables = `
public.customers:
  full_name: {type: text, key: pii}
  email: {type: text, key: pii}
  age: {type: int4, key: pii}
`

// TestEncryptRoundTrip writes through pgcloak with parameters (extended
// protocol) and literals (simple protocol), reads the plaintext back through
// pgcloak and finds only pgcloak ciphertext when reading PostgreSQL directly.
func TestEncryptRoundTrip(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: customersSchema, tables: customersTables})
	ctx := context.Background()
	c := e.connect()
	if _, err := c.Exec(ctx, `INSERT INTO customers (id, full_name, email, age, note) VALUES ($1, $2, $3, $4, $5)`,
		1, "山田太郎", "taro@example.jp", 42, "plain note"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (2, 'Ada Lovelace', 'ada@example.org', 36, 'x')`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		var name, email string
		var age int32
		if err := c.QueryRow(ctx, `SELECT full_name, email, age FROM customers WHERE id = $1`, mode, 1).Scan(&name, &email, &age); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if name != "山田太郎" || email != "taro@example.jp" || age != 42 {
			t.Fatalf("mode %v: got %q %q %d", mode, name, email, age)
		}
	}
	var email string
	var age int32
	if err := c.QueryRow(ctx, `SELECT email, age FROM customers WHERE id = 2`).Scan(&email, &age); err != nil || email != "ada@example.org" || age != 36 {
		t.Fatalf("literal row: %q %d %v", email, age, err)
	}

	d := e.direct()
	rows, err := d.Query(ctx, `SELECT full_name, email, age FROM customers ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, b, c []byte
		if err := rows.Scan(&a, &b, &c); err != nil {
			t.Fatal(err)
		}
		for _, v := range [][]byte{a, b, c} {
			if !bytes.HasPrefix(v, []byte("PGC\x01")) {
				t.Errorf("stored value %x lacks the pgcloak header", v)
			}
			for _, plain := range []string{"山田太郎", "taro@example.jp", "Ada", "ada@example.org"} {
				if bytes.Contains(v, []byte(plain)) {
					t.Errorf("stored value contains plaintext %q", plain)
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	// A refused statement: SQLSTATE, a message naming the column, the
	// session goes on.
	_, err = c.Exec(ctx, `SELECT id FROM customers WHERE email = 'ada@example.org'`)
	requirePgError(t, err, "0A000", "public.customers.email")
	if got := queryString(t, c, "SELECT email FROM customers WHERE id = 2"); got != "ada@example.org" {
		t.Fatalf("after a refusal: %q", got)
	}
}
