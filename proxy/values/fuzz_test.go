package values

import (
	"bytes"
	"errors"
	"testing"
)

var fuzzTypes = []string{
	"text", "varchar(3)", "char(3)", "int2", "int4", "int8", "numeric", "numeric(6,2)", "numeric(3,-1)", "float8",
	"bool", "date", "timestamp", "timestamptz", "timestamp(2)", "uuid", "jsonb", "bytea",
}

// fuzzSessions are sessions whose text output PostgreSQL itself reads back
// as the same value (ISO offsets, or styles without zone abbreviations
// that mean something else in timezone_abbreviations).
var fuzzSessions = [][][2]string{
	nil,
	{{"TimeZone", "Asia/Tokyo"}},
	{{"TimeZone", "America/New_York"}, {"DateStyle", "ISO, DMY"}},
	{{"DateStyle", "SQL, DMY"}},
	{{"DateStyle", "German"}, {"bytea_output", "escape"}},
	{{"DateStyle", "Postgres, MDY"}, {"TimeZone", "Etc/UTC"}},
}

// FuzzCanonical checks, for any input accepted by any type in any of the
// sessions: Canonical is a fixed point; Encode succeeds in both formats; the
// session's text output and the binary output read back to the same
// canonical value; CanonicalView gives what Canonical does; errors are
// *ValueError with a SQLSTATE; nothing panics.
func FuzzCanonical(f *testing.F) {
	seeds := []string{"", "0", "007", "-1.50e3", "NaN", "Infinity", "t", "2024-01-02", "2024-03-10 02:30:00",
		"0044-03-15 BC", "294276-12-31 23:59:59.999999", "epoch", "infinity", "Jan 2 2024 3:04pm PST",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `{"b":[1,2.50],"a":null}`, `\x00ff`, `a\\b\001`, "山田太郎", "ｶﾀｶﾅ ",
		"1e-400", "4.9e-324", "0x1.8p1", "9223372036854775808", "12:00", "20240102T030405-0530"}
	for i, s := range seeds {
		f.Add(uint8(i), uint8(i/3), uint8(0), []byte(s))
	}
	f.Add(uint8(6), uint8(0), uint8(1), []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 1, 0x13, 0x88})
	f.Add(uint8(13), uint8(1), uint8(1), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, ti, si, format uint8, in []byte) {
		typ, err := Lookup(fuzzTypes[int(ti)%len(fuzzTypes)])
		if err != nil {
			t.Fatal(err)
		}
		s := &Session{}
		for _, kv := range fuzzSessions[int(si)%len(fuzzSessions)] {
			if err := s.Set(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		fc := int16(format % 2)
		c, err := typ.Canonical(nil, fc, in, s)
		view, verr := typ.CanonicalView(fc, in, s)
		if (err == nil) != (verr == nil) || !bytes.Equal(c, view) {
			t.Fatalf("%s %q: CanonicalView %q, %v; Canonical %q, %v", typ, in, view, verr, c, err)
		}
		if err != nil {
			var ve *ValueError
			if !errors.As(err, &ve) || len(ve.Code) != 5 || ve.Message == "" {
				t.Fatalf("%s %q: error %v is not a ValueError with a SQLSTATE", typ, in, err)
			}
			return
		}
		if typ.kind == kindBytea {
			if again, err := typ.Canonical(nil, 1, c, s); err != nil || !bytes.Equal(again, c) {
				t.Fatalf("%s %q: canonical %q not a fixed point: %q %v", typ, in, c, again, err)
			}
		} else if again, err := typ.Canonical(nil, 0, c, nil); err != nil || !bytes.Equal(again, c) {
			t.Fatalf("%s %q: canonical %q not a fixed point: %q %v", typ, in, c, again, err)
		}
		text, err := typ.Encode(nil, c, 0, s)
		if err != nil {
			t.Fatalf("%s %q: canonical %q: text: %v", typ, in, c, err)
		}
		if back, err := typ.Canonical(nil, 0, text, s); err != nil || !bytes.Equal(back, c) {
			t.Fatalf("%s %q: canonical %q, text %q reads back as %q (%v)", typ, in, c, text, back, err)
		}
		bin, err := typ.Encode(nil, c, 1, s)
		if err != nil {
			t.Fatalf("%s %q: canonical %q: binary: %v", typ, in, c, err)
		}
		if back, err := typ.Canonical(nil, 1, bin, s); err != nil || !bytes.Equal(back, c) {
			t.Fatalf("%s %q: canonical %q, binary %x reads back as %q (%v)", typ, in, c, bin, back, err)
		}
	})
}
