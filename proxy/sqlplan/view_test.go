package sqlplan

import (
	"strings"
	"testing"
)

// TestViewOutputs checks which view definitions pgcloak can read through
// (every protected output attributed to its column) and which it must refuse.
func TestViewOutputs(t *testing.T) {
	cat := newFakeCatalog()
	tests := []struct {
		def  string
		want []string // column names per output ("" = unprotected); nil = not a protected view
		err  string   // substring of the refusal
	}{
		{def: `SELECT orders.id, orders.note FROM public.orders`},
		{def: `SELECT c.id, c.email, c.ssn AS national_id FROM public.customers c`, want: []string{"", "email", "ssn"}},
		{def: `SELECT customers.id, customers.email FROM public.customers WHERE customers.ssn IS NOT NULL`, want: []string{"", "email"}},
		{def: `SELECT s.email FROM (SELECT customers.email FROM public.customers) s`, want: []string{"email"}},
		{def: `WITH x AS (SELECT customers.phone FROM public.customers) SELECT x.phone FROM x`, want: []string{"phone"}},
		{def: `SELECT o.id, c.email FROM public.orders o JOIN public.customers c ON c.id = o.customer_id`, want: []string{"", "email"}},
		{def: `SELECT lower(customers.email) AS e FROM public.customers`, err: "email"},
		{def: `SELECT customers.email FROM public.customers UNION SELECT customers.phone FROM public.customers`, err: "customers"},
		{def: `SELECT customers.id FROM public.customers WHERE customers.ssn = '123'`, err: "literal"},
		{def: `SELECT c.* FROM public.customers c`, want: nil, err: "cannot tell"},
	}
	for _, tt := range tests {
		cols, err := ViewOutputs(tt.def, cat)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %v, %v; want a refusal about %q", tt.def, cols, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.def, err)
			continue
		}
		var got []string
		if cols != nil {
			got = []string{}
			for _, c := range cols {
				name := ""
				if c != nil {
					name = c.Name
				}
				got = append(got, name)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") || (got == nil) != (tt.want == nil) {
			t.Errorf("%s: got %q, want %q", tt.def, got, tt.want)
		}
	}
}

// TestUnavailable checks that a table whose rules no longer match the
// database refuses every statement naming it with 55000 and the reason.
func TestUnavailable(t *testing.T) {
	cat := newFakeCatalog()
	cat.unavailable = map[string]string{"public.customers": "column email is not in the table any more"}
	for _, sql := range []string{
		`SELECT id FROM customers`,
		`INSERT INTO public.customers (id) VALUES (1)`,
		`SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id`,
	} {
		_, err := analyze(sql, cat, cat.ProtectedNames(), defaultPath)
		var r *Refusal
		if !asRefusal(err, &r) || r.Code != CodeNotInPrerequisite || !strings.Contains(r.Error(), "not in the table any more") {
			t.Errorf("%s: got %v, want a 55000 refusal with the reason", sql, err)
		}
	}
	if _, err := analyze(`SELECT email FROM app.customers`, cat, cat.ProtectedNames(), defaultPath); err != nil {
		t.Errorf("another table's statements are not affected: %v", err)
	}
}
