package sqlplan

import (
	"errors"
	"testing"
)

// FuzzAnalyze checks that no text makes the analyzer panic, that every
// answer is a plan or a *Refusal, and that every plan's edits are in order,
// inside the text, and leave SQL that still parses into the same statements
// when replaced as the session replaces them. Seeds: the plan and refusal
// tables, and testdata/fuzz/FuzzAnalyze.
func FuzzAnalyze(f *testing.F) {
	for _, tt := range planTests {
		f.Add(tt.sql)
	}
	for _, tt := range refusalTests {
		f.Add(tt.sql)
	}
	cat := newFakeCatalog()
	names := cat.ProtectedNames()
	f.Fuzz(func(t *testing.T, sql string) {
		if !mayMatter(sql, names) {
			return
		}
		an, err := analyze(sql, cat, names, defaultPath)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || r.Code == "" || r.Reason == "" {
				t.Fatalf("error is not a complete *Refusal: %#v", err)
			}
			if an != nil {
				t.Fatal("a refusal came with a plan")
			}
			return
		}
		if an == nil {
			return
		}
		for i := range an.Statements {
			st := &an.Statements[i]
			for _, e := range st.Edits {
				if e.Column == nil && e.Verbatim == "" {
					t.Fatalf("edit without a column: %+v", e)
				}
			}
			for n, c := range st.Params {
				if n < 1 || c == nil {
					t.Fatalf("bad parameter $%d → %v", n, c)
				}
			}
			if ex := st.Execute; ex != nil {
				for _, a := range ex.Args {
					if a.Literal && (a.Start < 0 || a.End <= a.Start || a.End > len(sql)) {
						t.Fatalf("bad EXECUTE argument range %+v", a)
					}
				}
			}
		}
		checkRewrite(t, sql, an)
	})
}
