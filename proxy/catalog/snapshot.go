package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

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

// Loader reads snapshots. It remembers how this server prints each
// backstop, so a refresh costs a few catalog queries.
type Loader struct {
	Rules []*Rule
	// placed is where each rule's column was at the last load (relation
	// OID, attnum): a column found there under another name was renamed.
	placed map[*Rule][2]int64
	// AllowMissingBackstop makes a missing or different backstop a
	// non-blocking problem that leaves the table usable (roll-outs only).
	AllowMissingBackstop bool

	mu   sync.Mutex
	defs map[string]string // column name → expected pg_get_constraintdef
}

// NewLoader returns a Loader for rules.
func NewLoader(rules []*Rule) *Loader {
	return &Loader{Rules: rules, defs: map[string]string{}}
}

// Load reads the catalog through conn (a connection to the protected
// database with read access to pg_catalog). It fails only when the catalog
// cannot be read; rules that do not match are Problems of the Snapshot.
func (l *Loader) Load(ctx context.Context, conn *pgx.Conn) (*Snapshot, error) {
	s := &Snapshot{
		Rules:     l.Rules,
		rels:      map[string]*relation{},
		byAttr:    map[uint64]*Rule{},
		byPlan:    map[*sqlplan.Column]*Rule{},
		schemasOf: map[string][]string{},
		backstops: map[*Rule]BackstopState{},
		placed:    map[*Rule]bool{},
	}
	for _, r := range l.Rules {
		s.byPlan[r.Plan] = r
	}
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&s.Database); err != nil {
		return nil, catalogErr(err)
	}
	var fp strings.Builder
	if err := l.loadTables(ctx, conn, s, &fp); err != nil {
		return nil, err
	}
	if err := s.loadChildren(ctx, conn, &fp); err != nil {
		return nil, err
	}
	if err := l.loadViews(ctx, conn, s, &fp); err != nil {
		return nil, err
	}
	if err := s.loadSchemas(ctx, conn, &fp); err != nil {
		return nil, err
	}
	sort.SliceStable(s.Problems, func(i, j int) bool { return s.Problems[i].Blocking && !s.Problems[j].Blocking })
	s.version = fp.String()
	return s, nil
}

func catalogErr(err error) error { return fmt.Errorf("reading the catalog: %w", err) }

// loadTables places every rule in its table and checks type and backstop.
func (l *Loader) loadTables(ctx context.Context, conn *pgx.Conn, s *Snapshot, fp *strings.Builder) error {
	type attr struct {
		num int16
		typ uint32
	}
	type table struct {
		oid   uint32
		attrs map[string]attr
		order []string
	}
	var schemas, names []string
	seen := map[string]bool{}
	for _, r := range l.Rules {
		k := relKey(r.Schema, r.Table)
		if !seen[k] {
			seen[k] = true
			schemas, names = append(schemas, r.Schema), append(names, r.Table)
		}
	}
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname, c.oid, a.attname, a.attnum, a.atttypid
		FROM unnest($1::text[], $2::text[]) AS w(nsp, rel)
		JOIN pg_catalog.pg_namespace n ON n.nspname = w.nsp
		JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel AND c.relkind IN ('r', 'p')
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY 1, 2, a.attnum`, schemas, names)
	if err != nil {
		return catalogErr(err)
	}
	tables := map[string]*table{}
	for rows.Next() {
		var nsp, rel, name string
		var oid uint32
		var a attr
		if err := rows.Scan(&nsp, &rel, &oid, &name, &a.num, &a.typ); err != nil {
			rows.Close()
			return catalogErr(err)
		}
		t := tables[relKey(nsp, rel)]
		if t == nil {
			t = &table{oid: oid, attrs: map[string]attr{}}
			tables[relKey(nsp, rel)] = t
		}
		t.attrs[name] = a
		t.order = append(t.order, name)
		fmt.Fprintf(fp, "%d.%d.%s.%d;", oid, a.num, name, a.typ)
	}
	if err := rows.Err(); err != nil {
		return catalogErr(err)
	}

	// The backstops: CHECK constraints named after the columns.
	var oids []uint32
	for _, t := range tables {
		oids = append(oids, t.oid)
	}
	type constraint struct {
		def   string
		valid bool
	}
	cons := map[string]constraint{} // "oid\x00conname"
	rows, err = conn.Query(ctx, `
		SELECT conrelid, conname, convalidated, pg_catalog.pg_get_constraintdef(oid)
		FROM pg_catalog.pg_constraint WHERE conrelid = ANY($1) AND contype = 'c'`, oids)
	if err != nil {
		return catalogErr(err)
	}
	for rows.Next() {
		var rel uint32
		var name, def string
		var valid bool
		if err := rows.Scan(&rel, &name, &valid, &def); err != nil {
			rows.Close()
			return catalogErr(err)
		}
		cons[fmt.Sprint(rel)+"\x00"+name] = constraint{strings.TrimSuffix(def, " NOT VALID"), valid}
		fmt.Fprintf(fp, "%d.%s.%t.%s;", rel, name, valid, def)
	}
	if err := rows.Err(); err != nil {
		return catalogErr(err)
	}

	for _, r := range l.Rules {
		k := relKey(r.Schema, r.Table)
		rel := s.rels[k]
		t := tables[k]
		if rel == nil {
			rel = &relation{schema: r.Schema, name: r.Table, plan: map[string]*sqlplan.Column{}}
			if t != nil {
				rel.oid, rel.columns = t.oid, t.order
			}
			s.rels[k] = rel
			s.names = append(s.names, r.Table)
		}
		rel.plan[r.Name] = r.Plan
		problem := func(kind, msg, fix string) {
			backstop := kind == KindBackstopMissing || kind == KindBackstopDiffers
			// A table or column that is not there yet holds nothing to
			// protect: its rules apply once it is created (through
			// pgcloak, which adds the backstops; or directly, then pgcloak
			// protect). A column renamed away is another matter (below).
			blocking := kind != KindTableMissing && kind != kindColumnNotYet && (!backstop || !l.AllowMissingBackstop)
			if kind == kindColumnNotYet {
				kind = KindColumnMissing
			}
			s.Problems = append(s.Problems, Problem{Kind: kind, Rule: r, Target: r.String(), Message: msg, Fix: fix, Blocking: blocking})
			if blocking && rel.unavailable == "" {
				rel.unavailable = fmt.Sprintf("the rules for %s do not match the database: %s: %s; fix the table or the rules, then pgcloak check", r.TableString(), r.Name, msg)
			}
		}
		if t == nil {
			problem(KindTableMissing, fmt.Sprintf("table %s is not in the database %s (yet): its rules apply once it is created", r.TableString(), s.Database),
				fmt.Sprintf("create it (through pgcloak, which adds the backstops, or directly, then pgcloak protect), or fix the name %s in the config", r.ConfigTable))
			continue
		}
		a, ok := t.attrs[r.Name]
		if !ok {
			_, renamed := cons[fmt.Sprint(t.oid)+"\x00"+BackstopName(r.Name)]
			l.mu.Lock()
			was, seen := l.placed[r]
			l.mu.Unlock()
			if seen && uint32(was[0]) == t.oid {
				// The column the rule was placed on is still there, under
				// another name.
				for name, at := range t.attrs {
					if int64(at.num) == was[1] && name != r.Name {
						renamed = true
					}
				}
			}
			if renamed {
				// Its backstop outlived it: the column was renamed (the
				// constraint follows the column), and its values are now
				// under another name that no rule protects.
				problem(KindColumnMissing, "column is not in the table any more: it was renamed around pgcloak (its backstop or its place in the table is still there)",
					fmt.Sprintf("rename it back, or change the rules to its new name (%s) and restart pgcloak", r.ConfigKey()))
				continue
			}
			problem(kindColumnNotYet, "column is not in the table (yet): its rule applies once it is added",
				fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s bytea (through pgcloak, which adds its backstop); or fix the name %s in the config",
					pgx.Identifier{r.Schema, r.Table}.Sanitize(), pgx.Identifier{r.Name}.Sanitize(), r.ConfigKey()))
			continue
		}
		if a.typ != byteaOID {
			problem(KindColumnType, fmt.Sprintf("column is not bytea (type OID %d): its values would be plaintext", a.typ),
				fmt.Sprintf("pgcloak migrate plan --table %s --column %s prints the DDL that converts it in place", r.ConfigTable, r.Name))
			continue
		}
		s.byAttr[AttrKey(t.oid, a.num)] = r
		s.placed[r] = true
		l.mu.Lock()
		if l.placed == nil {
			l.placed = map[*Rule][2]int64{}
		}
		l.placed[r] = [2]int64{int64(t.oid), int64(a.num)}
		l.mu.Unlock()
		if r.Migrating {
			continue // holds plaintext until migrate encrypt adds the backstop
		}
		c, ok := cons[fmt.Sprint(t.oid)+"\x00"+BackstopName(r.Name)]
		fix := fmt.Sprintf("pgcloak protect --config FILE --apply (or run: %s; %s)", BackstopSQL(r.Schema, r.Table, r.Name), ValidateSQL(r.Schema, r.Table, r.Name))
		if !ok {
			problem(KindBackstopMissing, fmt.Sprintf("no CHECK constraint %s: a write around pgcloak could store plaintext", BackstopName(r.Name)), fix)
			continue
		}
		want, err := l.expectedDef(ctx, conn, r.Name)
		if err != nil {
			return fmt.Errorf("computing the backstop of %s: %w", r, err)
		}
		s.backstops[r] = BackstopState{Exists: true, Matches: c.def == want, Valid: c.valid}
		if c.def != want {
			problem(KindBackstopDiffers, fmt.Sprintf("constraint %s is CHECK %s, not the check pgcloak adds", BackstopName(r.Name), c.def),
				fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s; then %s", pgx.Identifier{r.Schema, r.Table}.Sanitize(), pgx.Identifier{BackstopName(r.Name)}.Sanitize(), fix))
		}
	}
	return nil
}

// expectedDef is the backstop of column as this server prints it, computed
// once per column name.
func (l *Loader) expectedDef(ctx context.Context, conn *pgx.Conn, column string) (string, error) {
	l.mu.Lock()
	def, ok := l.defs[column]
	l.mu.Unlock()
	if ok {
		return def, nil
	}
	def, err := BackstopDef(ctx, conn, column)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.defs[column] = def
	l.mu.Unlock()
	return def, nil
}

// loadViews finds the views and materialized views that read protected
// tables (directly or through other views) and attributes their columns,
// in dependency order.
func (l *Loader) loadViews(ctx context.Context, conn *pgx.Conn, s *Snapshot, fp *strings.Builder) error {
	var oids []uint32
	for _, r := range s.rels {
		if r.oid != 0 {
			oids = append(oids, r.oid)
		}
	}
	if len(oids) == 0 {
		return nil
	}
	// pg_get_viewdef qualifies every name that the search_path does not
	// reach: with an empty path, all of them.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return catalogErr(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
		return catalogErr(err)
	}
	rows, err := tx.Query(ctx, `
		WITH RECURSIVE dep(view, base) AS (
			SELECT DISTINCT r.ev_class, d.refobjid
			FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
			WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
			  AND d.refobjid = ANY($1) AND r.ev_class <> d.refobjid
			UNION
			SELECT r.ev_class, d.refobjid
			FROM dep JOIN pg_catalog.pg_depend d ON d.refobjid = dep.view
			JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
			WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
			  AND r.ev_class <> dep.view
		)
		SELECT c.oid, n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid),
		       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
		       ARRAY(SELECT DISTINCT dep.base FROM dep WHERE dep.view = c.oid)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid IN (SELECT view FROM dep) AND c.relkind IN ('v', 'm')
		ORDER BY c.oid`, oids)
	if err != nil {
		return catalogErr(err)
	}
	type view struct {
		rel  *relation
		def  string
		deps []uint32
	}
	var views []*view
	byOID := map[uint32]*view{}
	for rows.Next() {
		v := &view{rel: &relation{view: true}}
		if err := rows.Scan(&v.rel.oid, &v.rel.schema, &v.rel.name, &v.def, &v.rel.columns, &v.deps); err != nil {
			rows.Close()
			return catalogErr(err)
		}
		views = append(views, v)
		byOID[v.rel.oid] = v
		fmt.Fprintf(fp, "v%d.%s.%s;", v.rel.oid, v.rel.name, v.def)
	}
	if err := rows.Err(); err != nil {
		return catalogErr(err)
	}
	// A view is attributed once every view it reads is: the analyzer then
	// sees those as relations with protected columns too.
	done := map[uint32]bool{}
	for progress := true; progress; {
		progress = false
		for _, v := range views {
			if done[v.rel.oid] {
				continue
			}
			ready := true
			for _, d := range v.deps {
				if byOID[d] != nil && !done[d] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			done[v.rel.oid], progress = true, true
			s.addView(v.rel, v.def)
		}
	}
	for _, v := range views {
		if !done[v.rel.oid] { // a cycle: PostgreSQL does not allow one, but never trust
			v.rel.unavailable = "its definition depends on itself"
			s.addRel(v.rel)
		}
	}
	return nil
}

// loadChildren adds the tables that inherit from protected tables (and the
// partitions of protected partitioned tables): rows written to a child are
// read through the parent, so its columns carry the parent's rules and
// identities. (PostgreSQL gives children the parent's CHECK constraints, the
// backstops among them, and refuses to drop an inherited one.)
func (s *Snapshot) loadChildren(ctx context.Context, conn *pgx.Conn, fp *strings.Builder) error {
	var parents []uint32
	byOID := map[uint32]*relation{}
	for _, r := range s.rels {
		if r.oid != 0 && !r.view {
			parents = append(parents, r.oid)
			byOID[r.oid] = r
		}
	}
	if len(parents) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, `
		WITH RECURSIVE kids(child, top) AS (
			SELECT inhrelid, inhparent FROM pg_catalog.pg_inherits WHERE inhparent = ANY($1)
			UNION
			SELECT i.inhrelid, k.top FROM pg_catalog.pg_inherits i JOIN kids k ON i.inhparent = k.child
		)
		SELECT c.oid, n.nspname, c.relname, k.top,
		       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
		       ARRAY(SELECT a.attnum FROM pg_catalog.pg_attribute a
		             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
		FROM kids k JOIN pg_catalog.pg_class c ON c.oid = k.child JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		ORDER BY c.oid`, parents)
	if err != nil {
		return catalogErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		child := &relation{}
		var top uint32
		var nums []int16
		if err := rows.Scan(&child.oid, &child.schema, &child.name, &top, &child.columns, &nums); err != nil {
			return catalogErr(err)
		}
		parent := byOID[top]
		if parent == nil {
			continue
		}
		fmt.Fprintf(fp, "i%d.%d;", child.oid, top)
		child.plan = parent.plan
		for i, name := range child.columns {
			if pc := parent.plan[name]; pc != nil {
				if r := s.byPlan[pc]; r != nil && i < len(nums) {
					s.byAttr[AttrKey(child.oid, nums[i])] = r
				}
			}
		}
		s.addRel(child)
	}
	return rows.Err()
}

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

// loadSchemas records every schema holding a relation named like a
// protected table or view, for search_path resolution. Other sessions'
// temporary schemas are left out: their tables are invisible here.
func (s *Snapshot) loadSchemas(ctx context.Context, conn *pgx.Conn, fp *strings.Builder) error {
	names := make([]string, 0, len(s.names))
	seen := map[string]bool{}
	for _, n := range s.names {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	s.names = names
	rows, err := conn.Query(ctx, `
		SELECT c.relname, n.nspname
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND n.nspname !~ '^pg_(toast_)?temp_'
		ORDER BY 1, 2`, names)
	if err != nil {
		return catalogErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel, nsp string
		if err := rows.Scan(&rel, &nsp); err != nil {
			return catalogErr(err)
		}
		s.schemasOf[rel] = append(s.schemasOf[rel], nsp)
		fmt.Fprintf(fp, "s%s.%s;", nsp, rel)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A rule's table that no schema holds yet resolves to the rule's
	// schema: a session that creates it through pgcloak and writes to it
	// at once is encrypted before the next catalog read knows the table.
	for _, r := range s.rels {
		if !r.view && r.oid == 0 && len(s.schemasOf[r.name]) == 0 {
			s.schemasOf[r.name] = append(s.schemasOf[r.name], r.schema)
		}
	}
	return nil
}
