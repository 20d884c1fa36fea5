package sqlplan

import (
	"strings"
	"testing"
)

// TestDDLRefusals checks that DDL which would leave a rule pointing at the
// wrong thing is refused, and the DDL around it is not.
func TestDDLRefusals(t *testing.T) {
	refused := []string{
		`ALTER TABLE customers RENAME COLUMN email TO e2`,
		`ALTER TABLE public.customers RENAME email TO e2`,
		`ALTER TABLE customers RENAME TO clients`,
		`ALTER TABLE IF EXISTS customers RENAME TO clients`,
		`ALTER TABLE customers SET SCHEMA archive`,
		`ALTER TABLE customers ALTER COLUMN email TYPE text`,
		`ALTER TABLE customers ALTER email SET DATA TYPE bytea USING email`,
		`ALTER TABLE customers DROP COLUMN phone`,
		`ALTER TABLE customers DROP CONSTRAINT pgcloak_email_encrypted`,
		`ALTER TABLE customers RENAME CONSTRAINT pgcloak_email_encrypted TO x`,
		`DROP TABLE customers`,
		`DROP TABLE orders, public.customers CASCADE`,
		`DROP SCHEMA app CASCADE`,
		`ALTER SCHEMA app RENAME TO app2`,
		`ALTER TABLE customers ADD COLUMN email text`,
		`CREATE TABLE customers (id int, email text, phone bytea, full_name bytea, ssn bytea, birth_date bytea, credit_limit bytea, vip bytea)`,
		`CREATE TABLE app.customers (id int, email bytea DEFAULT 'x', ssn bytea)`,
		`CREATE TABLE app.customers (LIKE public.customers)`,
	}
	for _, sql := range refused {
		if _, err := mustAnalyze(t, sql); err == nil {
			t.Errorf("%s: not refused", sql)
		} else if !strings.Contains(err.Error(), "customers") && !strings.Contains(err.Error(), "app") {
			t.Errorf("%s: refusal does not name what: %v", sql, err)
		}
	}
	allowed := []string{
		`ALTER TABLE customers RENAME COLUMN note TO remark`,
		`ALTER TABLE customers ADD COLUMN note2 text`,
		`ALTER TABLE customers DROP COLUMN note`,
		`ALTER TABLE orders RENAME TO orders2`,
		`DROP TABLE orders`,
		`DROP SCHEMA app`,
		`TRUNCATE customers`,
		`CREATE INDEX ON customers (ssn)`,
		`CREATE TEMP TABLE customers (id int, email text)`,
		`ALTER TABLE customers ADD CONSTRAINT c CHECK (id > 0)`,
	}
	for _, sql := range allowed {
		if _, err := mustAnalyze(t, sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// TestDDLBackstops checks that a protected table or column created through
// pgcloak gets its backstop in the same statement.
func TestDDLBackstops(t *testing.T) {
	sql := `CREATE TABLE app.customers (id int PRIMARY KEY, email bytea NOT NULL, ssn bytea, note text) ;`
	an, err := mustAnalyze(t, sql)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, e := range an.Statements[0].Edits {
		if !e.Backstop || e.Start != e.End || sql[e.Start] != ')' || e.Verbatim != ", " {
			t.Errorf("edit %+v: want a backstop insertion before the closing parenthesis", e)
		}
		cols = append(cols, e.Column.Name)
	}
	if strings.Join(cols, ",") != "email,ssn" {
		t.Errorf("backstops for %v, want email and ssn", cols)
	}

	// A definition that has the backstop already (a dump restored through
	// pgcloak) is left as it is.
	sql = `CREATE TABLE app.customers (id int, email bytea, CONSTRAINT pgcloak_email_encrypted CHECK (email IS NOT NULL))`
	if an, err = mustAnalyze(t, sql); err != nil || len(an.Statements[0].Edits) != 0 {
		t.Errorf("CREATE TABLE with its backstop: %v, %v", an, err)
	}

	sql = `ALTER TABLE app.customers ADD COLUMN email bytea`
	an, err = mustAnalyze(t, sql)
	if err != nil {
		t.Fatal(err)
	}
	if es := an.Statements[0].Edits; len(es) != 1 || !es[0].Backstop || es[0].Start != len(sql) || es[0].Verbatim != ", ADD " {
		t.Errorf("ADD COLUMN: edits %+v", es)
	}
	// The rest of a multi-statement text stays where it was.
	sql = `ALTER TABLE app.customers ADD COLUMN ssn bytea; SELECT 1`
	an, err = mustAnalyze(t, sql)
	if err != nil {
		t.Fatal(err)
	}
	if es := an.Statements[0].Edits; len(es) != 1 || sql[:es[0].Start] != `ALTER TABLE app.customers ADD COLUMN ssn bytea` {
		t.Errorf("ADD COLUMN in a longer text: edits %+v", es)
	}
}
