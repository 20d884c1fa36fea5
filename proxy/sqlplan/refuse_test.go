package sqlplan

import (
	"errors"
	"strings"
	"testing"
)

// refusalTests are statements pgcloak refuses, with the refusal.
var refusalTests = []struct {
	name string
	sql  string
	// want is "<op> | <column> | <substring of the reason>"; the code is
	// 0A000 unless the test says otherwise.
	want string
	code string
}{
	// Values the server would compute.
	{"insert … select from unprotected", `INSERT INTO customers (email) SELECT note FROM orders`,
		"store into | public.customers.email | computed by the server (a column reference)", ""},
	{"insert function", `INSERT INTO customers (email) VALUES (lower('X'))`,
		"store into | public.customers.email | (function lower())", ""},
	{"insert operator", `INSERT INTO customers (email, phone) VALUES ('a', 'a' || 'b')`,
		"store into | public.customers.phone | (operator ||)", ""},
	{"insert scalar subquery", `INSERT INTO customers (email) VALUES ((SELECT note FROM orders LIMIT 1))`,
		"store into | public.customers.email | (a subquery)", ""},
	{"insert CASE of a computed value", `INSERT INTO customers (email) VALUES (CASE WHEN true THEN lower('a') END)`,
		"store into | public.customers.email | a result of the CASE expression is computed by the server (function lower())", ""},
	{"LIKE on a cast column (Django startswith)", `SELECT id FROM customers WHERE full_name::text LIKE 'A%'`,
		"match | public.customers.full_name | LIKE, ILIKE and SIMILAR TO", ""},
	{"CASE of a parameter", `UPDATE customers SET email = CASE WHEN id = 1 THEN $1 END`,
		"store into | public.customers.email | a result of the CASE expression is computed by the server", ""},
	{"CASE with an operand", `UPDATE customers SET email = CASE id WHEN 1 THEN 'a' END`,
		"store into | public.customers.email | a CASE with an operand", ""},
	{"CASE on a protected column's ciphertext", `UPDATE customers SET email = CASE WHEN id = 1 THEN phone END`,
		"store into | public.customers.email | computed by the server (a column reference)", ""},
	{"CASE condition on a randomized column", `UPDATE customers SET email = CASE WHEN full_name = 'x' THEN 'a' END`,
		"compare | public.customers.full_name | randomized", ""},
	{"insert cast of a function", `INSERT INTO customers (birth_date) VALUES (now()::date)`,
		"store into | public.customers.birth_date | (a cast of function now())", ""},
	{"insert without column list, computed", `INSERT INTO customers VALUES (1, concat('a', 'b'))`,
		"store into | public.customers.email | (function concat())", ""},
	{"CTE write from select", `WITH src AS (SELECT 'x' AS e) INSERT INTO customers (email) SELECT e FROM src`,
		"store into | public.customers.email | computed by the server", ""},
	{"insert … select union", `INSERT INTO customers (email) SELECT 'a' UNION SELECT 'b'`,
		"store into | public.customers.email | UNION, INTERSECT or EXCEPT", ""},
	{"insert … select *", `INSERT INTO customers (id, email) SELECT * FROM orders`,
		"store into | public.customers.email | with *", ""},
	{"insert … select another protected column", `INSERT INTO customers (email) SELECT phone FROM customers`,
		"store into | public.customers.email | ciphertext of public.customers.phone", ""},
	{"insert … select protected into unprotected", `INSERT INTO orders (note) SELECT email FROM customers`,
		"copy | public.customers.email | INSERT … SELECT", ""},
	{"insert cast parameter", `INSERT INTO customers (email) VALUES ($1::text)`,
		"store into | public.customers.email | remove the cast on $1", ""},
	{"insert bit string", `INSERT INTO customers (email) VALUES (B'101')`,
		"store into | public.customers.email | bit-string literals", ""},
	{"insert into a field", `INSERT INTO customers (email[1]) VALUES ('x')`,
		"store into | public.customers.email | field or element", ""},
	{"update function over column", `UPDATE customers SET email = upper(email)`,
		"store into | public.customers.email | (function upper())", ""},
	{"update from another protected column", `UPDATE customers SET email = phone`,
		"store into | public.customers.email | ciphertext of public.customers.phone", ""},
	{"update from subquery", `UPDATE customers SET (email, note) = (SELECT note, note FROM orders LIMIT 1)`,
		"store into | public.customers.email | subquery", ""},
	{"update protected into unprotected", `UPDATE customers SET note = email`,
		"copy | public.customers.email | assigning it to public.customers.note", ""},
	{"on conflict EXCLUDED other column", `INSERT INTO customers (id, email, phone) VALUES (1, 'a', 'b') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.phone`,
		"store into | public.customers.email | ciphertext of public.customers.phone", ""},
	{"on conflict computed", `INSERT INTO customers (id, email) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email || 'x'`,
		"store into | public.customers.email | (operator ||)", ""},

	// Comparisons.
	{"randomized equality", `SELECT * FROM customers WHERE email = 'x'`,
		"compare | public.customers.email | randomized encryption", ""},
	{"randomized IN", `SELECT * FROM customers WHERE email IN ('a')`,
		"compare | public.customers.email | randomized encryption", ""},
	{"randomized join", `SELECT * FROM customers c JOIN app.customers a ON c.email = a.email`,
		"compare | public.customers.email | randomized encryption", ""},
	{"deterministic with randomized", `SELECT * FROM customers c JOIN app.customers a ON c.ssn = a.email`,
		"compare | app.customers.email | randomized encryption", ""},
	{"deterministic with unprotected column", `SELECT * FROM customers c JOIN orders o ON c.ssn = o.note`,
		"compare | public.customers.ssn | unprotected column", ""},
	{"deterministic with function", `SELECT * FROM customers WHERE ssn = lower('X')`,
		"compare | public.customers.ssn | value the server computes", ""},
	{"deterministic range", `SELECT * FROM customers WHERE ssn < '5'`,
		"compare | public.customers.ssn | no order: < cannot be evaluated", ""},
	{"BETWEEN", `SELECT * FROM customers WHERE ssn BETWEEN 'a' AND 'b'`,
		"compare | public.customers.ssn | no order (BETWEEN)", ""},
	{"LIKE", `SELECT * FROM customers WHERE email LIKE '%x'`,
		"match | public.customers.email | LIKE", ""},
	{"ILIKE on deterministic", `SELECT * FROM customers WHERE ssn ILIKE 'x%'`,
		"match | public.customers.ssn | LIKE", ""},
	{"SIMILAR TO", `SELECT * FROM customers WHERE ssn SIMILAR TO 'x%'`,
		"match | public.customers.ssn | SIMILAR TO", ""},
	{"= ANY array", `SELECT * FROM customers WHERE ssn = ANY($1)`,
		"compare | public.customers.ssn | use IN", ""},
	{"HAVING comparison", `SELECT ssn FROM customers GROUP BY ssn HAVING max(email) = 'x'`,
		"apply max() to | public.customers.email | functions", ""},
	{"comparison in a subquery", `SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE phone = $1)`,
		"compare | public.customers.phone | randomized", ""},
	{"comparison in a CTE", `WITH x AS (SELECT id FROM customers WHERE full_name <> 'x') SELECT * FROM x`,
		"compare | public.customers.full_name | randomized", ""},
	{"IN subquery unprotected output", `SELECT id FROM customers WHERE ssn IN (SELECT note FROM orders)`,
		"compare | public.customers.ssn | unprotected column", ""},
	{"literal both encrypted and plain", `SELECT id FROM customers WHERE 'x' IN (ssn, note)`,
		"compare |  | both encrypted and plain", ""},
	{"boolean use", `SELECT id FROM customers WHERE vip`,
		"use | public.customers.vip | condition", ""},
	{"IS TRUE", `SELECT id FROM customers WHERE vip IS TRUE`,
		"test | public.customers.vip | IS TRUE", ""},

	// Ordering and grouping.
	{"ORDER BY deterministic", `SELECT * FROM customers ORDER BY ssn`,
		"order by | public.customers.ssn | no order", ""},
	{"ORDER BY position", `SELECT email FROM customers ORDER BY 1`,
		"order by | public.customers.email | no order", ""},
	{"ORDER BY alias", `SELECT email AS e FROM customers ORDER BY e DESC`,
		"order by | public.customers.email | no order", ""},
	{"GROUP BY randomized", `SELECT email, count(*) FROM customers GROUP BY email`,
		"group by | public.customers.email | groups would be wrong", ""},
	{"GROUP BY ROLLUP randomized", `SELECT count(*) FROM customers GROUP BY ROLLUP (ssn, phone)`,
		"group by | public.customers.phone | groups would be wrong", ""},
	{"DISTINCT randomized", `SELECT DISTINCT email FROM customers`,
		"select distinct | public.customers.email | groups would be wrong", ""},
	{"DISTINCT *", `SELECT DISTINCT * FROM customers`,
		"select distinct | public.customers.email | groups would be wrong", ""},
	{"count DISTINCT randomized", `SELECT count(DISTINCT email) FROM customers`,
		"count distinct | public.customers.email | groups would be wrong", ""},
	{"PARTITION BY randomized", `SELECT rank() OVER (PARTITION BY email) FROM customers`,
		"partition by | public.customers.email | groups would be wrong", ""},
	{"window ORDER BY", `SELECT rank() OVER (ORDER BY ssn) FROM customers`,
		"order by | public.customers.ssn | no order", ""},
	{"named window", `SELECT rank() OVER w FROM customers WINDOW w AS (ORDER BY birth_date)`,
		"order by | public.customers.birth_date | no order", ""},
	{"aggregate ORDER BY", `SELECT string_agg(note, ',' ORDER BY email) FROM customers`,
		"order by | public.customers.email | no order", ""},

	// Functions and expressions in select lists.
	{"max", `SELECT max(credit_limit) FROM customers`,
		"apply max() to | public.customers.credit_limit | functions would see ciphertext", ""},
	{"length", `SELECT length(email) FROM customers`,
		"apply length() to | public.customers.email | functions would see ciphertext", ""},
	{"concatenation", `SELECT email || '' FROM customers`,
		"apply operator || to | public.customers.email | operators cannot", ""},
	{"arithmetic", `SELECT credit_limit + 1 FROM customers`,
		"apply operator + to | public.customers.credit_limit | operators cannot", ""},
	{"COALESCE", `SELECT COALESCE(email, 'x') FROM customers`,
		"apply COALESCE to | public.customers.email | without the column's identity", ""},
	{"CASE result", `SELECT CASE WHEN id > 1 THEN email END FROM customers`,
		"return | public.customers.email | CASE result", ""},
	{"cast", `SELECT email::text FROM customers`,
		"cast | public.customers.email | a cast would see ciphertext", ""},
	{"COLLATE", `SELECT email COLLATE "C" FROM customers`,
		"collate | public.customers.email | collations", ""},
	{"GREATEST", `SELECT GREATEST(birth_date, now()) FROM customers`,
		"apply GREATEST/LEAST to | public.customers.birth_date | no order", ""},
	{"NULLIF", `SELECT NULLIF(ssn, 'x') FROM customers`,
		"apply NULLIF to | public.customers.ssn | NULLIF", ""},
	{"row value", `SELECT ROW(email, id) FROM customers`,
		"put | public.customers.email | into a row value", ""},
	{"array", `SELECT ARRAY[email] FROM customers`,
		"put | public.customers.email | into an array", ""},
	{"field access", `SELECT c.email.x FROM customers c`,
		"select a field of | public.customers.email | no fields", ""},
	{"JSON constructor (generic walk)", `SELECT json_build_object('e', email) FROM customers`,
		"apply json_build_object() to | public.customers.email | functions", ""},
	{"XML (generic walk)", `SELECT xmlelement(name e, email) FROM customers`,
		"use | public.customers.email | XmlExpr", ""},
	{"scalar subquery", `SELECT (SELECT email FROM customers LIMIT 1)`,
		"return | public.customers.email | subquery's value", ""},
	{"ARRAY subquery", `SELECT ARRAY(SELECT ssn FROM customers)`,
		"return | public.customers.ssn | subquery's value", ""},
	{"UNION branch", `SELECT email FROM customers UNION SELECT note FROM orders`,
		"combine | public.customers.email | UNION, INTERSECT or EXCEPT", ""},
	{"UNION star", `SELECT * FROM customers UNION ALL SELECT * FROM customers`,
		"combine | public.customers.email | UNION", ""},
	{"VALUES list", `SELECT * FROM customers c, LATERAL (VALUES (c.email)) v(e)`,
		"put | public.customers.email | VALUES list", ""},
	{"whole row", `SELECT c FROM customers c`,
		"use | public.customers | whole-row reference", ""},
	{"whole row in a function", `SELECT row_to_json(c.*) FROM customers c`,
		"use | public.customers | whole-row reference", ""},
	{"RETURNING expression", `INSERT INTO customers (email) VALUES ('x') RETURNING upper(email)`,
		"apply upper() to | public.customers.email | functions", ""},
	{"CREATE TABLE AS", `CREATE TABLE t AS SELECT email FROM customers`,
		"copy | public.customers.email | CREATE TABLE AS", ""},
	{"SELECT INTO", `SELECT email INTO t FROM customers`,
		"copy | public.customers.email | SELECT INTO", ""},

	// Parameters.
	{"parameter also plain", `SELECT * FROM customers WHERE ssn = $1 OR id = $1`,
		"bind $1 to | public.customers.ssn | also used where it is not encrypted", ""},
	{"parameter for two columns", `INSERT INTO customers (email, phone) VALUES ($1, $1)`,
		"bind $1 to | public.customers.email | also goes to public.customers.phone", ""},
	{"parameter cast in comparison", `SELECT * FROM customers WHERE ssn = $1::text`,
		"compare | public.customers.ssn | remove the cast on $1", ""},
	{"PREPARE declared type", `PREPARE p(int, text) AS INSERT INTO customers (id, email) VALUES ($1, $2)`,
		"bind $2 to | public.customers.email | declares the parameter's type", ""},
	{"EXECUTE argument from a protected subquery", `EXECUTE p((SELECT email FROM customers LIMIT 1))`,
		"return | public.customers.email | subquery's value", ""},

	// Names.
	{"alias list on a protected table", `SELECT * FROM customers AS c(a, b)`,
		"rename columns of | public.customers | column alias lists", ""},
	{"alias list on a subquery", `SELECT * FROM (SELECT email FROM customers) s(e)`,
		"rename | public.customers.email | column alias lists", ""},
	{"alias list on a CTE", `WITH c(e) AS (SELECT email FROM customers) SELECT 1`,
		"rename | public.customers.email | column alias lists", ""},
	{"ambiguous unqualified name", `SELECT * FROM customers c, app.customers a WHERE ssn = 'x'`,
		"resolve | ssn | qualify it", ""},
	{"FULL JOIN USING", `SELECT * FROM customers c FULL JOIN app.customers a USING (ssn)`,
		"join | public.customers.ssn | FULL JOIN", ""},
	{"NATURAL JOIN with unknown columns", `SELECT * FROM customers NATURAL JOIN orders`,
		"join | public.customers | NATURAL JOIN", ""},
	{"computed set_config then an ambiguous name", `SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'search_path'; SELECT * FROM customers WHERE ssn = 'x'`,
		"resolve | customers | does not know the search_path", ""},

	// Statements.
	{"COPY FROM a server file", `COPY customers FROM '/tmp/x'`, "copy | public.customers | server-side file", ""},
	{"COPY TO a program", `COPY app.customers (id) TO PROGRAM 'cat'`, "copy | app.customers | server-side file", ""},
	{"COPY query over an expression", `COPY (SELECT upper(email) FROM customers) TO STDOUT`, "apply upper() to | public.customers.email | functions would see ciphertext", ""},
	{"COPY query, UNION", `COPY (SELECT email FROM customers UNION SELECT email FROM customers) TO STDOUT`, "copy | public.customers.email | one COPY (query) TO per branch", ""},
	{"COPY query, * over unknown columns", `COPY (SELECT * FROM customers, orders) TO STDOUT`, "copy | public.customers.email | list the columns", ""},
	{"MERGE into", `MERGE INTO customers c USING orders o ON c.id = o.customer_id WHEN MATCHED THEN DO NOTHING`,
		"merge into | public.customers | MERGE is not supported", ""},
	{"MERGE using", `MERGE INTO orders o USING customers c ON c.id = o.customer_id WHEN MATCHED THEN DELETE`,
		"merge using | public.customers | MERGE is not supported", ""},
	{"CREATE VIEW comparing with a literal", `CREATE VIEW v AS SELECT id FROM customers WHERE ssn = 'x'`,
		"compare | public.customers.ssn | would store the literal", ""},
	{"CREATE VIEW", `CREATE VIEW v AS SELECT * FROM customers`,
		"create a view over | public.customers | create the view directly in PostgreSQL", ""},
	{"CREATE TEMP VIEW", `CREATE TEMP VIEW v AS SELECT id, email FROM customers`,
		"create a view over | public.customers | create the view directly in PostgreSQL", ""},
	{"CREATE VIEW over an expression", `CREATE VIEW v AS SELECT lower(email) FROM customers`,
		"apply lower() to | public.customers.email | functions would see ciphertext", ""},
	{"CREATE MATERIALIZED VIEW", `CREATE MATERIALIZED VIEW v AS SELECT id, email FROM customers`,
		"create a materialized view over | public.customers | without rules or backstops", ""},
	{"DO block", `DO $$ BEGIN INSERT INTO customers (email) VALUES ('x'); END $$`,
		"run server-side code on | customers | DO blocks", ""},
	{"CREATE FUNCTION", `CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'UPDATE Customers SET email = ''x'''`,
		"run server-side code on | customers | function bodies", ""},
	{"DO block, name touching $$", `DO $$BEGIN UPDATE customers$$`,
		"run server-side code on | customers | DO blocks", ""},
	{"DO block, name behind an escape", `DO E'BEGIN INSERT INTO\ncustomers (email) VALUES (1); END'`,
		"run server-side code on | customers | DO blocks", ""},
	{"CREATE PROCEDURE, Unicode escape", `CREATE PROCEDURE p() LANGUAGE plpgsql AS U&'BEGIN DELETE FROM \0063ustomers; END'`,
		"run server-side code on | customers | function bodies", ""},
	{"CREATE FUNCTION with SQL body", `CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM app.customers; END`,
		"run server-side code on | customers | function bodies", ""},
	{"CREATE RULE", `CREATE RULE r AS ON INSERT TO orders DO ALSO INSERT INTO customers (email) VALUES (NEW.note)`,
		"run server-side code on | customers | rules", ""},
	{"ALTER TABLE SET DEFAULT", `ALTER TABLE customers ALTER COLUMN email SET DEFAULT 'nobody'`,
		"set a default on | public.customers.email | plaintext", ""},
	{"standard_conforming_strings off", `SET standard_conforming_strings = off`,
		"set | standard_conforming_strings | misread", ""},
	{"set_config with a parameter", `SELECT set_config('search_path', $1, false)`,
		"set | search_path | pass literals", ""},
	{"NUL byte", "INSERT INTO customers (email) VALUES ('x')\x00'",
		"parse |  | NUL byte", ""},
	{"unparseable", `UPDATE customers SET email = 'x' WHER id = 1`,
		"parse a statement on | customers | syntax error at or near", CodeSyntaxError},
}

func TestRefusals(t *testing.T) {
	for _, tt := range refusalTests {
		t.Run(tt.name, func(t *testing.T) {
			an, err := mustAnalyze(t, tt.sql)
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("%s\nnot refused: %v, plan %q", tt.sql, err, renderAll(tt.sql, an))
			}
			if an != nil {
				t.Errorf("refusal came with a plan")
			}
			code := tt.code
			if code == "" {
				code = CodeFeatureNotSupported
			}
			parts := strings.SplitN(tt.want, " | ", 3)
			if r.Code != code || r.Op != parts[0] || r.Column != parts[1] || !strings.Contains(r.Reason, parts[2]) {
				t.Errorf("%s\n got: %s | %s | %s | %s\nwant: %s | %s", tt.sql, r.Code, r.Op, r.Column, r.Reason, code, tt.want)
			}
		})
	}
}

func TestRefusalError(t *testing.T) {
	r := &Refusal{Code: "0A000", Op: "compare", Column: "public.customers.email", Reason: "why"}
	if got, want := r.Error(), "cannot compare public.customers.email: why"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	r = &Refusal{Code: "0A000", Column: "public.customers.email", Reason: "why"}
	if got, want := r.Error(), "cannot use public.customers.email: why"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	r = &Refusal{Code: "0A000", Op: "analyze", Reason: "why"}
	if got, want := r.Error(), "cannot analyze: why"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestRowExpansionIntoProtected: a (row).* feeding an INSERT's target
// columns is refused (its values' positions are not the list's).
func TestRowExpansionIntoProtected(t *testing.T) {
	for _, sql := range []string{
		`INSERT INTO customers SELECT (ROW(1, 'x')::customers).*`,
		`INSERT INTO customers SELECT (t).* FROM (SELECT ROW(2, 'y')::customers AS t) s`,
		`INSERT INTO customers SELECT (o).* FROM orders o`,
		`INSERT INTO customers (id, email) SELECT 1, (o).* FROM orders o`,
	} {
		if _, err := mustAnalyze(t, sql); err == nil || !strings.Contains(err.Error(), "(row).*") {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// TestRefusalHints checks that the refusals ORMs meet most say what to do
// instead.
func TestRefusalHints(t *testing.T) {
	for sql, want := range map[string]string{
		`SELECT id FROM customers ORDER BY full_name`:                  "Order by a column that is not protected",
		`SELECT id FROM customers ORDER BY lower(full_name)`:           "Order by a column that is not protected",
		`SELECT id FROM customers WHERE full_name::text LIKE 'A%'`:     "declare the column mode: deterministic",
		`SELECT id FROM customers WHERE UPPER(email) LIKE UPPER('A%')`: "declare the column mode: deterministic",
		`CREATE OR REPLACE FUNCTION pg_temp.testfunc() RETURNS SETOF customers AS $func$ BEGIN RETURN QUERY INSERT INTO customers (email) VALUES ('x') RETURNING *; END $func$ LANGUAGE plpgsql`: "use findCreateFind",
	} {
		_, err := mustAnalyze(t, sql)
		var r *Refusal
		if !errors.As(err, &r) {
			t.Fatalf("%s: not refused: %v", sql, err)
		}
		if !strings.Contains(r.Hint, want) {
			t.Errorf("%s: hint %q, want it to say %q", sql, r.Hint, want)
		}
	}
}
