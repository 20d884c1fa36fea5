package engine

import "strings"

// defaultSearchPath is PostgreSQL's default search_path.
var defaultSearchPath = []string{"$user", "public"}

// expandSearchPath returns the schemas of a search_path: the default when
// reset, with "$user" replaced by the session user.
func expandSearchPath(path []string, reset bool, user string) []string {
	if reset || path == nil {
		path = defaultSearchPath
	}
	out := make([]string, 0, len(path))
	for _, s := range path {
		if s == "$user" {
			s = user
		}
		out = append(out, s)
	}
	return out
}

// splitSearchPath parses a search_path value: comma-separated identifiers,
// unquoted ones folded to lower case, "quoted" ones kept.
func splitSearchPath(v string) []string {
	var out []string
	for _, part := range splitOutsideQuotes(v, ',') {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if len(part) >= 2 && part[0] == '"' && part[len(part)-1] == '"' {
			out = append(out, strings.ReplaceAll(part[1:len(part)-1], `""`, `"`))
		} else {
			out = append(out, strings.ToLower(part))
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	inQuote := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case sep:
			if !inQuote {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// optionSetting finds a setting in a startup "options" value
// ("-c search_path=a,b" or "--search_path=a,b"; backslash escapes spaces).
func optionSetting(opts, setting string) (string, bool) {
	var args []string
	var cur strings.Builder
	for i := 0; i < len(opts); i++ {
		switch c := opts[i]; {
		case c == '\\' && i+1 < len(opts):
			i++
			cur.WriteByte(opts[i])
		case c == ' ' || c == '\t':
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	found, value := false, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" && i+1 < len(args):
			i++
			a = args[i]
		case strings.HasPrefix(a, "-c"):
			a = a[2:]
		case strings.HasPrefix(a, "--"):
			a = a[2:]
		default:
			continue
		}
		name, v, ok := strings.Cut(a, "=")
		if ok && strings.ReplaceAll(strings.ToLower(name), "-", "_") == setting {
			found, value = true, v
		}
	}
	return value, found
}
