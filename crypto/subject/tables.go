package subject

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/config"
)

// Table is a table with subjects (an entry of the config's subjects:): where
// a row's subject is, and whose subjects they are.
type Table struct {
	// Schema and Name are the table's exact catalog names.
	Schema, Name string
	// Column is the plain column that holds a row's subject.
	Column string
	// ForeignKey, when set, is the constraint through which Column refers
	// to the table whose subjects these are.
	ForeignKey string
	// Keyring wraps the subject keys.
	Keyring string
	// ErrorOnForgotten: a read of a forgotten subject's value is an error
	// (forgotten_reads: error) rather than NULL.
	ErrorOnForgotten bool

	keys *Keys
	mu   sync.Mutex
	res  *Resolution // set once resolved
}

// Resolution is what the catalog says about a Table: its scope and the
// type of its subject column.
type Resolution struct {
	// Scope is ScopeName of the table whose subjects these are: the table
	// itself, or the one its foreign key refers to.
	Scope string
	// TypeOID is the subject column's type (a domain's base type), and
	// TypeName as format_type prints the column's own type: the subject is
	// read in this type and hashed in its text form, so 42 and '042' are
	// the same subject of an integer column.
	TypeOID  uint32
	TypeName string
}

// String is schema.table.
func (t *Table) String() string { return ScopeName(t.Schema, t.Name) }

// SupportedTypes are the subject column types whose text form is one per
// value (so that the subject's key is found whatever way a client writes it).
var SupportedTypes = map[uint32]string{21: "int2", 23: "int4", 20: "int8", 25: "text", 1043: "varchar", 2950: "uuid"}

// Resolve reads the subject column's type and, for a foreign key, the table
// it refers to, from the catalog, and registers the table in
// pgcloak.subject_tables (for pgcloak.forget). The answer is kept: a
// table renamed, or a subject column retyped, after it is not followed
// until pgcloak restarts.
func (t *Table) Resolve(ctx context.Context) (*Resolution, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.res != nil {
		return t.res, nil
	}
	res, err := resolve(ctx, t.keys.pool, t.keys.tables, t)
	if err != nil {
		return nil, fmt.Errorf("subjects of %s: %w", t, err)
	}
	t.res = res
	return res, nil
}

// db is what resolving needs of a pool or a connection.
type db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// resolve does Resolve's work; tables are all the tables with subjects.
func resolve(ctx context.Context, k db, tables map[[2]string]*Table, t *Table) (*Resolution, error) {
	rel := pgx.Identifier{t.Schema, t.Name}.Sanitize()
	var oid uint32
	var name string
	err := k.QueryRow(ctx, `SELECT CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END, format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, rel, t.Column).Scan(&oid, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("the table has no column %q (or does not exist yet); create it, or fix subjects.%s.column", t.Column, t)
	}
	if err != nil {
		return nil, err
	}
	if _, ok := SupportedTypes[oid]; !ok {
		return nil, fmt.Errorf("subject column %s is of type %s; a subject must be an integer, text, varchar or uuid column", t.Column, name)
	}
	res := &Resolution{Scope: t.String(), TypeOID: oid, TypeName: name}
	if t.ForeignKey != "" {
		parent, err := foreignKey(ctx, k, tables, t, rel)
		if err != nil {
			return nil, err
		}
		res.Scope = parent.String()
	}
	if _, err := k.Exec(ctx, `INSERT INTO pgcloak.subject_tables (schema_name, table_name, scope, subject_column, subject_type)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schema_name, table_name) DO UPDATE
		SET scope = EXCLUDED.scope, subject_column = EXCLUDED.subject_column, subject_type = EXCLUDED.subject_type`,
		t.Schema, t.Name, res.Scope, t.Column, name); err != nil {
		return nil, notInitialized(err)
	}
	return res, nil
}

// foreignKey checks that t's foreign key runs from its subject column to
// the subject column of another subject table with the same keyring, and
// returns that table.
func foreignKey(ctx context.Context, k db, tables map[[2]string]*Table, t *Table, rel string) (*Table, error) {
	var schema, table string
	var from, to []string
	err := k.QueryRow(ctx, `SELECT n.nspname, c.relname,
			ARRAY(SELECT a.attname::text FROM unnest(f.conkey) WITH ORDINALITY u(n, i) JOIN pg_catalog.pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = u.n ORDER BY u.i),
			ARRAY(SELECT a.attname::text FROM unnest(f.confkey) WITH ORDINALITY u(n, i) JOIN pg_catalog.pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = u.n ORDER BY u.i)
		FROM pg_catalog.pg_constraint f JOIN pg_catalog.pg_class c ON c.oid = f.confrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE f.conrelid = to_regclass($1) AND f.conname = $2 AND f.contype = 'f'`, rel, t.ForeignKey).Scan(&schema, &table, &from, &to)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("no foreign key %q on the table; create it, or fix subjects.%s.foreign_key", t.ForeignKey, t)
	}
	if err != nil {
		return nil, err
	}
	parent := tables[[2]string{schema, table}]
	switch {
	case len(from) != 1 || from[0] != t.Column:
		return nil, fmt.Errorf("foreign key %s is on (%v), not on the subject column %s alone", t.ForeignKey, from, t.Column)
	case parent == nil:
		return nil, fmt.Errorf("foreign key %s refers to %s, which has no subjects: in the config; add it there (its column and key)", t.ForeignKey, ScopeName(schema, table))
	case parent.ForeignKey != "":
		return nil, fmt.Errorf("foreign key %s refers to %s, whose subjects come through a foreign key themselves; refer to the table that owns the subjects", t.ForeignKey, parent)
	case len(to) != 1 || to[0] != parent.Column:
		return nil, fmt.Errorf("foreign key %s refers to %s (%v), not to its subject column %s", t.ForeignKey, parent, to, parent.Column)
	case parent.Keyring != t.Keyring:
		return nil, fmt.Errorf("its subjects are %s's, whose keys keyring %q wraps; write subjects.%s.key: %s", parent, parent.Keyring, t, parent.Keyring)
	}
	return parent, nil
}

// tablesOf makes the Tables of cfg's subjects:.
func tablesOf(cfg *config.Config, k *Keys) (map[[2]string]*Table, error) {
	out := make(map[[2]string]*Table, len(cfg.Subjects))
	for name, s := range cfg.Subjects {
		schema, table, err := config.SplitTable(name)
		if err != nil {
			return nil, fmt.Errorf("subjects.%s: %w", name, err)
		}
		out[[2]string{schema, table}] = &Table{Schema: schema, Name: table, Column: s.Column, ForeignKey: s.ForeignKey,
			Keyring: s.Key, ErrorOnForgotten: s.ForgottenReads == config.ForgottenError, keys: k}
	}
	return out, nil
}

// Setup creates the subject tables and functions (Init) and registers every
// table of cfg's subjects: that the catalog shows, for pgcloak.forget. It
// returns one line per table: how it was resolved, or why not (a table not
// created yet is registered when serve first writes to it).
func Setup(ctx context.Context, conn *pgx.Conn, cfg *config.Config) ([]string, error) {
	if err := Init(ctx, conn); err != nil {
		return nil, err
	}
	tables, err := tablesOf(cfg, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range sortedTables(tables) {
		t := tables[name]
		res, err := resolve(ctx, conn, tables, t)
		if err != nil {
			out = append(out, fmt.Sprintf("subjects of %s: not registered: %v", t, err))
			continue
		}
		out = append(out, fmt.Sprintf("subjects of %s: subject %s (%s), scope %s, keys wrapped by keyring %s", t, t.Column, res.TypeName, res.Scope, t.Keyring))
	}
	return out, nil
}

func sortedTables(m map[[2]string]*Table) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	return keys
}
