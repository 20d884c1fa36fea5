package catalog

import (
	"testing"

	"github.com/pgcloak/pgcloak/config"
)

// TestStaticSnapshot: a static snapshot places each rule where its table
// definition says, resolves names as a loaded one does, and refuses rules
// its tables do not hold.
func TestStaticSnapshot(t *testing.T) {
	rules, err := Rules(&config.Config{Tables: map[string]map[string]config.Column{
		"public.people":  {"name": {Type: "text", Key: "pii"}},
		"archive.people": {"name": {Type: "text", Key: "pii"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tables := []StaticTable{
		{Schema: "public", Name: "people", OID: 100, Columns: []string{"id", "name"}},
		{Schema: "archive", Name: "people", OID: 200, Columns: []string{"name"}},
		{Schema: "public", Name: "other", OID: 300, Columns: []string{"name"}},
	}
	s, err := NewStaticSnapshot("app", rules, tables)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Lookup(100, 2); r == nil || r.Schema != "public" || r.Name != "name" {
		t.Errorf("Lookup(100, 2) = %v", r)
	}
	if r := s.Lookup(200, 1); r == nil || r.Schema != "archive" {
		t.Errorf("Lookup(200, 1) = %v", r)
	}
	if s.Lookup(100, 1) != nil || s.Lookup(300, 1) != nil {
		t.Error("unprotected columns looked up as protected")
	}
	if got := s.ProtectedNames(); len(got) != 1 || got[0] != "people" {
		t.Errorf("ProtectedNames = %v", got)
	}
	if schema, ok := s.Resolve("people", []string{"archive", "public"}); !ok || schema != "archive" || !s.Ambiguous("people") {
		t.Errorf("Resolve(people) = %q, %v", schema, ok)
	}
	if s.Protected("public", "other") != nil || s.Protected("public", "people")["name"] == nil {
		t.Error("Protected")
	}
	if !s.Backstop(rules[0]).OK() || !s.Placed(rules[0]) || len(s.Blocking()) != 0 {
		t.Error("rules of a static snapshot are in place")
	}

	if _, err := NewStaticSnapshot("app", rules, tables[:1]); err == nil {
		t.Error("a rule whose table is missing is accepted")
	}
	tables[1].Columns = []string{"id"}
	if _, err := NewStaticSnapshot("app", rules, tables); err == nil {
		t.Error("a rule whose column is missing is accepted")
	}
}
