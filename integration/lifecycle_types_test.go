package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto"
)

// typesSchema has one plaintext column of each kind of logical type, and
// rows with edge values: NULL, empty, non-ASCII, BC dates, infinities,
// negative zero, padding.
const typesSchema = `
CREATE TABLE people (
  id  bigint PRIMARY KEY,
  t   text, v varchar(20), c char(4), i int4, n numeric(10,2), f float8, b bool,
  d   date, ts timestamp(3), tz timestamptz, u uuid, j jsonb,
  note text
);
INSERT INTO people VALUES
  (1, 'Ada', 'short', 'ab', 42, 1.5, 0.1, true, '1815-12-10', '2024-03-15 13:04:05.25', '2024-03-15 13:04:05.25+09',
      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1, "a": [1, 2.50]}', 'kept'),
  (2, '', '', '', 0, -0.01, '-0', false, '0044-03-15 BC', 'infinity', '-infinity', NULL, '[]', NULL),
  (3, '山田太郎', 'éàü', 'xyz', -2147483648, 99999999.99, 'Infinity', NULL, '2000-02-29', '1999-12-31 23:59:59.999', '1970-01-01 00:00:00+00',
      'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"k": "v\u00e9", "n": null}', 'x'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (5, 'line1
line2', 'tab	x', 'a b', 7, 1e3, 1e-300, true, 'infinity', '2024-01-01', '2024-06-01 12:00:00-07', '00000000-0000-0000-0000-000000000000',
      '"str"', 'y');`

// typesRules protects every column but note.
var typesRules = []lcRule{
	{"public.people", "t", "{type: text, key: pii}"},
	{"public.people", "v", "{type: varchar(20), key: pii, mode: deterministic}"},
	{"public.people", "c", "{type: char(4), key: pii}"},
	{"public.people", "i", "{type: int4, key: pii}"},
	{"public.people", "n", "{type: \"numeric(10,2)\", key: pii}"},
	{"public.people", "f", "{type: float8, key: pii}"},
	{"public.people", "b", "{type: bool, key: pii}"},
	{"public.people", "d", "{type: date, key: pii}"},
	{"public.people", "ts", "{type: timestamp(3), key: pii}"},
	{"public.people", "tz", "{type: timestamptz, key: pii}"},
	{"public.people", "u", "{type: uuid, key: pii}"},
	{"public.people", "j", "{type: jsonb, key: pii}"},
}

const typesColumns = "t, v, c, i, n, f, b, d, ts, tz, u, j, note"

// lcReadPeople reads every row in text form (simple protocol), keyed by id.
func lcReadPeople(t *testing.T, c *pgx.Conn) map[int64][]*string {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT id, "+typesColumns+" FROM people ORDER BY id", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]*string{}
	for rows.Next() {
		vals := make([]*string, 13)
		var id int64
		dest := []any{&id}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out[id] = vals
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func lcSamePeople(t *testing.T, what string, got, want map[int64][]*string) {
	t.Helper()
	cols := strings.Split(typesColumns, ", ")
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		for i := range w {
			if lcStr(g[i]) != lcStr(w[i]) {
				t.Errorf("%s: row %d column %s = %s, want %s", what, id, cols[i], lcStr(g[i]), lcStr(w[i]))
			}
		}
	}
}

func lcStr(p *string) string {
	if p == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *p)
}

// TestMigrateTypes takes a table with a column of every kind of logical
// type through the whole procedure — plan, migrating, encrypt, encrypted,
// keys rotate + migrate rotate, decrypt with --restore-type — and checks
// after each step that an application reading through pgcloak sees exactly
// what it saw in the plaintext table, in the text and in the binary format,
// and at the end that the restored table holds the original values.
func TestMigrateTypes(t *testing.T) {
	e := newLCEnv(t, typesSchema, typesRules)
	ctx := context.Background()
	d := e.direct()
	want := lcReadPeople(t, d)
	migrating, encrypted := e.config("migrating"), e.config("encrypted")

	script := e.mustMigrate(migrating, "plan", "--table", "people")
	if !strings.Contains(script, "state: migrating") || !strings.Contains(script, "ALTER COLUMN \"b\" TYPE bytea USING convert_to(CASE") {
		t.Fatalf("plan:\n%s", script)
	}
	if _, err := d.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("running the plan: %v\n%s", err, script)
	}

	through := func(p *lcProxy, what string) {
		t.Helper()
		c := e.connect(e.dsn(p))
		lcSamePeople(t, what+" (text)", lcReadPeople(t, c), want)
		// Binary results (extended protocol): pgx decodes PostgreSQL's
		// binary forms, which pgcloak produced from the canonical text.
		var i int32
		var day, at time.Time
		var j map[string]any
		if err := c.QueryRow(ctx, "SELECT i, d, tz, j FROM people WHERE id = 1").Scan(&i, &day, &at, &j); err != nil {
			t.Fatalf("%s: binary read: %v", what, err)
		}
		if i != 42 || !day.Equal(time.Date(1815, 12, 10, 0, 0, 0, 0, time.UTC)) ||
			!at.Equal(time.Date(2024, 3, 15, 4, 4, 5, 250_000_000, time.UTC)) || fmt.Sprint(j) != "map[a:[1 2.5] b:1]" {
			t.Errorf("%s: binary read: %d %v %v %v", what, i, day, at, j)
		}
		c.Close(ctx)
	}
	a := e.startProxy(migrating)
	through(a, "migrating, before encrypt")

	// Small batches: many transactions, and a resumable state between them.
	out := e.mustMigrate(migrating, "encrypt", "--table", "public.people", "--batch", "2", "--yes")
	if !strings.Contains(out, "5 rows") || !strings.Contains(out, "pgcloak_t_encrypted") {
		t.Fatalf("encrypt output:\n%s", out)
	}
	through(a, "migrating, after encrypt")
	lcCheckAllCiphertext(t, d, "people", typesRules, 1)
	a.stop()

	b := e.startProxy(encrypted)
	through(b, "encrypted")
	// A rerun finds everything encrypted and changes nothing.
	out = e.mustMigrate(encrypted, "encrypt", "--table", "people", "--yes")
	if !strings.Contains(out, "0 values encrypted, 46 already encrypted") {
		t.Fatalf("second encrypt:\n%s", out)
	}

	if code, _, errs := e.keysCmd(encrypted, "rotate", "pii"); code != 0 {
		t.Fatalf("keys rotate: %s", errs)
	}
	out = e.mustMigrate(encrypted, "rotate", "--table", "people")
	if !strings.Contains(out, "46 values re-encrypted") || !strings.Contains(out, "under version 2") {
		t.Fatalf("rotate output:\n%s", out)
	}
	lcCheckAllCiphertext(t, d, "people", typesRules, 2)
	through(b, "encrypted, rotated")
	b.stop()

	// The way back.
	code, _, errs := e.migrate(migrating, "decrypt", "--table", "people")
	if code == 0 || !strings.Contains(errs, "--confirm-decrypt") {
		t.Fatalf("decrypt without --confirm-decrypt: exit %d %s", code, errs)
	}
	code, _, errs = e.migrate(encrypted, "decrypt", "--table", "people", "--confirm-decrypt")
	if code == 0 || !strings.Contains(errs, "state: migrating") {
		t.Fatalf("decrypt with state: encrypted: exit %d %s", code, errs)
	}
	c2 := e.startProxy(migrating)
	out = e.mustMigrate(migrating, "decrypt", "--table", "people", "--confirm-decrypt")
	if !strings.Contains(out, "46 values decrypted") || !strings.Contains(out, "--restore-type") {
		t.Fatalf("decrypt output:\n%s", out)
	}
	through(c2, "migrating, decrypted")
	c2.stop()
	e.mustMigrate(migrating, "decrypt", "--table", "people", "--confirm-decrypt", "--restore-type")
	lcSamePeople(t, "restored, direct", lcReadPeople(t, d), want)
	var typ string
	if err := d.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'tz'`).Scan(&typ); err != nil || typ != "timestamp with time zone" {
		t.Fatalf("tz restored as %q (%v)", typ, err)
	}
}

// lcCheckAllCiphertext reads the protected columns of table directly and
// requires every non-NULL value to be pgcloak ciphertext under key version
// version.
func lcCheckAllCiphertext(t *testing.T, d *pgx.Conn, table string, rules []lcRule, version uint32) {
	t.Helper()
	var cols []string
	for _, r := range rules {
		cols = append(cols, pgx.Identifier{r.column}.Sanitize())
	}
	rows, err := d.Query(context.Background(), "SELECT "+strings.Join(cols, ", ")+" FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([][]byte, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v == nil {
				continue
			}
			h, err := crypto.ParseHeader(v)
			if err != nil || !crypto.IsCiphertext(v) {
				t.Fatalf("%s.%s holds %q: not ciphertext", table, cols[i], v)
			}
			if h.KeyVersion != version {
				t.Fatalf("%s.%s: key version %d, want %d", table, cols[i], h.KeyVersion, version)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
