package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNoticeUpToDate fails when THIRD_PARTY_NOTICES.md is not what the
// generator makes from go.mod and the module cache today: a dependency added,
// removed or upgraded without `make notice`.
func TestNoticeUpToDate(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "THIRD_PARTY_NOTICES.md")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s is out of date (first difference at line %d:\n  committed: %q\n  generated: %q)\nrun: make notice", path, i+1, g, w)
			}
		}
	}
}

// TestLicencesIdentified pins the licences a user of the binary most needs to
// know about, so a classifier change cannot silently mislabel them.
func TestLicencesIdentified(t *testing.T) {
	text, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`| github.com/hashicorp/vault/api | v[^|]+ | MPL-2.0 |`,
		`| github.com/hashicorp/hcl | v[^|]+ | MPL-2.0 |`,
		`| github.com/pganalyze/pg_query_go/v6 | v[^|]+ | [^|]*PostgreSQL |`,
		`| gopkg.in/yaml.v3 | v[^|]+ | Apache-2.0 AND MIT |`,
		`| github.com/jackc/pgx/v5 | v[^|]+ | MIT |`,
		`| Go standard library and runtime | \(toolchain\) | BSD-3-Clause |`,
		`- PostgreSQL's SQL parser [^:]*: PostgreSQL`,
	} {
		re := regexp.MustCompile(`(?m)^` + strings.ReplaceAll(want, "|", `\|`) + `$`)
		if !re.Match(text) {
			t.Errorf("notice has no line matching %s", want)
		}
	}
	// Every text that MPL-2.0 or Apache-2.0 requires is there in full.
	for _, phrase := range []string{"Mozilla Public License", "Exhibit A - Source Code Form License Notice", "APPENDIX: How to apply the Apache License", "PostgreSQL Global Development Group"} {
		if !bytes.Contains(text, []byte(phrase)) {
			t.Errorf("notice lacks %q", phrase)
		}
	}
}

func TestClassify(t *testing.T) {
	for text, want := range map[string]string{
		"Mozilla Public License Version 2.0\n==================================":                                "MPL-2.0",
		"Mozilla Public License, version 2.0\n\n1. Definitions":                                                 "MPL-2.0",
		" * Redistribution and use in source and binary forms, with or without\n * modification, are permitted": "BSD-2-Clause",
		"Some other licence": "",
	} {
		if got := strings.Join(classify(text), " AND "); got != want {
			t.Errorf("classify(%q) = %q, want %q", text, got, want)
		}
	}
}
