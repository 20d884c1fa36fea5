package sqlplan

import (
	"strings"
	"testing"
)

// TestAccessSets: each statement names the protected columns it returns to
// the client (Reads), stores into (Writes) and compares or groups
// (Compares), which access rules are checked against before the statement
// is sent.
func TestAccessSets(t *testing.T) {
	for _, c := range []struct {
		sql                    string
		reads, writes, compare string // column names, space-separated
	}{
		{`SELECT id FROM customers`, "", "", ""},
		{`SELECT email, phone FROM customers WHERE id = 1`, "email phone", "", ""},
		{`SELECT * FROM customers`, "email phone full_name ssn birth_date credit_limit vip", "", ""},
		{`SELECT c.* FROM customers c WHERE ssn = $1`, "email phone full_name ssn birth_date credit_limit vip", "", "ssn"},
		{`SELECT id FROM customers WHERE ssn = 'x'`, "", "", "ssn"},
		{`SELECT id FROM customers WHERE ssn IN ($1, $2) OR ssn IS DISTINCT FROM $3`, "", "", "ssn"},
		{`SELECT count(*) FROM customers GROUP BY ssn`, "", "", "ssn"},
		{`SELECT DISTINCT ssn FROM customers`, "ssn", "", "ssn"},
		{`SELECT id FROM customers WHERE email IS NULL`, "", "", ""},
		{`SELECT e FROM (SELECT email AS e FROM customers) s`, "email", "", ""},
		{`WITH w AS (SELECT ssn FROM customers) SELECT 1 FROM w`, "", "", ""},
		{`WITH w AS (SELECT ssn FROM customers) SELECT * FROM w`, "ssn", "", ""},
		{`INSERT INTO customers (id, email, phone) VALUES (1, 'a', NULL)`, "", "email phone", ""},
		{`INSERT INTO customers (id, email) VALUES (1, DEFAULT) RETURNING phone`, "phone", "email", ""},
		{`UPDATE customers SET email = $1 WHERE ssn = $2 RETURNING id`, "", "email", "ssn"},
		{`UPDATE customers SET note = 'x'`, "", "", ""},
		{`DELETE FROM customers WHERE id = 1 RETURNING email`, "email", "", ""},
		{`DECLARE k CURSOR FOR SELECT full_name FROM customers`, "full_name", "", ""},
		{`EXPLAIN SELECT email FROM customers`, "", "", ""},
		{`INSERT INTO customers (id, email) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone`, "", "email phone", ""},
	} {
		an, err := mustAnalyze(t, c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		var st Statement
		if an != nil {
			st = an.Statements[0]
		}
		for _, x := range []struct {
			what string
			got  []*Column
			want string
		}{{"reads", st.Reads, c.reads}, {"writes", st.Writes, c.writes}, {"compares", st.Compares, c.compare}} {
			var names []string
			for _, col := range x.got {
				names = append(names, col.Name)
			}
			if got := strings.Join(names, " "); got != x.want {
				t.Errorf("%s: %s %q, want %q", c.sql, x.what, got, x.want)
			}
		}
	}
}

// TestAccessSetsPrepare: a PREPARE carries the sets of the statement it
// prepares in its Effect, where the session checks them.
func TestAccessSetsPrepare(t *testing.T) {
	an, err := mustAnalyze(t, `PREPARE p AS SELECT email FROM customers WHERE ssn = $1`)
	if err != nil {
		t.Fatal(err)
	}
	inner := an.Statements[0].Effects[0].Statement
	if len(inner.Reads) != 1 || inner.Reads[0].Name != "email" || len(inner.Compares) != 1 || inner.Compares[0].Name != "ssn" {
		t.Errorf("inner reads %v compares %v, want email and ssn", inner.Reads, inner.Compares)
	}
}
