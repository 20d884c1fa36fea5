package sqlplan

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The expression walk follows one rule: wherever an expression's value is
// consumed, the consumer decides what a protected column may be there. value
// classifies an expression; a consumer that has no special use for a
// protected column calls use, which refuses it. Only a few consumers accept
// one: a select list (plain output), IS [NOT] NULL, count(), equality with a
// deterministic column, GROUP BY / DISTINCT on a deterministic column, and
// the same column's own ciphertext as the value stored into it.

// operand is an expression as far as encryption is concerned.
type operand struct {
	col *Column  // a plain reference to a protected column
	lit *pg.Node // a literal, NULL or $n, possibly signed or cast: encryptable in place
}

// value classifies n. Anything but a column reference or literal is walked
// (its parts checked) and comes back as a plain operand.
func (a *analyzer) value(n *pg.Node, sc *scope) (operand, error) {
	if cr := n.GetColumnRef(); cr != nil {
		names, star := fields(cr)
		if star {
			// t.* inside an expression (ROW(t.*), row_to_json(t.*)) packs
			// ciphertext into a composite value.
			for _, r := range sc.starRels(names) {
				if len(r.cols) > 0 {
					return operand{}, refuse("use", r.what(), "a whole-row reference would return ciphertext inside a record; select the columns")
				}
			}
			return operand{}, nil
		}
		col, err := sc.columnRef(names)
		return operand{col: col}, err
	}
	if isLiteral(n) {
		return operand{lit: n}, nil
	}
	return operand{}, a.walk(n, sc)
}

// release marks an operand as used as is: a parameter in it then carries a
// plain value (see finish).
func (a *analyzer) release(o operand) {
	if o.lit != nil {
		if p := paramOf(o.lit); p > 0 {
			a.usePlain(p)
		}
	}
}

// use checks n in a position where a protected column cannot be: the
// refusal reads "cannot <op> <column>: <why>".
func (a *analyzer) use(n *pg.Node, sc *scope, op, why string) error {
	o, err := a.value(n, sc)
	if err != nil {
		return err
	}
	if o.col != nil {
		return refuse(op, o.col.String(), why)
	}
	a.release(o)
	return nil
}

// cond checks a condition (WHERE, ON, HAVING, FILTER, WHEN).
func (a *analyzer) cond(n *pg.Node, sc *scope) error {
	return a.use(n, sc, "use", "as a condition: ciphertext is not a boolean")
}

// scalar checks an expression whose value the server uses (LIMIT, function
// arguments of FROM items, …).
func (a *analyzer) scalar(n *pg.Node, sc *scope) error {
	return a.use(n, sc, "use", "pgcloak cannot evaluate expressions over ciphertext")
}

// plain accepts a plain protected column (ON CONFLICT (col)) and checks
// anything else.
func (a *analyzer) plain(n *pg.Node, sc *scope) error {
	o, err := a.value(n, sc)
	if err == nil {
		a.release(o)
	}
	return err
}

// walk checks the parts of a compound expression.
func (a *analyzer) walk(n *pg.Node, sc *scope) error {
	const whyValue = "its result would be ciphertext without the column's identity, so pgcloak could not decrypt it"
	switch v := n.GetNode().(type) {
	case nil, *pg.Node_AConst, *pg.Node_SetToDefault, *pg.Node_SqlvalueFunction, *pg.Node_AStar:
		return nil
	case *pg.Node_ParamRef:
		a.usePlain(int(v.ParamRef.Number))
		return nil
	case *pg.Node_ColumnRef:
		return a.scalar(n, sc)
	case *pg.Node_AExpr:
		return a.aExpr(v.AExpr, sc)
	case *pg.Node_BoolExpr:
		return a.each(v.BoolExpr.Args, sc, "use", "as a condition: ciphertext is not a boolean")
	case *pg.Node_NullTest:
		// IS [NOT] NULL works in every mode: NULL stays NULL.
		return a.plain(v.NullTest.Arg, sc)
	case *pg.Node_BooleanTest:
		return a.use(v.BooleanTest.Arg, sc, "test", "IS TRUE/FALSE/UNKNOWN cannot be evaluated on ciphertext")
	case *pg.Node_FuncCall:
		return a.funcCall(v.FuncCall, sc)
	case *pg.Node_TypeCast:
		return a.use(v.TypeCast.Arg, sc, "cast", "a cast would see ciphertext; select the column plainly and pgcloak returns it in its logical type")
	case *pg.Node_CollateClause:
		return a.use(v.CollateClause.Arg, sc, "collate", "collations do not apply to ciphertext")
	case *pg.Node_SubLink:
		return a.subLink(v.SubLink, sc)
	case *pg.Node_CaseExpr:
		return a.caseExpr(v.CaseExpr, sc)
	case *pg.Node_CoalesceExpr:
		return a.each(v.CoalesceExpr.Args, sc, "apply COALESCE to", whyValue)
	case *pg.Node_MinMaxExpr:
		return a.each(v.MinMaxExpr.Args, sc, "apply GREATEST/LEAST to", whyNoOrder)
	case *pg.Node_RowExpr:
		return a.each(v.RowExpr.Args, sc, "put", "into a row value: "+whyValue)
	case *pg.Node_AArrayExpr:
		return a.each(v.AArrayExpr.Elements, sc, "put", "into an array: "+whyValue)
	case *pg.Node_AIndirection:
		return a.use(v.AIndirection.Arg, sc, "subscript", "an encrypted value has no fields or elements")
	case *pg.Node_List:
		return a.each(v.List.Items, sc, "use", "pgcloak cannot evaluate expressions over ciphertext")
	case *pg.Node_SelectStmt:
		_, err := a.selectStmt(v.SelectStmt, sc, subqueryRule, nil)
		return err
	}
	return a.generic(n, sc)
}

// each applies use to every node of a list.
func (a *analyzer) each(list []*pg.Node, sc *scope, op, why string) error {
	for _, n := range list {
		if err := a.use(n, sc, op, why); err != nil {
			return err
		}
	}
	return nil
}

// aExpr plans an operator expression.
func (a *analyzer) aExpr(e *pg.A_Expr, sc *scope) error {
	op := opName(e.Name)
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if e.Lexpr == nil {
			return a.use(e.Rexpr, sc, "apply operator "+op+" to", "operators cannot be evaluated on ciphertext")
		}
		if op == "=" || op == "<>" {
			// (a, b) = (x, y) compares element by element.
			if l, r := e.Lexpr.GetRowExpr(), e.Rexpr.GetRowExpr(); l != nil && r != nil && len(l.Args) == len(r.Args) {
				for i := range l.Args {
					if err := a.compareNodes(l.Args[i], r.Args[i], sc); err != nil {
						return err
					}
				}
				return nil
			}
			return a.compareNodes(e.Lexpr, e.Rexpr, sc)
		}
		return a.operator(op, e.Lexpr, e.Rexpr, sc)
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		return a.compareNodes(e.Lexpr, e.Rexpr, sc)
	case pg.A_Expr_Kind_AEXPR_IN:
		return a.in(e, sc)
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		const why = "op ANY/ALL (array) is not supported on encrypted columns; use IN (…)"
		if err := a.use(e.Lexpr, sc, "compare", why); err != nil {
			return err
		}
		return a.use(e.Rexpr, sc, "compare", why)
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		const why = "NULLIF compares on the server and returns a value without the column's identity"
		if err := a.use(e.Lexpr, sc, "apply NULLIF to", why); err != nil {
			return err
		}
		return a.use(e.Rexpr, sc, "apply NULLIF to", why)
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE, pg.A_Expr_Kind_AEXPR_SIMILAR:
		const why = "LIKE, ILIKE and SIMILAR TO cannot be evaluated on ciphertext"
		for _, side := range []*pg.Node{e.Lexpr, e.Rexpr} {
			// ORMs cast the column first (Django: full_name::text LIKE
			// 'A%'): the refusal names the match, not the cast.
			if c := a.castColumn(side, sc); c != nil {
				return withHint(refuse("match", c.String(), why), hintNoMatch)
			}
			if err := a.use(side, sc, "match", why); err != nil {
				return withHint(err, hintNoMatch)
			}
		}
		return nil
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		if err := a.use(e.Lexpr, sc, "compare", whyNoOrder+" (BETWEEN)"); err != nil {
			return err
		}
		return a.use(e.Rexpr, sc, "compare", whyNoOrder+" (BETWEEN)")
	}
	return a.generic(&pg.Node{Node: &pg.Node_AExpr{AExpr: e}}, sc)
}

// operator checks an operator other than = and <>.
func (a *analyzer) operator(op string, l, r *pg.Node, sc *scope) error {
	verb, why := "apply operator "+op+" to", "operators cannot be evaluated on ciphertext"
	switch op {
	case "<", ">", "<=", ">=":
		verb, why = "compare", whyNoOrder+": "+op+" cannot be evaluated"
	}
	if err := a.use(l, sc, verb, why); err != nil {
		return err
	}
	return a.use(r, sc, verb, why)
}

// compareNodes plans l = r (or <>, IS DISTINCT FROM).
func (a *analyzer) compareNodes(l, r *pg.Node, sc *scope) error {
	lo, err := a.value(l, sc)
	if err != nil {
		return err
	}
	ro, err := a.value(r, sc)
	if err != nil {
		return err
	}
	return a.compare(lo, ro)
}

// compare plans an equality comparison between two operands. Only a
// deterministic column compares, with a literal or parameter (encrypted for
// that column) or with another deterministic column (a join pair the session
// checks for a shared key).
func (a *analyzer) compare(l, r operand) error {
	if l.col == nil && r.col == nil {
		a.release(l)
		a.release(r)
		return nil
	}
	if l.col == nil {
		l, r = r, l
	}
	if l.col.Mode != Deterministic {
		return refuse("compare", l.col.String(), whyRandomized)
	}
	switch {
	case r.col != nil:
		if r.col.Mode != Deterministic {
			return refuse("compare", r.col.String(), whyRandomized)
		}
		if !same(l.col, r.col) {
			a.join(l.col, r.col)
		}
		return nil
	case r.lit != nil:
		return a.bind(l.col, r.lit, "compare")
	}
	return refuse("compare", l.col.String(), "it is compared with a value the server computes or with an unprotected column; only literals, parameters and deterministic columns compare with it")
}

// in plans x [NOT] IN (a, b, …): one equality per element.
func (a *analyzer) in(e *pg.A_Expr, sc *scope) error {
	items := e.Rexpr.GetList().GetItems()
	if row := e.Lexpr.GetRowExpr(); row != nil {
		const why = "row comparisons with IN are not supported on encrypted columns; compare the columns one by one"
		if err := a.each(row.Args, sc, "compare", why); err != nil {
			return err
		}
		return a.each(items, sc, "compare", why)
	}
	l, err := a.value(e.Lexpr, sc)
	if err != nil {
		return err
	}
	bound, plain := false, false
	for _, item := range items {
		r, err := a.value(item, sc)
		if err != nil {
			return err
		}
		if l.lit != nil {
			// 'x' IN (ssn, 'y'): the literal cannot be both ciphertext and plaintext.
			if r.col != nil {
				bound = true
			} else {
				plain = true
			}
		}
		if err := a.compare(l, r); err != nil {
			return err
		}
	}
	if bound && plain {
		return refuse("compare", "", "a literal compared with both encrypted and plain values; split the condition")
	}
	return nil
}

// funcCall plans a function call: a protected column may only be counted.
func (a *analyzer) funcCall(fc *pg.FuncCall, sc *scope) error {
	name, schema := funcName(fc.Funcname)
	catalog := schema == "" || schema == "pg_catalog"
	if err := a.window(fc.Over, sc); err != nil {
		return err
	}
	if catalog && name == "set_config" {
		if err := a.setConfig(fc); err != nil {
			return err
		}
	}
	for _, arg := range fc.Args {
		o, err := a.value(arg, sc)
		if err != nil {
			return err
		}
		if o.col != nil {
			// count(col) only tests for NULL; count(DISTINCT col) compares.
			if catalog && name == "count" && len(fc.Args) == 1 {
				if fc.AggDistinct && o.col.Mode != Deterministic {
					return refuse("count distinct", o.col.String(), whyGroups)
				}
				continue
			}
			return refuse("apply "+name+"() to", o.col.String(), "functions would see ciphertext, not the value")
		}
		a.release(o)
	}
	for _, s := range fc.AggOrder {
		if err := a.sort(s, sc, nil); err != nil {
			return err
		}
	}
	return a.cond(fc.AggFilter, sc)
}

// subLink plans a subquery inside an expression.
func (a *analyzer) subLink(sl *pg.SubLink, sc *scope) error {
	switch sl.SubLinkType {
	case pg.SubLinkType_EXISTS_SUBLINK:
		_, err := a.query(sl.Subselect, sc, keep, nil) // its output is never looked at
		return err
	case pg.SubLinkType_ANY_SUBLINK, pg.SubLinkType_ALL_SUBLINK:
		// x IN (SELECT y …), x = ANY (SELECT y …): x is compared with y.
		out, err := a.query(sl.Subselect, sc, keep, nil)
		if err != nil {
			return err
		}
		op := opName(sl.OperName)
		if op == "" {
			op = "=" // IN
		}
		if sl.Testexpr.GetRowExpr() == nil && out.complete && len(out.list) == 1 {
			l, err := a.value(sl.Testexpr, sc)
			if err != nil {
				return err
			}
			r := operand{col: out.list[0].col}
			if op == "=" || op == "<>" {
				return a.compare(l, r)
			}
			if c := firstOf(l.col, r.col); c != nil {
				return refuse("compare", c.String(), whyNoOrder+": "+op+" cannot be evaluated")
			}
			a.release(l)
			return nil
		}
		if c := out.protected(); c != nil {
			return refuse("compare", c.String(), "row comparisons against a subquery are not supported on encrypted columns")
		}
		return a.use(sl.Testexpr, sc, "compare", "row comparisons against a subquery are not supported on encrypted columns")
	case pg.SubLinkType_ROWCOMPARE_SUBLINK:
		out, err := a.query(sl.Subselect, sc, keep, nil)
		if err != nil {
			return err
		}
		if c := out.protected(); c != nil {
			return refuse("compare", c.String(), "row comparisons against a subquery are not supported on encrypted columns")
		}
		return a.use(sl.Testexpr, sc, "compare", "row comparisons against a subquery are not supported on encrypted columns")
	}
	// EXPR (scalar), ARRAY, MULTIEXPR: the subquery's value leaves it
	// without the base column's identity.
	_, err := a.query(sl.Subselect, sc, subqueryRule, nil)
	return err
}

// caseExpr plans CASE: conditions are checked, results must not be protected
// columns (a CASE value has no base column), CASE x WHEN v compares x = v.
func (a *analyzer) caseExpr(c *pg.CaseExpr, sc *scope) error {
	const why = "a CASE result loses the column's identity, so pgcloak could not decrypt it"
	var arg operand
	if c.Arg != nil {
		var err error
		if arg, err = a.value(c.Arg, sc); err != nil {
			return err
		}
	}
	for _, n := range c.Args {
		w := n.GetCaseWhen()
		if w == nil {
			continue
		}
		if c.Arg != nil {
			r, err := a.value(w.Expr, sc)
			if err != nil {
				return err
			}
			if err := a.compare(arg, r); err != nil {
				return err
			}
		} else if err := a.cond(w.Expr, sc); err != nil {
			return err
		}
		if err := a.use(w.Result, sc, "return", why); err != nil {
			return err
		}
	}
	return a.use(c.Defresult, sc, "return", why)
}

// generic checks every expression below an expression node this file does
// not know by name (XML and JSON constructs, GROUPING(), named arguments,
// …): none of them may see a protected column. The walk goes by the
// protobuf descriptors, so node types added to the grammar are covered
// without code here, and fail closed.
func (a *analyzer) generic(n *pg.Node, sc *scope) error {
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("node"))
	if fd == nil {
		return nil
	}
	inner := m.Get(fd).Message()
	return a.genericFields(inner, sc, string(inner.Descriptor().Name()))
}

func (a *analyzer) genericFields(m protoreflect.Message, sc *scope, what string) (err error) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = a.genericChild(l.Get(i).Message(), sc, what)
			}
		} else {
			err = a.genericChild(v.Message(), sc, what)
		}
		return err == nil
	})
	return err
}

func (a *analyzer) genericChild(m protoreflect.Message, sc *scope, what string) error {
	if n, ok := m.Interface().(*pg.Node); ok {
		return a.use(n, sc, "use", "pgcloak cannot evaluate "+what+" over ciphertext")
	}
	return a.genericFields(m, sc, what)
}

// opName returns an operator's name; a schema other than pg_catalog is kept
// (OPERATOR(myschema.=) is not the built-in equality).
func opName(names []*pg.Node) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return str(names[0])
	}
	schema, op := str(names[len(names)-2]), str(names[len(names)-1])
	if schema == "pg_catalog" {
		return op
	}
	return schema + "." + op
}

// funcName returns a function's name and schema ("" if unqualified).
func funcName(names []*pg.Node) (name, schema string) {
	switch len(names) {
	case 0:
		return "", ""
	case 1:
		return str(names[0]), ""
	}
	return str(names[len(names)-1]), str(names[len(names)-2])
}

// castColumn returns the protected column that n casts (col::text), or nil.
func (a *analyzer) castColumn(n *pg.Node, sc *scope) *Column {
	if n.GetTypeCast() == nil {
		return nil
	}
	for n.GetTypeCast() != nil && n.GetTypeCast().Arg != nil {
		n = n.GetTypeCast().Arg
	}
	cr := n.GetColumnRef()
	if cr == nil {
		return nil
	}
	names, star := fields(cr)
	if star {
		return nil
	}
	c, err := sc.columnRef(names)
	if err != nil {
		return nil
	}
	return c
}

// withHint gives a refusal a hint, unless it has one.
func withHint(err error, hint string) error {
	if r, ok := err.(*Refusal); ok && r.Hint == "" {
		r.Hint = hint
	}
	return err
}
