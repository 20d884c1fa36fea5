package proxy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// CatalogError says which rules of tables: do not match the database: a
// configuration mistake, not a passing fault.
type CatalogError struct{ Problems []string }

func (e *CatalogError) Error() string {
	return "protected columns do not match the database:\n  " + strings.Join(e.Problems, "\n  ")
}

// byteaOID is pg_type.oid of bytea, the physical type of protected columns.
const byteaOID = 17

// column is one protected column, resolved against the live catalog.
type column struct {
	plan    *sqlplan.Column // identity for the SQL analyzer
	id      crypto.ColumnID // associated data binding ciphertext to the column
	typ     *values.Type    // the logical type the application sees
	mode    crypto.Mode
	keyring *crypto.Keyring
	group   string // search_group of deterministic columns
	relOID  uint32
	attnum  int16
	// migrating columns also hold plaintext (no pgcloak header) on read.
	migrating bool
}

func (c *column) String() string { return c.plan.String() }

// attrKey identifies a table column the way RowDescription does.
func attrKey(relOID uint32, attnum int16) uint64 { return uint64(relOID)<<16 | uint64(uint16(attnum)) }

// Protection holds the protected columns of the database, shared read-only by
// all sessions. It implements sqlplan.Catalog.
type Protection struct {
	byAttr  map[uint64]*column
	byPlan  map[*sqlplan.Column]*column
	tables  map[string]map[string]*sqlplan.Column // "schema\x00table" → column → identity
	columns map[string][]string                   // "schema\x00table" → every column, attnum order
	// schemasOf lists, for each protected table's name, every schema holding
	// a relation of that name, so unqualified names resolve as PostgreSQL
	// would under any search_path.
	schemasOf map[string][]string
	names     []string
	shadow    bool
	// keys may pick up key versions created since they were loaded.
	keys crypto.Keyrings
	// plans caches statement analyses for all sessions.
	plans planCache
	// database is the database the rules were resolved in (admin_dsn's):
	// relation OIDs and names mean nothing in another one.
	database string
}

// reloader is implemented by key loaders that can look for new versions.
type reloader interface {
	Reload(ctx context.Context) error
}

// reloadTimeout bounds a key refresh triggered by an unknown version.
const reloadTimeout = 5 * time.Second

// reload asks the key loader for new versions and returns why that failed
// (typically the KMS cannot be reached), or nil; loaders that cannot reload
// report nil. Loaders rate-limit this themselves.
func (p *Protection) reload() error {
	r, ok := p.keys.(reloader)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	return r.Reload(ctx)
}

func tableKey(schema, table string) string { return schema + "\x00" + table }

// LoadProtection checks every rule against the catalog through conn and
// resolves it to relation OID and attribute number. Each rule's table and
// column must exist and the column must be bytea.
func LoadProtection(ctx context.Context, conn *pgx.Conn, cfg *config.Config, keys crypto.Keyrings) (*Protection, error) {
	p := &Protection{
		byAttr:    make(map[uint64]*column),
		byPlan:    make(map[*sqlplan.Column]*column),
		tables:    make(map[string]map[string]*sqlplan.Column),
		columns:   make(map[string][]string),
		schemasOf: make(map[string][]string),
		shadow:    cfg.Shadow,
		keys:      keys,
	}
	var problems []string
	tnames := make([]string, 0, len(cfg.Tables))
	for t := range cfg.Tables {
		tnames = append(tnames, t)
	}
	sort.Strings(tnames)
	for _, tname := range tnames {
		schema, table, err := config.SplitTable(tname)
		if err != nil {
			problems = append(problems, fmt.Sprintf("tables.%s: %v", tname, err))
			continue
		}
		type attr struct {
			num int16
			typ uint32
		}
		attrs := map[string]attr{}
		var relOID uint32
		var order []string
		rows, err := conn.Query(ctx, `
			SELECT c.oid, a.attname, a.attnum, a.atttypid
			FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
			ORDER BY a.attnum`, schema, table)
		if err != nil {
			return nil, fmt.Errorf("reading the catalog: %w", err)
		}
		for rows.Next() {
			var name string
			var a attr
			if err := rows.Scan(&relOID, &name, &a.num, &a.typ); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading the catalog: %w", err)
			}
			attrs[name] = a
			order = append(order, name)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading the catalog: %w", err)
		}
		if relOID == 0 {
			problems = append(problems, fmt.Sprintf("tables.%s: no table %s.%s in the database; create it or fix the name", tname, schema, table))
			continue
		}
		tk := tableKey(schema, table)
		p.columns[tk] = order
		p.tables[tk] = map[string]*sqlplan.Column{}
		cnames := make([]string, 0, len(cfg.Tables[tname]))
		for c := range cfg.Tables[tname] {
			cnames = append(cnames, c)
		}
		sort.Strings(cnames)
		for _, cname := range cnames {
			rule := cfg.Tables[tname][cname]
			where := fmt.Sprintf("tables.%s.%s", tname, cname)
			a, ok := attrs[cname]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: table %s.%s has no column %q", where, schema, table, cname))
				continue
			}
			if a.typ != byteaOID {
				problems = append(problems, fmt.Sprintf("%s: column is not bytea (type OID %d); protected columns hold ciphertext: ALTER TABLE %s ALTER COLUMN %s TYPE bytea (pgcloak migrate plan prints the full steps)", where, a.typ, tname, cname))
				continue
			}
			col, err := newColumn(schema, table, cname, rule, keys)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			col.relOID, col.attnum = relOID, a.num
			p.byAttr[attrKey(relOID, a.num)] = col
			p.byPlan[col.plan] = col
			p.tables[tk][cname] = col.plan
		}
		if _, seen := p.schemasOf[table]; !seen {
			p.names = append(p.names, table)
			p.schemasOf[table] = nil
		}
	}
	if len(problems) > 0 {
		return nil, &CatalogError{Problems: problems}
	}
	if err := p.loadSchemas(ctx, conn); err != nil {
		return nil, err
	}
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&p.database); err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	return p, nil
}

// loadSchemas records every schema holding a relation named like a protected
// table, for search_path resolution.
func (p *Protection) loadSchemas(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `
		SELECT c.relname, n.nspname
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`, p.names)
	if err != nil {
		return fmt.Errorf("reading the catalog: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel, nsp string
		if err := rows.Scan(&rel, &nsp); err != nil {
			return err
		}
		p.schemasOf[rel] = append(p.schemasOf[rel], nsp)
	}
	return rows.Err()
}

func newColumn(schema, table, name string, rule config.Column, keys crypto.Keyrings) (*column, error) {
	typ, err := values.Lookup(rule.Type)
	if err != nil {
		return nil, err
	}
	mode := crypto.Randomized
	pmode := sqlplan.Randomized
	if rule.Mode == config.ModeDeterministic {
		mode, pmode = crypto.Deterministic, sqlplan.Deterministic
	}
	id, err := crypto.NewColumnID(schema, table, name)
	if rule.SearchGroup != "" {
		// Columns of one group share their identity, so equal values
		// encrypt equally across them (joins).
		id, err = crypto.NewSearchGroupID(rule.SearchGroup)
	}
	if err != nil {
		return nil, err
	}
	kr, err := keys.Keyring(rule.Key)
	if err != nil {
		return nil, err
	}
	return &column{
		plan:      &sqlplan.Column{Schema: schema, Table: table, Name: name, Mode: pmode},
		id:        id,
		typ:       typ,
		mode:      mode,
		keyring:   kr,
		group:     rule.SearchGroup,
		migrating: rule.State == config.StateMigrating,
	}, nil
}

// lookup returns the protected column behind a RowDescription field.
func (p *Protection) lookup(relOID uint32, attnum uint16) *column {
	if relOID == 0 {
		return nil
	}
	return p.byAttr[uint64(relOID)<<16|uint64(attnum)]
}

// Protected implements sqlplan.Catalog.
func (p *Protection) Protected(schema, table string) map[string]*sqlplan.Column {
	return p.tables[tableKey(schema, table)]
}

// Columns implements sqlplan.Catalog.
func (p *Protection) Columns(schema, table string) []string {
	return p.columns[tableKey(schema, table)]
}

// ProtectedNames implements sqlplan.Catalog.
func (p *Protection) ProtectedNames() []string { return p.names }

// Resolve implements sqlplan.Catalog: the schema an unqualified relation name
// refers to under searchPath. Only names of protected tables matter; others
// resolve to nothing, which is what the analyzer needs.
func (p *Protection) Resolve(name string, searchPath []string) (string, bool) {
	schemas := p.schemasOf[name]
	if len(schemas) == 0 {
		return "", false
	}
	// PostgreSQL searches pg_temp (unless listed elsewhere) and pg_catalog
	// (unless listed) before the path.
	for _, s := range effectivePath(searchPath) {
		for _, have := range schemas {
			if have == s {
				return s, true
			}
		}
	}
	return "", false
}

// effectivePath is search_path as PostgreSQL applies it.
func effectivePath(path []string) []string {
	out := make([]string, 0, len(path)+1)
	hasCatalog := false
	for _, s := range path {
		if s == "pg_catalog" {
			hasCatalog = true
		}
	}
	if !hasCatalog {
		out = append(out, "pg_catalog")
	}
	return append(out, path...)
}
