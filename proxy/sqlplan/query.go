package sqlplan

import (
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// outRule says what may become of a query's output columns.
type outRule struct {
	// keep: PostgreSQL reports the base column for the output (top level,
	// FROM subquery, CTE, cursor, RETURNING), so a protected column may be
	// selected plainly and the row codec decrypts it.
	keep bool
	// For the other contexts, op and why make the refusal.
	op, why string
}

var keep = outRule{keep: true}

// noneRule is for outputs that lose the column identity: scalar subqueries,
// set operations, INSERT … SELECT, CREATE TABLE AS.
func noneRule(op, why string) outRule { return outRule{op: op, why: why} }

var (
	subqueryRule = noneRule("return", "a subquery's value loses the column's identity, so pgcloak could not decrypt it")
	setOpRule    = noneRule("combine", "a UNION, INTERSECT or EXCEPT result loses the column's identity, so pgcloak could not decrypt it")
	insertRule   = noneRule("copy", "INSERT … SELECT would store its ciphertext in a column it is not bound to, where it does not decrypt")
)

// query plans any statement that can appear as a subquery or CTE and returns
// its output columns.
func (a *analyzer) query(n *pg.Node, parent *scope, rule outRule, bind []*Column) (*outputs, error) {
	switch v := n.GetNode().(type) {
	case nil:
		return &outputs{complete: true}, nil
	case *pg.Node_SelectStmt:
		return a.selectStmt(v.SelectStmt, parent, rule, bind)
	case *pg.Node_InsertStmt:
		return a.insert(v.InsertStmt, parent, rule)
	case *pg.Node_UpdateStmt:
		return a.update(v.UpdateStmt, parent, rule)
	case *pg.Node_DeleteStmt:
		return a.delete(v.DeleteStmt, parent, rule)
	case *pg.Node_MergeStmt:
		return a.merge(v.MergeStmt, parent)
	}
	if parent == nil {
		parent = &scope{}
	}
	return &outputs{complete: true}, a.walk(n, parent)
}

// selectStmt plans a SELECT (or VALUES, or set operation). bind, for the
// source of an INSERT, gives for each output position the protected column
// it is stored into (nil for unprotected ones).
func (a *analyzer) selectStmt(s *pg.SelectStmt, parent *scope, rule outRule, bind []*Column) (*outputs, error) {
	if s == nil {
		return &outputs{complete: true}, nil
	}
	sc, err := a.with(s.WithClause, parent)
	if err != nil {
		return nil, err
	}
	if s.Op > pg.SetOperation_SETOP_NONE {
		return a.setOp(s, sc, bind)
	}
	if len(s.ValuesLists) > 0 {
		return a.values(s, sc, bind)
	}
	level := &scope{parent: sc}
	for _, f := range s.FromClause {
		if err := a.fromItem(f, level); err != nil {
			return nil, err
		}
	}
	if err := a.cond(s.WhereClause, level); err != nil {
		return nil, err
	}
	out, err := a.targets(s.TargetList, level, rule, bind)
	if err != nil {
		return nil, err
	}
	for _, g := range s.GroupClause {
		if err := a.group(g, level, out, "group by"); err != nil {
			return nil, err
		}
	}
	if err := a.cond(s.HavingClause, level); err != nil {
		return nil, err
	}
	for _, w := range s.WindowClause {
		if err := a.window(w.GetWindowDef(), level); err != nil {
			return nil, err
		}
	}
	if err := a.distinct(s.DistinctClause, level, out); err != nil {
		return nil, err
	}
	for _, sb := range s.SortClause {
		if err := a.sort(sb, level, out); err != nil {
			return nil, err
		}
	}
	if err := a.scalar(s.LimitOffset, level); err != nil {
		return nil, err
	}
	return out, a.scalar(s.LimitCount, level)
}

// setOp plans UNION, INTERSECT and EXCEPT. Their results have no base column
// (RowDescription carries table OID 0), so no branch may output a protected
// column, and INSERT cannot take protected values from them.
func (a *analyzer) setOp(s *pg.SelectStmt, sc *scope, bind []*Column) (*outputs, error) {
	if c := firstColumn(bind); c != nil {
		return nil, refuse("store into", c.String(), "the values of INSERT … SELECT with UNION, INTERSECT or EXCEPT are computed by the server; "+whyComputed)
	}
	l, err := a.selectStmt(s.Larg, sc, setOpRule, nil)
	if err != nil {
		return nil, err
	}
	if _, err := a.selectStmt(s.Rarg, sc, setOpRule, nil); err != nil {
		return nil, err
	}
	// ORDER BY and LIMIT see only the (unprotected) outputs.
	level := &scope{parent: sc}
	for _, sb := range s.SortClause {
		if err := a.scalar(sb.GetSortBy().GetNode(), level); err != nil {
			return nil, err
		}
	}
	if err := a.scalar(s.LimitOffset, level); err != nil {
		return nil, err
	}
	if err := a.scalar(s.LimitCount, level); err != nil {
		return nil, err
	}
	out := &outputs{complete: l.complete}
	for _, o := range l.list {
		out.add(o.name, nil)
	}
	return out, nil
}

// values plans VALUES (…), (…): standalone, in FROM, or as INSERT's source,
// where each position may be bound to a protected column.
func (a *analyzer) values(s *pg.SelectStmt, sc *scope, bind []*Column) (*outputs, error) {
	out := &outputs{complete: true}
	for r, row := range s.ValuesLists {
		for i, item := range row.GetList().GetItems() {
			var err error
			if i < len(bind) && bind[i] != nil {
				err = a.store(bind[i], item, sc)
			} else {
				err = a.use(item, sc, "put", "into a VALUES list: "+whyLosesColumn)
			}
			if err != nil {
				return nil, err
			}
			if r == 0 {
				out.add("column"+strconv.Itoa(i+1), nil)
			}
		}
	}
	return out, nil
}

// targets plans a select list or RETURNING list and returns its outputs.
func (a *analyzer) targets(list []*pg.Node, sc *scope, rule outRule, bind []*Column) (*outputs, error) {
	out := &outputs{complete: true}
	for i, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if hasStar(rt.Val) {
			// * and (row).* expand to several values: their positions
			// against the target columns are not the list's.
			if c := firstColumn(bind[min(i, len(bind)):]); c != nil {
				return nil, refuse("store into", c.String(), "with * or (row).* in INSERT … SELECT pgcloak cannot tell which value goes to which column; list the values")
			}
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if names, star := fields(cr); star {
				for _, r := range sc.starRels(names) {
					r.expand(out)
				}
				if len(names) == 0 && sc.merged {
					out.complete = false
				}
				if c := out.protected(); c != nil && !rule.keep {
					return nil, refuse(rule.op, c.String(), rule.why)
				}
				continue
			}
		}
		name := rt.Name
		if name == "" {
			name = figureName(rt.Val)
		}
		if i < len(bind) && bind[i] != nil {
			if err := a.store(bind[i], rt.Val, sc); err != nil {
				return nil, err
			}
			out.add(name, nil)
			continue
		}
		o, err := a.value(rt.Val, sc)
		if err != nil {
			return nil, err
		}
		if o.col != nil && !rule.keep {
			return nil, refuse(rule.op, o.col.String(), rule.why)
		}
		a.release(o)
		out.add(name, o.col)
	}
	return out, nil
}

// resultColumns returns, for a plain top-level SELECT whose output columns
// are exactly its target list (no *, no set operation, no VALUES), the
// protected column behind each output (nil for the others); nil when that is
// not certain or nothing is protected. PostgreSQL's RowDescription has one
// field per target then, so pgcloak may bind the protected ones in binary
// before it has seen the description.
func resultColumns(s *pg.SelectStmt, out *outputs) []*Column {
	if out == nil || !out.complete || s.Op > pg.SetOperation_SETOP_NONE || len(s.ValuesLists) > 0 ||
		len(out.list) != len(s.TargetList) || out.protected() == nil {
		return nil
	}
	cols := make([]*Column, len(out.list))
	for i, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil || hasStar(rt.Val) {
			return nil
		}
		cols[i] = out.list[i].col
	}
	return cols
}

// hasStar reports whether a target expands to several columns: t.* or
// (expr).*.
func hasStar(n *pg.Node) bool {
	if cr := n.GetColumnRef(); cr != nil {
		_, star := fields(cr)
		return star
	}
	if ind := n.GetAIndirection(); ind != nil {
		for _, x := range ind.Indirection {
			if x.GetAStar() != nil {
				return true
			}
		}
	}
	return false
}

// group plans a GROUP BY, DISTINCT ON or PARTITION BY item: grouping needs
// equal values to have equal ciphertexts, which only deterministic columns
// give.
func (a *analyzer) group(n *pg.Node, sc *scope, out *outputs, op string) error {
	if gs := n.GetGroupingSet(); gs != nil {
		for _, c := range gs.Content {
			if err := a.group(c, sc, out, op); err != nil {
				return err
			}
		}
		return nil
	}
	if c := out.ref(n); c != nil && c.Mode != Deterministic {
		return refuse(op, c.String(), whyGroups)
	}
	o, err := a.value(n, sc)
	if err != nil {
		return err
	}
	if o.col != nil && o.col.Mode != Deterministic {
		return refuse(op, o.col.String(), whyGroups)
	}
	a.release(o)
	return nil
}

// sort plans an ORDER BY item: no protected column has an order.
func (a *analyzer) sort(n *pg.Node, sc *scope, out *outputs) error {
	item := n.GetSortBy().GetNode()
	if item == nil {
		item = n
	}
	if c := out.ref(item); c != nil {
		return withHint(refuse("order by", c.String(), whyNoOrder), hintNoOrder)
	}
	return withHint(a.use(item, sc, "order by", whyNoOrder), hintNoOrder)
}

// distinct plans DISTINCT and DISTINCT ON.
func (a *analyzer) distinct(list []*pg.Node, sc *scope, out *outputs) error {
	if len(list) == 1 && list[0].GetNode() == nil {
		// Plain DISTINCT compares whole output rows.
		for _, o := range out.list {
			if o.col != nil && o.col.Mode != Deterministic {
				return refuse("select distinct", o.col.String(), whyGroups)
			}
		}
		return nil
	}
	for _, d := range list {
		if err := a.group(d, sc, out, "select distinct on"); err != nil {
			return err
		}
	}
	return nil
}

// window plans a window definition (OVER (…) or WINDOW w AS (…)).
func (a *analyzer) window(w *pg.WindowDef, sc *scope) error {
	if w == nil {
		return nil
	}
	for _, p := range w.PartitionClause {
		if err := a.group(p, sc, nil, "partition by"); err != nil {
			return err
		}
	}
	for _, o := range w.OrderClause {
		if err := a.sort(o, sc, nil); err != nil {
			return err
		}
	}
	if err := a.scalar(w.StartOffset, sc); err != nil {
		return err
	}
	return a.scalar(w.EndOffset, sc)
}

// ref returns the protected column an ORDER BY / GROUP BY item names by
// output position (ORDER BY 1) or output name (ORDER BY alias).
func (o *outputs) ref(n *pg.Node) *Column {
	if o == nil {
		return nil
	}
	if c := n.GetAConst(); c != nil {
		if iv, ok := c.Val.(*pg.A_Const_Ival); ok {
			k := int(iv.Ival.GetIval())
			if !o.complete {
				return o.protected() // positions unknown: assume the worst
			}
			if k >= 1 && k <= len(o.list) {
				return o.list[k-1].col
			}
		}
		return nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		name := str(cr.Fields[0])
		for _, x := range o.list {
			if x.name == name && x.col != nil {
				return x.col
			}
		}
	}
	return nil
}

// with plans a WITH clause and returns the scope its CTEs are visible in.
func (a *analyzer) with(w *pg.WithClause, parent *scope) (*scope, error) {
	if w == nil || len(w.Ctes) == 0 {
		return parent, nil
	}
	sc := &scope{parent: parent}
	for _, n := range w.Ctes {
		c := n.GetCommonTableExpr()
		if c == nil {
			continue
		}
		def := &cte{name: c.Ctename}
		if w.Recursive {
			sc.ctes = append(sc.ctes, def) // visible to itself, outputs unknown
		}
		out, err := a.query(c.Ctequery, sc, keep, nil)
		if err != nil {
			return nil, err
		}
		if p := out.protected(); p != nil && len(c.Aliascolnames) > 0 {
			return nil, refuse("rename", p.String(), "column alias lists over protected columns are not supported; alias the column in the CTE's select list instead")
		}
		def.out = out
		def.aliases = c.Aliascolnames
		if !w.Recursive {
			sc.ctes = append(sc.ctes, def)
		}
	}
	return sc, nil
}

// figureName approximates the output column name PostgreSQL gives an
// unaliased select-list expression (FigureColname).
func figureName(n *pg.Node) string {
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		if f := v.ColumnRef.Fields; len(f) > 0 {
			if s := str(f[len(f)-1]); s != "" {
				return s
			}
		}
	case *pg.Node_FuncCall:
		name, _ := funcName(v.FuncCall.Funcname)
		return name
	case *pg.Node_TypeCast:
		if name := figureName(v.TypeCast.Arg); name != "?column?" {
			return name
		}
		if names := v.TypeCast.TypeName.GetNames(); len(names) > 0 {
			return str(names[len(names)-1])
		}
	case *pg.Node_CaseExpr:
		return "case"
	}
	return "?column?"
}

// firstColumn returns the first non-nil column, or nil.
func firstColumn(cols []*Column) *Column {
	for _, c := range cols {
		if c != nil {
			return c
		}
	}
	return nil
}
