package sqlplan

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// fromItem plans one FROM item and adds the rels it makes visible to level.
func (a *analyzer) fromItem(n *pg.Node, level *scope) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		r, err := a.tableRel(v.RangeVar, level, true)
		if err != nil {
			return err
		}
		level.rels = append(level.rels, r)
	case *pg.Node_RangeSubselect:
		rs := v.RangeSubselect
		parent := level.parent // a plain subquery sees outer levels, not its siblings
		if rs.Lateral {
			parent = level
		}
		out, err := a.query(rs.Subquery, parent, keep, nil)
		if err != nil {
			return err
		}
		r, err := derived(rs.GetAlias().GetAliasname(), out, rs.GetAlias().GetColnames())
		if err != nil {
			return err
		}
		level.rels = append(level.rels, r)
	case *pg.Node_JoinExpr:
		return a.joinExpr(v.JoinExpr, level)
	case *pg.Node_RangeFunction:
		rf := v.RangeFunction
		name := rf.GetAlias().GetAliasname()
		for _, f := range rf.Functions {
			items := f.GetList().GetItems()
			if len(items) == 0 {
				continue
			}
			// Functions in FROM are implicitly LATERAL.
			if err := a.walk(items[0], level); err != nil {
				return err
			}
			if name == "" {
				name, _ = funcName(items[0].GetFuncCall().GetFuncname())
			}
		}
		level.rels = append(level.rels, &rel{name: name})
	case *pg.Node_RangeTableSample:
		ts := v.RangeTableSample
		if err := a.fromItem(ts.Relation, level); err != nil {
			return err
		}
		for _, arg := range ts.Args {
			if err := a.scalar(arg, level); err != nil {
				return err
			}
		}
		return a.scalar(ts.Repeatable, level)
	case *pg.Node_RangeTableFunc:
		if err := a.walk(n, level); err != nil {
			return err
		}
		level.rels = append(level.rels, &rel{name: v.RangeTableFunc.GetAlias().GetAliasname()})
	case *pg.Node_JsonTable:
		if err := a.walk(n, level); err != nil {
			return err
		}
		level.rels = append(level.rels, &rel{name: v.JsonTable.GetAlias().GetAliasname()})
	default:
		return a.walk(n, level)
	}
	return nil
}

// joinExpr plans a JOIN: both sides, then USING/NATURAL (equality between
// same-named columns) and ON.
func (a *analyzer) joinExpr(j *pg.JoinExpr, level *scope) error {
	start := len(level.rels)
	if err := a.fromItem(j.Larg, level); err != nil {
		return err
	}
	mid := len(level.rels)
	if err := a.fromItem(j.Rarg, level); err != nil {
		return err
	}
	left, right := level.rels[start:mid], level.rels[mid:]
	level.merged = level.merged || j.IsNatural || len(j.UsingClause) > 0
	var names []string
	for _, u := range j.UsingClause {
		names = append(names, str(u))
	}
	if j.IsNatural {
		var err error
		if names, err = naturalColumns(left, right); err != nil {
			return err
		}
	}
	for _, name := range names {
		l, r := columnIn(left, name), columnIn(right, name)
		if l == nil && r == nil {
			continue
		}
		if j.Jointype == pg.JoinType_JOIN_FULL {
			return refuse("join", firstOf(l, r).String(), "FULL JOIN … USING merges the two columns into a computed value that loses its identity; join with ON")
		}
		if err := a.compare(operand{col: l}, operand{col: r}); err != nil {
			return err
		}
	}
	if err := a.cond(j.Quals, level); err != nil {
		return err
	}
	if j.Alias != nil {
		r := &rel{name: j.Alias.Aliasname, joinAlias: true}
		for _, in := range level.rels[start:] {
			for name, c := range in.cols {
				if r.cols == nil {
					r.cols = make(map[string]*Column)
				}
				r.cols[name] = c
			}
		}
		level.rels = append(level.rels, r)
	}
	return nil
}

// naturalColumns lists the columns a NATURAL JOIN compares. Unknown column
// sets on a side with protected columns make that unknowable.
func naturalColumns(left, right []*rel) ([]string, error) {
	for _, side := range [2][]*rel{left, right} {
		for _, r := range side {
			if r.all == nil {
				for _, other := range append(append([]*rel(nil), left...), right...) {
					if len(other.cols) > 0 {
						return nil, refuse("join", other.what(), "NATURAL JOIN: pgcloak cannot tell which columns it compares; use JOIN … USING or ON")
					}
				}
				return nil, nil
			}
		}
	}
	var names []string
	for _, l := range left {
		for _, name := range l.all {
			for _, r := range right {
				if r.has(name) {
					names = append(names, name)
					break
				}
			}
		}
	}
	return names, nil
}

// columnIn returns the protected column called name among rels.
func columnIn(rels []*rel, name string) *Column {
	for _, r := range rels {
		if c := r.cols[name]; c != nil {
			return c
		}
	}
	return nil
}

// tableRel makes the rel for a table reference (or, when cteOK, a CTE).
func (a *analyzer) tableRel(rv *pg.RangeVar, sc *scope, cteOK bool) (*rel, error) {
	alias := rv.GetAlias()
	if cteOK && rv.Schemaname == "" {
		if c := sc.findCTE(rv.Relname); c != nil {
			name, cols := rv.Relname, c.aliases
			if alias != nil {
				name, cols = alias.Aliasname, alias.Colnames
			}
			return derived(name, c.out, cols)
		}
	}
	r := &rel{name: rv.Relname}
	schema, ok, err := a.schemaOf(rv)
	if err != nil {
		return nil, err
	}
	if ok {
		r.schema, r.table = schema, schema+"."+rv.Relname
		r.cols = a.cat.Protected(schema, rv.Relname)
		if why := a.cat.Unavailable(schema, rv.Relname); why != "" {
			return nil, &Refusal{Code: CodeNotInPrerequisite, Op: "use", Column: r.table, Reason: why}
		}
		if len(r.cols) > 0 {
			a.touch(r.table)
		}
		r.all = a.cat.Columns(schema, rv.Relname)
	}
	if alias != nil {
		r.name, r.schema = alias.Aliasname, ""
		if len(alias.Colnames) > 0 {
			if len(r.cols) > 0 {
				return nil, refuse("rename columns of", r.table, "column alias lists on protected tables are not supported; alias the columns in the select list instead")
			}
			r.all = nil
		}
	}
	return r, nil
}

// schemaOf returns the schema a table reference resolves to. A name held
// by one schema only resolves to it whatever the search_path (the Catalog
// says so); for one held by several, the search_path decides, and when
// pgcloak does not know it (set_config with a computed name, or run a
// number of times it cannot tell) the statement is refused.
func (a *analyzer) schemaOf(rv *pg.RangeVar) (string, bool, error) {
	if rv.Schemaname != "" {
		return rv.Schemaname, true, nil
	}
	path, ok := a.searchPath()
	if !ok {
		if s, ok := a.cat.Resolve(rv.Relname, nil); ok {
			return s, true, nil // one schema holds it: no path needed
		}
		for _, n := range a.names {
			if n == rv.Relname {
				return "", false, refuse("resolve", n, "several schemas hold a relation of this name, and pgcloak does not know the search_path now (set_config with a computed name, or run by a query a number of times pgcloak cannot tell); qualify the table with its schema, or SET search_path")
			}
		}
		return "", false, nil
	}
	s, ok := a.cat.Resolve(rv.Relname, path)
	if ok && a.cat.Ambiguous(rv.Relname) && rv.Location >= 0 && int(rv.Location) < len(a.sql) {
		// Several schemas hold the name: the plan depends on pgcloak's
		// view of the search_path, so the name is qualified with the
		// schema planned for. Had the path changed unseen (inside a
		// function), or the other relation gone, the server then acts on
		// what pgcloak planned for, or fails, and never writes plaintext
		// where pgcloak would have encrypted. A prepared statement keeps
		// the qualified name when PostgreSQL plans it again after a
		// change of search_path. (A name only one schema holds is
		// resolved the same whatever the path.)
		at := int(rv.Location)
		a.st.Edits = append(a.st.Edits, Edit{Start: at, End: at, Verbatim: quoteIdentifier(s) + ".", Value: rv.Relname})
	}
	return s, ok, nil
}

// firstOf returns x if set, else y.
func firstOf(x, y *Column) *Column {
	if x != nil {
		return x
	}
	return y
}
