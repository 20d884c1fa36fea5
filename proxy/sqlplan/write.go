package sqlplan

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// insert plans INSERT: each value bound to a protected column must be a
// literal, parameter, NULL or DEFAULT.
func (a *analyzer) insert(ins *pg.InsertStmt, parent *scope, rule outRule) (*outputs, error) {
	sc, err := a.with(ins.WithClause, parent)
	if err != nil {
		return nil, err
	}
	target, err := a.tableRel(ins.Relation, sc, false)
	if err != nil {
		return nil, err
	}
	var bind []*Column
	if len(target.cols) > 0 {
		var names []string
		if len(ins.Cols) > 0 {
			for _, c := range ins.Cols {
				rt := c.GetResTarget()
				if err := target.known(rt.GetName()); err != nil {
					return nil, err
				}
				if col := target.cols[rt.GetName()]; col != nil && len(rt.Indirection) > 0 {
					return nil, refuse("store into", col.String(), "a field or element of an encrypted value cannot be assigned")
				}
				names = append(names, rt.GetName())
			}
		} else if names = target.all; names == nil {
			return nil, refuse("insert into", target.table, "pgcloak does not know the table's column order; list the columns")
		}
		bind = make([]*Column, len(names))
		for i, n := range names {
			bind[i] = target.cols[n]
		}
	}
	if ins.SelectStmt != nil {
		if _, err := a.selectStmt(ins.SelectStmt.GetSelectStmt(), sc, insertRule, bind); err != nil {
			return nil, err
		}
	}
	if oc := ins.OnConflictClause; oc != nil {
		level := &scope{parent: sc, rels: []*rel{target}}
		if inf := oc.Infer; inf != nil {
			for _, e := range inf.IndexElems {
				if ie := e.GetIndexElem(); ie != nil && ie.Expr != nil {
					if err := a.plain(ie.Expr, level); err != nil {
						return nil, err
					}
				}
			}
			if err := a.cond(inf.WhereClause, level); err != nil {
				return nil, err
			}
		}
		if oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			// EXCLUDED is the row proposed for insertion: the same columns,
			// the same ciphertext bindings.
			excluded := &rel{name: "excluded", cols: target.cols, all: target.all}
			up := &scope{parent: sc, rels: []*rel{target, excluded}}
			if err := a.assign(oc.TargetList, target, up); err != nil {
				return nil, err
			}
			if err := a.cond(oc.WhereClause, up); err != nil {
				return nil, err
			}
		}
	}
	return a.targets(ins.ReturningList, &scope{parent: sc, rels: []*rel{target}}, rule, nil)
}

// update plans UPDATE … SET … [FROM …] [WHERE …] [RETURNING …].
func (a *analyzer) update(u *pg.UpdateStmt, parent *scope, rule outRule) (*outputs, error) {
	sc, err := a.with(u.WithClause, parent)
	if err != nil {
		return nil, err
	}
	target, err := a.tableRel(u.Relation, sc, false)
	if err != nil {
		return nil, err
	}
	level := &scope{parent: sc, rels: []*rel{target}}
	for _, f := range u.FromClause {
		if err := a.fromItem(f, level); err != nil {
			return nil, err
		}
	}
	if err := a.assign(u.TargetList, target, level); err != nil {
		return nil, err
	}
	if err := a.cond(u.WhereClause, level); err != nil {
		return nil, err
	}
	return a.targets(u.ReturningList, level, rule, nil)
}

// delete plans DELETE FROM … [USING …] [WHERE …] [RETURNING …].
func (a *analyzer) delete(d *pg.DeleteStmt, parent *scope, rule outRule) (*outputs, error) {
	sc, err := a.with(d.WithClause, parent)
	if err != nil {
		return nil, err
	}
	target, err := a.tableRel(d.Relation, sc, false)
	if err != nil {
		return nil, err
	}
	level := &scope{parent: sc, rels: []*rel{target}}
	for _, f := range d.UsingClause {
		if err := a.fromItem(f, level); err != nil {
			return nil, err
		}
	}
	if err := a.cond(d.WhereClause, level); err != nil {
		return nil, err
	}
	return a.targets(d.ReturningList, level, rule, nil)
}

// merge refuses MERGE into or using a protected table (not supported: its
// WHEN branches mix comparisons and writes in ways not worth planning yet)
// and otherwise checks it like any statement.
func (a *analyzer) merge(m *pg.MergeStmt, parent *scope) (*outputs, error) {
	const why = "MERGE is not supported on protected tables; use INSERT … ON CONFLICT, UPDATE or DELETE"
	sc, err := a.with(m.WithClause, parent)
	if err != nil {
		return nil, err
	}
	target, err := a.tableRel(m.Relation, sc, false)
	if err != nil {
		return nil, err
	}
	if len(target.cols) > 0 {
		return nil, refuse("merge into", target.table, why)
	}
	mark := len(a.touched)
	level := &scope{parent: sc, rels: []*rel{target}}
	if err := a.fromItem(m.SourceRelation, level); err != nil {
		return nil, err
	}
	if len(a.touched) > mark {
		return nil, refuse("merge using", a.touched[mark], why)
	}
	if err := a.cond(m.JoinCondition, level); err != nil {
		return nil, err
	}
	for _, w := range m.MergeWhenClauses {
		mw := w.GetMergeWhenClause()
		if err := a.cond(mw.GetCondition(), level); err != nil {
			return nil, err
		}
		if err := a.assign(mw.GetTargetList(), target, level); err != nil {
			return nil, err
		}
		for _, v := range mw.GetValues() {
			if err := a.scalar(v, level); err != nil {
				return nil, err
			}
		}
	}
	return a.targets(m.ReturningList, level, keep, nil)
}

// assign plans SET col = value, … of UPDATE and ON CONFLICT DO UPDATE.
func (a *analyzer) assign(list []*pg.Node, target *rel, sc *scope) error {
	for _, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if len(target.cols) > 0 {
			if err := target.known(rt.Name); err != nil {
				return err
			}
		}
		col := target.cols[rt.Name]
		val := rt.Val
		if mar := val.GetMultiAssignRef(); mar != nil {
			// (a, b) = (x, y) assigns element colno to this target;
			// (a, b) = (SELECT …) takes the values from the server.
			row := mar.Source.GetRowExpr()
			if row == nil || int(mar.Colno) > len(row.Args) || mar.Colno < 1 {
				if col != nil {
					return refuse("store into", col.String(), "the value comes from a subquery computed by the server; "+whyComputed)
				}
				if mar.Colno == 1 {
					if err := a.walk(mar.Source, sc); err != nil {
						return err
					}
				}
				continue
			}
			val = row.Args[mar.Colno-1]
		}
		if col != nil {
			if len(rt.Indirection) > 0 {
				return refuse("store into", col.String(), "a field or element of an encrypted value cannot be assigned")
			}
			if err := a.store(col, val, sc); err != nil {
				return err
			}
			continue
		}
		o, err := a.value(val, sc)
		if err != nil {
			return err
		}
		if o.col != nil {
			return refuse("copy", o.col.String(), "assigning it to "+target.what()+"."+rt.Name+" would store its ciphertext in a column it is not bound to, where it does not decrypt")
		}
		a.release(o)
	}
	return nil
}

// store plans a value written into protected column col: a literal (Edit), a
// parameter (Params), NULL, DEFAULT, or the column's own ciphertext (SET
// email = email, = EXCLUDED.email, INSERT … SELECT email from the same
// column: ciphertext is bound to the column, not the row). Anything else is
// computed by the server and would be stored as plaintext.
func (a *analyzer) store(col *Column, n *pg.Node, sc *scope) error {
	if n.GetSetToDefault() != nil {
		return nil
	}
	if isLiteral(n) {
		return a.bind(col, n, "store into")
	}
	if cr := n.GetColumnRef(); cr != nil {
		if names, star := fields(cr); !star {
			c, err := sc.columnRef(names)
			if err != nil {
				return err
			}
			if same(c, col) {
				return nil
			}
			if c != nil {
				return refuse("store into", col.String(), "the value is the ciphertext of "+c.String()+", and ciphertext is bound to its column")
			}
		}
	}
	if tc := n.GetTypeCast(); tc != nil && tc.Arg.GetCaseExpr() != nil {
		return a.storeCase(col, tc.Arg.GetCaseExpr(), tc, sc)
	}
	if ce := n.GetCaseExpr(); ce != nil {
		return a.storeCase(col, ce, nil, sc)
	}
	return refuse("store into", col.String(), "the value is computed by the server ("+describe(n)+"); "+whyComputed)
}

// storeCase plans CASE WHEN cond THEN literal … [ELSE literal] END stored
// into col, as ORMs send for bulk updates (Django's bulk_update: SET phone
// = CAST(CASE WHEN id = 2 THEN '…' WHEN id = 5 THEN '…' ELSE NULL END AS
// varchar(32))). The server only picks one of the values: each result is
// encrypted in place, the conditions are planned as in WHERE, and a cast
// around the CASE is made a cast to bytea, which the ciphertext already
// is. Results that are not literals (or are parameters: the server would
// type them from the CASE, not as bytea) are refused as computed values.
func (a *analyzer) storeCase(col *Column, ce *pg.CaseExpr, cast *pg.TypeCast, sc *scope) error {
	if ce.Arg != nil {
		return refuse("store into", col.String(), "the value is computed by the server (a CASE with an operand); write CASE WHEN … THEN literal instead")
	}
	results := make([]*pg.Node, 0, len(ce.Args)+1)
	for _, w := range ce.Args {
		cw := w.GetCaseWhen()
		if cw == nil {
			return refuse("store into", col.String(), "the value is computed by the server (a CASE expression); "+whyComputed)
		}
		if err := a.cond(cw.Expr, sc); err != nil {
			return err
		}
		results = append(results, cw.Result)
	}
	if ce.Defresult != nil {
		results = append(results, ce.Defresult)
	}
	for _, r := range results {
		if !isLiteral(r) || paramOf(r) > 0 {
			return refuse("store into", col.String(), "a result of the CASE expression is computed by the server ("+describe(r)+"); "+whyComputed)
		}
		if err := a.bind(col, r, "store into"); err != nil {
			return err
		}
	}
	if cast == nil {
		return nil
	}
	start, end, ok := a.castType(cast)
	if !ok {
		return refuse("store into", col.String(), "pgcloak cannot find the type of the cast around the CASE expression in the text")
	}
	a.st.Edits = append(a.st.Edits, Edit{Start: start, End: end, Verbatim: "bytea"})
	return nil
}

// castType returns the range of the type name of a cast in the text:
// CAST(x AS type) or x::type.
func (a *analyzer) castType(tc *pg.TypeCast) (start, end int, ok bool) {
	if !a.scan() || tc.Location < 0 || tc.TypeName == nil || tc.TypeName.Location < 0 {
		return 0, 0, false
	}
	i := a.tokenAt(int(tc.Location))
	if i < 0 {
		return 0, 0, false
	}
	start = int(tc.TypeName.Location)
	switch a.toks[i].Token {
	case pg.Token_CAST:
		if i+1 >= len(a.toks) || a.toks[i+1].Token != tokLParen {
			return 0, 0, false
		}
		j := a.closing(i + 1)
		if j < 0 || int(a.toks[j].Start) < start {
			return 0, 0, false
		}
		return start, int(a.toks[j].Start), true
	case pg.Token_TYPECAST:
		if i+1 >= len(a.toks) || int(a.toks[i+1].Start) != start {
			return 0, 0, false
		}
		end, ok = a.typeNameEnd(i + 1)
		return start, end, ok
	}
	return 0, 0, false
}

// describe names the kind of a computed expression for messages.
func describe(n *pg.Node) string {
	switch v := n.GetNode().(type) {
	case *pg.Node_FuncCall:
		name, _ := funcName(v.FuncCall.Funcname)
		return "function " + name + "()"
	case *pg.Node_AExpr:
		return "operator " + opName(v.AExpr.Name)
	case *pg.Node_ColumnRef:
		return "a column reference"
	case *pg.Node_SubLink:
		return "a subquery"
	case *pg.Node_CaseExpr:
		return "a CASE expression"
	case *pg.Node_CoalesceExpr:
		return "COALESCE"
	case *pg.Node_TypeCast:
		return "a cast of " + describe(v.TypeCast.Arg)
	}
	return "an expression"
}

// known refuses a write to a column that the catalog does not show in a
// protected table: a value for it would go to the server unencrypted, and it
// may be a protected column renamed around pgcloak. The session reads the
// catalog again and plans once more before it gives this answer.
func (r *rel) known(name string) error {
	if r.all == nil {
		return nil
	}
	for _, n := range r.all {
		if n == name {
			return nil
		}
	}
	return &Refusal{Code: CodeUndefinedColumn, Op: "write", Column: r.table + "." + name,
		Reason: "pgcloak's catalog shows no such column in this protected table (renamed around pgcloak?); write to the columns the table has"}
}
