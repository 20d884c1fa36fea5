package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// byteaOID is pg_type.oid of bytea, the physical type of protected columns.
const byteaOID = 17

// Relation is what the catalog says about a table that holds protected
// columns: enough to plan its DDL, migrate it batch by batch and check it.
type Relation struct {
	Schema, Name string
	OID          uint32
	Attrs        []Attr       // columns in attnum order
	PK           []Attr       // primary key columns in key order; nil: no primary key
	Constraints  []Constraint // every constraint of the table
	Indexes      []Index
	Views        []Dependent // views and rules that use a column
}

// Attr is one column of a Relation.
type Attr struct {
	Name       string
	Num        int16
	TypeOID    uint32
	Type       string // format_type(atttypid, atttypmod): "text", "character varying(64)"
	TypeName   string // pg_type.typname: "text", "varchar", "bpchar"
	HasDefault bool
}

// Constraint is a row of pg_constraint.
type Constraint struct {
	Name      string
	Kind      byte // contype: c check, f foreign key, p primary key, u unique, x exclusion
	Validated bool
	Def       string  // pg_get_constraintdef
	Attnums   []int16 // conkey: the columns it constrains
}

// Index is one index of the table.
type Index struct {
	Name       string
	Unique     bool
	Primary    bool
	Def        string  // pg_get_indexdef
	Keys       []int16 // indkey: attnums of key columns, 0 for an expression
	Expression bool    // has index expressions or a predicate
	Uses       []int16 // every column the index depends on (keys, expressions, predicate)
}

// Dependent is a view or rule that uses a column of the table.
type Dependent struct {
	Name   string // schema-qualified as regclass prints it
	Attnum int16
}

// ErrNoTable means the table is not in the database.
var ErrNoTable = errors.New("no such table")

// Inspect reads schema.table from the catalog. It returns an error wrapping
// ErrNoTable when there is no such table (or partitioned table).
func Inspect(ctx context.Context, conn *pgx.Conn, schema, table string) (*Relation, error) {
	r := &Relation{Schema: schema, Name: table}
	rows, err := conn.Query(ctx, `
		SELECT c.oid, a.attname, a.attnum, a.atttypid, format_type(a.atttypid, a.atttypmod), t.typname, a.atthasdef
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, catalogErr(err)
	}
	for rows.Next() {
		var a Attr
		if err := rows.Scan(&r.OID, &a.Name, &a.Num, &a.TypeOID, &a.Type, &a.TypeName, &a.HasDefault); err != nil {
			rows.Close()
			return nil, catalogErr(err)
		}
		r.Attrs = append(r.Attrs, a)
	}
	if err := rows.Err(); err != nil {
		return nil, catalogErr(err)
	}
	if r.OID == 0 {
		return nil, fmt.Errorf("%s: %w", r.String(), ErrNoTable)
	}

	rows, err = conn.Query(ctx, `
		SELECT conname, contype::text, convalidated, pg_get_constraintdef(oid), coalesce(conkey, '{}')
		FROM pg_catalog.pg_constraint WHERE conrelid = $1 ORDER BY conname`, r.OID)
	if err != nil {
		return nil, catalogErr(err)
	}
	for rows.Next() {
		var c Constraint
		var kind string
		if err := rows.Scan(&c.Name, &kind, &c.Validated, &c.Def, &c.Attnums); err != nil {
			rows.Close()
			return nil, catalogErr(err)
		}
		c.Kind = kind[0]
		r.Constraints = append(r.Constraints, c)
	}
	if err := rows.Err(); err != nil {
		return nil, catalogErr(err)
	}

	rows, err = conn.Query(ctx, `
		SELECT ic.relname, i.indisunique, i.indisprimary, pg_get_indexdef(i.indexrelid), i.indkey::int2[],
		       i.indexprs IS NOT NULL OR i.indpred IS NOT NULL,
		       coalesce((SELECT array_agg(DISTINCT d.refobjsubid::int2) FROM pg_catalog.pg_depend d
		                 WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid
		                   AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = i.indrelid
		                   AND d.refobjsubid > 0), '{}')
		FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
		WHERE i.indrelid = $1 ORDER BY ic.relname`, r.OID)
	if err != nil {
		return nil, catalogErr(err)
	}
	for rows.Next() {
		var ix Index
		if err := rows.Scan(&ix.Name, &ix.Unique, &ix.Primary, &ix.Def, &ix.Keys, &ix.Expression, &ix.Uses); err != nil {
			rows.Close()
			return nil, catalogErr(err)
		}
		for _, k := range ix.Keys {
			if k > 0 && !slices.Contains(ix.Uses, k) {
				ix.Uses = append(ix.Uses, k)
			}
		}
		r.Indexes = append(r.Indexes, ix)
		if ix.Primary {
			for _, k := range ix.Keys {
				if a := r.attrByNum(k); a != nil {
					r.PK = append(r.PK, *a)
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, catalogErr(err)
	}

	rows, err = conn.Query(ctx, `
		SELECT DISTINCT v.oid::regclass::text, d.refobjsubid::int2
		FROM pg_catalog.pg_depend d
		JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid
		JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
		WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
		  AND d.refobjid = $1 AND d.refobjsubid > 0 AND v.oid <> $1
		ORDER BY 1, 2`, r.OID)
	if err != nil {
		return nil, catalogErr(err)
	}
	for rows.Next() {
		var d Dependent
		if err := rows.Scan(&d.Name, &d.Attnum); err != nil {
			rows.Close()
			return nil, catalogErr(err)
		}
		r.Views = append(r.Views, d)
	}
	if err := rows.Err(); err != nil {
		return nil, catalogErr(err)
	}
	return r, nil
}

func catalogErr(err error) error { return fmt.Errorf("reading the catalog: %w", err) }

// Ident is the table as SQL: "schema"."table", quoted as needed.
func (r *Relation) Ident() string { return pgx.Identifier{r.Schema, r.Name}.Sanitize() }

// String is the table for messages: schema.table, each part quoted only
// when it is not a plain lower-case name.
func (r *Relation) String() string { return Display(r.Schema) + "." + Display(r.Name) }

// Display is a name for messages: as it is when it is a plain lower-case
// identifier, double-quoted otherwise.
func Display(name string) string { return catalog.Display(name) }

// Attr returns the column called name, or nil.
func (r *Relation) Attr(name string) *Attr {
	for i := range r.Attrs {
		if r.Attrs[i].Name == name {
			return &r.Attrs[i]
		}
	}
	return nil
}

func (r *Relation) attrByNum(n int16) *Attr {
	for i := range r.Attrs {
		if r.Attrs[i].Num == n {
			return &r.Attrs[i]
		}
	}
	return nil
}

// Constraint returns the constraint called name, or nil.
func (r *Relation) Constraint(name string) *Constraint {
	for i := range r.Constraints {
		if r.Constraints[i].Name == name {
			return &r.Constraints[i]
		}
	}
	return nil
}

// IsBytea reports whether the column is bytea, the physical type of a
// protected column.
func (a *Attr) IsBytea() bool { return a.TypeOID == byteaOID }

// quote quotes one identifier.
func quote(name string) string { return pgx.Identifier{name}.Sanitize() }
