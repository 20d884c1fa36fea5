package catalog

// A Snapshot made from table definitions instead of the live catalog: for
// tests that drive the engine without a database.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgcloak/pgcloak/proxy/sqlplan"
)

// StaticTable is a table as NewStaticSnapshot takes it.
type StaticTable struct {
	Schema, Name string
	// OID is its pg_class OID, which RowDescription fields carry.
	OID uint32
	// Columns are its column names in attribute-number order (the first is
	// attnum 1). The columns of rules must be among them.
	Columns []string
}

// NewStaticSnapshot returns the Snapshot of a database called database that
// holds exactly tables, where every rule's column is a bytea column of its
// table with its backstop in place: what Loader.Load reads from a database
// that matches the rules, without views, inheritance children or problems.
// A rule whose table or column is not among tables is an error.
func NewStaticSnapshot(database string, rules []*Rule, tables []StaticTable) (*Snapshot, error) {
	s := newSnapshot(database, rules)
	var fp strings.Builder
	for _, t := range tables {
		s.rels[relKey(t.Schema, t.Name)] = &relation{schema: t.Schema, name: t.Name, oid: t.OID, columns: t.Columns, plan: map[string]*sqlplan.Column{}}
		fmt.Fprintf(&fp, "%d.%s.%s;", t.OID, t.Schema, t.Name)
	}
	for _, r := range rules {
		rel := s.rels[relKey(r.Schema, r.Table)]
		if rel == nil {
			return nil, fmt.Errorf("%s: table %s is not among the tables", r, r.TableString())
		}
		attnum := -1
		for i, name := range rel.columns {
			if name == r.Name {
				attnum = i + 1
			}
		}
		if attnum < 0 {
			return nil, fmt.Errorf("%s: column is not among the columns of %s", r, r.TableString())
		}
		if !slices.Contains(s.names, rel.name) {
			s.names = append(s.names, rel.name)
		}
		rel.plan[r.Name] = r.Plan
		s.byAttr[AttrKey(rel.oid, int16(attnum))] = r
		s.placed[r] = true
		s.backstops[r] = BackstopState{Exists: true, Matches: true, Valid: true}
	}
	// As Load knows them: tables without protected columns only as other
	// schemas' relations named like a protected one (search_path
	// resolution).
	for _, t := range tables {
		if slices.Contains(s.names, t.Name) {
			s.schemasOf[t.Name] = append(s.schemasOf[t.Name], t.Schema)
		}
		if k := relKey(t.Schema, t.Name); len(s.rels[k].plan) == 0 {
			delete(s.rels, k)
		}
	}
	s.version = fp.String()
	return s, nil
}
