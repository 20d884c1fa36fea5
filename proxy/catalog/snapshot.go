package catalog

import (
	"errors"
	"fmt"

	"github.com/pgcloak/pgcloak/proxy/sqlplan"
)

// byteaOID is pg_type.oid of bytea, the physical type of protected columns.
const byteaOID = 17

// Problem kinds: a rule that does not match the database. The names are the
// kinds `pgcloak check` prints.
const (
	KindTableMissing    = "table_missing"
	KindColumnMissing   = "column_missing"
	KindColumnType      = "column_type"
	KindBackstopMissing = "backstop_missing"
	KindBackstopDiffers = "backstop_differs"
	KindViewUnreadable  = "view_unreadable"

	// kindColumnNotYet is a column_missing that blocks nothing.
	kindColumnNotYet = "column_not_yet"
)

// Problem is one way the database does not match the rules.
type Problem struct {
	// Kind is one of the Kind constants.
	Kind string
	// Rule is the rule concerned (nil for a view).
	Rule *Rule
	// Target is what it is about, for messages: schema.table.column or the
	// view's schema.name.
	Target string
	// Message says what is wrong; Fix what to do.
	Message, Fix string
	// Blocking problems keep serve from relaying sessions to the database;
	// the others make only the statements that use the table or view fail.
	Blocking bool
}

func (p Problem) String() string {
	s := p.Target + ": " + p.Message
	if p.Fix != "" {
		s += "; fix: " + p.Fix
	}
	return s
}

// relation is a table holding protected columns, or a view over one, as the
// SQL analyzer sees it.
type relation struct {
	schema, name string
	oid          uint32
	view         bool
	columns      []string                   // every column, attnum order
	plan         map[string]*sqlplan.Column // protected columns by name
	unavailable  string                     // why statements must not use it now
}

// Snapshot is the live catalog for a set of rules at one moment: where each
// rule's column is (relation OID, attribute number), which views return
// protected columns, and what does not match. It is immutable and safe for
// concurrent use; it implements sqlplan.Catalog.
type Snapshot struct {
	// Database is the database the rules were resolved in: relation OIDs
	// and names mean nothing in another one.
	Database string
	// Rules are the rules it was loaded for.
	Rules []*Rule
	// Problems are the mismatches, blocking ones first.
	Problems []Problem

	backstops map[*Rule]BackstopState
	placed    map[*Rule]bool

	rels      map[string]*relation // "schema\x00name"
	byAttr    map[uint64]*Rule     // (relation OID, attnum) of tables and views
	byPlan    map[*sqlplan.Column]*Rule
	schemasOf map[string][]string // relation name → schemas holding one (temp schemas left out)
	names     []string
	version   string // fingerprint of what was read, to tell a change
}

// BackstopState is what the catalog holds of a rule's backstop.
type BackstopState struct {
	Exists  bool // a CHECK constraint with the backstop's name
	Matches bool // … whose check is the one pgcloak adds
	Valid   bool // … and validated: rows older than it were checked too
}

// OK reports whether the backstop is in place and refuses plaintext from
// now on (it may still be NOT VALID: rows older than it unchecked).
func (b BackstopState) OK() bool { return b.Exists && b.Matches }

// Backstop returns the state of r's backstop (zero when its column is not
// in place).
func (s *Snapshot) Backstop(r *Rule) BackstopState { return s.backstops[r] }

// Placed reports whether r's column is in the database as a bytea column.
func (s *Snapshot) Placed(r *Rule) bool { return s.placed[r] }

// newSnapshot returns an empty Snapshot of database for rules.
func newSnapshot(database string, rules []*Rule) *Snapshot {
	s := &Snapshot{
		Database:  database,
		Rules:     rules,
		rels:      map[string]*relation{},
		byAttr:    map[uint64]*Rule{},
		byPlan:    map[*sqlplan.Column]*Rule{},
		schemasOf: map[string][]string{},
		backstops: map[*Rule]BackstopState{},
		placed:    map[*Rule]bool{},
	}
	for _, r := range rules {
		s.byPlan[r.Plan] = r
	}
	return s
}

func relKey(schema, name string) string { return schema + "\x00" + name }

// AttrKey identifies a column the way RowDescription does.
func AttrKey(relOID uint32, attnum int16) uint64 { return uint64(relOID)<<16 | uint64(uint16(attnum)) }

// Lookup returns the rule whose values a result column with this table OID
// and attribute number carries (a protected table's column, or a view column
// that returns one), or nil.
func (s *Snapshot) Lookup(relOID uint32, attnum int16) *Rule {
	if relOID == 0 {
		return nil
	}
	return s.byAttr[AttrKey(relOID, attnum)]
}

// Blocking returns the problems that keep serve from relaying sessions.
func (s *Snapshot) Blocking() []Problem {
	var out []Problem
	for _, p := range s.Problems {
		if p.Blocking {
			out = append(out, p)
		}
	}
	return out
}

// Same reports whether t was read from the same catalog state as s.
func (s *Snapshot) Same(t *Snapshot) bool { return t != nil && s.version == t.version }

// Protected implements sqlplan.Catalog.
func (s *Snapshot) Protected(schema, table string) map[string]*sqlplan.Column {
	if r := s.rels[relKey(schema, table)]; r != nil {
		return r.plan
	}
	return nil
}

// Columns implements sqlplan.Catalog.
func (s *Snapshot) Columns(schema, table string) []string {
	if r := s.rels[relKey(schema, table)]; r != nil {
		return r.columns
	}
	return nil
}

// Unavailable implements sqlplan.Catalog.
func (s *Snapshot) Unavailable(schema, table string) string {
	if r := s.rels[relKey(schema, table)]; r != nil {
		return r.unavailable
	}
	return ""
}

// ProtectedNames implements sqlplan.Catalog.
func (s *Snapshot) ProtectedNames() []string { return s.names }

// Resolve implements sqlplan.Catalog. A name that only one schema of the
// database holds is that relation whatever the search_path: if the path
// does not reach it the server says so, and pgcloak never has to know the
// path exactly. Only a name held by several schemas is resolved along the
// path (pg_catalog first unless listed, as PostgreSQL does).
func (s *Snapshot) Resolve(name string, searchPath []string) (string, bool) {
	schemas := s.schemasOf[name]
	switch len(schemas) {
	case 0:
		return "", false
	case 1:
		return schemas[0], true
	}
	hasCatalog := false
	for _, p := range searchPath {
		if p == "pg_catalog" {
			hasCatalog = true
		}
	}
	path := searchPath
	if !hasCatalog {
		path = append([]string{"pg_catalog"}, searchPath...)
	}
	for _, p := range path {
		for _, have := range schemas {
			if have == p {
				return p, true
			}
		}
	}
	return "", false
}

// Ambiguous reports whether several schemas hold a relation called name, so
// that an unqualified reference depends on the search_path.
func (s *Snapshot) Ambiguous(name string) bool { return len(s.schemasOf[name]) > 1 }

// addView attributes a view's columns and adds it to the snapshot.
func (s *Snapshot) addView(v *relation, def string) {
	cols, err := sqlplan.ViewOutputs(def, s)
	var ref *sqlplan.Refusal
	switch {
	case errors.As(err, &ref):
		v.unavailable = fmt.Sprintf("view %s reads protected columns in a way pgcloak cannot follow (%s); read the table directly, or define the view as a plain selection of the columns", Display(v.schema)+"."+Display(v.name), ref.Error())
		s.Problems = append(s.Problems, Problem{Kind: KindViewUnreadable, Target: Display(v.schema) + "." + Display(v.name), Message: ref.Error(),
			Fix: "read the table directly, or define the view as a plain selection of the protected columns"})
	case err != nil || cols == nil:
		return
	default:
		v.plan = map[string]*sqlplan.Column{}
		for i, c := range cols {
			if c == nil || i >= len(v.columns) {
				continue
			}
			v.plan[v.columns[i]] = c
			if r := s.ruleOf(c); r != nil {
				s.byAttr[AttrKey(v.oid, int16(i+1))] = r
			}
		}
		if len(v.plan) == 0 {
			return
		}
	}
	s.addRel(v)
}

func (s *Snapshot) addRel(r *relation) {
	k := relKey(r.schema, r.name)
	if _, ok := s.rels[k]; ok {
		return
	}
	s.rels[k] = r
	s.names = append(s.names, r.name)
}

// ruleOf returns the rule of an analyzer column.
func (s *Snapshot) ruleOf(c *sqlplan.Column) *Rule { return s.byPlan[c] }

// RuleOf returns the rule behind a column the SQL analyzer planned.
func (s *Snapshot) RuleOf(c *sqlplan.Column) *Rule { return s.byPlan[c] }
