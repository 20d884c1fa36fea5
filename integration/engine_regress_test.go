package integration

// Regressions found by the engine's unit tests (proxy/engine), checked
// against real PostgreSQL: what the server does is the reference.

import (
	"context"
	"testing"
)

// newMeasuresEnv protects a float8 and a bytea column next to plaintext
// twins of the same types, which PostgreSQL writes itself.
func newMeasuresEnv(t *testing.T) *encEnv {
	return newEncEnv(t, encEnvOptions{
		schema: `CREATE TABLE measures (id int PRIMARY KEY, f bytea, f_plain float8, b bytea, b_plain bytea);`,
		tables: "public.measures:\n  f: {type: float8, key: pii}\n  b: {type: bytea, key: pii}\n",
	})
}

// TestFailedSetUndone: a SET of a setting the server does not report
// (extra_float_digits, bytea_output) in a Query that then fails is rolled
// back by PostgreSQL with the implicit transaction; protected values are
// then written as PostgreSQL writes their plaintext twins.
func TestFailedSetUndone(t *testing.T) {
	e := newMeasuresEnv(t)
	ctx := context.Background()
	c := e.connect().PgConn()
	if _, err := c.Exec(ctx, `INSERT INTO measures VALUES (1, 0.30000000000000004, 0.30000000000000004, '\x00ff41', '\x00ff41')`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exec(ctx, `SET extra_float_digits = 0; SET bytea_output = escape; SELECT 1/0`).ReadAll()
	requirePgError(t, err, "22012")
	res, err := c.Exec(ctx, `SELECT f, f_plain, b, b_plain FROM measures`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	row := res[0].Rows[0]
	if string(row[0]) != string(row[1]) || string(row[2]) != string(row[3]) {
		t.Fatalf("through pgcloak f=%q b=%q; PostgreSQL writes the same values %q and %q", row[0], row[2], row[1], row[3])
	}
}

// TestCopyRefusedExtended: a COPY that pgcloak refuses (an encoding it does
// not rewrite) sent through the extended protocol gets the error, and the
// session goes on.
func TestCopyRefusedExtended(t *testing.T) {
	e := newMeasuresEnv(t)
	ctx := context.Background()
	c := e.connect().PgConn()
	_, err := c.ExecParams(ctx, `COPY measures (id, f) FROM STDIN (ENCODING 'SJIS')`, nil, nil, nil, nil).Close()
	requirePgError(t, err, "0A000", "encoding SJIS")
	res, err := c.Exec(ctx, `SELECT 'still usable'`).ReadAll()
	if err != nil || string(res[0].Rows[0][0]) != "still usable" {
		t.Fatalf("the session after the refusal: %v %v", res, err)
	}
}
