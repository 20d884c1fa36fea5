package integration

// The client matrix (issue 4): each driver writes and reads back every
// logical type through pgcloak, and what it reads is compared with what the
// same driver code reads from a plain PostgreSQL table that has the logical
// types as real column types (the oracle, reached directly). The stored
// values of the protected table are then read directly: each carries the
// pgcloak header and none contains its plaintext.
//
// The shared pieces live here: the two tables, the test values, the plan of
// statements every client runs, the comparison and the check of what is
// stored. matrix_<client>_test.go run one client each; the programs of the
// clients that are not written in Go are in testdata/clients/.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// matrixCol is one protected column: the same name in both tables.
type matrixCol struct {
	name string // column name
	kind string // logical base type: what the clients switch on
	typ  string // type of the oracle column and of the pgcloak rule
}

var matrixCols = []matrixCol{
	{"c_text", "text", "text"},
	{"c_varchar", "varchar", "varchar(64)"},
	{"c_bpchar", "bpchar", "char(8)"},
	{"c_int2", "int2", "int2"},
	{"c_int4", "int4", "int4"},
	{"c_int8", "int8", "int8"},
	{"c_numeric", "numeric", "numeric"},
	{"c_float8", "float8", "float8"},
	{"c_bool", "bool", "bool"},
	{"c_date", "date", "date"},
	{"c_timestamp", "timestamp", "timestamp"},
	{"c_timestamptz", "timestamptz", "timestamptz"},
	{"c_uuid", "uuid", "uuid"},
	{"c_jsonb", "jsonb", "jsonb"},
	{"c_bytea", "bytea", "bytea"},
}

const (
	matrixCloak = "m_cloak" // every c_* column is bytea, protected by pgcloak
	matrixPlain = "m_plain" // the oracle: the same columns with their logical types
)

// matrixSchema creates both tables; the oracle is never protected.
func matrixSchema() string {
	var cloak, plain strings.Builder
	for _, c := range matrixCols {
		fmt.Fprintf(&cloak, ", %s bytea", c.name)
		fmt.Fprintf(&plain, ", %s %s", c.name, c.typ)
	}
	return fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, note text%s);\nCREATE TABLE %s (id int PRIMARY KEY, note text%s);",
		matrixCloak, cloak.String(), matrixPlain, plain.String())
}

// matrixTables is the pgcloak rule set: every c_* column of m_cloak.
func matrixTables() string {
	var b strings.Builder
	b.WriteString("public." + matrixCloak + ":\n")
	for _, c := range matrixCols {
		fmt.Fprintf(&b, "  %s: {type: %s, key: pii}\n", c.name, c.typ)
	}
	return b.String()
}

// matrixRow holds one value per matrixCols entry, in PostgreSQL's text input
// form (bytea as \x hex); nil is NULL.
type matrixRow []*string

func mrow(vals ...any) matrixRow {
	if len(vals) != len(matrixCols) {
		panic(fmt.Sprintf("matrix row has %d values, want %d", len(vals), len(matrixCols)))
	}
	r := make(matrixRow, len(vals))
	for i, v := range vals {
		if v != nil {
			s := v.(string)
			r[i] = &s
		}
	}
	return r
}

func nullRow() matrixRow { return make(matrixRow, len(matrixCols)) }

// matrixBigText is a 1 MiB text, ASCII and Japanese.
var matrixBigText = func() string {
	const unit = "pgcloak 1MB 山田太郎 ｶﾀｶﾅ 0123456789 ✓\n"
	var b strings.Builder
	for b.Len()+len(unit) <= 1<<20 {
		b.WriteString(unit)
	}
	b.WriteString(strings.Repeat("x", 1<<20-b.Len()))
	return b.String()
}()

// matrixAllBytes is a bytea of the 256 byte values.
func matrixAllBytes() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return `\x` + hex.EncodeToString(b)
}

// matrixRows are the test values, one row per case. extras adds values that
// some drivers cannot represent (numeric NaN and infinities, infinite dates
// and timestamps): psql and pgx run them.
func matrixRows(extras bool) []matrixRow {
	rows := []matrixRow{
		// Japanese text and the minimums.
		mrow("山田太郎", "ｶﾀｶﾅ", "ｶﾀｶﾅ", "-32768", "-2147483648", "-9223372036854775808",
			"-1234567890123456789012345678901234567890.0123456789", "1e308", "true",
			"0001-01-01", "0001-01-01 00:00:00", "2024-02-29 23:59:59.123456+09:00",
			"00000000-0000-0000-0000-000000000000",
			`{"名前": "山田太郎", "nested": {"a": [1, 2.50, {"b": null}], "t": true}, "emoji": "🐘", "esc": "q\"b\\n\n\u0001"}`,
			matrixAllBytes()),
		// Empty values and the maximums.
		mrow("", "", "", "32767", "2147483647", "9223372036854775807",
			"99999999999999999999999999999999999999999.000000000000000000001", "-0", "false",
			"9999-12-31", "9999-12-31 23:59:59.999999", "1999-12-31 23:59:59-08:00",
			"ffffffff-ffff-ffff-ffff-ffffffffffff", "[]", `\x`),
		// NULL everywhere.
		nullRow(),
		// 1 MiB of text, quotes and backslashes, Infinity.
		mrow(matrixBigText, "tab\there \"dq\" 'apos' back\\slash", "x", "-1", "0", "-1",
			"0.000000000000000000000000000000000000000001", "Infinity", "true",
			"2000-02-29", "2000-01-01 00:00:00", "1970-01-01 00:00:00+00:00",
			"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			`{"deep": {"a": {"b": {"c": [[[]]]}}}, "n": 1.50, "big": 123456789012345678901234567890}`,
			`\x`+hex.EncodeToString([]byte("bytea-plain-sentinel"))),
		// NaN, a half-hour-and-quarter offset, blanks that bpchar pads.
		mrow("NULL", "  spaces  ", "trail  ", "1", "-1", "4611686018427387904",
			"-0.5", "NaN", "false", "2024-02-29", "2024-02-29 12:34:56.5", "2024-06-30 12:00:00+05:45",
			"6ba7b810-9dad-11d1-80b4-00c04fd430c8", `"山田太郎"`, `\x00`),
		// -Infinity, a control character, the 2038 boundary.
		mrow("Ünïcödé ✓ 🐘 \x01", "ｶﾀｶﾅ山田", "山田", "0", "42", "0",
			"0", "-Infinity", "true", "1970-01-01", "1970-01-01 00:00:00.000001", "2038-01-19 03:14:08+00:00",
			"123e4567-e89b-12d3-a456-426614174000", "{}", `\x5c27`),
		// The smallest subnormal float, a jsonb number, some NULLs.
		mrow("a", nil, nil, nil, nil, nil, "-0.000001", "5e-324", nil, nil, nil, nil, nil, "0", nil),
		// Short decimals, a jsonb number with an exponent, the rest NULL.
		mrow(nil, "b", nil, nil, "-7", nil, "123456789.123456789", "0.30000000000000004", nil, nil, nil, nil, nil, "-1.5e10", nil),
	}
	if extras {
		rows = append(rows,
			mrow("extras 1", nil, nil, nil, nil, nil, "NaN", "-Infinity", nil,
				"infinity", "-infinity", "infinity", nil, nil, nil),
			mrow("extras 2", nil, nil, nil, nil, nil, "Infinity", nil, nil,
				"-infinity", "infinity", "-infinity", nil, nil, nil),
			mrow("extras 3", nil, nil, nil, nil, nil, "-Infinity", nil, nil, nil, nil, nil, nil, nil, nil),
		)
	}
	return rows
}

// matrixStep is one statement of the plan every client runs.
type matrixStep struct {
	kind string    // insert: parameterised INSERT of id, note and every column; update: parameterised UPDATE … SET every column WHERE id; exec: sql as is
	id   int       // insert, update
	note string    // insert
	vals matrixRow // insert, update
	sql  string    // exec: a statement with literals only
}

// The ids of the plan tell which statement wrote a row.
func matrixIDKind(id int) string {
	switch {
	case id < 100:
		return "INSERT with parameters"
	case id < 200:
		return "UPDATE SET col = $n"
	case id < 300:
		return "UPDATE SET col = literal"
	case id == 301:
		return "UPDATE SET col = $n (NULL)"
	case id == 302:
		return "UPDATE SET col = NULL"
	case id < 500:
		return "INSERT with literals (multi-row VALUES)"
	default:
		return "psql literal forms"
	}
}

// matrixPlan is what every client runs against table: rows inserted with
// parameters (ids 1…), rows inserted with NULLs then updated with parameters
// (101…), rows inserted then updated with literals (201…), a row set to NULL
// by a parameter (301) and by the literal NULL (302), and all rows inserted
// again by one multi-row INSERT with literals (401…).
func matrixPlan(table string, rows []matrixRow) []matrixStep {
	var plan []matrixStep
	for i, r := range rows {
		plan = append(plan, matrixStep{kind: "insert", id: 1 + i, note: fmt.Sprintf("insert %d", 1+i), vals: r})
	}
	for i, r := range rows {
		id := 101 + i
		plan = append(plan,
			matrixStep{kind: "insert", id: id, note: fmt.Sprintf("update param %d", id), vals: nullRow()},
			matrixStep{kind: "update", id: id, vals: r})
	}
	for i, r := range rows {
		id := 201 + i
		plan = append(plan,
			matrixStep{kind: "exec", sql: fmt.Sprintf("INSERT INTO %s (id, note) VALUES (%d, 'update literal %d')", table, id, id)},
			matrixStep{kind: "exec", sql: matrixUpdateSQL(table, id, r)})
	}
	plan = append(plan,
		matrixStep{kind: "insert", id: 301, note: "update param NULL", vals: rows[0]},
		matrixStep{kind: "update", id: 301, vals: nullRow()},
		matrixStep{kind: "insert", id: 302, note: "update literal NULL", vals: rows[0]},
		matrixStep{kind: "exec", sql: matrixUpdateSQL(table, 302, nullRow())})
	var values []string
	for i, r := range rows {
		values = append(values, matrixValuesSQL(401+i, fmt.Sprintf("insert literal %d", 401+i), r))
	}
	plan = append(plan, matrixStep{kind: "exec",
		sql: fmt.Sprintf("INSERT INTO %s (id, note, %s) VALUES %s", table, matrixColNames(), strings.Join(values, ",\n  "))})
	return plan
}

func matrixColNames() string {
	names := make([]string, len(matrixCols))
	for i, c := range matrixCols {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// matrixSelect reads every row back, the id first.
func matrixSelect(table string) string {
	return fmt.Sprintf("SELECT id, note, %s FROM %s ORDER BY id", matrixColNames(), table)
}

var matrixPlainNumber = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// matrixLiteral is v as an SQL literal the way a person writes it: numbers
// and booleans bare, everything else in single quotes (standard conforming
// strings), NULL.
func matrixLiteral(kind string, v *string) string {
	if v == nil {
		return "NULL"
	}
	switch kind {
	case "int2", "int4", "int8", "numeric", "float8":
		if matrixPlainNumber.MatchString(*v) {
			return *v
		}
	case "bool":
		return *v
	}
	return "'" + strings.ReplaceAll(*v, "'", "''") + "'"
}

func matrixValuesSQL(id int, note string, r matrixRow) string {
	lits := []string{strconv.Itoa(id), matrixLiteral("text", &note)}
	for i, c := range matrixCols {
		lits = append(lits, matrixLiteral(c.kind, r[i]))
	}
	return "(" + strings.Join(lits, ", ") + ")"
}

func matrixUpdateSQL(table string, id int, r matrixRow) string {
	sets := make([]string, len(matrixCols))
	for i, c := range matrixCols {
		sets[i] = c.name + " = " + matrixLiteral(c.kind, r[i])
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE id = %d", table, strings.Join(sets, ", "), id)
}

// matrixStepSQL is a step with every value written as a literal (psql).
func matrixStepSQL(table string, s matrixStep) string {
	switch s.kind {
	case "insert":
		return fmt.Sprintf("INSERT INTO %s (id, note, %s) VALUES %s", table, matrixColNames(), matrixValuesSQL(s.id, s.note, s.vals))
	case "update":
		return matrixUpdateSQL(table, s.id, s.vals)
	}
	return s.sql
}

// writeMatrixPlan writes the plan for the programs in testdata/clients: one
// statement a line, tab-separated fields, each value (and the SQL of exec)
// hex-encoded UTF-8, \N for NULL:
//
//	table   <name>
//	columns <name>:<kind> …
//	insert  <id> <note> <value> …
//	update  <id> <value> …
//	exec    <sql>
func writeMatrixPlan(t *testing.T, table string, plan []matrixStep) string {
	t.Helper()
	enc := func(v *string) string {
		if v == nil {
			return `\N`
		}
		return hex.EncodeToString([]byte(*v))
	}
	var b strings.Builder
	b.WriteString("table\t" + table + "\ncolumns")
	for _, c := range matrixCols {
		b.WriteString("\t" + c.name + ":" + c.kind)
	}
	b.WriteString("\n")
	for _, s := range plan {
		switch s.kind {
		case "insert":
			fmt.Fprintf(&b, "insert\t%d\t%s", s.id, enc(&s.note))
		case "update":
			fmt.Fprintf(&b, "update\t%d", s.id)
		case "exec":
			fmt.Fprintf(&b, "exec\t%s\n", enc(&s.sql))
			continue
		}
		for _, v := range s.vals {
			b.WriteString("\t" + enc(v))
		}
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), table+".plan")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// matrixResult is what a client read back and which statements failed.
// Every cell is the client's rendering of the value it got (its type and
// value), nil for NULL; the first two cells are the id (digits) and the
// note.
type matrixResult struct {
	Errors []string    `json:"errors"`
	Rows   [][]*string `json:"rows"`
}

// matrixEnv is a pgcloak with m_cloak protected, in front of a database that
// also has the oracle table m_plain.
type matrixEnv struct {
	*encEnv
	directConn *pgx.Conn
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	e := newEncEnv(t, encEnvOptions{schema: matrixSchema(), tables: matrixTables()})
	return &matrixEnv{encEnv: e, directConn: e.direct()}
}

// reset empties both tables, directly.
func (m *matrixEnv) reset(t *testing.T) {
	t.Helper()
	if _, err := m.directConn.Exec(context.Background(), "TRUNCATE "+matrixCloak+", "+matrixPlain); err != nil {
		t.Fatal(err)
	}
}

// verify compares what the client read through pgcloak with what it read
// from the oracle, and checks what pgcloak stored.
func (m *matrixEnv) verify(t *testing.T, cloak, oracle matrixResult, rows []matrixRow) {
	t.Helper()
	if want := 4*len(rows) + 2; len(oracle.Rows) != want {
		t.Errorf("the oracle run read %d rows, want %d", len(oracle.Rows), want)
	}
	// The oracle itself: a value written by UPDATE … SET col = $n reads
	// back as the same value written by INSERT, so the driver's own round
	// trip is exact and the comparison below means something.
	byID := map[string][]*string{}
	for _, r := range oracle.Rows {
		byID[*r[0]] = r
	}
	for i := range rows {
		ins, upd := byID[strconv.Itoa(1+i)], byID[strconv.Itoa(101+i)]
		for c := 2; c < len(ins) && c < len(upd); c++ {
			if !equalCell(ins[c], upd[c]) {
				t.Errorf("oracle: row %d and row %d differ in column %d: %s vs %s", 1+i, 101+i, c, showCell(ins[c], upd[c]), showCell(upd[c], ins[c]))
			}
		}
	}
	compareMatrix(t, cloak, oracle)
	m.checkStored(t, rows)
}

// compareMatrix fails t for every statement that failed and every cell that
// differs from the oracle.
func compareMatrix(t *testing.T, cloak, oracle matrixResult) {
	t.Helper()
	for _, e := range oracle.Errors {
		t.Errorf("the oracle run (plain PostgreSQL, no pgcloak) failed, the test itself is wrong: %s", e)
	}
	for _, e := range cloak.Errors {
		t.Errorf("through pgcloak: %s", e)
	}
	byID := map[string][]*string{}
	for _, r := range cloak.Rows {
		byID[*r[0]] = r
	}
	names := append([]string{"id", "note"}, strings.Split(matrixColNames(), ", ")...)
	const maxDiffs = 60
	diffs := 0
	for _, want := range oracle.Rows {
		id := *want[0]
		n, _ := strconv.Atoi(id)
		got, ok := byID[id]
		if !ok {
			t.Errorf("row %s (%s) is missing through pgcloak", id, matrixIDKind(n))
			continue
		}
		delete(byID, id)
		for i := range want {
			if i < len(got) && equalCell(got[i], want[i]) {
				continue
			}
			if diffs++; diffs <= maxDiffs {
				var g *string
				if i < len(got) {
					g = got[i]
				}
				t.Errorf("row %s (%s), %s: through pgcloak %s, plain PostgreSQL %s", id, matrixIDKind(n), names[i], showCell(g, want[i]), showCell(want[i], g))
			}
		}
	}
	if diffs > maxDiffs {
		t.Errorf("… %d differing cells in all", diffs)
	}
	for id := range byID {
		t.Errorf("row %s through pgcloak is not in the oracle", id)
	}
}

func equalCell(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// showCell quotes a cell; a long one is cut around its first difference
// from other.
func showCell(v, other *string) string {
	if v == nil {
		return "NULL"
	}
	s := *v
	if len(s) <= 200 {
		return strconv.Quote(s)
	}
	at := 0
	if other != nil {
		for at < len(s) && at < len(*other) && s[at] == (*other)[at] {
			at++
		}
	}
	from := max(0, at-60)
	to := min(len(s), at+100)
	return fmt.Sprintf("(%d bytes, first difference at %d) …%q…", len(s), at, s[from:to])
}

// matrixSentinels are plaintexts that must not appear in any stored value:
// every test value of 6 bytes or more (bytea also as its bytes) and some
// pieces of the structured ones.
func matrixSentinels(rows []matrixRow) [][]byte {
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= 6 {
			seen[s] = true
		}
	}
	for _, r := range rows {
		for i, v := range r {
			if v == nil {
				continue
			}
			add(*v)
			if matrixCols[i].kind == "bytea" {
				if b, err := hex.DecodeString(strings.TrimPrefix(*v, `\x`)); err == nil {
					add(string(b))
				}
			}
		}
	}
	for _, s := range []string{"名前", "山田太郎", "ｶﾀｶﾅ", "bytea-plain-sentinel", "1234567890123456789012345678901234567890",
		"99999999999999999999", "a0eebc99-9c0b", matrixBigText[:48]} {
		add(s)
	}
	out := make([][]byte, 0, len(seen))
	for s := range seen {
		out = append(out, []byte(s))
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return out
}

// checkStored reads m_cloak directly: a value is NULL exactly where the
// oracle's is, every other value starts with the pgcloak header and
// contains no plaintext.
func (m *matrixEnv) checkStored(t *testing.T, rows []matrixRow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	var nulls []string
	for _, c := range matrixCols {
		nulls = append(nulls, c.name+" IS NULL")
	}
	oracleNull := map[int32][]bool{}
	prow, err := m.directConn.Query(ctx, fmt.Sprintf("SELECT id, %s FROM %s", strings.Join(nulls, ", "), matrixPlain))
	if err != nil {
		t.Fatal(err)
	}
	for prow.Next() {
		vals, err := prow.Values()
		if err != nil {
			t.Fatal(err)
		}
		isNull := make([]bool, len(matrixCols))
		for i := range isNull {
			isNull[i] = vals[i+1].(bool)
		}
		oracleNull[vals[0].(int32)] = isNull
	}
	if err := prow.Err(); err != nil {
		t.Fatal(err)
	}

	sentinels := matrixSentinels(rows)
	crow, err := m.directConn.Query(ctx, fmt.Sprintf("SELECT id, %s FROM %s ORDER BY id", matrixColNames(), matrixCloak))
	if err != nil {
		t.Fatal(err)
	}
	defer crow.Close()
	stored, problems := 0, 0
	for crow.Next() {
		raw := crow.RawValues()
		vals, err := crow.Values()
		if err != nil {
			t.Fatal(err)
		}
		id := vals[0].(int32)
		isNull, ok := oracleNull[id]
		if !ok {
			t.Errorf("stored row %d is not in the oracle table", id)
			continue
		}
		for i, v := range raw[1:] {
			col := matrixCols[i].name
			switch {
			case v == nil && isNull[i]:
				continue
			case v == nil:
				t.Errorf("stored %s of row %d is NULL, the oracle's is not", col, id)
				problems++
				continue
			case isNull[i]:
				t.Errorf("stored %s of row %d is %d bytes, the oracle's is NULL", col, id, len(v))
				problems++
				continue
			}
			stored++
			if !bytes.HasPrefix(v, []byte("PGC\x01")) {
				t.Errorf("stored %s of row %d lacks the pgcloak header: %q", col, id, v[:min(len(v), 40)])
				problems++
			}
			for _, s := range sentinels {
				if bytes.Contains(v, s) {
					t.Errorf("stored %s of row %d contains the plaintext %q", col, id, s[:min(len(s), 60)])
					problems++
				}
			}
		}
	}
	if err := crow.Err(); err != nil {
		t.Fatal(err)
	}
	if stored == 0 && problems == 0 {
		t.Errorf("no stored value to check in %s", matrixCloak)
	}
}

// matrixClientDir is testdata/clients as an absolute path.
func matrixClientDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("testdata", "clients"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// matrixEnviron is the environment of a client program: ours without PG*
// variables, in a time zone that is neither UTC nor a whole hour, plus
// extra.
func matrixEnviron(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	env = append(env, "TZ=America/St_Johns", "LC_ALL=C.UTF-8")
	return append(env, extra...)
}

// runMatrixProgram runs a client program that prints a matrixResult as JSON.
func runMatrixProgram(t *testing.T, dir string, env []string, name string, args ...string) matrixResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	begin := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s\nstdout (start):\n%.2000s", name, strings.Join(args, " "), err, errb.String(), out.String())
	}
	t.Logf("%s: %v", filepath.Base(name), time.Since(begin).Round(time.Millisecond))
	var res matrixResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%s printed no result (%v)\nstderr:\n%s\nstdout (start):\n%.2000s", name, err, errb.String(), out.String())
	}
	return res
}

// matrixGoClient is a Go driver under test.
type matrixGoClient struct {
	exec  func(ctx context.Context, sql string, args ...any) error // run a statement
	query func(ctx context.Context, sql string) ([][]any, error)   // read rows as the driver returns them
	param func(kind string, v *string) any                         // a test value as the application passes it
	show  func(v any) *string                                      // a value read, rendered with its Go type
}

// run runs the plan against table and reads the table back.
func (c matrixGoClient) run(t *testing.T, table string, plan []matrixStep) matrixResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	params := make([]string, 2+len(matrixCols))
	sets := make([]string, len(matrixCols))
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	for i, col := range matrixCols {
		sets[i] = fmt.Sprintf("%s = $%d", col.name, i+1)
	}
	insert := fmt.Sprintf("INSERT INTO %s (id, note, %s) VALUES (%s)", table, matrixColNames(), strings.Join(params, ", "))
	update := fmt.Sprintf("UPDATE %s SET %s WHERE id = $%d", table, strings.Join(sets, ", "), len(matrixCols)+1)

	var res matrixResult
	for n, s := range plan {
		var args []any
		for i, col := range matrixCols {
			if s.vals != nil {
				args = append(args, c.param(col.kind, s.vals[i]))
			}
		}
		var err error
		switch s.kind {
		case "insert":
			err = c.exec(ctx, insert, append([]any{s.id, s.note}, args...)...)
		case "update":
			err = c.exec(ctx, update, append(args, s.id)...)
		case "exec":
			err = c.exec(ctx, s.sql)
		}
		if err != nil {
			res.Errors = append(res.Errors, matrixStepError(n, s, err))
		}
	}
	rows, err := c.query(ctx, matrixSelect(table))
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", matrixSelect(table), err))
	}
	for _, r := range rows {
		cells := []*string{new(fmt.Sprint(r[0]))}
		for _, v := range r[1:] {
			cells = append(cells, c.show(v))
		}
		res.Rows = append(res.Rows, cells)
	}
	return res
}

// matrixStepError names a failed step of the plan.
func matrixStepError(n int, s matrixStep, err error) string {
	switch s.kind {
	case "exec":
		sql := s.sql
		if len(sql) > 300 {
			sql = sql[:300] + "…"
		}
		return fmt.Sprintf("step %d, %s: %v", n, sql, err)
	default:
		return fmt.Sprintf("step %d, %s id %d (%s): %v", n, s.kind, s.id, matrixIDKind(s.id), err)
	}
}
