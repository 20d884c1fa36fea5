package catalog

// Reading a Snapshot from the live catalog: tables and their protected
// columns, backstops, views over them, inheritance children and schemas.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
)

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
	s := newSnapshot("", l.Rules)
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
		fix := fmt.Sprintf("pgcloak protect --config FILE --apply (or run: %s; %s)", r.BackstopSQL(), ValidateSQL(r.Schema, r.Table, r.Name))
		if !ok {
			problem(KindBackstopMissing, fmt.Sprintf("no CHECK constraint %s: a write around pgcloak could store plaintext", BackstopName(r.Name)), fix)
			continue
		}
		want, err := l.expectedDef(ctx, conn, r.Name, r.Subject != "")
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
// once per column name (and kind: subject-keyed or not).
func (l *Loader) expectedDef(ctx context.Context, conn *pgx.Conn, column string, subject bool) (string, error) {
	key := column
	if subject {
		key = "\x00subject\x00" + column
	}
	l.mu.Lock()
	def, ok := l.defs[key]
	l.mu.Unlock()
	if ok {
		return def, nil
	}
	def, err := BackstopDefFor(ctx, conn, column, subject)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.defs[key] = def
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
