package sqlplan

import (
	"strings"
	"testing"
)

// fakeCatalog is an in-memory Catalog:
//
//	public.customers  id, email*, phone*, full_name*, ssn†, birth_date*, credit_limit*, vip*, note
//	app.customers     id, email*, ssn†
//	public."Customers" id, "Email"*
//	public.orders     id, customer_id, note, total   (unprotected; like the session's catalog,
//	                                                  the column list of unprotected tables is unknown)
//
// * randomized, † deterministic.
type fakeCatalog struct {
	tables  map[string]map[string]*Column // "schema.table"
	columns map[string][]string
	schemas map[string][]string // relation name → schemas holding one
	names   []string
	// unavailable holds "schema.table" → reason (Unavailable).
	unavailable map[string]string
}

func newFakeCatalog() *fakeCatalog {
	c := &fakeCatalog{
		tables:  map[string]map[string]*Column{},
		columns: map[string][]string{},
		schemas: map[string][]string{},
	}
	c.add("public", "customers", []string{"id", "email", "phone", "full_name", "ssn", "birth_date", "credit_limit", "vip", "note"},
		"email", "phone", "full_name", "ssn†", "birth_date", "credit_limit", "vip")
	c.add("app", "customers", []string{"id", "email", "ssn"}, "email", "ssn†")
	c.add("public", "Customers", []string{"id", "Email"}, "Email")
	c.schemas["orders"] = []string{"public"}
	c.schemas["pgbench_accounts"] = []string{"public"}
	return c
}

// add registers a table; a protected name ending in † is deterministic.
func (c *fakeCatalog) add(schema, table string, all []string, protected ...string) {
	key := schema + "." + table
	c.tables[key] = map[string]*Column{}
	c.columns[key] = all
	for _, p := range protected {
		mode := Randomized
		if name, ok := strings.CutSuffix(p, "†"); ok {
			p, mode = name, Deterministic
		}
		c.tables[key][p] = &Column{Schema: schema, Table: table, Name: p, Mode: mode, Backstop: "pgcloak_" + p + "_encrypted"}
	}
	if _, seen := c.schemas[table]; !seen {
		c.names = append(c.names, table)
	}
	c.schemas[table] = append(c.schemas[table], schema)
}

func (c *fakeCatalog) Protected(schema, table string) map[string]*Column {
	return c.tables[schema+"."+table]
}

func (c *fakeCatalog) Columns(schema, table string) []string { return c.columns[schema+"."+table] }

func (c *fakeCatalog) Unavailable(schema, table string) string {
	return c.unavailable[schema+"."+table]
}

func (c *fakeCatalog) ProtectedNames() []string { return c.names }

// Resolve follows PostgreSQL: pg_catalog first unless listed, then the path.
func (c *fakeCatalog) Resolve(name string, path []string) (string, bool) {
	for _, s := range append([]string{"pg_catalog"}, path...) {
		for _, have := range c.schemas[name] {
			if have == s {
				return s, true
			}
		}
	}
	return "", false
}

var defaultPath = settingsFor("$user", "public")

// settingsFor is a session whose search_path is path (user alice).
func settingsFor(path ...string) *Settings {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = quoteIdentifier(p)
	}
	s := NewSettings(map[string]string{SearchPath: strings.Join(parts, ", ")})
	s.User = "alice"
	return s
}

// mustAnalyze analyses sql through the internal entry point (no recover, so
// a panic fails the test loudly) and the prefilter.
func mustAnalyze(t testing.TB, sql string, path ...string) (*Analysis, error) {
	t.Helper()
	settings := defaultPath
	if path != nil {
		settings = settingsFor(path...)
	}
	cat := newFakeCatalog()
	if !mayMatter(sql, cat.ProtectedNames()) {
		return nil, nil
	}
	return analyze(sql, cat, cat.ProtectedNames(), settings)
}

func (c *fakeCatalog) Ambiguous(name string) bool { return len(c.schemas[name]) > 1 }
