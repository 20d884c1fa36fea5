package sqlplan

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// pad makes every string constant of sql long enough to be set aside
// (elideLiteral), whatever its form ('…', E'…', $$…$$, U&'…', adjacent
// strings), by inserting filler before its closing quote; the text is
// padded to elideText at the end if it is still shorter. It returns "" when
// sql does not lex.
func pad(sql string) string {
	res, err := pg.Scan(sql)
	if err != nil {
		return ""
	}
	filler := strings.Repeat("y", elideLiteral)
	var b strings.Builder
	last := 0
	for _, t := range res.Tokens {
		if t.Token != pg.Token_SCONST && t.Token != pg.Token_USCONST {
			continue
		}
		end := int(t.End)
		tok := sql[t.Start:end]
		closing := end - 1 // before the closing quote
		if strings.HasPrefix(tok, "$") {
			closing = end - (strings.IndexByte(tok[1:], '$') + 2)
		}
		b.WriteString(sql[last:closing])
		b.WriteString(filler)
		last = closing
	}
	b.WriteString(sql[last:])
	if b.Len() < elideText {
		b.WriteString("\n-- " + strings.Repeat("z", elideText))
	}
	return b.String()
}

// plain analyses sql without setting literals aside.
func plain(sql string, cat Catalog) (*Analysis, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return analyze(sql, cat, cat.ProtectedNames(), defaultPath) // a text too short to elide
	}
	return analyzeTree(sql, tree, cat, cat.ProtectedNames(), defaultPath)
}

// sameAnalysis checks that sql analyses the same with long literals set
// aside as without, and reports whether they were.
func sameAnalysis(t *testing.T, sql string) (elided bool) {
	t.Helper()
	cat := newFakeCatalog()
	names := cat.ProtectedNames()
	if !mayMatter(sql, names) {
		return false
	}
	want, wantErr := plain(sql, cat)
	got, ok := analyzeElided(sql, cat, names, defaultPath)
	if !ok {
		return false
	}
	if wantErr != nil {
		t.Fatalf("%.200q: set aside, analysed as %v; the whole text is refused: %v", sql, renderAll(sql, got), wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%.200q:\nset aside: %v\nwhole:     %v\n%s", sql, renderAll(sql, got), renderAll(sql, want), diff(got, want))
	}
	return true
}

// diff names the first difference between two analyses (for a failure).
func diff(a, b *Analysis) string {
	if len(a.Statements) != len(b.Statements) {
		return fmt.Sprintf("%d statements, %d", len(a.Statements), len(b.Statements))
	}
	for i := range a.Statements {
		x, y := a.Statements[i], b.Statements[i]
		vx, vy := reflect.ValueOf(x), reflect.ValueOf(y)
		for f := 0; f < vx.NumField(); f++ {
			if !reflect.DeepEqual(vx.Field(f).Interface(), vy.Field(f).Interface()) {
				return fmt.Sprintf("statement %d, %s: %+v / %+v", i, vx.Type().Field(f).Name, vx.Field(f).Interface(), vy.Field(f).Interface())
			}
		}
	}
	return ""
}

// TestElideSameAnalysis: every text of the plan and refusal tables, with its
// string constants made long, analyses the same whether they are set aside
// or not; the common writes are analysed with them set aside.
func TestElideSameAnalysis(t *testing.T) {
	var sqls []string
	for _, tt := range planTests {
		sqls = append(sqls, tt.sql)
	}
	for _, tt := range refusalTests {
		sqls = append(sqls, tt.sql)
	}
	elided := 0
	for _, sql := range sqls {
		if p := pad(sql); p != "" && sameAnalysis(t, p) {
			elided++
		}
	}
	t.Logf("%d of %d texts analysed with their literals set aside", elided, len(sqls))
	for _, sql := range []string{
		"INSERT INTO customers (id, email, note) VALUES (1, 'a@example.com', 'a note')",
		"INSERT INTO customers (id, full_name) VALUES (1, 'O''Brien'), (2, $$x$$), (3, $tag$it's$tag$)",
		"UPDATE customers SET full_name = 'x', note = 'y' WHERE ssn = 'z'",
		"SELECT id FROM customers WHERE ssn = '123' OR ssn IN ('4', '5')",
		"BEGIN; INSERT INTO customers (id, phone) VALUES (1, '555'); COMMIT",
		// Quotes that open no literal.
		"-- it's\nINSERT INTO customers (email) VALUES ('x')",
		"/* it's /* nested' */ */ INSERT INTO customers (email) VALUES ('x')",
		`SELECT 1 AS "it's"; INSERT INTO customers (email) VALUES ('x')`,
		`INSERT INTO customers (email, note) VALUES (E'it\'s', 'x')`,
		`INSERT INTO customers (email, note) VALUES (U&'d\0061t''a', $a$ $ $$ 'x' $a$)`,
		`INSERT INTO customers (email, note) VALUES ($1, 'x')`,
	} {
		if !sameAnalysis(t, pad(sql)) {
			t.Errorf("%.80q: its literals were not set aside", sql)
		}
	}
}

// TestElideKeepsMeaning: literals whose text matters to the plan, or that
// pgcloak's lexer could misplace, are not set aside (the whole text is
// analysed).
func TestElideKeepsMeaning(t *testing.T) {
	long := strings.Repeat("q", elideLiteral)
	for _, sql := range []string{
		// Code run by the server: its text is searched for protected names.
		"DO $$BEGIN INSERT INTO customers (email) VALUES ('x'); END" + long + "$$",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'INSERT INTO customers (email) VALUES (1)" + long + "'",
		// A setting's value.
		"SELECT set_config('search_path', 'public" + long + "', false); INSERT INTO customers (email) VALUES ('x')",
		// PREPARE keeps its text.
		"PREPARE p AS INSERT INTO customers (email) VALUES ('" + long + "')",
		// Adjacent strings continue one literal.
		"INSERT INTO customers (email) VALUES ('" + long + "'\n'tail')",
		"INSERT INTO customers (email) VALUES ('head' -- comment\n'" + long + "')",
	} {
		sql += "\n-- " + strings.Repeat("z", elideText)
		cat := newFakeCatalog()
		if an, ok := analyzeElided(sql, cat, cat.ProtectedNames(), defaultPath); ok {
			t.Errorf("%.100q: set aside: %v", sql, renderAll(sql, an))
		}
	}
}

// FuzzElide checks that any text, its string constants made long, analyses
// the same with them set aside as without.
func FuzzElide(f *testing.F) {
	for _, tt := range planTests {
		f.Add(tt.sql)
	}
	for _, tt := range refusalTests {
		f.Add(tt.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if strings.IndexByte(sql, 0) >= 0 {
			return
		}
		if p := pad(sql); p != "" {
			sameAnalysis(t, p)
		}
	})
}
