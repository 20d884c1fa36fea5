package sqlplan

import (
	"sort"
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The parse tree gives only where a node starts. Where a literal ends comes
// from the scanner's tokens: a constant is one token (a folded negative
// number is '-' tokens and parentheses, then the number; U&'…' may be
// followed by UESCAPE '…'); a cast ends with its type name, which is walked
// token by token following the grammar of type names. A range that covers a
// cast is then checked by parsing it on its own: it must parse to the same
// literal with the same type, or the statement is refused.

// Token kinds of single characters, for readability.
const (
	tokLParen   = pg.Token_ASCII_40
	tokRParen   = pg.Token_ASCII_41
	tokMinus    = pg.Token_ASCII_45
	tokDot      = pg.Token_ASCII_46
	tokLBracket = pg.Token_ASCII_91
	tokRBracket = pg.Token_ASCII_93
)

const whyLocate = "pgcloak cannot delimit this literal in the text; write it as a plain literal or a parameter"

// lit is a literal located in the text.
type lit struct {
	start, end int
	value      string
	null       bool
	param      int  // $n, or 0
	cast       bool // wrapped in at least one cast
	number     bool // a numeric constant (may take a sign)
}

// isLiteral reports whether n is a value that can be encrypted in place: a
// constant, NULL or $n, possibly cast, or a negated number.
func isLiteral(n *pg.Node) bool {
	switch v := n.GetNode().(type) {
	case *pg.Node_AConst, *pg.Node_ParamRef:
		return true
	case *pg.Node_TypeCast:
		return isLiteral(v.TypeCast.Arg)
	case *pg.Node_AExpr:
		e := v.AExpr
		return e.Kind == pg.A_Expr_Kind_AEXPR_OP && e.Lexpr == nil && opName(e.Name) == "-" && isLiteral(e.Rexpr) && paramOf(e.Rexpr) == 0
	}
	return false
}

// paramOf returns n of the $n inside a literal, or 0.
func paramOf(n *pg.Node) int {
	switch v := n.GetNode().(type) {
	case *pg.Node_ParamRef:
		return int(v.ParamRef.Number)
	case *pg.Node_TypeCast:
		return paramOf(v.TypeCast.Arg)
	case *pg.Node_AExpr:
		return paramOf(v.AExpr.Rexpr)
	}
	return 0
}

// bind plans literal n as a value of protected column col: an Edit, or for
// $n an entry in Params.
func (a *analyzer) bind(col *Column, n *pg.Node, op string) error {
	l, why := a.literal(n)
	if why != "" {
		return refuse(op, col.String(), why)
	}
	if l.param > 0 {
		if l.cast {
			// The cast would make the server type the parameter as the
			// logical type, but it receives bytea.
			return refuse(op, col.String(), "remove the cast on $"+strconv.Itoa(l.param)+": pgcloak sends the parameter as bytea")
		}
		a.bindParam(l.param, col)
		return nil
	}
	a.st.Edits = append(a.st.Edits, Edit{Start: l.start, End: l.end, Column: col, Value: l.value, Null: l.null})
	return nil
}

// literal locates literal n (see isLiteral) in the text. why is non-empty
// when it cannot be done safely.
func (a *analyzer) literal(n *pg.Node) (lit, string) {
	if !a.scan() {
		return lit{}, whyLocate
	}
	l, why := a.locate(n)
	if why != "" {
		return l, why
	}
	if n.GetAConst() == nil && n.GetParamRef() == nil && !a.verify(n, l) {
		return l, whyLocate
	}
	return l, ""
}

// locate computes the range and value of literal n.
func (a *analyzer) locate(n *pg.Node) (lit, string) {
	switch v := n.GetNode().(type) {
	case *pg.Node_AConst:
		return a.constant(v.AConst)
	case *pg.Node_ParamRef:
		i := a.tokenAt(int(v.ParamRef.Location))
		if i < 0 || a.toks[i].Token != pg.Token_PARAM {
			return lit{}, whyLocate
		}
		return lit{start: int(a.toks[i].Start), end: int(a.toks[i].End), param: int(v.ParamRef.Number)}, ""
	case *pg.Node_TypeCast:
		return a.cast(v.TypeCast)
	case *pg.Node_AExpr:
		return a.negated(v.AExpr)
	}
	return lit{}, whyLocate
}

// constant locates an A_Const.
func (a *analyzer) constant(c *pg.A_Const) (lit, string) {
	first := a.tokenAt(int(c.Location))
	if first < 0 {
		return lit{}, whyLocate
	}
	// A negative number is folded into the constant: '-' (and parentheses,
	// -(5)) come before the number token.
	i, opens := first, 0
	for ; i < len(a.toks); i++ {
		if t := a.toks[i].Token; t == tokLParen {
			opens++
		} else if t != tokMinus {
			break
		}
	}
	if i >= len(a.toks) {
		return lit{}, whyLocate
	}
	t := a.toks[i]
	l := lit{start: int(a.toks[first].Start), end: int(t.End)}
	signed := i > first
	switch v := c.Val.(type) {
	case nil:
		if !c.Isnull || t.Token != pg.Token_NULL_P || signed {
			return lit{}, whyLocate
		}
		l.null = true
	case *pg.A_Const_Ival:
		if t.Token != pg.Token_ICONST {
			return lit{}, whyLocate
		}
		l.value, l.number = strconv.FormatInt(int64(v.Ival.GetIval()), 10), true
	case *pg.A_Const_Fval:
		if t.Token != pg.Token_ICONST && t.Token != pg.Token_FCONST {
			return lit{}, whyLocate
		}
		l.value, l.number = v.Fval.GetFval(), true
	case *pg.A_Const_Sval:
		if signed {
			return lit{}, whyLocate
		}
		switch t.Token {
		case pg.Token_SCONST:
		case pg.Token_USCONST:
			// U&'…' UESCAPE '!' is three tokens.
			if i+2 < len(a.toks) && a.toks[i+1].Token == pg.Token_UESCAPE && a.toks[i+2].Token == pg.Token_SCONST {
				i += 2
				l.end = int(a.toks[i].End)
			}
		default:
			return lit{}, whyLocate
		}
		l.value = v.Sval.GetSval()
	case *pg.A_Const_Boolval:
		if signed || (t.Token != pg.Token_TRUE_P && t.Token != pg.Token_FALSE_P) {
			return lit{}, whyLocate
		}
		l.value = strconv.FormatBool(v.Boolval.GetBoolval())
	default: // B'…', X'…'
		return lit{}, "bit-string literals are not supported for encrypted columns; write the value as a string"
	}
	for ; opens > 0; opens-- {
		i++
		if i >= len(a.toks) || a.toks[i].Token != tokRParen {
			return lit{}, whyLocate
		}
		l.end = int(a.toks[i].End)
	}
	return l, ""
}

// cast locates 'x'::type, CAST('x' AS type) and type 'x'. The value is the
// inner literal's; the range covers the cast.
func (a *analyzer) cast(tc *pg.TypeCast) (lit, string) {
	l, why := a.locate(tc.Arg)
	if why != "" {
		return l, why
	}
	l.cast = true
	tn := tc.TypeName
	if tc.Location < 0 {
		// type 'string': DATE '2024-01-01', N'x'. INTERVAL '1' DAY has
		// fields after the string; it is not a protectable type anyway.
		if tn == nil || tn.Location < 0 || int(tn.Location) >= l.start || typeIs(tn, "interval") {
			return lit{}, whyLocate
		}
		l.start = int(tn.Location)
		return l, ""
	}
	i := a.tokenAt(int(tc.Location))
	if i < 0 {
		return lit{}, whyLocate
	}
	switch a.toks[i].Token {
	case pg.Token_CAST:
		if i+1 >= len(a.toks) || a.toks[i+1].Token != tokLParen {
			return lit{}, whyLocate
		}
		j := a.closing(i + 1)
		if j < 0 || l.start < int(a.toks[i+1].End) || l.end > int(a.toks[j].Start) {
			return lit{}, whyLocate
		}
		l.start, l.end = int(a.toks[i].Start), int(a.toks[j].End)
	case pg.Token_TYPECAST:
		// ('x')::text: parentheses between the literal and :: belong to
		// the range, with their partners before the literal.
		first, last := a.tokenAt(l.start), a.tokenEndingAt(l.end)
		if first < 0 || last < 0 || last >= i {
			return lit{}, whyLocate
		}
		k := 0
		for j := last + 1; j < i; j++ {
			if a.toks[j].Token != tokRParen {
				return lit{}, whyLocate
			}
			k++
		}
		for j := first - 1; j >= first-k; j-- {
			if j < 0 || a.toks[j].Token != tokLParen {
				return lit{}, whyLocate
			}
		}
		end, ok := a.typeNameEnd(i + 1)
		if !ok {
			return lit{}, whyLocate
		}
		l.start, l.end = int(a.toks[first-k].Start), end
	default:
		return lit{}, whyLocate
	}
	return l, ""
}

// negated locates -(number) that the grammar did not fold, as in -5::int
// (the cast binds tighter than the sign).
func (a *analyzer) negated(e *pg.A_Expr) (lit, string) {
	l, why := a.locate(e.Rexpr)
	if why != "" {
		return l, why
	}
	if !l.number {
		return lit{}, whyLocate
	}
	i := a.tokenAt(int(e.Location))
	first, last := a.tokenAt(l.start), a.tokenEndingAt(l.end)
	if i < 0 || first <= i || last < 0 || a.toks[i].Token != tokMinus {
		return lit{}, whyLocate
	}
	k := 0
	for j := i + 1; j < first; j++ {
		if a.toks[j].Token != tokLParen {
			return lit{}, whyLocate
		}
		k++
	}
	for ; k > 0; k-- {
		last++
		if last >= len(a.toks) || a.toks[last].Token != tokRParen {
			return lit{}, whyLocate
		}
	}
	l.start, l.end = int(a.toks[i].Start), int(a.toks[last].End)
	if len(l.value) > 0 && l.value[0] == '-' {
		l.value = l.value[1:]
	} else {
		l.value = "-" + l.value
	}
	return l, ""
}

// typeNameEnd returns the end offset of the type name whose first token is
// toks[i], following the grammar's Typename (gram.y): generic names
// (schema-qualified, with modifiers), the SQL-standard multi-word types, and
// array bounds.
func (a *analyzer) typeNameEnd(i int) (int, bool) {
	at := func(k int) pg.Token {
		if k < len(a.toks) {
			return a.toks[k].Token
		}
		return 0
	}
	mods := func(k int) int { // optional ( … )
		if at(k) == tokLParen {
			if j := a.closing(k); j >= 0 {
				return j + 1
			}
			return -1
		}
		return k
	}
	k := i
	switch at(k) {
	case pg.Token_INT_P, pg.Token_INTEGER, pg.Token_SMALLINT, pg.Token_BIGINT, pg.Token_REAL, pg.Token_BOOLEAN_P, pg.Token_JSON:
		k++
	case pg.Token_FLOAT_P, pg.Token_DECIMAL_P, pg.Token_DEC, pg.Token_NUMERIC, pg.Token_VARCHAR:
		k = mods(k + 1)
	case pg.Token_BIT, pg.Token_CHARACTER, pg.Token_CHAR_P, pg.Token_NCHAR, pg.Token_NATIONAL:
		if at(k) == pg.Token_NATIONAL {
			k++
			if at(k) != pg.Token_CHARACTER && at(k) != pg.Token_CHAR_P {
				return 0, false
			}
		}
		k++
		if at(k) == pg.Token_VARYING {
			k++
		}
		k = mods(k)
	case pg.Token_TIMESTAMP, pg.Token_TIME:
		k = mods(k + 1)
		if k >= 0 && (at(k) == pg.Token_WITH || at(k) == pg.Token_WITHOUT) {
			if at(k+1) != pg.Token_TIME || at(k+2) != pg.Token_ZONE {
				return 0, false
			}
			k += 3
		}
	case pg.Token_INTERVAL, pg.Token_SETOF:
		return 0, false
	case pg.Token_DOUBLE_P:
		if at(k+1) == pg.Token_PRECISION {
			k += 2
			break
		}
		fallthrough
	default:
		// GenericType: type_function_name [. attr …] [( … )]
		t := a.toks[min(k, len(a.toks)-1)]
		if k >= len(a.toks) || !(t.Token == pg.Token_IDENT || t.KeywordKind == pg.KeywordKind_UNRESERVED_KEYWORD || t.KeywordKind == pg.KeywordKind_TYPE_FUNC_NAME_KEYWORD) {
			return 0, false
		}
		k++
		for at(k) == tokDot && k+1 < len(a.toks) && (a.toks[k+1].Token == pg.Token_IDENT || a.toks[k+1].KeywordKind != pg.KeywordKind_NO_KEYWORD) {
			k += 2
		}
		k = mods(k)
	}
	if k < 0 {
		return 0, false
	}
	// Array bounds: [] [n] … or ARRAY [n].
	if at(k) == pg.Token_ARRAY {
		k++
	}
	for at(k) == tokLBracket {
		k++
		if at(k) == pg.Token_ICONST {
			k++
		}
		if at(k) != tokRBracket {
			return 0, false
		}
		k++
	}
	if k <= i || k > len(a.toks) {
		return 0, false
	}
	return int(a.toks[k-1].End), true
}

// verify checks that sql[l.start:l.end] on its own parses to the same
// literal as n: the range is exactly the expression, no more, no less.
func (a *analyzer) verify(n *pg.Node, l lit) bool {
	res, err := pg.Parse("SELECT " + a.sql[l.start:l.end])
	if err != nil || len(res.Stmts) != 1 {
		return false
	}
	s := res.Stmts[0].Stmt.GetSelectStmt()
	if s == nil || len(s.TargetList) != 1 || len(s.FromClause) != 0 || s.WhereClause != nil {
		return false
	}
	rt := s.TargetList[0].GetResTarget()
	return rt != nil && rt.Name == "" && sameLiteral(n, rt.Val)
}

// sameLiteral compares two literal trees, ignoring locations.
func sameLiteral(x, y *pg.Node) bool {
	switch v := x.GetNode().(type) {
	case *pg.Node_AConst:
		w := y.GetAConst()
		return w != nil && v.AConst.Isnull == w.Isnull && constKey(v.AConst) == constKey(w)
	case *pg.Node_ParamRef:
		return y.GetParamRef().GetNumber() == v.ParamRef.Number && y.GetParamRef() != nil
	case *pg.Node_TypeCast:
		w := y.GetTypeCast()
		return w != nil && sameType(v.TypeCast.TypeName, w.TypeName) && sameLiteral(v.TypeCast.Arg, w.Arg)
	case *pg.Node_AExpr:
		w := y.GetAExpr()
		return w != nil && w.Kind == v.AExpr.Kind && w.Lexpr == nil && v.AExpr.Lexpr == nil &&
			opName(w.Name) == opName(v.AExpr.Name) && sameLiteral(v.AExpr.Rexpr, w.Rexpr)
	}
	return false
}

// sameType compares two type names, ignoring locations.
func sameType(x, y *pg.TypeName) bool {
	if x == nil || y == nil || len(x.Names) != len(y.Names) || len(x.Typmods) != len(y.Typmods) ||
		len(x.ArrayBounds) != len(y.ArrayBounds) || x.Setof != y.Setof || x.PctType != y.PctType || x.Typemod != y.Typemod {
		return false
	}
	for i := range x.Names {
		if str(x.Names[i]) != str(y.Names[i]) {
			return false
		}
	}
	for i := range x.Typmods {
		if !sameLiteral(x.Typmods[i], y.Typmods[i]) {
			return false
		}
	}
	for i := range x.ArrayBounds {
		if x.ArrayBounds[i].GetInteger().GetIval() != y.ArrayBounds[i].GetInteger().GetIval() {
			return false
		}
	}
	return true
}

// constKey is a constant's kind and value.
func constKey(c *pg.A_Const) string {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return "i" + strconv.FormatInt(int64(v.Ival.GetIval()), 10)
	case *pg.A_Const_Fval:
		return "f" + v.Fval.GetFval()
	case *pg.A_Const_Sval:
		return "s" + v.Sval.GetSval()
	case *pg.A_Const_Boolval:
		return "b" + strconv.FormatBool(v.Boolval.GetBoolval())
	case *pg.A_Const_Bsval:
		return "x" + v.Bsval.GetBsval()
	}
	return ""
}

// typeIs reports whether a type name's last part is name.
func typeIs(tn *pg.TypeName, name string) bool {
	return tn != nil && len(tn.Names) > 0 && str(tn.Names[len(tn.Names)-1]) == name
}

// scan tokenizes the text once, dropping comments (they may sit between the
// tokens of a literal expression).
func (a *analyzer) scan() bool {
	if !a.scanned {
		a.scanned = true
		res, err := pg.Scan(a.sql)
		if err != nil {
			return false
		}
		toks := make([]*pg.ScanToken, 0, len(res.Tokens))
		for _, t := range res.Tokens {
			if t.Token != pg.Token_SQL_COMMENT && t.Token != pg.Token_C_COMMENT {
				toks = append(toks, t)
			}
		}
		a.toks = toks
	}
	return a.toks != nil
}

// tokenAt returns the index of the token starting at pos, or -1.
func (a *analyzer) tokenAt(pos int) int {
	i := sort.Search(len(a.toks), func(i int) bool { return int(a.toks[i].Start) >= pos })
	if i < len(a.toks) && int(a.toks[i].Start) == pos {
		return i
	}
	return -1
}

// tokenEndingAt returns the index of the token ending at pos, or -1.
func (a *analyzer) tokenEndingAt(pos int) int {
	i := sort.Search(len(a.toks), func(i int) bool { return int(a.toks[i].End) >= pos })
	if i < len(a.toks) && int(a.toks[i].End) == pos {
		return i
	}
	return -1
}

// closing returns the index of the ')' matching the '(' at i, or -1.
func (a *analyzer) closing(i int) int {
	depth := 0
	for j := i; j < len(a.toks); j++ {
		switch a.toks[j].Token {
		case tokLParen:
			depth++
		case tokRParen:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}
