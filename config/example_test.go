package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExampleNamesEveryKey fails when Config gains a key that the example
// (`pgcloak config example`) does not show: live, or commented out where the
// key needs a file that a fresh machine does not have. Map levels with
// free-form names (keys.NAME, tables.SCHEMA.TABLE.COLUMN) are written "*".
func TestExampleNamesEveryKey(t *testing.T) {
	known := keyPaths(reflect.TypeFor[Config](), "")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(Example()), &doc); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	livePaths(doc.Content[0], reflect.TypeFor[Config](), "", live)

	var missing []string
	for _, path := range known {
		if live[path] {
			continue
		}
		leaf := path[strings.LastIndexByte(path, '.')+1:]
		// A commented key is written "# key:" (top level, at column 0) or
		// "#   key:" inside a commented section.
		pattern := `(?m)^\s*#\s*` + regexp.QuoteMeta(leaf) + `:`
		if !strings.Contains(path, ".") {
			pattern = `(?m)^# ` + regexp.QuoteMeta(leaf) + `:`
		}
		if !regexp.MustCompile(pattern).MatchString(Example()) {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		t.Errorf("config/example.go does not show %s; add each (commented out if it needs a file) with its default and meaning", strings.Join(missing, ", "))
	}
	for path := range live {
		if !contains(known, path) {
			t.Errorf("example sets %s, which Config does not know", path)
		}
	}
}

// TestExampleLoadsFromFile writes the example as `pgcloak config example >
// pgcloak.yaml` would and loads it with Load, in a directory holding nothing
// else.
func TestExampleLoadsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(Example()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tables) == 0 || cfg.KMS == nil || cfg.KMS.Vault == nil || len(cfg.Keys) == 0 {
		t.Errorf("example loads but lacks tables, kms.vault or keys: %+v", cfg)
	}
}

// keyPaths lists the dotted key paths of a config type by its yaml tags.
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			p := join(prefix, name)
			out = append(out, p)
			out = append(out, keyPaths(f.Type, p)...)
		}
	case reflect.Map:
		p := join(prefix, "*")
		out = append(out, p)
		out = append(out, keyPaths(t.Elem(), p)...)
	case reflect.Slice:
		out = append(out, keyPaths(t.Elem(), prefix)...)
	}
	sort.Strings(out)
	return out
}

// livePaths records the key paths that node sets, walking t alongside.
func livePaths(node *yaml.Node, t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i].Value, node.Content[i+1]
		switch t.Kind() {
		case reflect.Struct:
			for j := 0; j < t.NumField(); j++ {
				f := t.Field(j)
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == k {
					out[join(prefix, k)] = true
					livePaths(v, f.Type, join(prefix, k), out)
				}
			}
		case reflect.Map:
			out[join(prefix, "*")] = true
			livePaths(v, t.Elem(), join(prefix, "*"), out)
		}
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
