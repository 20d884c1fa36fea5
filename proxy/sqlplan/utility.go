package sqlplan

import (
	"errors"
	"fmt"

	"strconv"
	"strings"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// set plans SET / RESET: the changes of tracked settings are reported as
// Effects (and followed by the rest of the text); standard_conforming_strings
// must stay on.
func (a *analyzer) set(st *Statement, v *pg.VariableSetStmt) error {
	name := strings.ToLower(v.Name) // GUC names are case-insensitive
	switch v.Kind {
	case pg.VariableSetKind_VAR_SET_VALUE:
		if name == StandardConformingStrings && (len(v.Args) != 1 || !isOn(v.Args[0])) {
			return refuse("set", "standard_conforming_strings", "pgcloak reads string literals with standard_conforming_strings on; turned off, it would misread them")
		}
		if !trackedSettings[name] {
			return nil
		}
		value, ok := setValue(name, v.Args)
		if !ok {
			if name == SearchPath {
				return refuse("set", "search_path", "pgcloak cannot read the new value")
			}
			st.Effects = append(st.Effects, Effect{Kind: EffectUnknownSet, Name: name})
			return nil
		}
		kind := EffectSet
		if v.IsLocal {
			kind = EffectSetLocal
		}
		st.Effects = append(st.Effects, Effect{Kind: kind, Name: name, Value: value})
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
		if trackedSettings[name] {
			kind := EffectReset
			if v.IsLocal {
				// SET LOCAL x TO DEFAULT: the reset value, until the
				// transaction ends.
				st.Effects = append(st.Effects, Effect{Kind: EffectSetLocal, Name: name, Value: a.settings.reset[name]})
				return nil
			}
			st.Effects = append(st.Effects, Effect{Kind: kind, Name: name})
		}
	case pg.VariableSetKind_VAR_RESET_ALL:
		st.Effects = append(st.Effects, Effect{Kind: EffectResetAll})
	}
	return nil
}

// setValue is the value SET gives name, as SHOW prints it for search_path
// (a list of identifiers, each as written: SET search_path = 'a, b' names
// one schema called "a, b") and as the arguments join for the others.
func setValue(name string, args []*pg.Node) (string, bool) {
	parts := make([]string, 0, len(args))
	for _, arg := range args {
		s, ok := settingString(arg)
		if !ok {
			return "", false
		}
		if name == SearchPath {
			s = quoteIdentifier(s)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", "), true
}

// quoteIdentifier quotes a schema name as SHOW search_path does: as it is
// when it is a plain lower-case identifier (or $user), double-quoted
// otherwise.
func quoteIdentifier(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '$')) {
			plain = false
		}
	}
	if plain || s == "$user" {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// setConfig follows set_config(name, value, is_local), which takes the
// value as written in postgresql.conf (a list for search_path). It is an
// Effect when the call surely runs once (a SELECT without FROM or WHERE);
// elsewhere it may run any number of times, and the setting becomes
// unknown. A name that is not a literal (pg_dump's set_config(name, …) FROM
// pg_settings WHERE name = …) makes every tracked setting unknown.
func (a *analyzer) setConfig(fc *pg.FuncCall) error {
	if len(fc.Args) != 3 {
		return nil // not the built-in; the server says so
	}
	name, ok := settingString(fc.Args[0])
	if !ok {
		a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUnknownSet})
		return nil
	}
	name = strings.ToLower(name)
	value, ok1 := settingString(fc.Args[1])
	local, ok2 := boolConst(fc.Args[2])
	if name == StandardConformingStrings && (!ok1 || !isOn(fc.Args[1])) {
		return refuse("set", "standard_conforming_strings", "pgcloak reads string literals with standard_conforming_strings on; turned off, it would misread them")
	}
	if !trackedSettings[name] {
		return nil
	}
	if name == SearchPath {
		if _, ok := splitIdentifiers(value); !ok1 || !ok {
			return refuse("set", "search_path", "pgcloak must know the new search_path: pass literals to set_config, or use SET search_path")
		}
	}
	if !ok1 || !ok2 || !a.once[fc] {
		a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUnknownSet, Name: name})
		return nil
	}
	kind := EffectSet
	if local {
		kind = EffectSetLocal
	}
	a.st.Effects = append(a.st.Effects, Effect{Kind: kind, Name: name, Value: value})
	return nil
}

// transaction plans BEGIN, COMMIT, ROLLBACK and savepoints: they end or nest
// the transaction levels that settings live in.
func (a *analyzer) transaction(st *Statement, t *pg.TransactionStmt) {
	switch t.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		st.Effects = append(st.Effects, Effect{Kind: EffectBegin})
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT, pg.TransactionStmtKind_TRANS_STMT_PREPARE:
		st.Effects = append(st.Effects, Effect{Kind: EffectCommit})
		if t.Chain {
			st.Effects = append(st.Effects, Effect{Kind: EffectBegin})
		}
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.Effects = append(st.Effects, Effect{Kind: EffectRollback})
		if t.Chain {
			st.Effects = append(st.Effects, Effect{Kind: EffectBegin})
		}
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.Effects = append(st.Effects, Effect{Kind: EffectSavepoint, Name: t.SavepointName})
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.Effects = append(st.Effects, Effect{Kind: EffectRelease, Name: t.SavepointName})
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.Effects = append(st.Effects, Effect{Kind: EffectRollbackTo, Name: t.SavepointName})
	}
}

// settingString returns a constant's text (strings, numbers), looking
// through casts.
func settingString(n *pg.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		return settingString(tc.Arg)
	}
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return "", false
	}
	switch v := c.Val.(type) {
	case *pg.A_Const_Sval:
		return v.Sval.GetSval(), true
	case *pg.A_Const_Ival:
		return strconv.FormatInt(int64(v.Ival.GetIval()), 10), true
	case *pg.A_Const_Fval:
		return v.Fval.GetFval(), true
	case *pg.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.GetBoolval()), true
	}
	return "", false
}

// boolConst reads a boolean constant as PostgreSQL's parse_bool would.
func boolConst(n *pg.Node) (value, ok bool) {
	s, ok := settingString(n)
	if !ok {
		return false, false
	}
	switch strings.ToLower(s) {
	case "t", "tr", "tru", "true", "y", "ye", "yes", "on", "1":
		return true, true
	case "f", "fa", "fal", "fals", "false", "n", "no", "off", "of", "0":
		return false, true
	}
	return false, false
}

// isOn reports whether n is a constant that reads as boolean true.
func isOn(n *pg.Node) bool {
	v, ok := boolConst(n)
	return ok && v
}

// splitIdentifiers splits a list of identifiers as PostgreSQL's
// SplitIdentifierString does for search_path: comma-separated, unquoted
// names folded to lower case, "quoted" names taken as written ("" is a
// quote), names truncated to NAMEDATALEN-1 bytes.
func splitIdentifiers(s string) ([]string, bool) {
	var out []string
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	skip()
	if i == len(s) {
		return []string{}, true // an empty path
	}
	for {
		var name string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, false // unterminated
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			name = b.String()
			if name == "" {
				return nil, false
			}
		} else {
			j := i
			for j < len(s) && s[j] != ',' && !isSpace(s[j]) {
				j++
			}
			if j == i {
				return nil, false
			}
			b := []byte(s[i:j])
			for k := range b {
				b[k] = lower(b[k])
			}
			name, i = string(b), j
		}
		out = append(out, truncateName(name))
		skip()
		if i == len(s) {
			return out, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
		skip()
	}
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// truncateName cuts a name to 63 bytes without splitting a character, as
// PostgreSQL does to identifiers.
func truncateName(s string) string {
	const max = 63
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// prepare plans PREPARE name [(types)] AS statement.
func (a *analyzer) prepare(st *Statement, p *pg.PrepareStmt, raw *pg.RawStmt) error {
	inner := &Statement{}
	a.begin(inner)
	if err := a.dispatch(inner, p.Query, raw); err != nil {
		return err
	}
	if err := a.finish(); err != nil {
		return err
	}
	for i, t := range p.Argtypes {
		tn := t.GetTypeName()
		if col := inner.Params[i+1]; col != nil && !typeIs(tn, "bytea") {
			return refuse("bind $"+strconv.Itoa(i+1)+" to", col.String(), "PREPARE declares the parameter's type, but the server must receive bytea; leave the types out")
		}
	}
	// The literals of the inner statement are in the PREPARE text: they are
	// encrypted when the PREPARE is sent.
	a.begin(st)
	st.Kind = "PREPARE"
	st.Edits, inner.Edits = inner.Edits, nil
	st.Joins, inner.Joins = inner.Joins, nil
	st.Effects = append(st.Effects, Effect{Kind: EffectPrepare, Name: p.Name, Statement: inner, Text: strings.Clone(a.text(raw))})
	return nil
}

// execute plans EXECUTE name(args): each literal argument is located so the
// session can encrypt the ones the stored statement binds to protected
// columns.
func (a *analyzer) execute(st *Statement, e *pg.ExecuteStmt) error {
	ex := &Execute{Name: e.Name, Args: make([]Arg, len(e.Params))}
	for i, p := range e.Params {
		if isLiteral(p) && paramOf(p) == 0 {
			if l, why := a.literal(p); why == "" {
				ex.Args[i] = Arg{Literal: true, Start: l.start, End: l.end, Value: l.value, Null: l.null}
				continue
			}
		}
		if err := a.scalar(p, &scope{}); err != nil {
			return err
		}
	}
	st.Execute = ex
	return nil
}

// copy plans COPY of a protected table to or from the client (the session
// streams the data through the COPY codec), and COPY (query) TO STDOUT whose
// output columns pgcloak can attribute, column by column. It refuses the
// forms it cannot see the data of: COPY with a server-side file or program
// (the server would read or write the data itself) and COPY (query) TO when
// the position of a protected output is not certain.
func (a *analyzer) copy(st *Statement, c *pg.CopyStmt) error {
	if c.Query != nil {
		return a.copyQuery(st, c)
	}
	if c.Relation == nil {
		return nil
	}
	r, err := a.tableRel(c.Relation, nil, false)
	if err != nil {
		return err
	}
	if len(r.cols) == 0 {
		return nil
	}
	if c.Filename != "" || c.IsProgram {
		return refuse("copy", r.table, "COPY with a server-side file or program would move plaintext around pgcloak; use COPY … FROM STDIN / TO STDOUT (psql \\copy)")
	}
	if c.WhereClause != nil {
		return refuse("copy", r.table, "COPY FROM … WHERE is not supported on protected tables")
	}
	cols := r.all
	if len(c.Attlist) > 0 {
		cols = nil
		for _, n := range c.Attlist {
			cols = append(cols, str(n))
		}
	}
	if len(cols) == 0 {
		return refuse("copy", r.table, "its columns are unknown")
	}
	cp := &Copy{Schema: r.schema, Table: c.Relation.Relname, From: c.IsFrom, Columns: cols, Protected: make([]*Column, len(cols))}
	for i, name := range cols {
		cp.Protected[i] = r.cols[name]
	}
	if cp.Options, err = copyOptions(c, r.table); err != nil {
		return err
	}
	st.Copy = cp
	return nil
}

// copyQuery plans COPY (query) TO. The query is planned like a top-level
// SELECT (its literals and parameters are encrypted, its comparisons
// checked); its output carries no column identity (CopyOutResponse has
// none), so a protected output is decrypted by its position, which must be
// certain: a plain reference to the column (col, t.col, t.*, an alias, a
// FROM subquery or CTE that selects it plainly) at a known place in the
// select list. Outputs that lose the identity (expressions, UNION branches,
// scalar subqueries) are refused as in a SELECT.
func (a *analyzer) copyQuery(st *Statement, c *pg.CopyStmt) error {
	out, err := a.query(c.Query, nil, keep, nil)
	if err != nil {
		var r *Refusal
		if sel := c.Query.GetSelectStmt(); sel != nil && sel.Op > pg.SetOperation_SETOP_NONE && errors.As(err, &r) && r.Op == setOpRule.op {
			return refuse("copy", r.Column, "the rows of a UNION, INTERSECT or EXCEPT carry no column identity, so pgcloak could not decrypt them; run one COPY (query) TO per branch")
		}
		return err
	}
	p := out.protected()
	if p == nil {
		return nil // nothing to decrypt: the data passes as the server sends it
	}
	if c.Filename != "" || c.IsProgram {
		return refuse("copy", p.String(), "COPY (query) TO a server-side file or program would write ciphertext where pgcloak cannot decrypt it; use COPY (query) TO STDOUT (psql \\copy)")
	}
	if !out.complete {
		return refuse("copy", p.String(), "COPY (query) TO identifies a protected column only by its position, and pgcloak cannot tell where this query's * puts it (a relation whose columns it does not know, or columns merged by JOIN … USING or NATURAL JOIN); list the columns in the select list")
	}
	cp := &Copy{Query: true, Schema: p.Schema, Table: p.Table, Columns: make([]string, len(out.list)), Protected: make([]*Column, len(out.list))}
	for i, o := range out.list {
		cp.Columns[i], cp.Protected[i] = o.name, o.col
	}
	if cp.Options, err = copyOptions(c, p.Schema+"."+p.Table); err != nil {
		return err
	}
	st.Copy = cp
	return nil
}

// copyOptions reads the options of a COPY statement; what names the table in
// a refusal.
func copyOptions(c *pg.CopyStmt, what string) ([]CopyOption, error) {
	var opts []CopyOption
	for _, o := range c.Options {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		opt := CopyOption{Name: d.Defname}
		switch {
		case d.Arg == nil:
		case d.Arg.GetString_() != nil:
			opt.Kind, opt.Value = CopyArgString, d.Arg.GetString_().Sval
		case d.Arg.GetBoolean() != nil:
			opt.Kind, opt.Value = CopyArgString, map[bool]string{true: "true", false: "false"}[d.Arg.GetBoolean().Boolval]
		case d.Arg.GetInteger() != nil:
			opt.Kind, opt.Value = CopyArgNumber, fmt.Sprint(d.Arg.GetInteger().Ival)
		case d.Arg.GetAStar() != nil:
			opt.Kind = CopyArgStar
		case d.Arg.GetList() != nil:
			opt.Kind = CopyArgList
			for _, item := range d.Arg.GetList().GetItems() {
				opt.List = append(opt.List, str(item))
			}
		default:
			return nil, refuse("copy", what, fmt.Sprintf("COPY option %s has an argument pgcloak does not read", d.Defname))
		}
		opts = append(opts, opt)
	}
	return opts, nil
}

// view plans CREATE VIEW and CREATE MATERIALIZED VIEW over protected
// tables. Views that select protected columns plainly are read (and
// written) through pgcloak once its catalog knows them (ViewOutputs); but a
// view created through pgcloak could be used by the same transaction or
// pipeline before pgcloak can read it from the catalog, and a temporary
// view never can be: a write through it would carry plaintext. So views
// over protected tables are created directly in PostgreSQL, like other
// schema changes pgcloak follows. A materialized view that returns no
// protected column is allowed; one that does would copy the ciphertext into
// a relation without rules or backstops.
func (a *analyzer) view(q *pg.Node, materialized bool) error {
	mark, edits := len(a.touched), len(a.st.Edits)
	out, err := a.query(q, nil, keep, nil)
	if err != nil {
		return err
	}
	if len(a.touched) == mark {
		return nil
	}
	table := a.touched[mark]
	for _, e := range a.st.Edits[edits:] {
		if e.Column != nil {
			return refuse("compare", e.Column.String(), "the view would store the literal it is compared with; compare in the query that reads the view, through pgcloak")
		}
	}
	if materialized {
		if out == nil || !out.complete || out.protected() != nil {
			return refuse("create a materialized view over", table, "it would copy the ciphertext into a relation without rules or backstops; use a view, or a table pgcloak protects")
		}
		return nil
	}
	return refuse("create a view over", table, "pgcloak could not follow writes through it until it reads the view from the catalog; "+
		"create the view directly in PostgreSQL: reads (and writes) through a view that selects protected columns plainly work through pgcloak after its next catalog read (catalog_refresh)")
}

// createTableAs plans CREATE TABLE AS and CREATE MATERIALIZED VIEW.
func (a *analyzer) createTableAs(st *Statement, c *pg.CreateTableAsStmt, raw *pg.RawStmt) error {
	if c.Objtype == pg.ObjectType_OBJECT_MATVIEW {
		st.Kind = "CREATE MATERIALIZED VIEW"
		return a.view(c.Query, true)
	}
	if e := c.Query.GetExecuteStmt(); e != nil {
		return a.execute(st, e)
	}
	_, err := a.query(c.Query, nil, noneRule("copy", "CREATE TABLE AS would store its ciphertext in a new table, where it does not decrypt"), nil)
	return err
}

// serverCode refuses DO blocks, function and procedure definitions and rules
// that mention a protected table: pgcloak cannot see inside them, so their
// writes and comparisons would bypass encryption. The bodies are searched as
// the server reads them (escapes resolved), besides the statement text. A
// body that builds table names at run time (EXECUTE 'INSERT INTO ' || …) is
// beyond any such check.
func (a *analyzer) serverCode(raw *pg.RawStmt) error {
	texts := []string{a.text(raw)}
	switch v := raw.Stmt.GetNode().(type) {
	case *pg.Node_DoStmt:
		texts = append(texts, defStrings(v.DoStmt.Args, "as")...)
	case *pg.Node_CreateFunctionStmt:
		texts = append(texts, defStrings(v.CreateFunctionStmt.Options, "as")...)
	}
	for _, t := range texts {
		if name := mentioned(t, a.names); name != "" {
			return withHint(refuse("run server-side code on", name, "pgcloak cannot see inside DO blocks, function bodies or rules, so their writes and comparisons would bypass encryption"),
				"Send the statements themselves through pgcloak. Functions that must touch protected tables are created directly in PostgreSQL; "+
					"the column's CHECK backstop refuses any plaintext they would write. Sequelize's findOrCreate wraps its INSERT in a function: use findCreateFind.")
		}
	}
	return nil
}

// defStrings returns the string values of the DefElem called name (a
// String, or a List of them as in CREATE FUNCTION … AS 'obj', 'symbol').
func defStrings(opts []*pg.Node, name string) []string {
	var out []string
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != name {
			continue
		}
		if s := d.Arg.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
		for _, item := range d.Arg.GetList().GetItems() {
			out = append(out, str(item))
		}
	}
	return out
}

// alterTable refuses a non-NULL default on a protected column: the server
// would store it as written, in plaintext.
func (a *analyzer) alterTable(st *Statement, at *pg.AlterTableStmt, raw *pg.RawStmt) error {
	if at.Relation == nil || at.Objtype != pg.ObjectType_OBJECT_TABLE && at.Objtype != pg.ObjectType_OBJECT_FOREIGN_TABLE {
		return nil
	}
	schema, cols, err := a.ruleRel(at.Relation)
	if err != nil {
		return err
	}
	if cols != nil {
		if err := a.alterTableDDL(st, at, raw, cols, schema+"."+at.Relation.Relname); err != nil {
			return err
		}
	}
	r, err := a.tableRel(at.Relation, nil, false)
	if err != nil || len(r.cols) == 0 {
		return err
	}
	for _, n := range at.Cmds {
		c := n.GetAlterTableCmd()
		if c == nil || c.Subtype != pg.AlterTableType_AT_ColumnDefault || c.Def == nil {
			continue
		}
		if col := r.cols[c.Name]; col != nil && !c.Def.GetAConst().GetIsnull() {
			return refuse("set a default on", col.String(), "the server would store the default as written, in plaintext; protected columns can only default to NULL")
		}
	}
	return nil
}
