package sqlplan

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// render lists a statement's plan as lines a test can compare:
//
//	<sql[Start:End]> → <column> "<value>" | NULL
//	$n → <column>
//	join <column> = <column>
func render(sql string, st *Statement) []string {
	var out []string
	for _, e := range st.Edits {
		if e.Column == nil {
			if e.Value == "" && !e.Backstop {
				out = append(out, fmt.Sprintf("%s → %s", sql[e.Start:e.End], e.Verbatim)) // a cast made bytea
			}
			continue // a qualified name: see TestQualifyAmbiguous
		}
		v := fmt.Sprintf("%q", e.Value)
		if e.Null {
			v = "NULL"
		}
		out = append(out, fmt.Sprintf("%s → %s %s", sql[e.Start:e.End], e.Column, v))
	}
	var nums []int
	for n := range st.Params {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		out = append(out, fmt.Sprintf("$%d → %s", n, st.Params[n]))
	}
	for _, j := range st.Joins {
		out = append(out, fmt.Sprintf("join %s = %s", j[0], j[1]))
	}
	return out
}

func renderAll(sql string, a *Analysis) []string {
	var out []string
	if a == nil {
		return nil
	}
	for i := range a.Statements {
		out = append(out, render(sql, &a.Statements[i])...)
	}
	return out
}

// planTests are statements pgcloak plans, with the plan they get.
var planTests = []struct {
	name string
	sql  string
	path []string
	want []string
}{
	// INSERT: literal forms.
	{"insert string and E''", `INSERT INTO customers (id, email, phone) VALUES (1, 'a@b.c', E'it''s')`, nil, []string{
		`'a@b.c' → public.customers.email "a@b.c"`,
		`E'it''s' → public.customers.phone "it's"`,
	}},
	{"insert dollar-quoted", `INSERT INTO customers (full_name, note) VALUES ($$x$$, 'plain')`, nil, []string{
		`$$x$$ → public.customers.full_name "x"`,
	}},
	{"insert tagged dollar-quoted", `INSERT INTO customers (full_name) VALUES ($q$it's $$ here$q$)`, nil, []string{
		`$q$it's $$ here$q$ → public.customers.full_name "it's $$ here"`,
	}},
	{"insert Japanese", `INSERT INTO customers (full_name, email) VALUES ('山田太郎', 'ｶﾀｶﾅ')`, nil, []string{
		`'山田太郎' → public.customers.full_name "山田太郎"`,
		`'ｶﾀｶﾅ' → public.customers.email "ｶﾀｶﾅ"`,
	}},
	{"insert numbers", `INSERT INTO customers (credit_limit) VALUES (-42), (1.5e3), (- 7), (-1.5e3), (0x1F), (123456789012345678901234567890)`, nil, []string{
		`-42 → public.customers.credit_limit "-42"`,
		`1.5e3 → public.customers.credit_limit "1.5e3"`,
		`- 7 → public.customers.credit_limit "-7"`,
		`-1.5e3 → public.customers.credit_limit "-1.5e3"`,
		`0x1F → public.customers.credit_limit "31"`,
		`123456789012345678901234567890 → public.customers.credit_limit "123456789012345678901234567890"`,
	}},
	{"insert negative in parentheses", `INSERT INTO customers (credit_limit) VALUES (-(5)), (- -5), ((-5))`, nil, []string{
		`-(5) → public.customers.credit_limit "-5"`,
		`- -5 → public.customers.credit_limit "5"`,
		`-5 → public.customers.credit_limit "-5"`,
	}},
	{"insert typed literals", `INSERT INTO customers (birth_date, email, phone, full_name) VALUES (DATE '2024-01-01', 'x'::text, CAST('y' AS varchar(10)), N'n')`, nil, []string{
		`DATE '2024-01-01' → public.customers.birth_date "2024-01-01"`,
		`'x'::text → public.customers.email "x"`,
		`CAST('y' AS varchar(10)) → public.customers.phone "y"`,
		`N'n' → public.customers.full_name "n"`,
	}},
	{"insert casts with parentheses, nesting, comments, multi-word types", `INSERT INTO customers (email, phone, full_name, birth_date, credit_limit, note) VALUES (('x')::text, 'y'::text::varchar(3), 'z' /* c */ :: pg_catalog.text, '2024-01-01 10:00'::timestamp with time zone, -5::int, 'n'::text)`, nil, []string{
		`('x')::text → public.customers.email "x"`,
		`'y'::text::varchar(3) → public.customers.phone "y"`,
		`'z' /* c */ :: pg_catalog.text → public.customers.full_name "z"`,
		`'2024-01-01 10:00'::timestamp with time zone → public.customers.birth_date "2024-01-01 10:00"`,
		`-5::int → public.customers.credit_limit "-5"`,
	}},
	{"insert double precision and arrays of cast", `INSERT INTO customers (credit_limit, email) VALUES ('1.5'::double precision, '{a}'::text[])`, nil, []string{
		`'1.5'::double precision → public.customers.credit_limit "1.5"`,
		`'{a}'::text[] → public.customers.email "{a}"`,
	}},
	{"insert U& string, adjacent strings, booleans", "INSERT INTO customers (email, phone, vip) VALUES (U&'d\\0061t', 'a'\n'b', TRUE), (U&'d!0061t' UESCAPE '!', 'c', false)", nil, []string{
		`U&'d\0061t' → public.customers.email "dat"`,
		"'a'\n'b' → public.customers.phone \"ab\"",
		`TRUE → public.customers.vip "true"`,
		`U&'d!0061t' UESCAPE '!' → public.customers.email "dat"`,
		`'c' → public.customers.phone "c"`,
		`false → public.customers.vip "false"`,
	}},
	{"insert NULL and DEFAULT", `INSERT INTO customers (email, phone, full_name) VALUES (NULL, DEFAULT, NULL::text)`, nil, []string{
		`NULL → public.customers.email NULL`,
		`NULL::text → public.customers.full_name NULL`,
	}},
	{"insert without column list", `INSERT INTO customers VALUES (1, 'e', 'p', 'n', '123', '2000-01-01', 10, true, 'note')`, nil, []string{
		`'e' → public.customers.email "e"`,
		`'p' → public.customers.phone "p"`,
		`'n' → public.customers.full_name "n"`,
		`'123' → public.customers.ssn "123"`,
		`'2000-01-01' → public.customers.birth_date "2000-01-01"`,
		`10 → public.customers.credit_limit "10"`,
		`true → public.customers.vip "true"`,
	}},
	{"insert short row without column list", `INSERT INTO customers VALUES (1, 'e')`, nil, []string{
		`'e' → public.customers.email "e"`,
	}},
	{"insert parameters and RETURNING", `INSERT INTO customers (id, email, ssn) VALUES ($1, $2, $3) RETURNING id, email, *`, nil, []string{
		`$2 → public.customers.email`,
		`$3 → public.customers.ssn`,
	}},
	{"insert many rows of parameters", `INSERT INTO customers (email, note) VALUES ($1, $2), ($3, $4)`, nil, []string{
		`$1 → public.customers.email`,
		`$3 → public.customers.email`,
	}},
	{"insert same parameter into the same column twice", `INSERT INTO customers (email) VALUES ($1), ($1)`, nil, []string{
		`$1 → public.customers.email`,
	}},
	{"insert default values", `INSERT INTO customers DEFAULT VALUES`, nil, nil},
	{"insert … select literals and parameters", `INSERT INTO customers (id, email, phone) SELECT o.id, 'x', $1 FROM orders o`, nil, []string{
		`'x' → public.customers.email "x"`,
		`$1 → public.customers.phone`,
	}},
	{"insert … select the same column", `INSERT INTO customers (id, email) SELECT id + 1000, email FROM customers WHERE id < 10`, nil, nil},
	{"insert … select into unprotected columns only", `INSERT INTO customers (id, note) SELECT id, note FROM orders`, nil, nil},

	// Names: schemas, search_path, quoting.
	{"schema-qualified", `INSERT INTO app.customers (email) VALUES ('x')`, nil, []string{
		`'x' → app.customers.email "x"`,
	}},
	{"search_path picks app", `INSERT INTO customers (email) VALUES ('x')`, []string{"app", "public"}, []string{
		`'x' → app.customers.email "x"`,
	}},
	{"quoted identifiers are case-sensitive", `INSERT INTO "Customers" ("Email") VALUES ('x'); INSERT INTO Customers (Email) VALUES ('y')`, nil, []string{
		`'x' → public.Customers.Email "x"`,
		`'y' → public.customers.email "y"`,
	}},
	{"quoted lower-case name", `INSERT INTO "public"."customers" ("email") VALUES ('x')`, nil, []string{
		`'x' → public.customers.email "x"`,
	}},
	{"catalog-qualified", `INSERT INTO postgres.public.customers (email) VALUES ('x')`, nil, []string{
		`'x' → public.customers.email "x"`,
	}},
	{"unicode identifier", `INSERT INTO U&"cust\006Fmers" (email) VALUES ('x')`, nil, []string{
		`'x' → public.customers.email "x"`,
	}},
	{"multi-statement offsets", "SELECT 1; INSERT INTO customers (email) VALUES ('a');\nUPDATE customers SET phone = 'b' WHERE id = 1", nil, []string{
		`'a' → public.customers.email "a"`,
		`'b' → public.customers.phone "b"`,
	}},
	{"SET search_path applies to the rest of the text", `SET search_path = app; INSERT INTO customers (email) VALUES ('x')`, nil, []string{
		`'x' → app.customers.email "x"`,
	}},
	{"set_config applies to the rest of the text", `SELECT set_config('search_path', 'App, "app"', false); INSERT INTO customers (email) VALUES ('x')`, nil, []string{
		`'x' → app.customers.email "x"`,
	}},

	// UPDATE.
	{"update literal, parameter, NULL, DEFAULT", `UPDATE customers SET email = 'x', phone = $1, full_name = NULL, credit_limit = DEFAULT WHERE id = $2`, nil, []string{
		`'x' → public.customers.email "x"`,
		`NULL → public.customers.full_name NULL`,
		`$1 → public.customers.phone`,
	}},
	{"update multi-assignment", `UPDATE customers SET (email, phone, note) = ('a', $1, 'n') WHERE id = 1`, nil, []string{
		`'a' → public.customers.email "a"`,
		`$1 → public.customers.phone`,
	}},
	{"update with CASE of literals, cast (Django bulk_update)", `UPDATE customers SET phone = CAST(CASE WHEN (customers.id = 2) THEN '+1 555' WHEN (customers.id = 5) THEN '+1 556' ELSE NULL END AS varchar(32)) WHERE customers.id IN (2, 5)`, nil, []string{
		`'+1 555' → public.customers.phone "+1 555"`,
		`'+1 556' → public.customers.phone "+1 556"`,
		`NULL → public.customers.phone NULL`,
		`varchar(32) → bytea`,
	}},
	{"update with CASE of literals, ::", `UPDATE customers SET phone = (CASE WHEN id = 2 THEN 'a' END)::character varying(32)`, nil, []string{
		`'a' → public.customers.phone "a"`,
		`character varying(32) → bytea`,
	}},
	{"update with alias and own column", `UPDATE customers AS c SET email = c.email, phone = phone WHERE c.id = 1`, nil, nil},
	{"update where deterministic", `UPDATE customers SET note = 'x' WHERE ssn = '123-45-6789'`, nil, []string{
		`'123-45-6789' → public.customers.ssn "123-45-6789"`,
	}},
	{"update from another table", `UPDATE customers c SET email = 'e' FROM orders o WHERE o.customer_id = c.id AND o.total > 10`, nil, []string{
		`'e' → public.customers.email "e"`,
	}},

	// ON CONFLICT.
	{"on conflict do update with EXCLUDED", `INSERT INTO customers (id, email, ssn) VALUES (1, 'a', 's') ON CONFLICT (ssn) DO UPDATE SET email = EXCLUDED.email, phone = 'p', full_name = customers.full_name RETURNING *`, nil, []string{
		`'a' → public.customers.email "a"`,
		`'s' → public.customers.ssn "s"`,
		`'p' → public.customers.phone "p"`,
	}},
	{"on conflict with alias and where", `INSERT INTO customers AS c (id, ssn) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET ssn = excluded.ssn WHERE c.ssn IS DISTINCT FROM excluded.ssn`, nil, []string{
		`$1 → public.customers.ssn`,
	}},
	{"on conflict do nothing", `INSERT INTO customers (email) VALUES ($1) ON CONFLICT DO NOTHING`, nil, []string{
		`$1 → public.customers.email`,
	}},

	// Deterministic search.
	{"det equality literal", `SELECT * FROM customers WHERE ssn = '123'`, nil, []string{`'123' → public.customers.ssn "123"`}},
	{"det literal on the left", `SELECT * FROM customers WHERE '123' = ssn`, nil, []string{`'123' → public.customers.ssn "123"`}},
	{"det not equal parameter", `SELECT * FROM customers WHERE ssn <> $1 AND id > $2`, nil, []string{`$1 → public.customers.ssn`}},
	{"det IN list", `SELECT * FROM customers WHERE ssn IN ('a', $1, NULL) OR ssn NOT IN ('b')`, nil, []string{
		`'a' → public.customers.ssn "a"`,
		`NULL → public.customers.ssn NULL`,
		`'b' → public.customers.ssn "b"`,
		`$1 → public.customers.ssn`,
	}},
	{"IS NULL on any column", `SELECT id FROM customers WHERE ssn IS NOT NULL AND email IS NULL AND vip IS NULL`, nil, nil},
	{"det IS DISTINCT FROM", `SELECT id FROM customers WHERE ssn IS NOT DISTINCT FROM 'x'`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"det row comparison", `SELECT id FROM customers WHERE (ssn, id) = ('x', 1)`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"det join between tables", `SELECT c.id FROM customers c JOIN app.customers a ON c.ssn = a.ssn WHERE a.ssn = 'x'`, nil, []string{
		`'x' → app.customers.ssn "x"`,
		`join public.customers.ssn = app.customers.ssn`,
	}},
	{"det join USING", `SELECT c.id FROM customers c JOIN app.customers a USING (ssn)`, nil, []string{
		`join public.customers.ssn = app.customers.ssn`,
	}},
	{"det self join", `SELECT a.id FROM customers a, customers b WHERE a.ssn = b.ssn`, nil, nil},
	{"det IN subquery", `SELECT id FROM customers WHERE ssn IN (SELECT ssn FROM app.customers WHERE id = 1)`, nil, []string{
		`join public.customers.ssn = app.customers.ssn`,
	}},
	{"det GROUP BY, DISTINCT, count", `SELECT ssn, count(*), count(email), count(DISTINCT ssn) FROM customers GROUP BY ssn HAVING count(*) > 1`, nil, nil},
	{"det DISTINCT and DISTINCT ON", `SELECT DISTINCT ssn FROM customers; SELECT DISTINCT ON (ssn) ssn, id FROM customers`, nil, nil},
	{"det GROUP BY position", `SELECT ssn, count(*) FROM customers GROUP BY 1`, nil, nil},
	{"materialized view without protected output", `CREATE MATERIALIZED VIEW m AS SELECT id FROM customers WHERE email IS NOT NULL`, nil, nil},
	{"det PARTITION BY", `SELECT id, rank() OVER (PARTITION BY ssn ORDER BY id) FROM customers`, nil, nil},
	{"det delete", `DELETE FROM customers WHERE ssn = 'x' RETURNING email`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"det in FROM subquery", `SELECT s.email FROM (SELECT id, ssn, email FROM customers) s WHERE s.ssn = 'x'`, nil, []string{
		`'x' → public.customers.ssn "x"`,
	}},
	{"det through star subquery", `SELECT * FROM (SELECT * FROM customers) s WHERE ssn = 'x'`, nil, []string{
		`'x' → public.customers.ssn "x"`,
	}},
	{"det in CTE", `WITH c AS (SELECT ssn FROM customers) SELECT * FROM c WHERE ssn = 'x'`, nil, []string{
		`'x' → public.customers.ssn "x"`,
	}},
	{"CTE shadows the table", `WITH customers AS (SELECT 'a' AS email) SELECT * FROM customers WHERE email = 'x'`, nil, nil},
	{"det correlated subquery", `SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id AND c.ssn = 'x')`, nil, []string{
		`'x' → public.customers.ssn "x"`,
	}},
	{"det outer reference from subquery", `SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id AND customers.ssn = $1)`, nil, []string{
		`$1 → public.customers.ssn`,
	}},
	{"det CASE x WHEN", `SELECT CASE ssn WHEN 'x' THEN 1 ELSE 0 END FROM customers`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"det comparison in select list", `SELECT ssn = 'x' AS hit FROM customers`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"literal touching the next word", `SELECT CASE ssn WHEN'x'THEN 0 END FROM customers`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"literal in parentheses", `SELECT * FROM customers WHERE ssn = (('x'))`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"typed literal in comparison", `SELECT * FROM customers WHERE ssn = CAST('x' AS text) OR ssn = 'y'::varchar(9)`, nil, []string{
		`CAST('x' AS text) → public.customers.ssn "x"`,
		`'y'::varchar(9) → public.customers.ssn "y"`,
	}},
	{"explain", `EXPLAIN SELECT * FROM customers WHERE ssn = 'x'`, nil, []string{`'x' → public.customers.ssn "x"`}},
	{"cursor", `DECLARE c CURSOR FOR SELECT email FROM customers WHERE ssn = $1`, nil, []string{`$1 → public.customers.ssn`}},
	{"data-modifying CTE", `WITH ins AS (INSERT INTO customers (email) VALUES ('x') RETURNING id, email) SELECT * FROM ins`, nil, []string{
		`'x' → public.customers.email "x"`,
	}},
	{"unprotected table with a protected subquery", `UPDATE orders SET note = 'x' WHERE customer_id IN (SELECT id FROM customers WHERE ssn = '1')`, nil, []string{
		`'1' → public.customers.ssn "1"`,
	}},

	// Reads: plain selection is the row codec's job, nothing to plan.
	{"plain select list", `SELECT c.email, customers.phone, c.ssn, c.* FROM customers c, customers WHERE c.id = customers.id`, nil, nil},
	{"lateral subquery", `SELECT o.id, x.email FROM orders o, LATERAL (SELECT email FROM customers c WHERE c.id = o.customer_id) x`, nil, nil},
	{"scalar subquery of unprotected value", `SELECT (SELECT count(*) FROM customers), (SELECT max(id) FROM customers)`, nil, nil},
	{"union of unprotected columns", `SELECT id FROM customers UNION SELECT id FROM orders`, nil, nil},
	{"order by unprotected", `SELECT email, id FROM customers ORDER BY id, 2`, nil, nil},

	// Unprotected statements.
	{"name in a string only", `SELECT o.note FROM orders o WHERE o.note = 'customers'`, nil, nil},
	{"unprotected update", `UPDATE orders SET note = 'customers' WHERE id = $1`, nil, nil},
}

func TestPlans(t *testing.T) {
	for _, tt := range planTests {
		t.Run(tt.name, func(t *testing.T) {
			an, err := mustAnalyze(t, tt.sql, tt.path...)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got := renderAll(tt.sql, an); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan of %s\n got: %q\nwant: %q", tt.sql, got, tt.want)
			}
			checkRewrite(t, tt.sql, an)
		})
	}
}

// checkRewrite replaces every edit as the session would and checks the
// result still parses into the same number of statements: the ranges cover
// whole expressions.
func checkRewrite(t *testing.T, sql string, an *Analysis) {
	t.Helper()
	if an == nil {
		return
	}
	var b strings.Builder
	last := 0
	for i := range an.Statements {
		for _, e := range an.Statements[i].Edits {
			if e.Start < last || e.End < e.Start || e.End == e.Start && e.Verbatim == "" || e.End > len(sql) {
				t.Fatalf("bad edit range [%d:%d) after %d in %q", e.Start, e.End, last, sql)
			}
			b.WriteString(sql[last:e.Start])
			if e.Verbatim != "" {
				b.WriteString(e.Verbatim)
				if e.Backstop {
					b.WriteString("CONSTRAINT x CHECK (true)")
				}
				last = e.End
				continue
			}
			if e.Null {
				b.WriteString("NULL")
			} else {
				b.WriteString(`'\x00'::bytea`)
			}
			if SpaceAfter(sql, e) {
				b.WriteByte(' ')
			}
			last = e.End
		}
	}
	b.WriteString(sql[last:])
	tree, err := pg.Parse(b.String())
	if err != nil {
		t.Fatalf("rewritten SQL does not parse: %v\n%s", err, b.String())
	}
	if len(tree.Stmts) != len(an.Statements) {
		t.Fatalf("rewritten SQL has %d statements, want %d", len(tree.Stmts), len(an.Statements))
	}
}

// TestQualifyAmbiguous: an unqualified name that several schemas hold is
// qualified with the schema pgcloak planned for, in every statement kind;
// one schema's name is left as written.
func TestQualifyAmbiguous(t *testing.T) {
	for _, tt := range []struct {
		sql, want string
		path      []string
	}{
		{`INSERT INTO customers (email) VALUES ('x')`, `INSERT INTO public.customers (email) VALUES ('x')`, nil},
		{`INSERT INTO customers (email) VALUES ('x')`, `INSERT INTO app.customers (email) VALUES ('x')`, []string{"app", "public"}},
		{`SELECT id FROM "customers" c WHERE ssn = $1`, `SELECT id FROM public."customers" c WHERE ssn = $1`, nil},
		{`UPDATE customers SET email = NULL; DELETE FROM customers`, `UPDATE public.customers SET email = NULL; DELETE FROM public.customers`, nil},
		{`SELECT o.id FROM orders o`, `SELECT o.id FROM orders o`, nil},
		{`INSERT INTO app.customers (email) VALUES ('x')`, `INSERT INTO app.customers (email) VALUES ('x')`, nil},
	} {
		an, err := mustAnalyze(t, tt.sql, tt.path...)
		if err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		var b strings.Builder
		last := 0
		if an != nil {
			for i := range an.Statements {
				for _, e := range an.Statements[i].Edits {
					if e.Column == nil {
						b.WriteString(tt.sql[last:e.Start] + e.Verbatim)
						last = e.End
					}
				}
			}
		}
		if got := b.String() + tt.sql[last:]; got != tt.want {
			t.Errorf("%s (path %v):\n got %s\nwant %s", tt.sql, tt.path, got, tt.want)
		}
	}
}

func TestUntouched(t *testing.T) {
	for _, sql := range []string{
		`SELECT abalance FROM pgbench_accounts WHERE aid = $1`,
		`UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2`,
		`SELECT * FROM orders WHERE note = 'x'`,
		`SELECT email FROM orders`, // email is a column name, not a protected table
		`INSERT INTO customers_archive (email) VALUES ('x')`,
		``,
		`;`,
	} {
		an, err := mustAnalyze(t, sql)
		if an != nil || err != nil {
			t.Errorf("%q: got %+v, %v; want nil, nil", sql, an, err)
		}
		if an, err := Analyze(sql, newFakeCatalog(), nil); an != nil || err != nil {
			t.Errorf("Analyze(%q): got %+v, %v; want nil, nil", sql, an, err)
		}
	}
}

func TestUnparseable(t *testing.T) {
	an, err := mustAnalyze(t, `SELEC * FROM orders WHERE search_path = 1`)
	if an != nil || err != nil {
		t.Errorf("no protected name: got %+v, %v; want nil, nil", an, err)
	}
	an, err = mustAnalyze(t, `SELECT id FROM customers_archive WHERE`)
	if an != nil || err != nil {
		t.Errorf("protected name only as part of a word: got %+v, %v; want nil, nil", an, err)
	}
	_, err = mustAnalyze(t, `INSERT INTO Customers (email) VALUES ('x'`)
	var r *Refusal
	if !asRefusal(err, &r) || r.Code != CodeSyntaxError || r.Column != "customers" || !strings.Contains(r.Reason, "syntax error at end of input") {
		t.Errorf("got %v; want 42601 naming customers", err)
	}
}

func asRefusal(err error, r **Refusal) bool {
	x, ok := err.(*Refusal)
	*r = x
	return ok
}

// effectStrings renders a statement's effects compactly.
func effectStrings(st Statement) []string {
	var out []string
	for _, e := range st.Effects {
		k := map[EffectKind]string{EffectSet: "set", EffectSetLocal: "setlocal", EffectReset: "reset", EffectResetAll: "resetall",
			EffectUnknownSet: "unknown", EffectBegin: "begin", EffectCommit: "commit", EffectRollback: "rollback",
			EffectSavepoint: "savepoint", EffectRelease: "release", EffectRollbackTo: "rollbackto", EffectPrepare: "prepare",
			EffectDeallocate: "deallocate", EffectDeallocateAll: "deallocateall"}[e.Kind]
		if e.Name != "" {
			k += " " + e.Name
		}
		if e.Value != "" {
			k += "=" + e.Value
		}
		out = append(out, k)
	}
	return out
}

func TestSessionState(t *testing.T) {
	tests := []struct {
		sql     string
		effects [][]string // per statement
		check   func(t *testing.T, sts []Statement)
	}{
		{sql: `SET search_path TO app, public`, effects: [][]string{{"set search_path=app, public"}}},
		{sql: `SET LOCAL search_path = "App", 'b, c'`, effects: [][]string{{`setlocal search_path="App", "b, c"`}}},
		{sql: `SET SCHEMA 'app'`, effects: [][]string{{"set search_path=app"}}},
		{sql: `SET search_path = ''`, effects: [][]string{{`set search_path=""`}}},
		{sql: `RESET search_path`, effects: [][]string{{"reset search_path"}}},
		{sql: `SET search_path TO DEFAULT`, effects: [][]string{{"reset search_path"}}},
		{sql: `RESET ALL`, effects: [][]string{{"resetall"}}},
		// Transaction control is planned for its effects (the settings'
		// levels), though it names no table.
		{sql: `BEGIN; SELECT 1; /* c */ COMMIT`, effects: [][]string{{"begin"}, nil, {"commit"}}},
		{sql: `SET extra_float_digits = 3; SET bytea_output TO 'escape'; SET DateStyle = 'SQL, DMY'; SET TIME ZONE 'UTC'; SET work_mem = '1MB'`,
			effects: [][]string{{"set extra_float_digits=3"}, {"set bytea_output=escape"}, {"set datestyle=SQL, DMY"}, {"set timezone=UTC"}, nil}},
		{sql: `SELECT pg_catalog.set_config('search_path', ' App , "B" ', true)`, effects: [][]string{{`setlocal search_path= App , "B" `}}},
		{sql: `SELECT set_config('search_path', 'app', false) FROM customers`, effects: [][]string{{"unknown search_path"}}},
		{sql: `SELECT CASE WHEN false THEN set_config('search_path', 'app', false) END`, effects: [][]string{{"unknown search_path"}}},
		{sql: `SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'`, effects: [][]string{{"unknown"}}},
		{sql: `DISCARD ALL`, effects: [][]string{{"deallocateall", "resetall"}}},
		{sql: `DEALLOCATE p1; DEALLOCATE PREPARE p2; DEALLOCATE ALL`, effects: [][]string{{"deallocate p1"}, {"deallocate p2"}, {"deallocateall"}}},
		{sql: `BEGIN; SAVEPOINT a; RELEASE a; ROLLBACK TO SAVEPOINT a; COMMIT AND CHAIN; ROLLBACK; START TRANSACTION; END; PREPARE TRANSACTION 'x'`,
			effects: [][]string{{"begin"}, {"savepoint a"}, {"release a"}, {"rollbackto a"}, {"commit", "begin"}, {"rollback"}, {"begin"}, {"commit"}, {"commit"}}},
		{sql: `PREPARE ins (int) AS INSERT INTO customers (id, email, ssn) VALUES ($1, $2, '1-2')`, effects: [][]string{{"prepare ins"}},
			check: func(t *testing.T, s []Statement) {
				p := s[0].Effects[0].Statement
				if s[0].Kind != "PREPARE" || p == nil || p.Kind != "INSERT" {
					t.Fatalf("Prepare = %+v", p)
				}
				if len(p.Params) != 1 || p.Params[2].String() != "public.customers.email" {
					t.Errorf("inner params = %v", p.Params)
				}
				if len(s[0].Params) != 0 || len(p.Edits) != 0 {
					t.Errorf("PREPARE's own params %v, inner edits %v", s[0].Params, p.Edits)
				}
				if got := render(`PREPARE ins (int) AS INSERT INTO customers (id, email, ssn) VALUES ($1, $2, '1-2')`, &s[0]); len(got) != 1 || got[0] != `'1-2' → public.customers.ssn "1-2"` {
					t.Errorf("PREPARE edits = %q", got)
				}
			}},
		{sql: `PREPARE q(bytea) AS SELECT id FROM customers WHERE ssn = $1`, effects: [][]string{{"prepare q"}}, check: func(t *testing.T, s []Statement) {
			if s[0].Effects[0].Statement.Params[1].String() != "public.customers.ssn" {
				t.Errorf("params = %v", s[0].Effects[0].Statement.Params)
			}
		}},
		{sql: `EXECUTE ins(1, 'a@b', NULL, DATE '2024-01-01', -5, lower('X'))`, effects: [][]string{nil}, check: func(t *testing.T, s []Statement) {
			const sql = `EXECUTE ins(1, 'a@b', NULL, DATE '2024-01-01', -5, lower('X'))`
			ex := s[0].Execute
			if s[0].Kind != "EXECUTE" || ex == nil || ex.Name != "ins" || len(ex.Args) != 6 {
				t.Fatalf("Execute = %+v", ex)
			}
			want := []string{`1 "1"`, `'a@b' "a@b"`, `NULL NULL`, `DATE '2024-01-01' "2024-01-01"`, `-5 "-5"`, `computed`}
			for i, w := range want {
				a := ex.Args[i]
				got := "computed"
				if a.Literal {
					got = fmt.Sprintf("%s %q", sql[a.Start:a.End], a.Value)
					if a.Null {
						got = sql[a.Start:a.End] + " NULL"
					}
				}
				if got != w {
					t.Errorf("arg %d: %s, want %s", i+1, got, w)
				}
			}
		}},
		{sql: `EXPLAIN ANALYZE EXECUTE ins('x')`, effects: [][]string{nil}, check: func(t *testing.T, s []Statement) {
			if s[0].Kind != "EXPLAIN" || s[0].Execute == nil || !s[0].Execute.Args[0].Literal {
				t.Errorf("got %+v", s[0])
			}
		}},
		{sql: `PREPARE p AS INSERT INTO customers (email) VALUES ($1); EXECUTE p('x')`, effects: [][]string{{"prepare p"}, nil}, check: func(t *testing.T, s []Statement) {
			if s[0].Effects[0].Statement.Params[1] == nil || s[1].Execute == nil {
				t.Errorf("got %+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			an, err := mustAnalyze(t, tt.sql)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if an == nil {
				t.Fatal("no analysis")
			}
			for i, want := range tt.effects {
				if got := effectStrings(an.Statements[i]); !reflect.DeepEqual(got, want) {
					t.Errorf("statement %d effects %q, want %q", i+1, got, want)
				}
			}
			if tt.check != nil {
				tt.check(t, an.Statements)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	const sql = `SELECT 1 FROM customers; INSERT INTO customers (id) VALUES (1); UPDATE customers SET id = 2; DELETE FROM customers; TRUNCATE customers; CREATE INDEX ON customers (ssn)`
	an, err := mustAnalyze(t, sql)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range an.Statements {
		kinds = append(kinds, s.Kind)
	}
	if want := []string{"SELECT", "INSERT", "UPDATE", "DELETE", "OTHER", "OTHER"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %q, want %q", kinds, want)
	}
}

// TestPanicIsRefusal checks the public entry point turns an analyzer panic
// into a refusal rather than taking the session down or letting the text
// through.
func TestPanicIsRefusal(t *testing.T) {
	an, err := Analyze(`SELECT * FROM customers`, panicCatalog{newFakeCatalog()}, nil)
	var r *Refusal
	if an != nil || !asRefusal(err, &r) || r.Code != CodeInternalError {
		t.Errorf("got %v, %v; want an XX000 refusal", an, err)
	}
}

type panicCatalog struct{ *fakeCatalog }

func (panicCatalog) Resolve(string, []string) (string, bool) { panic("boom") }

func TestPrefilter(t *testing.T) {
	names := []string{"customers", "My Table"}
	for sql, want := range map[string]bool{
		`select 1`:                            false,
		`SELECT * FROM CUSTOMERS`:             true,
		`SELECT * FROM "customers"`:           true,
		`SELECT * FROM customers_archive`:     false,
		`SELECT * FROM "My Table"`:            true,
		`DO $$ BEGIN UPDATE customers$$`:      true,
		`DO E'INSERT INTO\ncustomer'`:         true, // DO is always parsed
		`SELECT * FROM customers$1`:           true, // another name; parsing it is harmless
		`SELECT * FROM U&"\0063ustomers"`:     true,
		`select * from t where a & b`:         false,
		`SET search_path = x`:                 true,
		`RESET ALL`:                           true,
		`DISCARD ALL`:                         true,
		`EXECUTE p(1)`:                        true,
		`DEALLOCATE p`:                        true,
		`SET SCHEMA 'x'`:                      true,
		`SET standard_conforming_strings=off`: true,
		`SELECT abalance FROM pgbench_accounts WHERE aid = $1`: false,
	} {
		if got := mayMatter(sql, names); got != want {
			t.Errorf("mayMatter(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestSplitIdentifiers(t *testing.T) {
	for in, want := range map[string][]string{
		`a, b`:                {"a", "b"},
		` App ,"B c", "d""e"`: {"app", "B c", `d"e`},
		`"$user", public`:     {"$user", "public"},
		``:                    {},
	} {
		got, ok := splitIdentifiers(in)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("splitIdentifiers(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{`a,`, `"a`, `a b`, `""`} {
		if _, ok := splitIdentifiers(bad); ok {
			t.Errorf("splitIdentifiers(%q) accepted", bad)
		}
	}
}

// TestAnalysisKeepsNoReferenceToText: the engine passes a text that aliases
// the message it read, which is reused afterwards; what the Analysis keeps
// (the text of a PREPARE, literal values) survives the text's bytes being
// overwritten.
func TestAnalysisKeepsNoReferenceToText(t *testing.T) {
	buf := []byte(`PREPARE ins AS INSERT INTO customers (id, email) VALUES ($1, 'kept@example.org')`)
	sql := unsafe.String(&buf[0], len(buf))
	an, err := Analyze(sql, newFakeCatalog(), nil)
	if err != nil || an == nil {
		t.Fatal(an, err)
	}
	want := string(buf)
	for i := range buf {
		buf[i] = '#'
	}
	e := an.Statements[0].Effects[0]
	if e.Text != want {
		t.Errorf("PREPARE text %q after the buffer was overwritten, want %q", e.Text, want)
	}
	for _, e := range an.Statements[0].Edits {
		if strings.Contains(e.Value+e.Verbatim, "#") {
			t.Errorf("edit %+v after the buffer was overwritten", e)
		}
	}
}
