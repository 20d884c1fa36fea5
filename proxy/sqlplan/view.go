package sqlplan

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// ViewOutputs attributes the output columns of a view definition (the text
// of pg_get_viewdef, a SELECT) to protected columns: cols[i] is the
// protected column that output column i+1 returns unchanged, or nil.
//
// A view made around pgcloak is a relation like any other to PostgreSQL,
// and rows read through it carry the view's OID, not the table's; pgcloak
// decrypts them when it can prove which protected column each output is.
// The proof is the same as for a query's own results: a plain selection of
// the column (through joins, subqueries in FROM and CTEs), never an
// expression over it.
//
// It returns (nil, nil) when the view reads no protected table. It returns
// a *Refusal when it reads one but some protected value cannot be
// attributed (an expression, a UNION, a whole-row reference …) or the
// definition compares a protected column with a literal (stored in the
// view as plaintext, it could never match the ciphertext).
func ViewOutputs(def string, cat Catalog) (cols []*Column, err error) {
	defer func() {
		if p := recover(); p != nil {
			cols, err = nil, &Refusal{Code: CodeInternalError, Op: "analyze", Reason: fmt.Sprintf("internal error in the SQL analyzer: %v", p)}
		}
	}()
	tree, err := pg.Parse(def)
	if err != nil {
		return nil, &Refusal{Code: CodeSyntaxError, Op: "read the definition of", Reason: err.Error()}
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, refuse("read", "a view", "its definition is not one SELECT")
	}
	s := tree.Stmts[0].Stmt.GetSelectStmt()
	a := &analyzer{sql: def, cat: cat, names: cat.ProtectedNames(), settings: NewSettings(nil), pathCached: true, pathOK: true}
	st := &Statement{}
	a.begin(st)
	out, err := a.selectStmt(s, nil, keep, nil)
	if err != nil {
		return nil, err
	}
	if err := a.finish(); err != nil {
		return nil, err
	}
	if len(a.touched) == 0 {
		return nil, nil
	}
	for _, e := range st.Edits {
		if e.Column == nil {
			continue
		}
		return nil, refuse("compare", e.Column.String(), "the view compares it with a literal, which the view stores as plaintext and which can never match the ciphertext; compare in the query that reads the view, through pgcloak")
	}
	if out == nil || !out.complete || s.Op > pg.SetOperation_SETOP_NONE || len(s.ValuesLists) > 0 || len(out.list) != len(s.TargetList) {
		return nil, refuse("read", a.touched[0], "pgcloak cannot tell which protected column each output column of the view returns")
	}
	cols = make([]*Column, len(out.list))
	for i, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil || hasStar(rt.Val) {
			return nil, refuse("read", a.touched[0], "pgcloak cannot tell which protected column each output column of the view returns")
		}
		cols[i] = out.list[i].col
	}
	return cols, nil
}
