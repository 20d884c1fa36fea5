package sqlplan

import (
	"crypto/rand"
	"encoding/hex"
	"reflect"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Long literals are set aside before PostgreSQL's parser reads a text.
//
// The parser copies a text several times over (the C parser's input, its
// literal buffer, the tree, the tree as protobuf, the tree again in Go): a
// 64 MB literal raised the process's memory by about 260 MB while it was
// parsed, and the analyzer's scan of the tokens added as much again. Yet a
// long literal is, almost always, a value: its text decides nothing in the
// plan but what is encrypted. So in a long text each long string literal
// ('…' or $$…$$) is replaced by a short placeholder literal, the shortened
// text is analysed, and the analysis is mapped back: offsets to the original
// text, each placeholder's value to the literal's own value (a view of the
// text: nothing of it is copied).
//
// The shortened analysis is used only when it surely means the same as the
// original's; otherwise the original text is analysed as before:
//   - every placeholder must be exactly one string constant token of the
//     shortened text (pgcloak's quick lexer and PostgreSQL's agree on where
//     the literal was: not in a comment, a quoted identifier, a dollar-quoted
//     body or an adjacent-string continuation);
//   - in the parse tree, placeholders appear only as constants (A_Const),
//     never as the text of a DO block, a function body or an option;
//   - every statement is one whose literals are data: SELECT, INSERT,
//     UPDATE, DELETE, MERGE, EXECUTE, SET, transaction control;
//   - in the analysis, a placeholder appears only as the value of an edit or
//     an EXECUTE argument that covers it, nowhere else (not in a setting, a
//     PREPARE's text, a subject);
//   - the shortened text analyses without error (a refusal is reported as
//     the original text's analysis words it).

const (
	// elideText is the length from which a text's literals are looked at.
	elideText = 64 << 10
	// elideLiteral is the length from which a literal is set aside.
	elideLiteral = 16 << 10
)

// elision is one literal set aside.
type elision struct {
	// start and end delimit the literal in the original text; at and to
	// the placeholder in the shortened one.
	start, end, at, to int
	// value is the literal's value; marker the placeholder's.
	value, marker string
}

// analyzeElided analyses sql with its long literals set aside. ok is false
// when it cannot be used (see above): the caller analyses sql itself.
func analyzeElided(sql string, cat Catalog, names []string, settings *Settings) (an *Analysis, ok bool) {
	short, els := elide(sql)
	if els == nil {
		return nil, false
	}
	if !placeholdersAreTokens(short, els) {
		return nil, false
	}
	tree, err := pg.Parse(short)
	if err != nil || !dataStatements(tree) || !placeholdersAreConstants(tree, els) {
		return nil, false
	}
	an, err = analyzeTree(short, tree, cat, names, settings)
	if err != nil || an == nil {
		return nil, false
	}
	if !restore(an, els) {
		return nil, false
	}
	return an, true
}

// elide returns sql with each long '…' or $tag$…$tag$ literal replaced by a
// placeholder literal, and the literals replaced (nil: none). It lexes only
// as far as literals, comments and quoted identifiers go, as PostgreSQL does
// with standard_conforming_strings on; placeholdersAreTokens checks the
// result with PostgreSQL's own lexer.
func elide(sql string) (string, []elision) {
	var els []elision
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	var b strings.Builder
	last := 0
	add := func(start, end int, value string) {
		marker := "pgcloak elided literal " + strconv.Itoa(len(els)) + " " + hex.EncodeToString(nonce[:])
		if els == nil {
			b.Grow(4096)
		}
		b.WriteString(sql[last:start])
		at := b.Len()
		b.WriteString("'" + marker + "'")
		els = append(els, elision{start: start, end: end, at: at, to: b.Len(), value: value, marker: marker})
		last = end
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		wordBefore := i > 0 && identByte(sql[i-1])
		switch {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexAny(sql[i:], "\r\n")
			if j < 0 {
				i = len(sql)
			} else {
				i += j
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth, j := 1, i+2
			for depth > 0 && j < len(sql) {
				switch {
				case strings.HasPrefix(sql[j:], "/*"):
					depth, j = depth+1, j+2
				case strings.HasPrefix(sql[j:], "*/"):
					depth, j = depth-1, j+2
				default:
					j++
				}
			}
			i = j
		case c == '"':
			i = quotedEnd(sql, i, '"')
		case c == '\'':
			end := quotedEnd(sql, i, '\'')
			if end-i >= elideLiteral && end <= len(sql) && sql[end-1] == '\'' {
				inner := sql[i+1 : end-1]
				if strings.Contains(inner, "'") {
					inner = strings.ReplaceAll(inner, "''", "'")
				}
				add(i, end, inner)
			}
			i = end
		case (c == 'e' || c == 'E') && !wordBefore && i+1 < len(sql) && sql[i+1] == '\'':
			i = escapeEnd(sql, i+1)
		case (c == 'u' || c == 'U') && !wordBefore && strings.HasPrefix(sql[i+1:], "&'"):
			i = quotedEnd(sql, i+2, '\'')
		case (c == 'u' || c == 'U') && !wordBefore && strings.HasPrefix(sql[i+1:], `&"`):
			i = quotedEnd(sql, i+2, '"')
		case c == '$' && !wordBefore:
			tag, ok := dollarTag(sql[i:])
			if !ok {
				i++
				continue
			}
			j := strings.Index(sql[i+len(tag):], tag)
			if j < 0 {
				i = len(sql)
				continue
			}
			end := i + len(tag) + j + len(tag)
			if end-i >= elideLiteral {
				add(i, end, sql[i+len(tag):end-len(tag)])
			}
			i = end
		case identByte(c):
			// A word (the prefixes above count only at a word's start).
			for i < len(sql) && (identByte(sql[i]) || sql[i] == '$') {
				i++
			}
		default:
			i++
		}
	}
	if els == nil {
		return sql, nil
	}
	b.WriteString(sql[last:])
	return b.String(), els
}

// quotedEnd returns the end of the quoted text that opens at sql[i] with
// quote q, a doubled quote standing for itself (len(sql) if unterminated).
func quotedEnd(sql string, i int, q byte) int {
	for j := i + 1; j < len(sql); j++ {
		if sql[j] == q {
			if j+1 < len(sql) && sql[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(sql)
}

// escapeEnd is quotedEnd for an E'…' string, where a backslash escapes the
// next byte.
func escapeEnd(sql string, i int) int {
	for j := i + 1; j < len(sql); j++ {
		switch sql[j] {
		case '\\':
			j++
		case '\'':
			if j+1 < len(sql) && sql[j+1] == '\'' {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(sql)
}

// dollarTag returns the $tag$ that opens a dollar-quoted string at the start
// of s, if one does ($ then an optional identifier without $, then $).
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
		case c >= '0' && c <= '9' && j > 1:
		default:
			return "", false
		}
	}
	return "", false
}

// placeholdersAreTokens checks, with PostgreSQL's lexer, that each
// placeholder is one string constant token of short.
func placeholdersAreTokens(short string, els []elision) bool {
	res, err := pg.Scan(short)
	if err != nil {
		return false
	}
	k := 0
	for _, t := range res.Tokens {
		if k < len(els) && int(t.Start) == els[k].at {
			if t.Token != pg.Token_SCONST || int(t.End) != els[k].to {
				return false
			}
			k++
		}
	}
	return k == len(els)
}

// dataStatements reports whether every statement of tree is one whose
// literals are data.
func dataStatements(tree *pg.ParseResult) bool {
	for _, raw := range tree.Stmts {
		switch raw.Stmt.GetNode().(type) {
		case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt,
			*pg.Node_ExecuteStmt, *pg.Node_VariableSetStmt, *pg.Node_TransactionStmt:
		default:
			return false
		}
	}
	return true
}

// placeholdersAreConstants reports whether the placeholders appear in tree
// only as the values of A_Const nodes, each exactly once.
func placeholdersAreConstants(tree *pg.ParseResult, els []elision) bool {
	seen := make(map[string]int, len(els))
	ok := true
	var walk func(m protoreflect.Message, inConst bool)
	walk = func(m protoreflect.Message, inConst bool) {
		isConst := m.Descriptor().FullName() == "pg_query.A_Const"
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList():
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					if fd.Kind() == protoreflect.MessageKind {
						walk(l.Get(i).Message(), false)
					} else if fd.Kind() == protoreflect.StringKind && hasMarker(l.Get(i).String(), els) {
						ok = false
					}
				}
			case fd.Kind() == protoreflect.MessageKind:
				walk(v.Message(), isConst && fd.Name() == "sval")
			case fd.Kind() == protoreflect.StringKind && hasMarker(v.String(), els):
				if !inConst {
					ok = false
				}
				seen[v.String()]++
			}
			return ok
		})
	}
	walk(tree.ProtoReflect(), false)
	for _, e := range els {
		ok = ok && seen[e.marker] == 1
	}
	return ok && len(seen) == len(els)
}

// hasMarker reports whether s holds a placeholder's value (they share the
// nonce).
func hasMarker(s string, els []elision) bool {
	return strings.Contains(s, els[0].marker[strings.LastIndexByte(els[0].marker, ' '):])
}

// restore maps an analysis of the shortened text back to the original:
// offsets, and the placeholders' values in edits and EXECUTE arguments. It
// reports false if a placeholder is anywhere else.
func restore(an *Analysis, els []elision) bool {
	offset := func(x int) (int, bool) {
		d := 0
		for _, e := range els {
			switch {
			case x <= e.at:
				return x + d, true
			case x < e.to:
				return 0, false // inside a placeholder
			}
			d += (e.end - e.start) - (e.to - e.at)
		}
		return x + d, true
	}
	// value is what a value of the range [start, end) is in the original:
	// the literal's own when it is a placeholder's within the range.
	value := func(v string, start, end int) string {
		for _, e := range els {
			if v == e.marker && start <= e.at && e.to <= end {
				return e.value
			}
		}
		return v
	}
	// literal maps one literal's range and value back.
	literal := func(v *string, start, end *int) bool {
		*v = value(*v, *start, *end)
		var ok1, ok2 bool
		*start, ok1 = offset(*start)
		*end, ok2 = offset(*end)
		return ok1 && ok2
	}
	for i := range an.Statements {
		st := &an.Statements[i]
		for j := range st.Edits {
			e := &st.Edits[j]
			if !literal(&e.Value, &e.Start, &e.End) {
				return false
			}
		}
		if st.Execute == nil {
			continue
		}
		for j := range st.Execute.Args {
			a := &st.Execute.Args[j]
			if a.Literal && !literal(&a.Value, &a.Start, &a.End) {
				return false
			}
		}
	}
	// Nothing else may hold a placeholder: its meaning would be lost.
	return !holdsMarker(reflect.ValueOf(an), els, map[uintptr]bool{})
}

// holdsMarker reports whether any string reachable from v holds a
// placeholder's value.
func holdsMarker(v reflect.Value, els []elision, seen map[uintptr]bool) bool {
	switch v.Kind() {
	case reflect.String:
		return hasMarker(v.String(), els)
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return false
		}
		seen[v.Pointer()] = true
		return holdsMarker(v.Elem(), els, seen)
	case reflect.Interface:
		return !v.IsNil() && holdsMarker(v.Elem(), els, seen)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if holdsMarker(v.Field(i), els, seen) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if holdsMarker(v.Index(i), els, seen) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if holdsMarker(it.Key(), els, seen) || holdsMarker(it.Value(), els, seen) {
				return true
			}
		}
	}
	return false
}
