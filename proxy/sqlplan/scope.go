package sqlplan

import (
	"sort"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// rel is one relation that column references can name: a FROM item, the
// target of INSERT/UPDATE/DELETE, or EXCLUDED in ON CONFLICT.
type rel struct {
	// name qualifies the rel's columns: the alias, else the table or CTE
	// name; "" for an unaliased subquery.
	name string
	// schema is set for unaliased base tables, so schema.table.column works.
	schema string
	// table is "schema.table" of a base table, for messages.
	table string
	// cols are the protected columns reachable through the rel, by the name
	// the rel shows them under. For a subquery or CTE these are its plain
	// output references to protected columns (PostgreSQL keeps the base
	// column's identity through them).
	cols map[string]*Column
	// all lists every column name in order, or is nil when unknown (tables
	// the Catalog does not describe, functions, subqueries with * over
	// unknown tables).
	all []string
	// joinAlias marks the alias of a JOIN (its columns are already visible
	// through the joined rels; * must not count them twice).
	joinAlias bool
}

// has reports whether the rel is known to have a column called name.
func (r *rel) has(name string) bool {
	if r.cols[name] != nil {
		return true
	}
	for _, n := range r.all {
		if n == name {
			return true
		}
	}
	return false
}

// what names the rel in messages.
func (r *rel) what() string {
	if r.table != "" {
		return r.table
	}
	return r.name
}

// scope is one query level: the rels of its FROM clause and the CTEs of its
// WITH clause. Sub-queries get a child scope, so correlated references find
// outer rels.
type scope struct {
	parent *scope
	rels   []*rel
	ctes   []*cte
	// merged: a JOIN … USING or NATURAL JOIN at this level merges
	// same-named columns, so an unqualified * does not list each rel's
	// columns in turn and its positions are not known.
	merged bool
}

// cte is a WITH query visible by name.
type cte struct {
	name    string
	out     *outputs   // nil while a recursive CTE is being analysed
	aliases []*pg.Node // WITH name(a, b) AS …
}

// output is one output column of a query.
type output struct {
	name string
	col  *Column // set when the output is a plain reference to a protected column
}

// outputs are the output columns of a query, in order.
type outputs struct {
	list []output
	// complete is false when a * expanded over a rel whose columns are
	// unknown: the protected outputs are all there, positions and the other
	// names are not.
	complete bool
}

func (o *outputs) add(name string, col *Column) { o.list = append(o.list, output{name, col}) }

// protected returns the first protected output, or nil.
func (o *outputs) protected() *Column {
	if o == nil {
		return nil
	}
	for _, x := range o.list {
		if x.col != nil {
			return x.col
		}
	}
	return nil
}

// derived makes the rel that a subquery or CTE with outputs out shows to the
// query around it, under the given alias (with optional column aliases).
func derived(name string, out *outputs, colAliases []*pg.Node) (*rel, error) {
	r := &rel{name: name}
	if out == nil {
		return r, nil // a recursive CTE referring to itself: nothing known
	}
	if len(colAliases) > 0 {
		if c := out.protected(); c != nil {
			return nil, refuse("rename", c.String(), "column alias lists over protected columns are not supported; alias the column in the subquery instead")
		}
		if out.complete {
			for i, o := range out.list {
				if i < len(colAliases) {
					r.all = append(r.all, str(colAliases[i]))
				} else {
					r.all = append(r.all, o.name)
				}
			}
		}
		return r, nil
	}
	for _, o := range out.list {
		if o.col != nil {
			if r.cols == nil {
				r.cols = make(map[string]*Column)
			}
			r.cols[o.name] = o.col
		}
	}
	if out.complete {
		r.all = make([]string, len(out.list))
		for i, o := range out.list {
			r.all[i] = o.name
		}
	}
	return r, nil
}

// findRel returns the innermost rel called name (and, when schema is given,
// an unaliased table of that schema).
func (sc *scope) findRel(schema, name string) *rel {
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.name == name && (schema == "" || r.schema == schema) {
				return r
			}
		}
	}
	return nil
}

// findCTE returns the innermost CTE called name.
func (sc *scope) findCTE(name string) *cte {
	for s := sc; s != nil; s = s.parent {
		for i := len(s.ctes) - 1; i >= 0; i-- {
			if s.ctes[i].name == name {
				return s.ctes[i]
			}
		}
	}
	return nil
}

// unqualified resolves a bare column name the way PostgreSQL does: the
// innermost query level with a rel holding that column wins. Where the
// column sets are unknown, a protected column of that name at any level
// counts (fail closed: a literal compared with it gets encrypted or the
// statement is refused, never sent as plaintext).
func (sc *scope) unqualified(name string) (*Column, error) {
	for s := sc; s != nil; s = s.parent {
		var found *Column
		known := false
		for _, r := range s.rels {
			if c := r.cols[name]; c != nil {
				if found != nil && !same(found, c) {
					return nil, refuse("resolve", name, "the name matches "+found.String()+" and "+c.String()+"; qualify it with its table")
				}
				found = c
			} else if r.has(name) {
				known = true
			}
		}
		if found != nil {
			return found, nil
		}
		if known {
			return nil, nil
		}
	}
	// Not a column: perhaps a whole-row reference to a rel (SELECT c FROM
	// customers c), whose value would carry ciphertext.
	if r := sc.findRel("", name); r != nil && len(r.cols) > 0 {
		return nil, refuse("use", r.what(), "a whole-row reference would return ciphertext inside a record; select the columns")
	}
	return nil, nil
}

// columnRef resolves a column reference (without *) to the protected column
// it names, if any. Longer names are tried as catalog.schema.table.column,
// schema.table.column and table.column first, as PostgreSQL does; what is
// left over is field selection from a composite value, which ciphertext does
// not have.
func (sc *scope) columnRef(names []string) (*Column, error) {
	n := len(names)
	var col *Column
	rest := 0
	switch {
	case n >= 4 && sc.findRel(names[1], names[2]) != nil:
		col, rest = sc.findRel(names[1], names[2]).cols[names[3]], n-4
	case n >= 3 && sc.findRel(names[0], names[1]) != nil:
		col, rest = sc.findRel(names[0], names[1]).cols[names[2]], n-3
	case n >= 2 && sc.findRel("", names[0]) != nil:
		col, rest = sc.findRel("", names[0]).cols[names[1]], n-2
	default:
		c, err := sc.unqualified(names[0])
		if err != nil {
			return nil, err
		}
		col, rest = c, n-1
	}
	if col != nil && rest > 0 {
		return nil, refuse("select a field of", col.String(), "an encrypted value has no fields")
	}
	return col, nil
}

// starRels returns the rels a * or t.* covers.
func (sc *scope) starRels(qual []string) []*rel {
	switch len(qual) {
	case 0:
		var out []*rel
		for _, r := range sc.rels {
			if !r.joinAlias {
				out = append(out, r)
			}
		}
		return out
	case 1:
		if r := sc.findRel("", qual[0]); r != nil {
			return []*rel{r}
		}
	default:
		if r := sc.findRel(qual[len(qual)-2], qual[len(qual)-1]); r != nil {
			return []*rel{r}
		}
	}
	return nil
}

// expand appends the columns of r, as * shows them, to out.
func (r *rel) expand(out *outputs) {
	if r.all == nil {
		out.complete = false
		names := make([]string, 0, len(r.cols))
		for name := range r.cols {
			names = append(names, name)
		}
		sort.Strings(names) // map order would make plans differ run to run
		for _, name := range names {
			out.add(name, r.cols[name])
		}
		return
	}
	for _, name := range r.all {
		out.add(name, r.cols[name])
	}
}

// fields splits a ColumnRef into its names and whether it ends in *.
func fields(cr *pg.ColumnRef) (names []string, star bool) {
	names = make([]string, 0, len(cr.Fields))
	for _, f := range cr.Fields {
		if f.GetAStar() != nil {
			star = true
			continue
		}
		names = append(names, f.GetString_().GetSval())
	}
	return names, star
}

// str returns the value of a String node.
func str(n *pg.Node) string { return n.GetString_().GetSval() }
