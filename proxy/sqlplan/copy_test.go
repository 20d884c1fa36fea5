package sqlplan

import (
	"strings"
	"testing"
)

// renderCopy shows a Copy plan as "schema.table [query] from|to: name=col
// name=- … | option=value …".
func renderCopy(cp *Copy) string {
	if cp == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(cp.Schema + "." + cp.Table)
	if cp.Query {
		b.WriteString(" query")
	}
	if cp.From {
		b.WriteString(" from:")
	} else {
		b.WriteString(" to:")
	}
	for i, name := range cp.Columns {
		col := "-"
		if p := cp.Protected[i]; p != nil {
			col = p.String()
		}
		b.WriteString(" " + name + "=" + col)
	}
	if len(cp.Options) > 0 {
		b.WriteString(" |")
		for _, o := range cp.Options {
			b.WriteString(" " + o.Name)
			switch o.Kind {
			case CopyArgString, CopyArgNumber:
				b.WriteString("=" + o.Value)
			case CopyArgList:
				b.WriteString("=(" + strings.Join(o.List, ",") + ")")
			case CopyArgStar:
				b.WriteString("=*")
			}
		}
	}
	return b.String()
}

// TestCopyPlans: COPY of a protected table, and COPY (query) TO whose
// protected outputs are at known positions, get a Copy plan naming the
// column behind each output; queries with no protected output get none (the
// data passes untouched), but their literals are still encrypted.
func TestCopyPlans(t *testing.T) {
	for _, c := range []struct {
		sql, want string
		edits     []string
	}{
		// COPY table.
		{`COPY customers (id, email) FROM STDIN (FORMAT csv, HEADER)`,
			"public.customers from: id=- email=public.customers.email | format=csv header", nil},
		{`COPY app.customers TO STDOUT WITH (FORMAT binary)`,
			"app.customers to: id=- email=app.customers.email ssn=app.customers.ssn | format=binary", nil},
		{`COPY orders TO STDOUT`, "", nil},

		// COPY (query) TO: the example and the shapes around it.
		{`COPY (SELECT id, email, phone FROM customers WHERE id > 5 ORDER BY id) TO STDOUT (FORMAT csv, HEADER)`,
			"public.customers query to: id=- email=public.customers.email phone=public.customers.phone | format=csv header", nil},
		{`COPY (SELECT email AS e, c.phone, 1 AS one, now() FROM customers c) TO STDOUT`,
			"public.customers query to: e=public.customers.email phone=public.customers.phone one=- now=-", nil},
		{`COPY (SELECT o.note, c.email, a.ssn FROM orders o JOIN customers c ON c.id = o.customer_id JOIN app.customers a ON a.id = c.id) TO STDOUT (FORMAT binary)`,
			"public.customers query to: note=- email=public.customers.email ssn=app.customers.ssn | format=binary", nil},
		{`COPY (SELECT s.e, s.id FROM (SELECT id, email AS e FROM customers) s) TO STDOUT`,
			"public.customers query to: e=public.customers.email id=-", nil},
		{`COPY (WITH w AS (SELECT id, ssn FROM app.customers) SELECT ssn, id FROM w) TO STDOUT`,
			"app.customers query to: ssn=app.customers.ssn id=-", nil},
		{`COPY (SELECT * FROM app.customers) TO STDOUT`,
			"app.customers query to: id=- email=app.customers.email ssn=app.customers.ssn", nil},
		{`COPY (TABLE app.customers) TO STDOUT`,
			"app.customers query to: id=- email=app.customers.email ssn=app.customers.ssn", nil},
		{`COPY (SELECT c.*, o.note FROM app.customers c JOIN orders o ON o.customer_id = c.id) TO STDOUT`,
			"app.customers query to: id=- email=app.customers.email ssn=app.customers.ssn note=-", nil},
		{`COPY (SELECT email, ssn FROM customers WHERE ssn = '123-45' AND email IS NOT NULL) TO STDOUT`,
			"public.customers query to: email=public.customers.email ssn=public.customers.ssn", []string{`'123-45' → public.customers.ssn "123-45"`}},
		{`COPY (DELETE FROM app.customers WHERE ssn = 'x' RETURNING id, email) TO STDOUT`,
			"app.customers query to: id=- email=app.customers.email", []string{`'x' → app.customers.ssn "x"`}},
		// No protected output: no plan, the literal still encrypted.
		{`COPY (SELECT id FROM customers WHERE ssn = 'x') TO STDOUT`, "", []string{`'x' → public.customers.ssn "x"`}},
		{`COPY (SELECT id, count(email) FROM customers GROUP BY id) TO STDOUT`, "", nil},
		{`COPY (SELECT id FROM customers WHERE ssn = 'x') TO '/tmp/ids'`, "", []string{`'x' → public.customers.ssn "x"`}},
		{`COPY (SELECT note FROM orders) TO STDOUT`, "", nil},
	} {
		an, err := mustAnalyze(t, c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		var st *Statement
		if an != nil {
			st = &an.Statements[0]
		}
		got := ""
		if st != nil {
			got = renderCopy(st.Copy)
		}
		if got != c.want {
			t.Errorf("%s\n got %q\nwant %q", c.sql, got, c.want)
		}
		var edits []string
		if st != nil {
			edits = render(c.sql, st)
		}
		if strings.Join(edits, "; ") != strings.Join(c.edits, "; ") {
			t.Errorf("%s: edits %q, want %q", c.sql, edits, c.edits)
		}
	}
}

// TestCopyQueryRefusals: COPY (query) TO whose protected output cannot be
// attributed by position is refused, naming the column and the way out.
func TestCopyQueryRefusals(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{`COPY (SELECT lower(email) FROM customers) TO STDOUT`, "apply lower() to | public.customers.email | functions would see ciphertext"},
		{`COPY (SELECT email::text FROM customers) TO STDOUT (FORMAT csv)`, "cast | public.customers.email | select the column plainly"},
		{`COPY (SELECT email || '' FROM customers) TO STDOUT`, "apply operator || to | public.customers.email | operators"},
		{`COPY (SELECT email FROM customers UNION ALL SELECT email FROM app.customers) TO STDOUT`,
			"copy | public.customers.email | run one COPY (query) TO per branch"},
		{`COPY (SELECT (SELECT email FROM customers LIMIT 1)) TO STDOUT`, "return | public.customers.email | subquery"},
		{`COPY (SELECT c FROM customers c) TO STDOUT`, "use | public.customers | whole-row reference"},
		{`COPY (SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id) TO STDOUT`,
			"copy | public.customers.email | list the columns"},
		{`COPY (SELECT * FROM app.customers JOIN customers USING (id)) TO STDOUT`,
			"copy | app.customers.email | list the columns"},
		{`COPY (SELECT * FROM (SELECT * FROM app.customers a JOIN customers c USING (id)) s) TO STDOUT`,
			"copy | public.customers.birth_date | list the columns"},
		{`COPY (SELECT email FROM customers) TO '/tmp/x'`, "copy | public.customers.email | server-side file"},
		{`COPY (SELECT email FROM customers) TO PROGRAM 'cat'`, "copy | public.customers.email | server-side file"},
		{`COPY (SELECT email FROM customers ORDER BY email) TO STDOUT`, "order by | public.customers.email | no order"},
	} {
		an, err := mustAnalyze(t, c.sql)
		var r *Refusal
		if !asRefusal(err, &r) || r == nil {
			t.Errorf("%s\nnot refused: %v, plan %q", c.sql, err, renderAll(c.sql, an))
			continue
		}
		parts := strings.SplitN(c.want, " | ", 3)
		if r.Code != CodeFeatureNotSupported || r.Op != parts[0] || r.Column != parts[1] || !strings.Contains(r.Reason, parts[2]) {
			t.Errorf("%s\n got: %s | %s | %s | %s\nwant: 0A000 | %s", c.sql, r.Code, r.Op, r.Column, r.Reason, c.want)
		}
	}
}

// TestUnknownSetting: set_config whose setting name is not a literal (the
// first query of pg_dump) is planned, not refused, and makes the settings
// unknown; after it in the same text, a protected table that several
// schemas hold is refused unqualified (the search_path may have changed),
// while one that a single schema holds, or a qualified one, is planned.
func TestUnknownSetting(t *testing.T) {
	const dump = `SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'`
	an, err := mustAnalyze(t, dump)
	if err != nil || an == nil || strings.Join(effectStrings(an.Statements[0]), ",") != "unknown" {
		t.Fatalf("%s: %+v, %v", dump, an, err)
	}
	an, err = mustAnalyze(t, `SELECT pg_catalog.set_config('search_path', '', false)`)
	if err != nil || strings.Join(effectStrings(an.Statements[0]), ",") != "set search_path" {
		t.Errorf("a literal name is known: %+v, %v", an, err)
	}
	an, err = mustAnalyze(t, dump+`; SELECT id FROM public.customers WHERE ssn = 'x'`)
	if err != nil || len(an.Statements[1].Edits) != 1 {
		t.Errorf("qualified table after it: %+v, %v", an, err)
	}
	_, err = mustAnalyze(t, dump+`; SELECT id FROM customers WHERE ssn = 'x'`)
	var r *Refusal
	if !asRefusal(err, &r) || r == nil || r.Op != "resolve" || !strings.Contains(r.Reason, "set_config") {
		t.Errorf("unqualified table after it: %v", err)
	}
}
