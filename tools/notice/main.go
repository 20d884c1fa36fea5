// Command notice writes THIRD_PARTY_NOTICES.md: every module that the pgcloak
// binary links, for each release target, with its licence and the licence
// texts read from the module cache. The C code that pg_query_go compiles into
// the binary (PostgreSQL's parser, protobuf-c, xxHash) is listed too.
//
//	go run ./tools/notice -o THIRD_PARTY_NOTICES.md   (make notice)
//
// The test beside it regenerates the file in memory and fails when the
// committed one differs, so a go.mod change cannot leave it stale. A licence
// the classifier does not recognise is an error rather than a guess.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// mainPackage is the package whose link set the notice describes.
const mainPackage = "github.com/pgcloak/pgcloak"

// targets are the release platforms (Makefile: release). The link set is the
// union over them, with cgo on as in the release build.
var targets = []string{"linux/amd64", "linux/arm64"}

// bundledC names C code that a Go module compiles into the binary, with the
// file (relative to the module directory) that carries its licence. Its
// licence is not a LICENSE file of the module, so it is listed explicitly.
var bundledC = map[string][]bundled{
	"github.com/pganalyze/pg_query_go/v6": {
		{Name: "PostgreSQL's SQL parser and the server code it needs (extracted by libpg_query)", File: "parser/COPYRIGHT"},
		{Name: "protobuf-c", File: "parser/include/protobuf-c/protobuf-c.h", Comment: true},
		{Name: "xxHash", File: "parser/include/xxhash/xxhash.h", Comment: true},
	},
}

type bundled struct {
	Name    string
	File    string
	Comment bool // the licence is the file's leading /* … */ comment
}

// module is one linked module and its licence files.
type module struct {
	Path, Version, Dir string
	Licence            string // SPDX expression
	Files              []licenceFile
	Bundled            []bundledText
}

type licenceFile struct {
	Name string // file name in the module, e.g. LICENSE
	Text string
}

type bundledText struct {
	Name, Licence, Text string
}

func main() {
	out := flag.String("o", "", "write to this file instead of standard output")
	flag.Parse()
	text, err := Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notice:", err)
		os.Exit(1)
	}
	if *out == "" {
		_, err = os.Stdout.Write(text)
	} else {
		err = os.WriteFile(*out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notice:", err)
		os.Exit(1)
	}
}

// Generate returns the notice file's content.
func Generate() ([]byte, error) {
	mods, err := linkedModules()
	if err != nil {
		return nil, err
	}
	for _, m := range mods {
		if err := m.readLicences(); err != nil {
			return nil, err
		}
	}
	goroot, err := goEnv("GOROOT")
	if err != nil {
		return nil, err
	}
	goLicence, err := os.ReadFile(filepath.Join(goroot, "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("reading Go's own licence: %w", err)
	}
	return render(mods, string(goLicence))
}

// linkedModules lists the modules of every package that mainPackage links on
// any release target, the main module excluded.
func linkedModules() ([]*module, error) {
	byPath := map[string]*module{}
	for _, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command(goBin(), "list", "-deps", "-json=Module", mainPackage)
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		outp, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go list for %s: %v: %s", target, err, stderr.String())
		}
		dec := json.NewDecoder(bytes.NewReader(outp))
		for {
			var p struct {
				Module *struct {
					Path, Version, Dir string
					Main               bool
					Replace            *struct{ Path, Version, Dir string }
				}
			}
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("go list output: %w", err)
			}
			m := p.Module
			if m == nil || m.Main {
				continue // standard library (see render) or pgcloak itself
			}
			mod := &module{Path: m.Path, Version: m.Version, Dir: m.Dir}
			if r := m.Replace; r != nil {
				mod.Version, mod.Dir = r.Version, r.Dir
			}
			if mod.Dir == "" {
				return nil, fmt.Errorf("module %s %s is not in the module cache; run go mod download", m.Path, m.Version)
			}
			byPath[m.Path] = mod
		}
	}
	mods := make([]*module, 0, len(byPath))
	for _, m := range byPath {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, nil
}

// licenceName matches the files that carry a module's licence terms.
var licenceName = regexp.MustCompile(`(?i)^(LICEN[CS]E|COPYING|NOTICE|PATENTS)([.-].*)?$`)

func (m *module) readLicences() error {
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		return err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() || !licenceName.MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.Dir, e.Name()))
		if err != nil {
			return err
		}
		text := normalise(string(b))
		m.Files = append(m.Files, licenceFile{Name: e.Name(), Text: text})
		upper := strings.ToUpper(e.Name())
		if strings.HasPrefix(upper, "NOTICE") || strings.HasPrefix(upper, "PATENTS") {
			continue // attribution or a patent grant, not the licence itself
		}
		found := classify(text)
		if len(found) == 0 {
			return fmt.Errorf("%s %s: %s: licence not recognised; extend classify in tools/notice", m.Path, m.Version, e.Name())
		}
		ids = append(ids, found...)
	}
	if len(ids) == 0 {
		return fmt.Errorf("%s %s: no LICENSE file in %s", m.Path, m.Version, m.Dir)
	}
	for _, b := range bundledC[m.Path] {
		raw, err := os.ReadFile(filepath.Join(m.Dir, b.File))
		if err != nil {
			return fmt.Errorf("%s: bundled %s: %w", m.Path, b.Name, err)
		}
		text := string(raw)
		if b.Comment {
			text = leadingComment(text)
		}
		text = normalise(text)
		found := classify(text)
		if len(found) == 0 {
			return fmt.Errorf("%s: bundled %s (%s): licence not recognised", m.Path, b.Name, b.File)
		}
		m.Bundled = append(m.Bundled, bundledText{Name: b.Name, Licence: strings.Join(found, " AND "), Text: text})
		ids = append(ids, found...)
	}
	m.Licence = spdxAnd(ids)
	return nil
}

// licences are the recognised licences with phrases that only their text
// holds (compared with whitespace collapsed and in lower case).
var licences = []struct {
	id      string
	matches func(string) bool
}{
	{"Apache-2.0", containsAny("apache license version 2.0, january 2004", `licensed under the apache license, version 2.0 (the "license")`)},
	{"MPL-2.0", containsAny("mozilla public license, version 2.0", "mozilla public license version 2.0")},
	{"MIT", containsAny("permission is hereby granted, free of charge, to any person obtaining a copy")},
	{"BSD-3-Clause", func(s string) bool {
		return strings.Contains(s, "redistribution and use in source and binary forms") &&
			strings.Contains(s, "neither the name")
	}},
	{"BSD-2-Clause", func(s string) bool {
		return strings.Contains(s, "redistribution and use in source and binary forms") &&
			!strings.Contains(s, "neither the name")
	}},
	{"PostgreSQL", containsAny("permission to use, copy, modify, and distribute this software and its documentation for any purpose, without fee, and without a written agreement is hereby granted")},
	{"ISC", containsAny("permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted")},
}

func containsAny(phrases ...string) func(string) bool {
	return func(s string) bool {
		for _, p := range phrases {
			if strings.Contains(s, p) {
				return true
			}
		}
		return false
	}
}

// comment markers that C and Go licence headers put at line starts.
var commentPrefix = regexp.MustCompile(`(?m)^[ \t]*(\*|//|#)[ \t]?`)

// classify returns the SPDX identifiers whose licence text appears in text.
func classify(text string) []string {
	s := strings.ToLower(strings.Join(strings.Fields(commentPrefix.ReplaceAllString(text, "")), " "))
	var ids []string
	for _, l := range licences {
		if l.matches(s) {
			ids = append(ids, l.id)
		}
	}
	return ids
}

// spdxAnd joins identifiers into one SPDX expression, each once, sorted.
func spdxAnd(ids []string) string {
	sort.Strings(ids)
	ids = compact(ids)
	return strings.Join(ids, " AND ")
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// leadingComment returns the first /* … */ block of a C file.
func leadingComment(src string) string {
	start := strings.Index(src, "/*")
	end := strings.Index(src, "*/")
	if start < 0 || end < start {
		return ""
	}
	return src[start : end+2]
}

// normalise makes texts byte-stable: Unix line ends, no trailing spaces, one
// final newline.
func normalise(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n") + "\n"
}

func render(mods []*module, goLicence string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Third-party notices\n\n")
	fmt.Fprintf(&b, "<!-- Generated by `go run ./tools/notice -o THIRD_PARTY_NOTICES.md` (make notice); do not edit. -->\n\n")
	fmt.Fprintf(&b, "pgcloak is licensed under the Apache License 2.0 (see LICENSE). The pgcloak binary\n")
	fmt.Fprintf(&b, "(%s, built with cgo) also contains the software below, under the licences named.\n", strings.Join(targets, ", "))
	fmt.Fprintf(&b, "Each licence text follows the table, once for all modules that carry the identical text.\n\n")
	fmt.Fprintf(&b, "The MPL-2.0 modules are used unmodified; their source is available from the\n")
	fmt.Fprintf(&b, "module path and version given (for example via `go mod download MODULE@VERSION`).\n\n")

	fmt.Fprintf(&b, "| module | version | licence |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Go standard library and runtime | (toolchain) | BSD-3-Clause |\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", m.Path, m.Version, m.Licence)
	}
	for _, m := range mods {
		if len(m.Bundled) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s compiles this C code into the binary:\n\n", m.Path)
		for _, c := range m.Bundled {
			fmt.Fprintf(&b, "- %s: %s\n", c.Name, c.Licence)
		}
	}

	// Identical texts (most Apache-2.0 and MPL-2.0 files) are printed once.
	type group struct {
		text  string
		users []string
	}
	var groups []*group
	byText := map[string]*group{}
	add := func(user, text string) {
		g := byText[text]
		if g == nil {
			g = &group{text: text}
			byText[text] = g
			groups = append(groups, g)
		}
		g.users = append(g.users, user)
	}
	add("Go standard library and runtime: LICENSE", normalise(goLicence))
	for _, m := range mods {
		for _, f := range m.Files {
			add(m.Path+" "+m.Version+": "+f.Name, f.Text)
		}
		for _, c := range m.Bundled {
			add(m.Path+" "+m.Version+": "+c.Name, c.Text)
		}
	}
	fmt.Fprintf(&b, "\n## Licence texts\n")
	for _, g := range groups {
		fmt.Fprintf(&b, "\n### %s\n\n", g.users[0])
		if len(g.users) > 1 {
			fmt.Fprintf(&b, "The same text applies to:\n\n")
			for _, u := range g.users[1:] {
				fmt.Fprintf(&b, "- %s\n", u)
			}
			b.WriteString("\n")
		}
		fence := strings.Repeat("`", max(3, longestRun(g.text, '`')+1))
		fmt.Fprintf(&b, "%stext\n%s%s\n", fence, g.text, fence)
	}
	return b.Bytes(), nil
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

func goEnv(name string) (string, error) {
	out, err := exec.Command(goBin(), "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
