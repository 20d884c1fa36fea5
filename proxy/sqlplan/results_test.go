package sqlplan

import (
	"strings"
	"testing"
)

// TestResults: the output columns of a plain SELECT are predicted one per
// target, with the protected column behind each; whenever the count or the
// identity is not certain, there is no prediction.
func TestResults(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want string // protected column names per output, "-" for others; "" = no prediction
	}{
		{`SELECT id, email, note FROM customers WHERE id = $1`, "- email -"},
		{`SELECT email AS e, c.phone FROM customers c ORDER BY id`, "email phone"},
		{`SELECT e FROM (SELECT email AS e FROM customers) s`, "email"},
		{`WITH w AS (SELECT ssn FROM customers) SELECT ssn, 1 FROM w`, "ssn -"},
		{`SELECT o.note, c.email FROM orders o JOIN customers c ON c.id = o.customer_id`, "- email"},
		{`SELECT id, note FROM customers`, ""},                   // nothing protected
		{`SELECT * FROM customers`, ""},                          // * expands
		{`SELECT c.*, email FROM customers c`, ""},               // t.* expands
		{`SELECT (o).*, c.email FROM orders o, customers c`, ""}, // (expr).* expands
		{`EXPLAIN SELECT email FROM customers`, ""},              // one text column
		{`SELECT email FROM customers; SELECT 1`, "email"},       // per statement
		{`VALUES (1)`, ""}, // no table
		{`DECLARE k CURSOR FOR SELECT email FROM customers`, ""},
		{`INSERT INTO customers (id, email) VALUES (1, 'x') RETURNING email`, ""},
	} {
		an, err := mustAnalyze(t, c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		got := ""
		if an != nil && an.Statements[0].Results != nil {
			var names []string
			for _, col := range an.Statements[0].Results {
				if col == nil {
					names = append(names, "-")
				} else {
					names = append(names, col.Name)
				}
			}
			got = strings.Join(names, " ")
		}
		if got != c.want {
			t.Errorf("%s: results %q, want %q", c.sql, got, c.want)
		}
	}
}
