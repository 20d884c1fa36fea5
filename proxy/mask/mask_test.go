package mask

import (
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/proxy/values"
)

// TestMasks: every format on every logical type it applies to, with the
// exact text the client sees and the type it sees it as; the types it does
// not apply to are refused.
func TestMasks(t *testing.T) {
	type want struct {
		in, out string // a value in the type's text input, what the mask shows ("NULL")
		typ     string // the type the client sees
	}
	cases := map[string]map[string]want{
		"email": {
			"text":        {"taro@example.jp", "t***@example.jp", "text"},
			"varchar(64)": {"山田@例え.jp", "山***@例え.jp", "character varying(64)"},
		},
		"last4": {
			"text":    {"4111-1111-1111-5678", "***************5678", "text"},
			"varchar": {"abc", "abc", "character varying"},
			"char(8)": {"12345", "*2345   ", "character(8)"},
			"int2":    {"-1234", "*1234", "text"},
			"int4":    {"123456", "**3456", "text"},
			"int8":    {"9223372036854775807", "***************5807", "text"},
			"numeric": {"12345.67", "****5.67", "text"},
			"uuid":    {"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "********************************0a11", "text"},
		},
		"first:2": {
			"text":    {"山田太郎", "山田**", "text"},
			"bpchar":  {"abcd", "ab**", "bpchar"},
			"int4":    {"7", "7", "text"},
			"numeric": {"-0.5", "-0**", "text"},
		},
		"fixed:1900-01-01": {
			"date":      {"2024-02-29", "1900-01-01", "date"},
			"timestamp": {"2024-02-29 12:00:00", "1900-01-01 00:00:00", "timestamp without time zone"},
			"text":      {"x", "1900-01-01", "text"},
		},
		"fixed:0": {
			"int2": {"5", "0", "smallint"}, "int4": {"5", "0", "integer"}, "int8": {"5", "0", "bigint"},
			"numeric": {"5.5", "0", "numeric"}, "float8": {"5.5", "0", "double precision"},
			"jsonb": {`{"a":1}`, "0", "jsonb"},
		},
		"fixed:false": {"bool": {"true", "f", "boolean"}},
		"fixed:00000000-0000-0000-0000-000000000000": {"uuid": {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000", "uuid"}},
		`fixed:\x00`:                   {"bytea": {`\xdeadbeef`, `\x00`, "bytea"}},
		"fixed:2000-01-01 00:00:00+00": {"timestamptz": {"2024-02-29 12:00:00+09", "2000-01-01 00:00:00+00", "timestamp with time zone"}},
	}
	for spec, byType := range cases {
		s, err := Parse(spec)
		if err != nil {
			t.Fatalf("Parse(%q): %v", spec, err)
		}
		for typ, w := range byType {
			ty, err := values.Lookup(typ)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.For(ty)
			if err != nil {
				t.Errorf("%s on %s: %v", spec, typ, err)
				continue
			}
			plain, err := ty.Canonical(nil, 0, []byte(w.in), nil)
			if err != nil {
				t.Fatalf("%s %q: %v", typ, w.in, err)
			}
			masked := m.Apply(nil, plain)
			text, err := m.Type().Encode(nil, masked, 0, nil)
			if err != nil {
				t.Errorf("%s on %s: masked value %q does not encode as %s: %v", spec, typ, masked, m.Type(), err)
				continue
			}
			if string(text) != w.out || m.Type().String() != w.typ {
				t.Errorf("%s on %s %q: got %q as %s, want %q as %s", spec, typ, w.in, text, m.Type(), w.out, w.typ)
			}
			if _, err := m.Type().Encode(nil, masked, 1, nil); err != nil {
				t.Errorf("%s on %s: binary: %v", spec, typ, err)
			}
		}
	}
}

// TestMaskTypes: which formats apply to which types, and the type the
// client then sees; null keeps every type, token shows text.
func TestMaskTypes(t *testing.T) {
	all := []string{"text", "varchar", "bpchar", "int2", "int4", "int8", "numeric", "float8", "bool", "date", "timestamp", "timestamptz", "uuid", "jsonb", "bytea"}
	applies := map[string]string{
		"email":   "text varchar",
		"last4":   "text varchar bpchar int2 int4 int8 numeric uuid",
		"first:1": "text varchar bpchar int2 int4 int8 numeric uuid",
		"token":   strings.Join(all, " "),
		"null":    strings.Join(all, " "),
	}
	for spec, want := range applies {
		s, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, name := range all {
			ty, _ := values.Lookup(name)
			m, err := s.For(ty)
			if err != nil {
				if !strings.Contains(err.Error(), "does not apply to") {
					t.Errorf("%s on %s: %v", spec, name, err)
				}
				continue
			}
			got = append(got, name)
			switch {
			case s.Kind == Token && m.Type().Name() != "text":
				t.Errorf("token on %s shows %s, want text", name, m.Type())
			case s.Kind == Null && m.Type() != ty:
				t.Errorf("null on %s shows %s, want the column's type", name, m.Type())
			}
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s applies to %q, want %q", spec, g, want)
		}
	}
}

// TestParse: spellings, and mistakes with the fix.
func TestParse(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"email", "email", ""},
		{"LAST4", "last4", ""},
		{"last:4", "last4", ""},
		{"first:3", "first:3", ""},
		{"fixed:***", "fixed:***", ""},
		{"fixed:", "fixed:", ""},
		{"token", "token", ""},
		{"null", "null", ""},
		{"first", "", "needs the number"},
		{"last:0", "", "needs the number"},
		{"email:x", "", "takes no argument"},
		{"fixed", "", "needs the value"},
		{"hash", "", "unknown mask"},
		{"", "", "empty mask"},
	} {
		s, err := Parse(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q) = %v, %v; want error with %q", c.in, s, err, c.err)
			}
			continue
		}
		if err != nil || s.String() != c.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", c.in, s, err, c.want)
		}
	}
	if _, err := (Spec{Kind: Fixed, Text: "x"}).For(mustType(t, "date")); err == nil {
		t.Error("fixed:x on a date column applies, want an error")
	}
}

func mustType(t *testing.T, name string) *values.Type {
	ty, err := values.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return ty
}

func TestEmailEdges(t *testing.T) {
	for in, want := range map[string]string{"a@b": "a***@b", "@b": "***@b", "nobody": "***", "x@y@z.jp": "x***@z.jp", "": "***"} {
		if got := string(email(nil, []byte(in))); got != want {
			t.Errorf("email(%q) = %q, want %q", in, got, want)
		}
	}
}
