package copyfmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// The tests in this file compare the Rewriter with a real PostgreSQL:
//
//   - COPY FROM: the same data is copied into a table of text columns; the
//     values PostgreSQL stores must be the values the Rewriter hands the
//     FieldFunc, and PostgreSQL's error (SQLSTATE, message, hint, context)
//     must be the Rewriter's. Then the Rewriter's output is copied into
//     tables where the columns are bytea (all, or only the middle one):
//     PostgreSQL must read back exactly the values, i.e. the Rewriter wrote
//     bytea and left every other field as it was.
//   - COPY TO: the same values are stored as text and as bytea; the bytea
//     table's COPY output through the Rewriter (identity transform) must be
//     byte for byte the text table's COPY output, for every format and
//     option, with bytea_output hex and escape.

type pgEnv struct {
	t    *testing.T
	conn *pgx.Conn
	ctx  context.Context
}

func startPG(t *testing.T) *pgEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	p := harness.StartPostgres(t, harness.PostgresOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.DSN(harness.SuperUser, harness.AppDB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	e := &pgEnv{t: t, conn: conn, ctx: ctx}
	e.exec(`CREATE TABLE t (n serial, a text, b text, c text);
		CREATE TABLE u (n serial, a bytea, b bytea, c bytea);
		CREATE TABLE v (n serial, a text, b bytea, c text)`)
	return e
}

func (e *pgEnv) exec(sql string) {
	e.t.Helper()
	if _, err := e.conn.Exec(e.ctx, sql); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// copyIn copies data into table (a, b, c) and returns the rows stored, or
// PostgreSQL's error in errString's form.
func (e *pgEnv) copyIn(table, with string, data []byte) ([][]*string, string) {
	e.t.Helper()
	e.exec("DELETE FROM " + table)
	_, err := e.conn.PgConn().CopyFrom(e.ctx, bytes.NewReader(data), "COPY "+table+" (a, b, c) FROM STDIN "+with)
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			e.t.Fatal(err)
		}
		return nil, fmt.Sprintf("%s|%s|%s|%s", pe.Code, pe.Message, pe.Hint, pe.Where)
	}
	sel := map[string]string{
		"t": "convert_to(a, 'UTF8'), convert_to(b, 'UTF8'), convert_to(c, 'UTF8')",
		"u": "a, b, c",
		"v": "convert_to(a, 'UTF8'), b, convert_to(c, 'UTF8')",
	}[table]
	rows, err := e.conn.Query(e.ctx, "SELECT "+sel+" FROM "+table+" ORDER BY n",
		pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var g [][]*string
	for rows.Next() {
		var a, b, c []byte
		if err := rows.Scan(&a, &b, &c); err != nil {
			e.t.Fatal(err)
		}
		r := make([]*string, 3)
		for i, v := range [][]byte{a, b, c} {
			if v != nil {
				s := string(v)
				r[i] = &s
			}
		}
		g = append(g, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return g, ""
}

func (e *pgEnv) copyOut(sql string) []byte {
	e.t.Helper()
	var buf bytes.Buffer
	if _, err := e.conn.PgConn().CopyTo(e.ctx, &buf, sql); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return buf.Bytes()
}

// optionSet is a COPY option list in SQL and as the parser gives it.
type optionSet struct {
	sql  string
	opts []Option
}

var fromOptionSets = []optionSet{
	{"", nil},
	{"(DELIMITER '|', NULL 'NULL')", []Option{opt("delimiter", "|"), opt("null", "NULL")}},
	{"(FORMAT text, HEADER)", []Option{opt("format", "text"), flag("header")}},
	{"(DELIMITER 'A', NULL '')", []Option{opt("delimiter", "A"), opt("null", "")}},
	{"(FORMAT csv)", []Option{csvOpt}},
	{"(FORMAT csv, HEADER true)", []Option{csvOpt, opt("header", "true")}},
	{`(FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\', NULL 'N')`,
		[]Option{csvOpt, opt("delimiter", ";"), opt("quote", "'"), opt("escape", `\`), opt("null", "N")}},
	{"(FORMAT csv, FORCE_NOT_NULL (a), FORCE_NULL (b, c), NULL 'x')",
		[]Option{csvOpt, list("force_not_null", "a"), list("force_null", "b", "c"), opt("null", "x")}},
	{"(FORMAT csv, DELIMITER '\t', QUOTE '.', NULL '\\N')",
		[]Option{csvOpt, opt("delimiter", "\t"), opt("quote", "."), opt("null", `\N`)}},
	{"(FORMAT csv, DELIMITER 'b', QUOTE 'a', ESCAPE 'x', NULL '\\x')",
		[]Option{csvOpt, opt("delimiter", "b"), opt("quote", "a"), opt("escape", "x"), opt("null", `\x`)}},
}

// fromCorpus are hand-picked inputs; each is tried with every option set.
var fromCorpus = []string{
	"a\tb\tc\n", "a\tb\tc", "a\tb\n", "a\tb\tc\td\n", "\n", "", "\t\t\n", "\\N\t\\N\t\\N\n",
	"a\\tb\t\\\\\t\\N\n", `\b\f\n\r\t\v\q\\.x` + "\t" + `\101\x41\x4\xg\7\18\x` + "\t" + `\0` + "\n",
	"a\\\tb\tc\\\nd\te\n", "a\tb\tc\r\nd\te\tf\r\n", "a\tb\tc\rd\te\tf\r", "a\tb\tc\r\nd\te\tf\n",
	"a\tb\tc\nd\re\tf\n", "a\tb\tc\n\\.\nd\te\n", "a\tb\tc\\.\nd\n", "\\.\n", "\\.", "a\tb\tc\n\\.",
	"a\tb\tc\n\\.x\n", "a\tb\tc\n\\.\r\n", "a\tb\tc\r\n\\.\n", "a\tb\tc\r\n\\.\r\n", "a\tb\tc\r\\.\r",
	"a\tb\tc\\", "a\tb\\", "a\\xe9\tb\tc\n", "a\\303\\251\tb\tc\n", "a\tb\tc\nd\xff\te\tf\n", "a\x00\tb\tc\n",
	"a\xe3\x81\tb\tc\n", "é\tü\t山\n", strings.Repeat("é", 60) + "\n", strings.Repeat("x", 120) + "\tb\n",
	"a,b,c\n", `a,"b,1","c""d"` + "\n", `x"a,b"y,"",` + "\n", `,"",x` + "\n", "\"a\nb\",\"c\r\nd\",e\nf,g,h\n",
	`\N,\.,"\"` + "\n", "a,b,c\n\\.\nx,y,z\n", "\"\\.\"\n\\.x\n", "\\.,b,c\n", "\"x,\ny\",y,z\na,b,c\n",
	`'a;\'b\\';N;'N'` + "\n", `a\"b,"c\"d",\` + "\n", ",,\n", `"x","x",x` + "\n", "a,b,\"c\nd", "a,b,\"c\nd\n",
	"a,b,c\r\nd,e,\"f\r\ng\r\nh", "a,b,c\nd\re,f\n", "a,b,c\r\nd\ne,f\r\n", "a,b\n", "a,b,c,\n", "a,b,c\r\n",
	"x;y;z\n", "'a''b';'';\n", "'a\\'b';'\\\\';'\\x'\n", "a\tb\tc\n\"\"\t.\t.x.\n", "A\x41A\\x4AA\n",
	"h\th\th\na\tb\tc\n", "\"\n", "\"\"\"\n", "a,\"b\"\"\",c\n\"\r\n\"\n", "\\.\r\n", "x\\.\r\n",
	"a\tb\tc\n\\\n", "a\tb\tc\n\\", ".a.,b,c\n", ".a..b.\tc\td\n",
}

// randomInput builds an input from an alphabet of COPY-significant bytes;
// half of them start as well-formed rows.
func randomInput(rng *rand.Rand) []byte {
	alphabet := []string{"a", "b", "x", "N", "A", "4", "1", "0", "7", ".", "\t", "\n", "\r", "\\", ",", ";", "|",
		`"`, "'", " ", "é", "山", "\r\n", `\N`, `\.`, `\\`, `""`, "\xff", "\x00"}
	var b []byte
	if rng.IntN(2) == 0 {
		n := rng.IntN(6)
		for i := 0; i < n; i++ {
			for j := 0; j < 3; j++ {
				if j > 0 {
					b = append(b, "\t,;|A"[rng.IntN(5)])
				}
				for k := rng.IntN(4); k > 0; k-- {
					s := alphabet[rng.IntN(len(alphabet)-2)] // no invalid bytes
					b = append(b, s...)
				}
			}
			b = append(b, '\n')
		}
		return b
	}
	n := rng.IntN(40)
	for i := 0; i < n; i++ {
		s := alphabet[rng.IntN(len(alphabet))]
		if (s == "\xff" || s == "\x00") && rng.IntN(4) != 0 {
			s = "a"
		}
		b = append(b, s...)
	}
	return b
}

// seed is the random tests' seed: fixed, so that CI is deterministic, or
// COPYFMT_SEED to explore (COPYFMT_SEED=$RANDOM go test -run Random).
func seed(t *testing.T) uint64 {
	s := uint64(20261128)
	if v, err := strconv.ParseUint(os.Getenv("COPYFMT_SEED"), 10, 64); err == nil {
		s = v
	}
	t.Logf("seed %d (COPYFMT_SEED)", s)
	return s
}

// ourIn runs the Rewriter over data (COPY FROM; prot as given), checking
// that every chunking agrees.
func ourIn(t *testing.T, o Options, prot []bool, data []byte) result {
	return runAll(t, o, In, 3, prot, data, 3)
}

func TestPostgresCopyFrom(t *testing.T) {
	e := startPG(t)
	rng := rand.New(rand.NewPCG(seed(t), 1))
	inputs := append([]string(nil), fromCorpus...)
	n := 300
	if s := os.Getenv("COPYFMT_RANDOM"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for i := 0; i < n; i++ {
		inputs = append(inputs, string(randomInput(rng)))
	}
	// A few long streams: rows cut across PostgreSQL's 64 KiB buffers and
	// across our chunks.
	for i := 0; i < 3; i++ {
		var b []byte
		for len(b) < 200<<10 {
			if in := randomInput(rng); bytes.HasSuffix(in, []byte("\n")) {
				b = append(b, in...)
			}
		}
		inputs = append(inputs, string(b))
	}
	var agreed, failed int
	for _, set := range fromOptionSets {
		o, err := ParseOptions(set.opts, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range inputs {
			data := []byte(in)
			pgGrid, pgErr := e.copyIn("t", set.sql, data)
			ours := ourIn(t, o, nil, data)
			if !sameCopyError(pgErr, ours.err) || pgErr == "" && showGrid(ours.grid) != showGrid(pgGrid) {
				failed++
				t.Errorf("COPY t FROM STDIN %s\n input %q\n pg   err=%q rows=%s\n ours err=%q rows=%s",
					set.sql, in, pgErr, showGrid(pgGrid), ours.err, showGrid(ours.grid))
				if failed > 20 {
					t.FailNow()
				}
				continue
			}
			if pgErr != "" {
				agreed++
				continue
			}
			// The output, every column bytea: the same values come back.
			uGrid, uErr := e.copyIn("u", set.sql, []byte(ours.out))
			if uErr != "" || showGrid(uGrid) != showGrid(pgGrid) {
				t.Errorf("COPY u %s: our output %q of %q\n got  err=%q rows=%s\n want rows=%s",
					set.sql, ours.out, in, uErr, showGrid(uGrid), showGrid(pgGrid))
				continue
			}
			// Only b protected: a and c pass through untouched.
			mid := ourIn(t, o, []bool{false, true, false}, data)
			vGrid, vErr := e.copyIn("v", set.sql, []byte(mid.out))
			if mid.err != "" || vErr != "" || showGrid(vGrid) != showGrid(pgGrid) {
				t.Errorf("COPY v %s: our output %q of %q\n got  err=%q/%q rows=%s\n want rows=%s",
					set.sql, mid.out, in, mid.err, vErr, showGrid(vGrid), showGrid(pgGrid))
				continue
			}
			agreed++
		}
	}
	t.Logf("%d inputs × %d option sets: %d agree with PostgreSQL", len(inputs), len(fromOptionSets), agreed)
}

func TestPostgresCopyFromBinary(t *testing.T) {
	e := startPG(t)
	o := DefaultOptions(Binary)
	hdr := binHeader(nil)
	tup := func(a, b, c string) []byte { return binTuple([]byte(a), []byte(b), []byte(c)) }
	inputs := [][]byte{
		cat(hdr, tup("a", "b", "c"), binTuple(nil, []byte(""), nil), binTrailer),
		cat(binHeader([]byte("extension")), tup("é", "\n\t\\", ""), binTrailer),
		cat(hdr, tup("a", "b", "c")),
		cat(hdr, tup("a", "b", "c"), []byte{1}),
		cat(hdr),
		cat(hdr, binTrailer),
		nil,
		binarySignature[:5],
		[]byte("PGCOPY\n\xff\r\n\x01\x00\x00\x00\x00\x00\x00\x00\x00"),
		cat(binarySignature, []byte{0, 0}),
		cat(binarySignature, []byte{0, 1, 0, 0, 0, 0, 0, 0}),
		cat(binarySignature, []byte{0, 2, 0, 0, 0, 0, 0, 0}),
		cat(binarySignature, []byte{0, 0, 0x80, 0, 0, 0, 0, 0}),
		cat(binarySignature, []byte{0, 0, 0, 0, 0}),
		cat(binarySignature, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}),
		cat(binarySignature, []byte{0, 0, 0, 0, 0, 0, 0, 9, 'a'}),
		cat(hdr, binTuple([]byte("a"))),
		cat(hdr, tup("a", "b", "cdef")[:15]),
		cat(hdr, binTuple([]byte("a"), nil, nil)[:9]),
		cat(hdr, []byte{0, 3, 0xff, 0xff, 0xff, 0xfe}),
		cat(hdr, binTrailer, []byte("x")),
		cat(hdr, tup("a", "b", "c"), tup("d", "e", "f"), binTrailer, binTrailer),
		cat(hdr, []byte{0xff, 0xfe}),
		cat(hdr, tup("\xff", "b", "c")),
	}
	for _, data := range inputs {
		pgGrid, pgErr := e.copyIn("t", "(FORMAT binary)", data)
		ours := runAll(t, o, In, 3, nil, data, 5)
		if pgErr != "" && strings.HasPrefix(pgErr, "22021|") {
			// Text's binary receive function rejects the value; the
			// Rewriter hands it on (the FieldFunc validates it).
			continue
		}
		if !sameCopyError(pgErr, ours.err) || pgErr == "" && showGrid(ours.grid) != showGrid(pgGrid) {
			t.Errorf("input %q\n pg   err=%q rows=%s\n ours err=%q rows=%s", data, pgErr, showGrid(pgGrid), ours.err, showGrid(ours.grid))
			continue
		}
		if pgErr != "" {
			continue
		}
		uGrid, uErr := e.copyIn("u", "(FORMAT binary)", []byte(ours.out))
		if uErr != "" || showGrid(uGrid) != showGrid(pgGrid) {
			t.Errorf("COPY u: our output %q\n got err=%q rows=%s\n want rows=%s", ours.out, uErr, showGrid(uGrid), showGrid(pgGrid))
		}
	}
}

// TestPostgresCopyFromBinaryRandom: random tuples, some of them broken.
func TestPostgresCopyFromBinaryRandom(t *testing.T) {
	e := startPG(t)
	rng := rand.New(rand.NewPCG(seed(t), 3))
	o := DefaultOptions(Binary)
	values := []string{"", "a", "é山", "\n\t\\", strings.Repeat("long", 100)}
	for k := 0; k < 300; k++ {
		data := binHeader(nil)
		if rng.IntN(5) == 0 {
			data = binHeader([]byte(values[rng.IntN(len(values))]))
		}
		for n := rng.IntN(5); n > 0; n-- {
			fields := make([][]byte, 3)
			for i := range fields {
				if rng.IntN(4) != 0 {
					fields[i] = []byte(values[rng.IntN(len(values))])
				}
			}
			tup := binTuple(fields...)
			switch rng.IntN(12) {
			case 0:
				tup[1] = byte(rng.IntN(5)) // field count
			case 1:
				tup = binTuple(fields[:2]...)
			case 2:
				// Break the length word of field k.
				p := 2
				for i := 0; i < rng.IntN(3); i++ {
					p += 4 + len(fields[i])
				}
				copy(tup[p:], []byte{0xff, 0xff, 0xff, byte(rng.IntN(256))})
			}
			data = append(data, tup...)
		}
		switch rng.IntN(4) {
		case 0:
			data = append(data, binTrailer...)
		case 1:
			data = append(data, binTrailer...)
			data = append(data, byte(rng.IntN(256)))
		}
		if rng.IntN(4) == 0 && len(data) > 0 {
			data = data[:rng.IntN(len(data))]
		}
		pgGrid, pgErr := e.copyIn("t", "(FORMAT binary)", data)
		ours := runAll(t, o, In, 3, nil, data, 3)
		if strings.HasPrefix(pgErr, "22021|") {
			continue // text's receive function refused a value (the FieldFunc's job)
		}
		if !sameCopyError(pgErr, ours.err) || pgErr == "" && showGrid(ours.grid) != showGrid(pgGrid) {
			t.Errorf("input %q\n pg   err=%q rows=%s\n ours err=%q rows=%s", data, pgErr, showGrid(pgGrid), ours.err, showGrid(ours.grid))
			continue
		}
		if pgErr == "" {
			uGrid, uErr := e.copyIn("u", "(FORMAT binary)", []byte(ours.out))
			if uErr != "" || showGrid(uGrid) != showGrid(pgGrid) {
				t.Errorf("COPY u: our output %q\n got err=%q rows=%s\n want rows=%s", ours.out, uErr, showGrid(uGrid), showGrid(pgGrid))
			}
		}
	}
}

var toOptionSets = []optionSet{
	{"", nil},
	{"(DELIMITER '|', NULL 'NULL')", []Option{opt("delimiter", "|"), opt("null", "NULL")}},
	{"(FORMAT text, HEADER, DELIMITER ',')", []Option{opt("format", "text"), flag("header"), opt("delimiter", ",")}},
	{"(DELIMITER E'\\x01', NULL '')", []Option{opt("delimiter", "\x01"), opt("null", "")}},
	{"(FORMAT csv)", []Option{csvOpt}},
	{"(FORMAT csv, HEADER)", []Option{csvOpt, flag("header")}},
	{`(FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\', NULL 'N')`,
		[]Option{csvOpt, opt("delimiter", ";"), opt("quote", "'"), opt("escape", `\`), opt("null", "N")}},
	{"(FORMAT csv, FORCE_QUOTE (a, c))", []Option{csvOpt, list("force_quote", "a", "c")}},
	{"(FORMAT csv, FORCE_QUOTE *, NULL 'x')", []Option{csvOpt, {Name: "force_quote", Kind: ArgStar}, opt("null", "x")}},
	{"(FORMAT csv, DELIMITER 'a', QUOTE 'b', ESCAPE '0')", []Option{csvOpt, opt("delimiter", "a"), opt("quote", "b"), opt("escape", "0")}},
	{"(FORMAT binary)", []Option{binOpt}},
}

func TestPostgresCopyTo(t *testing.T) {
	e := startPG(t)
	rng := rand.New(rand.NewPCG(seed(t), 2))
	e.exec(`CREATE TABLE w (n serial, a text, b text, c text); CREATE TABLE x (n serial, a bytea, b bytea, c bytea)`)
	values := []string{"", "a", "\\.", "\\", "\t", "\n", "\r\n", `"`, "'", ",", ";", "|", "\x01", "N", "x", "NULL",
		"a\tb\\c\nd\re\b\f\v", "é山", "b", "0", "ab0", strings.Repeat("long ", 50), "\\N", " "}
	pick := func() *string {
		if rng.IntN(6) == 0 {
			return nil
		}
		if rng.IntN(3) == 0 {
			return &values[rng.IntN(len(values))]
		}
		var b strings.Builder
		for k := rng.IntN(5); k > 0; k-- {
			b.WriteString(values[rng.IntN(len(values))])
		}
		s := b.String()
		return &s
	}
	var want [][]*string
	for i := 0; i < 400; i++ {
		r := []*string{pick(), pick(), pick()}
		want = append(want, r)
		args := []any{r[0], r[1], r[2]}
		if _, err := e.conn.Exec(e.ctx, "INSERT INTO w (a, b, c) VALUES ($1, $2, $3)", args...); err != nil {
			t.Fatal(err)
		}
		bargs := make([]any, 3)
		for k, v := range r {
			if v != nil {
				bargs[k] = []byte(*v)
			} else {
				bargs[k] = []byte(nil)
			}
		}
		if _, err := e.conn.Exec(e.ctx, "INSERT INTO x (a, b, c) VALUES ($1, $2, $3)", bargs...); err != nil {
			t.Fatal(err)
		}
	}
	for _, byteaOutput := range []string{"hex", "escape"} {
		e.exec("SET bytea_output = " + byteaOutput)
		for _, set := range toOptionSets {
			o, err := ParseOptions(set.opts, false)
			if err != nil {
				t.Fatal(err)
			}
			text := e.copyOut("COPY (SELECT a, b, c FROM w ORDER BY n) TO STDOUT " + set.sql)
			bin := e.copyOut("COPY (SELECT a, b, c FROM x ORDER BY n) TO STDOUT " + set.sql)
			res := runAll(t, o, Out, 3, nil, bin, 5)
			if res.err != "" {
				t.Errorf("bytea_output %s, %s: %s", byteaOutput, set.sql, res.err)
				continue
			}
			if res.out != string(text) {
				t.Errorf("bytea_output %s, %s: output differs from COPY of text columns\n got  %q\n want %q",
					byteaOutput, set.sql, clip(res.out), clip(string(text)))
			}
			// (With bytea_output escape, a value can spell the NULL string:
			// PostgreSQL's own output is ambiguous then.)
			if byteaOutput == "hex" && showGrid(res.grid) != showGrid(want) {
				t.Errorf("bytea_output %s, %s: values differ", byteaOutput, set.sql)
			}
			// Partly protected: the other columns pass through as they are.
			mixed := e.copyOut("COPY (SELECT w.a, x.b, w.c FROM w JOIN x USING (n) ORDER BY n) TO STDOUT " + set.sql)
			res2 := runAll(t, o, Out, 3, []bool{true, false, true}, bin, 2)
			if res2.err != "" || res2.out != string(mixed) {
				t.Errorf("partly protected, bytea_output %s, %s: %s\n got  %q\n want %q",
					byteaOutput, set.sql, res2.err, clip(res2.out), clip(string(mixed)))
			}
		}
	}
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

// TestPostgresOptions checks ParseOptions' errors against the server's.
func TestPostgresOptions(t *testing.T) {
	e := startPG(t)
	type oc struct {
		sql  string
		opts []Option
	}
	num := func(name, v string) Option { return Option{Name: name, Kind: ArgNumber, Value: v} }
	cases := []oc{
		{"(FORMAT xml)", []Option{opt("format", "xml")}},
		{"(FORMAT csv, FORMAT text)", []Option{csvOpt, opt("format", "text")}},
		{"(DELIMITER '')", []Option{opt("delimiter", "")}},
		{"(DELIMITER 'ab')", []Option{opt("delimiter", "ab")}},
		{"(DELIMITER 'é')", []Option{opt("delimiter", "é")}},
		{"(DELIMITER E'\\n')", []Option{opt("delimiter", "\n")}},
		{"(DELIMITER '\\')", []Option{opt("delimiter", `\`)}},
		{"(DELIMITER 'x')", []Option{opt("delimiter", "x")}},
		{"(DELIMITER '.')", []Option{opt("delimiter", ".")}},
		{"(NULL E'a\\rb')", []Option{opt("null", "a\rb")}},
		{"(FORMAT binary, DELIMITER ',')", []Option{binOpt, opt("delimiter", ",")}},
		{"(FORMAT binary, NULL 'x')", []Option{binOpt, opt("null", "x")}},
		{"(FORMAT binary, HEADER)", []Option{binOpt, flag("header")}},
		{"(FORMAT binary, HEADER false)", []Option{binOpt, opt("header", "false")}},
		{"(QUOTE '\"')", []Option{opt("quote", `"`)}},
		{"(ESCAPE '\"')", []Option{opt("escape", `"`)}},
		{"(FORMAT csv, QUOTE 'ab')", []Option{csvOpt, opt("quote", "ab")}},
		{"(FORMAT csv, QUOTE ',')", []Option{csvOpt, opt("quote", ",")}},
		{"(FORMAT csv, ESCAPE '')", []Option{csvOpt, opt("escape", "")}},
		{"(FORCE_QUOTE (a))", []Option{list("force_quote", "a")}},
		{"(FORMAT csv, FORCE_QUOTE *)", []Option{csvOpt, {Name: "force_quote", Kind: ArgStar}}},
		{"(FORMAT csv, FORCE_NOT_NULL (a))", []Option{csvOpt, list("force_not_null", "a")}},
		{"(FORCE_NOT_NULL (a))", []Option{list("force_not_null", "a")}},
		{"(FORCE_NULL (a))", []Option{list("force_null", "a")}},
		{"(FORMAT csv, FORCE_NOT_NULL a)", []Option{csvOpt, opt("force_not_null", "a")}},
		{"(NULL 'a\tb')", []Option{opt("null", "a\tb")}},
		{"(FORMAT csv, NULL 'a,b')", []Option{csvOpt, opt("null", "a,b")}},
		{"(FORMAT csv, NULL 'a\"b')", []Option{csvOpt, opt("null", `a"b`)}},
		{"(HEADER match)", []Option{opt("header", "match")}},
		{"(HEADER 2)", []Option{num("header", "2")}},
		{"(HEADER 0)", []Option{num("header", "0")}},
		{"(HEADER 'yes')", []Option{opt("header", "yes")}},
		{"(FREEZE 'maybe')", []Option{opt("freeze", "maybe")}},
		{"(FREEZE 1.5)", []Option{num("freeze", "1.5")}},
		{"(FREEZE false)", []Option{opt("freeze", "false")}},
		{"(DELIMITER)", []Option{flag("delimiter")}},
		{"(ENCODING 'latin-1')", []Option{opt("encoding", "latin-1")}},
		{"(ENCODING 'klingon')", []Option{opt("encoding", "klingon")}},
		{"(OIDS)", []Option{flag("oids")}},
		{"(DEFAULT 'x')", []Option{opt("default", "x")}},
		{"(NULL 'x', NULL 'y')", []Option{opt("null", "x"), opt("null", "y")}},
		{"WITH CSV HEADER", []Option{csvOpt, {Name: "header", Kind: ArgString, Value: "true"}}},
		{"CSV QUOTE AS '''' FORCE NOT NULL a", []Option{csvOpt, opt("quote", "'"), list("force_not_null", "a")}},
	}
	for _, c := range cases {
		for _, from := range []bool{true, false} {
			dir := "FROM STDIN"
			if !from {
				dir = "TO STDOUT"
			}
			sql := "COPY t (a, b, c) " + dir + " " + c.sql
			var pgErr string
			if from {
				_, pgErr = e.copyIn("t", c.sql, nil)
			} else {
				_, err := e.conn.PgConn().CopyTo(e.ctx, &bytes.Buffer{}, sql)
				var pe *pgconn.PgError
				if errors.As(err, &pe) {
					pgErr = fmt.Sprintf("%s|%s|%s|%s", pe.Code, pe.Message, pe.Hint, pe.Where)
				} else if err != nil {
					t.Fatal(err)
				}
			}
			o, err := ParseOptions(c.opts, from)
			if err == nil {
				// Column references are checked when the Rewriter is made.
				var r *Rewriter
				r, err = NewRewriter(Config{Options: o, Direction: map[bool]Direction{true: In, false: Out}[from],
					Table: "t", Columns: []string{"a", "b", "c"}})
				if err == nil && from {
					_, err = r.Close(nil) // the (empty) data
				}
			}
			if o.HeaderMatch && strings.HasPrefix(pgErr, "22P04|wrong number of fields in header line") {
				continue // the server checks the header line, which the Rewriter forwards
			}
			if got := errString(err); got != pgErr {
				t.Errorf("%s\n pg   %q\n ours %q", sql, pgErr, got)
			}
		}
	}
}

// sameCopyError reports whether our rewriter failed the way PostgreSQL did.
// One difference is by design: a corrupted binary length word can claim
// gigabytes, which PostgreSQL fails allocating ("out of memory") and we refuse
// earlier at Config.MaxRow. Both are 54000 and store nothing.
func sameCopyError(pg, ours string) bool {
	if strings.HasPrefix(pg, CodeProgramLimitExceeded+"|") && strings.HasPrefix(ours, CodeProgramLimitExceeded+"|") {
		return true
	}
	return pg == ours
}
