package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// Rule is one protected column of the configuration, resolved as far as the
// configuration alone allows: its exact names, logical type, mode, keyring and
// the identity its ciphertext is bound to. A Rule never changes once made, so
// everything keyed by *Rule (or by its Plan) stays valid across catalog
// refreshes.
type Rule struct {
	// Schema, Table and Name are the exact catalog names (unquoted, case as
	// stored in pg_class and pg_attribute).
	Schema, Table, Name string
	// Key is the keyring (an entry of keys:) whose data keys encrypt it.
	Key string
	// Type is the logical type the application sees.
	Type *values.Type
	// Mode is how values are encrypted.
	Mode crypto.Mode
	// Group is the search_group of a deterministic column, or "".
	Group string
	// ID is the identity every value is bound to (associated data): the
	// column's own, or its search group's, which columns of a group share
	// so that equal values compare equal across them.
	ID crypto.ColumnID
	// Migrating is state: migrating: reads also accept plaintext, and the
	// column has no backstop yet.
	Migrating bool
	// Subject, when set, is the column of the table that holds a row's
	// subject (config subjects:): the column's values are encrypted under
	// their subject's key, and its backstop accepts only such values.
	Subject string
	// Plan is the column as the SQL analyzer knows it.
	Plan *sqlplan.Column
	// ConfigTable is the rule's table as written in tables: (the key
	// "schema.table", possibly quoted), for messages that say what to edit.
	ConfigTable string
}

// String is schema.table.column for messages (names quoted when needed).
func (r *Rule) String() string {
	return Display(r.Schema) + "." + Display(r.Table) + "." + Display(r.Name)
}

// Table is schema.table for messages.
func (r *Rule) TableString() string { return Display(r.Schema) + "." + Display(r.Table) }

// Display is a name for messages: as it is when it is a plain lower-case
// identifier, double-quoted otherwise.
func Display(name string) string {
	for i, c := range name {
		if c == '_' || c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '$') {
			continue
		}
		return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	}
	if name == "" {
		return `""`
	}
	return name
}

// ConfigKey is where the rule is written: tables.SCHEMA.TABLE.COLUMN.
func (r *Rule) ConfigKey() string { return "tables." + r.ConfigTable + "." + r.Name }

// Rules resolves every rule of cfg.Tables, sorted by schema, table and
// column. It is the one place where a rule becomes an identity: serve,
// migrate, check and the tests all use it, so a value written by one is read
// by the others. It reports every problem at once.
func Rules(cfg *config.Config) ([]*Rule, error) {
	var out []*Rule
	var problems []string
	for tname, cols := range cfg.Tables {
		schema, table, err := config.SplitTable(tname)
		if err != nil {
			problems = append(problems, fmt.Sprintf("tables.%s: %v", tname, err))
			continue
		}
		for cname, c := range cols {
			r, err := NewRule(schema, table, cname, c)
			if err != nil {
				problems = append(problems, fmt.Sprintf("tables.%s.%s: %v", tname, cname, err))
				continue
			}
			r.ConfigTable = tname
			if s, ok := cfg.Subjects[tname]; ok {
				r.Subject, r.Plan.Subject = s.Column, s.Column
			}
			out = append(out, r)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Schema != b.Schema {
			return a.Schema < b.Schema
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.Name < b.Name
	})
	return out, nil
}

// NewRule resolves one rule for schema.table.name.
func NewRule(schema, table, name string, c config.Column) (*Rule, error) {
	typ, err := values.Lookup(c.Type)
	if err != nil {
		return nil, err
	}
	mode, pmode := crypto.Randomized, sqlplan.Randomized
	if c.Mode == config.ModeDeterministic {
		mode, pmode = crypto.Deterministic, sqlplan.Deterministic
	}
	id, err := crypto.NewColumnID(schema, table, name)
	if c.SearchGroup != "" {
		// Columns of one group share their identity, so equal values
		// encrypt equally across them (joins).
		id, err = crypto.NewSearchGroupID(c.SearchGroup)
	}
	if err != nil {
		return nil, err
	}
	return &Rule{
		Schema: schema, Table: table, Name: name,
		Key:       c.Key,
		Type:      typ,
		Mode:      mode,
		Group:     c.SearchGroup,
		ID:        id,
		Migrating: c.State == config.StateMigrating,
		Plan:      &sqlplan.Column{Schema: schema, Table: table, Name: name, Mode: pmode, Backstop: BackstopName(name)},
		// The table as it would be written in tables:.
		ConfigTable: schema + "." + table,
	}, nil
}
