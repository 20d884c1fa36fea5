package sqlplan

import "strings"

// stateWords are words whose statements change session state the analysis
// depends on (search_path, prepared statements, string-literal syntax) or
// run a stored statement. A text holding none of them and no protected
// table name needs no plan.
var stateWords = [...]string{
	"search_path", // SET [LOCAL] search_path, RESET search_path, set_config
	"schema",      // SET SCHEMA 'x'
	"reset",       // RESET ALL
	"discard",     // DISCARD ALL
	"execute",     // EXECUTE, EXPLAIN EXECUTE, CREATE TABLE AS EXECUTE
	"deallocate",
	"set_config",
	"standard_conforming_strings",
	// Server-side code: its body is a string whose escapes (E'\n…',
	// U&'\0063…') can hide a table name from a text search, so it is
	// always parsed and its unescaped body searched (serverCode).
	"do",
	"function",
	"procedure",
	"rule",
}

// leadingWords start statements that change session state the session
// follows (settings, transaction levels, prepared statements): a text is
// planned when one of them begins it or follows a ';' (UPDATE … SET does not
// count).
var leadingWords = [...]string{"set", "reset", "begin", "start", "commit", "end", "rollback", "abort",
	"savepoint", "release", "prepare", "discard", "deallocate", "execute"}

// leadsStatement reports whether sql[i:] starts a statement: only spaces and
// comments lie between it and the text's start or the previous ';'.
func leadsStatement(sql string, i int) bool {
	for j := i - 1; j >= 0; j-- {
		switch c := sql[j]; {
		case c == ';':
			return true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
		case c == '/' && j > 0 && sql[j-1] == '*':
			// The end of a /* comment */: skip back to its start.
			k := strings.LastIndex(sql[:j-1], "/*")
			if k < 0 {
				return false
			}
			j = k
		default:
			// A -- comment ends at a newline we have passed; anything
			// else is a word of the statement.
			line := strings.LastIndexByte(sql[:j+1], '\n')
			if k := strings.Index(sql[line+1:j+1], "--"); k >= 0 {
				j = line + 1 + k
				continue
			}
			return false
		}
	}
	return true
}

// mayMatter reports whether sql could touch a protected table or change
// session state the analysis depends on. It runs on every statement, so it
// makes one pass over the text without allocating.
//
// A false positive only costs a parse; a false negative would let a statement
// through unplanned. So it errs one way only: names are matched as whole
// words anywhere (inside strings and comments too), case-insensitively, which
// covers unquoted names (folded to lower case) and quoted ones. A U&"…"
// identifier can spell any name with escapes, so its mere presence counts.
func mayMatter(sql string, names []string) bool {
	if hasUnicodeIdent(sql) {
		return true
	}
	for _, n := range names {
		if !isWord(n) && indexFold(sql, n) >= 0 {
			return true // a quoted name with spaces or punctuation: plain search
		}
	}
	for i := 0; i < len(sql); {
		if !wordByte(sql[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(sql) && wordByte(sql[j]) {
			j++
		}
		w := sql[i:j]
		for _, n := range names {
			if len(n) == len(w) && equalFold(n, w) {
				return true
			}
		}
		for _, k := range stateWords {
			if len(k) == len(w) && equalFold(k, w) {
				return true
			}
		}
		for _, k := range leadingWords {
			if len(k) == len(w) && equalFold(k, w) && leadsStatement(sql, i) {
				return true
			}
		}
		i = j
	}
	return false
}

// mentioned returns the first protected name that text mentions as a word
// (case-insensitively), or "".
func mentioned(text string, names []string) string {
	for _, n := range names {
		if n == "" {
			continue
		}
		if !isWord(n) {
			if indexFold(text, n) >= 0 {
				return n
			}
			continue
		}
		for off := 0; ; {
			i := indexFold(text[off:], n)
			if i < 0 {
				break
			}
			i += off
			end := i + len(n)
			if (i == 0 || !wordByte(text[i-1])) && (end == len(text) || !wordByte(text[end])) {
				return n
			}
			off = i + 1
		}
	}
	return ""
}

// hasUnicodeIdent reports whether sql holds U&" (a Unicode-escaped
// identifier).
func hasUnicodeIdent(sql string) bool {
	for i := 0; ; {
		j := strings.IndexByte(sql[i:], '&')
		if j < 0 {
			return false
		}
		i += j
		if i > 0 && (sql[i-1]|0x20) == 'u' && i+1 < len(sql) && sql[i+1] == '"' {
			return true
		}
		i++
	}
}

// identByte reports whether b can be part of an SQL identifier or keyword
// (PostgreSQL: letters, digits, _, $ and every non-ASCII byte).
func identByte(b byte) bool { return b == '$' || wordBytes[b] }

// wordByte is identByte without $: a name must be found as a word even
// where it touches a $ (inside $$…$$ bodies; customers$1 is another name,
// so a match there is a harmless false positive).
func wordByte(b byte) bool { return wordBytes[b] }

// wordBytes is the table behind wordByte (the text filter's inner loop).
var wordBytes = func() (t [256]bool) {
	for b := range t {
		t[b] = b >= 0x80 || b == '_' || (b|0x20 >= 'a' && b|0x20 <= 'z') || (b >= '0' && b <= '9')
	}
	return t
}()

// isWord reports whether every byte of s is a word byte.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !wordByte(s[i]) {
			return false
		}
	}
	return true
}

// lower folds ASCII upper case, which is all PostgreSQL folds in unquoted
// identifiers under a multibyte encoding.
func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// equalFold compares equal-length strings ignoring ASCII case.
func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// indexFold is strings.Index ignoring ASCII case.
func indexFold(s, sub string) int {
	if sub == "" {
		return 0
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if lower(s[i]) == lower(sub[0]) && equalFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// MayMatter reports whether Analyze could do anything with sql: whether it
// mentions a protected table or changes session state the analysis depends
// on. When false, Analyze returns nil, nil. Callers that cache analyses use
// it to skip the cache for the great majority of statements.
func MayMatter(sql string, cat Catalog) bool { return mayMatter(sql, cat.ProtectedNames()) }
