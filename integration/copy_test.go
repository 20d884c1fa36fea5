package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/integration/harness"
)

const copySchema = `CREATE TABLE customers (id int PRIMARY KEY, full_name bytea, email bytea, age bytea, note text);`

const copyTables = `
public.customers:
  full_name: {type: text, key: pii}
  email: {type: text, key: pii, mode: deterministic}
  age: {type: int4, key: pii}
`

// copyRow is row i of the COPY tests; every tenth has NULLs, and the
// values need escaping in text and quoting in CSV.
func copyRow(i int) (name, email, age any) {
	if i%10 == 0 {
		return nil, fmt.Sprintf("user%d@example.com", i), nil
	}
	return fmt.Sprintf("山田 \"%d\";\t\\x", i), fmt.Sprintf("user%d@example.com", i), int32(i % 120)
}

// checkStored reads the table directly: n rows, every protected value
// ciphertext, no plaintext.
func checkStored(t *testing.T, e *encEnv, n int) {
	t.Helper()
	ctx := context.Background()
	d := e.direct()
	var count, bad int
	if err := d.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE substring(email for 3) <> 'PGC' OR substring(full_name for 3) <> 'PGC' OR position('example.com'::bytea in email) > 0 OR position('\xe5b1b1e794b0'::bytea in full_name) > 0) FROM customers`).Scan(&count, &bad); err != nil {
		t.Fatal(err)
	}
	if count != n || bad != 0 {
		t.Fatalf("stored rows %d (want %d), %d with a value that is not ciphertext", count, n, bad)
	}
}

// TestCopyFromBinaryPgx loads 1M rows with pgx CopyFrom (binary COPY)
// through pgcloak, reads them back, and reads them out again with COPY TO.
func TestCopyFromBinaryPgx(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: copySchema, tables: copyTables})
	ctx := context.Background()
	c := e.connect()
	const n = 1000000
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		name, email, age := copyRow(i)
		return []any{i, name, email, age, "note"}, nil
	})
	copied, err := c.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"id", "full_name", "email", "age", "note"}, src)
	if err != nil || copied != n {
		t.Fatalf("CopyFrom: %d rows, %v", copied, err)
	}
	checkStored(t, e, n)
	for _, id := range []int{1, 10, 777777, n} {
		var name, email *string
		var age *int32
		if err := c.QueryRow(ctx, `SELECT full_name, email, age FROM customers WHERE id = $1`, id).Scan(&name, &email, &age); err != nil {
			t.Fatal(err)
		}
		wn, we, wa := copyRow(id)
		if fmt.Sprint(deref(name)) != fmt.Sprint(wn) || *email != we || fmt.Sprint(deref(age)) != fmt.Sprint(wa) {
			t.Fatalf("row %d: %v %v %v", id, deref(name), *email, deref(age))
		}
	}
	var buf bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &buf, `COPY customers (id, email) TO STDOUT`)
	if err != nil || tag.RowsAffected() != n {
		t.Fatalf("COPY TO: %v rows, %v", tag.RowsAffected(), err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("777777\tuser777777@example.com\n")) {
		t.Fatal("COPY TO output lacks the decrypted row 777777")
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestCopyPsqlRoundTrip loads 1M rows with psql \copy in text and in CSV
// (header, custom delimiter and NULL string) and copies them out again: the
// output equals the input byte for byte.
func TestCopyPsqlRoundTrip(t *testing.T) {
	psql := harness.RequireBinary(t, "psql")
	for _, tc := range []struct{ name, opts string }{
		{"text", ""},
		{"csv", "(FORMAT csv, HEADER, DELIMITER ';', NULL 'NULL')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEncEnv(t, encEnvOptions{schema: copySchema, tables: copyTables})
			const n = 1000000
			var in bytes.Buffer
			if tc.name == "csv" {
				in.WriteString("id;full_name;email;age;note\n")
			}
			for i := 1; i <= n; i++ {
				name, email, age := copyRow(i)
				if tc.name == "text" {
					fmt.Fprintf(&in, "%d\t%s\t%s\t%s\tnote\n", i, textField(name), email, textField(age))
				} else {
					fmt.Fprintf(&in, "%d;%s;%s;%s;note\n", i, csvField(name), email, csvField(age))
				}
			}
			dir := t.TempDir()
			inFile, outFile := filepath.Join(dir, "in"), filepath.Join(dir, "out")
			if err := os.WriteFile(inFile, in.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(cmd string) {
				t.Helper()
				out, err := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-c", cmd, e.dsn()).CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", cmd, err, out)
				}
			}
			start := time.Now()
			run(fmt.Sprintf(`\copy customers FROM '%s' %s`, inFile, tc.opts))
			t.Logf("\\copy in of %d rows: %v", n, time.Since(start))
			checkStored(t, e, n)
			// A fresh heap returns rows in insertion order.
			run(fmt.Sprintf(`\copy customers TO '%s' %s`, outFile, tc.opts))
			out, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatal(err)
			}
			// Compare as sorted lines: COPY's multi-insert does not keep
			// the heap in input order.
			got, want := sortedLines(out), sortedLines(in.Bytes())
			if len(got) != len(want) {
				t.Fatalf("\\copy out has %d lines, in had %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("\\copy out differs from what went in:\nout: %q\nin:  %q", got[i], want[i])
				}
			}
		})
	}
}

func sortedLines(b []byte) []string {
	lines := strings.Split(string(b), "\n")
	sort.Strings(lines)
	return lines
}

func textField(v any) string {
	if v == nil {
		return `\N`
	}
	s := fmt.Sprint(v)
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`).Replace(s)
}

func csvField(v any) string {
	if v == nil {
		return "NULL"
	}
	s := fmt.Sprint(v)
	if strings.ContainsAny(s, "\";\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// TestCopyMalformed: data PostgreSQL would reject gets PostgreSQL's error,
// and nothing is stored; the session goes on.
func TestCopyMalformed(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: copySchema, tables: copyTables})
	ctx := context.Background()
	c := e.connect()
	for _, tc := range []struct{ data, code, msg string }{
		{"1\tAda\tada@example.org\t36\tx\n2\tGrace\n", "22P04", "missing data for column"},
		{"1\tAda\tada@example.org\tthirty\tx\n", "22P02", "invalid input syntax for type integer"},
	} {
		_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(tc.data), `COPY customers FROM STDIN`)
		requirePgError(t, err, tc.code, tc.msg)
		checkStored(t, e, 0)
	}
	if got := queryString(t, c, "SELECT 'still usable'"); got != "still usable" {
		t.Fatal(got)
	}
}

// TestCopyClientVanishes: a client that disconnects in the middle of COPY
// FROM leaves no row behind.
func TestCopyClientVanishes(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: copySchema, tables: copyTables})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": harness.SuperUser, "database": e.db}})
	fe.Flush()
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	fe.Send(&pgproto3.Query{String: "COPY customers FROM STDIN"})
	fe.Flush()
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.CopyInResponse); ok {
			break
		}
	}
	fe.Send(&pgproto3.CopyData{Data: []byte("1\tAda\tada@example.org\t36\tx\n2\tGrace\tgrace@exa")})
	fe.Flush()
	time.Sleep(100 * time.Millisecond)
	conn.Close()
	time.Sleep(500 * time.Millisecond)
	checkStored(t, e, 0)
}
