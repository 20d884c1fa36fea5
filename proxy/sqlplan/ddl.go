package sqlplan

import (
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Schema changes cannot outrun the rules. A rule names a protected column by
// schema, table and column, and every value is bound to that identity; a
// rename, a move to another schema, a new type or a drop made through
// pgcloak would leave the rule pointing at nothing, or at the wrong column.
// Such DDL is refused with a message that says to change the rules first.
// (The same change made around pgcloak is noticed by the catalog refresh,
// which takes the table out of service until the rules match again.)
//
// Tables and columns created through pgcloak get their backstop in the same
// statement: the CHECK constraint that makes PostgreSQL refuse anything but
// ciphertext (see Edit.Backstop).

const whyRulesFirst = "its values are bound to this name; change the rules first (edit or remove it under tables: in the config and restart pgcloak), or make the change directly in PostgreSQL and then run pgcloak check"

// ruleTable returns the protected columns of schema.table when it is a table
// that rules name (not a view over one), else nil.
func (a *analyzer) ruleTable(schema, table string) map[string]*Column {
	cols := a.cat.Protected(schema, table)
	for _, c := range cols {
		if c.Schema == schema && c.Table == table {
			return cols
		}
	}
	return nil
}

// ruleRel resolves a DDL target: its schema and protected columns, if it is
// a table that rules name.
func (a *analyzer) ruleRel(rv *pg.RangeVar) (schema string, cols map[string]*Column, err error) {
	if rv == nil || rv.Relpersistence == "t" {
		return "", nil, nil
	}
	s, ok, err := a.schemaOf(rv)
	if err != nil || !ok {
		return "", nil, err
	}
	return s, a.ruleTable(s, rv.Relname), nil
}

// createTable plans CREATE TABLE of a table that rules name: every protected
// column must be defined there, as bytea, with no default and not generated;
// the statement is given each column's backstop.
func (a *analyzer) createTable(st *Statement, c *pg.CreateStmt, raw *pg.RawStmt) error {
	rv := c.Relation
	if rv == nil || rv.Relpersistence == "t" {
		return nil
	}
	schema := rv.Schemaname
	if schema == "" {
		// A new table goes to the first schema of the search_path; only
		// the schemas that rules name for this table matter.
		path, _ := a.searchPath()
		for _, s := range path {
			if a.ruleTable(s, rv.Relname) != nil {
				schema = s
				break
			}
		}
	}
	cols := a.ruleTable(schema, rv.Relname)
	if cols == nil {
		return nil
	}
	table := schema + "." + rv.Relname
	if c.OfTypename != nil || c.Partbound != nil || len(c.InhRelations) > 0 {
		return refuse("create", table, "protected tables must be created with their own column definitions (not OF type, PARTITION OF or INHERITS); or create it directly and run pgcloak protect")
	}
	defined := map[string]bool{}
	named := map[string]bool{} // constraints the statement names itself
	for _, e := range c.TableElts {
		if k := e.GetConstraint(); k != nil && k.Conname != "" {
			named[k.Conname] = true
		}
	}
	for _, e := range c.TableElts {
		if e.GetTableLikeClause() != nil {
			return refuse("create", table, "protected tables must be created with their own column definitions, not LIKE; or create it directly and run pgcloak protect")
		}
		cd := e.GetColumnDef()
		if cd == nil {
			continue
		}
		col := cols[cd.Colname]
		if col == nil {
			continue
		}
		if err := checkColumnDef(col, cd); err != nil {
			return err
		}
		defined[cd.Colname] = true
	}
	if c.IfNotExists {
		// The table may be there already, with or without backstops:
		// adding them here could fail the statement; the catalog refresh
		// reports any that are missing.
		return nil
	}
	at := a.closingParen(raw, int(rv.Location))
	if at < 0 {
		return refuse("create", table, "pgcloak could not find the end of the column list to add the backstops")
	}
	// Protected columns the table is created without get theirs when
	// they are added (ALTER TABLE … ADD COLUMN through pgcloak).
	// A definition that carries the backstop already (a pg_dump restored
	// through pgcloak) keeps its own.
	for _, name := range sortedNames(cols) {
		if defined[name] && !named[cols[name].Backstop] {
			st.Edits = append(st.Edits, Edit{Start: at, End: at, Column: cols[name], Backstop: true, Verbatim: ", "})
		}
	}
	return nil
}

// checkColumnDef checks the definition of a protected column.
func checkColumnDef(col *Column, cd *pg.ColumnDef) error {
	if !typeIs(cd.TypeName, "bytea") || len(cd.TypeName.ArrayBounds) > 0 {
		return refuse("create", col.String(), "a protected column holds ciphertext and must be bytea (the application still sees its logical type through pgcloak)")
	}
	if cd.RawDefault != nil && !cd.RawDefault.GetAConst().GetIsnull() || cd.Generated != "" || cd.Identity != "" {
		return refuse("create", col.String(), "the server would compute its value in plaintext; protected columns can only default to NULL")
	}
	for _, n := range cd.Constraints {
		k := n.GetConstraint()
		if k == nil {
			continue
		}
		switch k.Contype {
		case pg.ConstrType_CONSTR_DEFAULT:
			if k.RawExpr != nil && !k.RawExpr.GetAConst().GetIsnull() {
				return refuse("create", col.String(), "the server would store the default as written, in plaintext; protected columns can only default to NULL")
			}
		case pg.ConstrType_CONSTR_GENERATED, pg.ConstrType_CONSTR_IDENTITY:
			return refuse("create", col.String(), "the server would compute its value in plaintext")
		}
	}
	return nil
}

// closingParen returns the offset of the ')' that closes the first
// parenthesized list after offset from in the statement raw, or -1.
func (a *analyzer) closingParen(raw *pg.RawStmt, from int) int {
	if !a.scan() {
		return -1
	}
	end := len(a.sql)
	if raw.StmtLen > 0 {
		end = int(raw.StmtLocation) + int(raw.StmtLen)
	}
	depth := 0
	for _, t := range a.toks {
		if int(t.Start) < from || int(t.Start) >= end {
			continue
		}
		switch t.Token {
		case tokLParen:
			depth++
		case tokRParen:
			depth--
			if depth == 0 {
				return int(t.Start)
			}
		}
	}
	return -1
}

// alterTableDDL refuses ALTER TABLE commands that would leave a rule behind
// (drop or retype a protected column, drop or rename its backstop) and gives
// a protected column added through pgcloak its backstop.
func (a *analyzer) alterTableDDL(st *Statement, at *pg.AlterTableStmt, raw *pg.RawStmt, cols map[string]*Column, table string) error {
	var added []*Column
	named := map[string]bool{}
	for _, n := range at.Cmds {
		if c := n.GetAlterTableCmd(); c != nil && c.Subtype == pg.AlterTableType_AT_AddConstraint {
			if k := c.Def.GetConstraint(); k != nil {
				named[k.Conname] = true
			}
		}
	}
	for _, n := range at.Cmds {
		c := n.GetAlterTableCmd()
		if c == nil {
			continue
		}
		switch c.Subtype {
		case pg.AlterTableType_AT_DropColumn:
			if col := cols[c.Name]; col != nil {
				return refuse("drop", col.String(), whyRulesFirst)
			}
		case pg.AlterTableType_AT_AlterColumnType:
			if col := cols[c.Name]; col != nil {
				return refuse("change the type of", col.String(), "a protected column holds ciphertext and stays bytea; its logical type is in the config (change the rules first, and re-encrypt with pgcloak migrate)")
			}
		case pg.AlterTableType_AT_DropConstraint:
			for _, col := range cols {
				if col.Backstop != "" && c.Name == col.Backstop {
					return refuse("drop the backstop of", col.String(), "it is what makes PostgreSQL refuse plaintext in the column; remove the column from the rules first (or use pgcloak migrate decrypt)")
				}
			}
		case pg.AlterTableType_AT_AddColumn:
			cd := c.Def.GetColumnDef()
			if cd == nil {
				continue
			}
			col := cols[cd.Colname]
			if col == nil {
				continue
			}
			if err := checkColumnDef(col, cd); err != nil {
				return err
			}
			if !c.MissingOk && !named[col.Backstop] {
				added = append(added, col)
			}
		case pg.AlterTableType_AT_SetExpression, pg.AlterTableType_AT_AddIdentity:
			if col := cols[c.Name]; col != nil {
				return refuse("change", col.String(), "the server would compute its value in plaintext")
			}
		}
	}
	if len(added) == 0 {
		return nil
	}
	end := int(raw.StmtLocation) + int(raw.StmtLen)
	if raw.StmtLen == 0 {
		end = len(strings.TrimRight(a.sql, "; \t\r\n"))
	}
	for _, col := range added {
		st.Edits = append(st.Edits, Edit{Start: end, End: end, Column: col, Backstop: true, Verbatim: ", ADD "})
	}
	return nil
}

// rename refuses renaming a table that rules name, one of its protected
// columns, a backstop, or a schema holding such tables.
func (a *analyzer) rename(r *pg.RenameStmt) error {
	switch r.RenameType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
		schema, cols, err := a.ruleRel(r.Relation)
		if err != nil || cols == nil {
			return err
		}
		return refuse("rename", schema+"."+r.Relation.Relname, whyRulesFirst)
	case pg.ObjectType_OBJECT_COLUMN:
		if r.RelationType != pg.ObjectType_OBJECT_TABLE {
			return nil
		}
		_, cols, err := a.ruleRel(r.Relation)
		if err != nil {
			return err
		}
		if col := cols[r.Subname]; col != nil {
			return refuse("rename", col.String(), whyRulesFirst)
		}
	case pg.ObjectType_OBJECT_TABCONSTRAINT:
		_, cols, err := a.ruleRel(r.Relation)
		if err != nil {
			return err
		}
		for _, col := range cols {
			if col.Backstop != "" && r.Subname == col.Backstop {
				return refuse("rename the backstop of", col.String(), "pgcloak finds it by this name")
			}
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		if t := a.ruleTableIn(r.Subname); t != "" {
			return refuse("rename schema", r.Subname, "it holds the protected table "+t+", whose values are bound to the schema's name; change the rules first")
		}
	}
	return nil
}

// alterSchema refuses moving a table that rules name to another schema.
func (a *analyzer) alterSchema(s *pg.AlterObjectSchemaStmt) error {
	if s.ObjectType != pg.ObjectType_OBJECT_TABLE && s.ObjectType != pg.ObjectType_OBJECT_FOREIGN_TABLE {
		return nil
	}
	schema, cols, err := a.ruleRel(s.Relation)
	if err != nil || cols == nil {
		return err
	}
	return refuse("move", schema+"."+s.Relation.Relname, whyRulesFirst)
}

// drop refuses dropping a table that rules name, or a schema holding one
// with CASCADE.
func (a *analyzer) drop(d *pg.DropStmt) error {
	switch d.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
		for _, o := range d.Objects {
			names := nameList(o)
			if len(names) == 0 || len(names) > 3 {
				continue
			}
			rv := &pg.RangeVar{Relname: names[len(names)-1]}
			if len(names) >= 2 {
				rv.Schemaname = names[len(names)-2]
			}
			schema, cols, err := a.ruleRel(rv)
			if err != nil {
				return err
			}
			if cols != nil {
				return refuse("drop", schema+"."+rv.Relname, "it is a protected table; change the rules first (remove it from tables: in the config and restart pgcloak), or drop it directly in PostgreSQL")
			}
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		if d.Behavior != pg.DropBehavior_DROP_CASCADE {
			return nil // PostgreSQL refuses to drop a schema that holds tables
		}
		for _, o := range d.Objects {
			if s := str(o); s != "" {
				if t := a.ruleTableIn(s); t != "" {
					return refuse("drop schema", s, "it holds the protected table "+t+"; change the rules first")
				}
			}
		}
	}
	return nil
}

// ruleTableIn returns a table that rules name in schema, or "".
func (a *analyzer) ruleTableIn(schema string) string {
	for _, n := range a.names {
		if a.ruleTable(schema, n) != nil {
			return schema + "." + n
		}
	}
	return ""
}

// nameList returns the names of a qualified name (a List of Strings).
func nameList(n *pg.Node) []string {
	var out []string
	for _, item := range n.GetList().GetItems() {
		out = append(out, str(item))
	}
	return out
}

func sortedNames(cols map[string]*Column) []string {
	names := make([]string, 0, len(cols))
	for n := range cols {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
