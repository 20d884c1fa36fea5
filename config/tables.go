package config

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Column is the rule for one protected column.
type Column struct {
	// Type is the logical type the application sees (text, int4, date, …,
	// optionally with a modifier such as varchar(64) or numeric(12,2)).
	// The column itself is bytea in PostgreSQL.
	Type string `yaml:"type"`
	// Key names the keyring (an entry of keys:) whose data keys encrypt it.
	Key string `yaml:"key"`
	// Mode is randomized (default: AES-256-GCM, no comparisons) or
	// deterministic (AES-SIV: equality search, unique constraints, joins).
	Mode string `yaml:"mode"`
	// SearchGroup lets deterministic columns of the same group be compared
	// with each other (JOIN); columns of different groups never compare equal.
	SearchGroup string `yaml:"search_group"`
	// State is encrypted (default) or migrating (reads also accept
	// plaintext while an existing column is being encrypted).
	State string `yaml:"state"`
}

// Modes and states of a protected column.
const (
	ModeRandomized    = "randomized"
	ModeDeterministic = "deterministic"
	StateEncrypted    = "encrypted"
	StateMigrating    = "migrating"
)

// LogicalTypes are the type names a protected column may have (modifiers
// aside); proxy/values implements each.
var LogicalTypes = []string{
	"text", "varchar", "character varying", "bpchar", "char", "character",
	"int2", "smallint", "int4", "integer", "int", "int8", "bigint",
	"numeric", "decimal", "float8", "double precision", "bool", "boolean",
	"date", "timestamp", "timestamptz", "uuid", "jsonb", "bytea",
}

// SplitTable splits a tables: key "schema.table" into its two identifiers,
// following SQL rules: unquoted parts are folded to lower case, "quoted"
// parts are kept as written ("" is a quote inside).
func SplitTable(s string) (schema, table string, err error) {
	parts, err := splitIdents(s)
	if err != nil {
		return "", "", err
	}
	if len(parts) != 2 {
		return "", "", fmt.Errorf("want schema.table, got %d part(s)", len(parts))
	}
	return parts[0], parts[1], nil
}

func splitIdents(s string) ([]string, error) {
	var parts []string
	for {
		var part string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, fmt.Errorf("unterminated quoted identifier in %q", s)
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			part, s = b.String(), s[i:]
		} else {
			end := strings.IndexByte(s, '.')
			if end < 0 {
				end = len(s)
			}
			part, s = strings.ToLower(s[:end]), s[end:]
			for _, r := range part {
				if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '$') {
					return nil, fmt.Errorf("%q needs double quotes to be an identifier", part)
				}
			}
		}
		if part == "" {
			return nil, fmt.Errorf("empty identifier in %q", s)
		}
		parts = append(parts, part)
		if s == "" {
			return parts, nil
		}
		if s[0] != '.' {
			return nil, fmt.Errorf("unexpected %q after an identifier", s)
		}
		s = s[1:]
	}
}

// baseType is a type name without its modifier: "varchar(64)" → "varchar".
func baseType(t string) string {
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = t[:i]
	}
	return strings.ToLower(strings.TrimSpace(t))
}

func checkTables(l *loader, c *Config) {
	groupKey := map[string]string{} // search_group → the key its first column uses
	for _, tname := range sortedKeys(c.Tables) {
		cols := c.Tables[tname]
		tkey := "tables." + tname
		if _, _, err := SplitTable(tname); err != nil {
			l.problem(tkey, "%v; write the table as schema.table, e.g. public.customers", err)
			continue
		}
		if len(cols) == 0 {
			l.problem(tkey, "names no column; list the columns to protect, e.g. email: {type: text, key: pii}")
		}
		for _, cname := range sortedKeys(cols) {
			col := cols[cname]
			key := tkey + "." + cname
			if col.Type == "" {
				l.problem(key, "type is required: the logical type the application sees (one of %s)", strings.Join(LogicalTypes, ", "))
			} else if !contains(LogicalTypes, baseType(col.Type)) {
				l.problem(key+".type", "unknown logical type %q; use one of %s", col.Type, strings.Join(LogicalTypes, ", "))
			}
			if col.Key == "" {
				l.problem(key, "key is required: the keyring (an entry of keys:) that encrypts this column")
			}
			switch col.Mode {
			case "", ModeRandomized, ModeDeterministic:
			default:
				l.problem(key+".mode", "unknown mode %q; use randomized (default) or deterministic", col.Mode)
			}
			if col.SearchGroup != "" && col.Mode != ModeDeterministic {
				l.problem(key+".search_group", "only deterministic columns can share a search group; add mode: deterministic or remove search_group")
			}
			if g := col.SearchGroup; g != "" && col.Key != "" {
				if k, ok := groupKey[g]; ok && k != col.Key {
					l.problem(key+".key", "search group %q already uses key %q; every column of a search group must use the same key", g, k)
				} else if !ok {
					groupKey[g] = col.Key
				}
			}
			switch col.State {
			case "", StateEncrypted, StateMigrating:
			default:
				l.problem(key+".state", "unknown state %q; use encrypted (default) or migrating", col.State)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sortedKeys returns a map's keys in order, so problems come out stably.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
