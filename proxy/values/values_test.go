package values_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgcloak/pgcloak/proxy/values"
)

func mustLookup(t testing.TB, spec string) *values.Type {
	t.Helper()
	typ, err := values.Lookup(spec)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", spec, err)
	}
	return typ
}

func TestLookup(t *testing.T) {
	cases := []struct {
		spec   string
		name   string
		oid    uint32
		len    int16
		typmod int32
		str    string
	}{
		{"text", "text", 25, -1, -1, "text"},
		{"TEXT", "text", 25, -1, -1, "text"},
		{"varchar", "varchar", 1043, -1, -1, "character varying"},
		{"varchar(64)", "varchar", 1043, -1, 68, "character varying(64)"},
		{"Character  Varying ( 64 )", "varchar", 1043, -1, 68, "character varying(64)"},
		{"bpchar", "bpchar", 1042, -1, -1, "bpchar"},
		{"bpchar(10)", "bpchar", 1042, -1, 14, "character(10)"},
		{"char", "bpchar", 1042, -1, 5, "character(1)"},
		{"character(3)", "bpchar", 1042, -1, 7, "character(3)"},
		{"int2", "int2", 21, 2, -1, "smallint"},
		{"smallint", "int2", 21, 2, -1, "smallint"},
		{"int", "int4", 23, 4, -1, "integer"},
		{"integer", "int4", 23, 4, -1, "integer"},
		{"int4", "int4", 23, 4, -1, "integer"},
		{"bigint", "int8", 20, 8, -1, "bigint"},
		{"int8", "int8", 20, 8, -1, "bigint"},
		{"numeric", "numeric", 1700, -1, -1, "numeric"},
		{"decimal(12,2)", "numeric", 1700, -1, 12<<16 | 2 + 4, "numeric(12,2)"},
		{"numeric(12)", "numeric", 1700, -1, 12<<16 + 4, "numeric(12,0)"},
		{"numeric(5,-2)", "numeric", 1700, -1, 5<<16 | (-2 & 0x7ff) + 4, "numeric(5,-2)"},
		{"float8", "float8", 701, 8, -1, "double precision"},
		{"double precision", "float8", 701, 8, -1, "double precision"},
		{"float", "float8", 701, 8, -1, "double precision"},
		{"float(53)", "float8", 701, 8, -1, "double precision"},
		{"bool", "bool", 16, 1, -1, "boolean"},
		{"boolean", "bool", 16, 1, -1, "boolean"},
		{"date", "date", 1082, 4, -1, "date"},
		{"timestamp", "timestamp", 1114, 8, -1, "timestamp without time zone"},
		{"timestamp(3)", "timestamp", 1114, 8, 3, "timestamp(3) without time zone"},
		{"timestamp without time zone", "timestamp", 1114, 8, -1, "timestamp without time zone"},
		{"timestamptz", "timestamptz", 1184, 8, -1, "timestamp with time zone"},
		{"timestamp(0) with time zone", "timestamptz", 1184, 8, 0, "timestamp(0) with time zone"},
		{"timestamptz(9)", "timestamptz", 1184, 8, 6, "timestamp(6) with time zone"},
		{"uuid", "uuid", 2950, 16, -1, "uuid"},
		{"jsonb", "jsonb", 3802, -1, -1, "jsonb"},
		{"bytea", "bytea", 17, -1, -1, "bytea"},
	}
	for _, c := range cases {
		typ := mustLookup(t, c.spec)
		if typ.Name() != c.name || typ.OID() != c.oid || typ.Len() != c.len || typ.Typmod() != c.typmod || typ.String() != c.str {
			t.Errorf("Lookup(%q) = %s oid %d len %d typmod %d %q; want %s %d %d %d %q",
				c.spec, typ.Name(), typ.OID(), typ.Len(), typ.Typmod(), typ.String(), c.name, c.oid, c.len, c.typmod, c.str)
		}
		if by, ok := values.ByOID(c.oid); !ok || by.OID() != c.oid || by.Typmod() != -1 {
			t.Errorf("ByOID(%d) = %v, %v", c.oid, by, ok)
		}
	}
	for _, bad := range []string{"", "json", "real", "interval", "varchar(0)", "varchar(10485761)", "char(0)", "numeric(0)",
		"numeric(1001)", "numeric(5,1001)", "int(4)", "text(3)", "varchar(a)", "varchar(1,2)", "timestamp(-1)", "numeric(5", "float(24)", "float(54)", "float(0)"} {
		if typ, err := values.Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) = %v, want error", bad, typ)
		}
	}
	if _, ok := values.ByOID(700); ok {
		t.Error("ByOID(float4) ok")
	}
}

type rt struct {
	in        string // client text
	canonical string
	text      string // Encode text, default session; "" means same as canonical
	binary    string // hex of Encode binary
}

// TestRoundTrip: client text → canonical → text and binary; PostgreSQL's
// binary form back → the same canonical.
func TestRoundTrip(t *testing.T) {
	mb := strings.Repeat("山田太郎ｶﾀｶﾅ", 1<<20/27)
	digits1000 := strings.Repeat("1234567890", 100)
	cases := map[string][]rt{
		"text": {
			{"", "", "", ""},
			{"山田太郎", "山田太郎", "", hex.EncodeToString([]byte("山田太郎"))},
			{"ｶﾀｶﾅ", "ｶﾀｶﾅ", "", hex.EncodeToString([]byte("ｶﾀｶﾅ"))},
			{" a ", " a ", "", "206120"},
			{mb, mb, "", hex.EncodeToString([]byte(mb))},
		},
		"varchar(4)": {
			{"山田太郎", "山田太郎", "", hex.EncodeToString([]byte("山田太郎"))},
			{"山田太郎   ", "山田太郎", "", hex.EncodeToString([]byte("山田太郎"))},
			{"ab  ", "ab  ", "", "61622020"},
		},
		"char(4)": {
			{"山", "山   ", "", hex.EncodeToString([]byte("山   "))},
			{"", "    ", "", "20202020"},
			{"abcd  ", "abcd", "", "61626364"},
		},
		"int2": {
			{"-32768", "-32768", "", "8000"},
			{"007", "7", "", "0007"},
			{" +32767 ", "32767", "", "7fff"},
		},
		"int4": {
			{"007", "7", "", "00000007"},
			{"-2147483648", "-2147483648", "", "80000000"},
			{"-0", "0", "", "00000000"},
		},
		"int8": {
			{"9223372036854775807", "9223372036854775807", "", "7fffffffffffffff"},
			{"-9223372036854775808", "-9223372036854775808", "", "8000000000000000"},
		},
		"numeric": {
			{"1.50", "1.50", "", "0002000000000002" + "00011388"},
			{"0.00", "0.00", "", "0000000000000002"},
			{"-0", "0", "", "0000000000000000"},
			{"10000", "10000", "", "0001000100000000" + "0001"},
			{"1e-3", "0.001", "", "0001ffff00000003" + "000a"},
			{"NaN", "NaN", "", "00000000c0000000"},
			{"Infinity", "Infinity", "", "00000000d0000020"},
			{"-inf", "-Infinity", "", "00000000f0000020"},
			{digits1000, digits1000, "", ""},
			{"-" + digits1000 + "." + digits1000, "-" + digits1000 + "." + digits1000, "", ""},
		},
		"numeric(12,2)": {
			{"1.5", "1.50", "", "0002000000000002" + "00011388"},
			{"-1.005", "-1.01", "", "0002000040000002" + "00010064"},
		},
		"float8": {
			{"1e100", "1e+100", "", "54b249ad2594c37d"},
			{"-0", "-0", "", "8000000000000000"},
			{"4.9e-324", "5e-324", "", "0000000000000001"},
			{"2.2250738585072009e-308", "2.225073858507201e-308", "", "000fffffffffffff"},
			{"NaN", "NaN", "", "7ff8000000000000"},
			{"-Infinity", "-Infinity", "", "fff0000000000000"},
			{"0.1", "0.1", "", "3fb999999999999a"},
			{"123456789012345678", "1.2345678901234568e+17", "", "437b69b4ba630f35"},
		},
		"bool": {
			{"yes", "t", "", "01"},
			{" OFF ", "f", "", "00"},
		},
		"date": {
			{"2000-01-01", "2000-01-01", "", "00000000"},
			{"4714-11-24 BC", "4714-11-24 BC", "", "ffda97a7"},
			{"5874897-12-31", "5874897-12-31", "", "7fda970c"},
			{"March 15, 44 BC", "0044-03-15 BC", "", "fff49d7b"},
			{"infinity", "infinity", "", "7fffffff"},
			{"-infinity", "-infinity", "", "80000000"},
		},
		"timestamp": {
			{"2000-01-01 00:00:00.000001", "2000-01-01 00:00:00.000001", "", "0000000000000001"},
			{"294276-12-31 23:59:59.999999", "294276-12-31 23:59:59.999999", "", "7fffff5bb3b29fff"},
			{"4714-11-24 00:00:00 BC", "4714-11-24 00:00:00 BC", "", "fd0f7cc1411fa000"},
			{"infinity", "infinity", "", "7fffffffffffffff"},
		},
		"timestamptz": {
			{"2024-01-02 12:00:00+09", "2024-01-02 03:00:00+00", "", "0002b0ec767b8c00"},
			{"2024-01-02 12:00:00 Asia/Kolkata", "2024-01-02 06:30:00+00", "", "0002b0ef65804a00"},
			{"-infinity", "-infinity", "", "8000000000000000"},
		},
		"uuid": {
			{"{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "", "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		},
		"jsonb": {
			{`{"b": [1, 2.50, 1E2], "a": "x", "b": null, "aa": {}}`, `{"a": "x", "b": null, "aa": {}}`, "", "01" + hex.EncodeToString([]byte(`{"a": "x", "b": null, "aa": {}}`))},
			{`"山田\u0041\ud83d\ude00"`, `"山田A😀"`, "", ""},
			{`[]`, `[]`, "", "015b5d"},
		},
		"bytea": {
			{`\x00ff`, "\x00\xff", `\x00ff`, "00ff"},
			{`a\\b\001`, "a\\b\x01", `\x615c6201`, "615c6201"},
			{"", "", `\x`, ""},
		},
	}
	for spec, list := range cases {
		typ := mustLookup(t, spec)
		for _, c := range list {
			name := spec + " " + short(c.in)
			got, err := typ.Canonical(nil, 0, []byte(c.in), nil)
			if err != nil || string(got) != c.canonical {
				t.Errorf("%s: canonical %q (%v), want %q", name, short(string(got)), err, short(c.canonical))
				continue
			}
			if got == nil {
				t.Errorf("%s: canonical is nil", name)
			}
			wantText := c.text
			if wantText == "" {
				wantText = c.canonical
			}
			text, err := typ.Encode(nil, got, 0, nil)
			if err != nil || string(text) != wantText {
				t.Errorf("%s: text %q (%v), want %q", name, short(string(text)), err, short(wantText))
			}
			if text == nil {
				t.Errorf("%s: text output is nil, which would read as NULL", name)
			}
			bin, err := typ.Encode(nil, got, 1, nil)
			if err != nil || (c.binary != "" && hex.EncodeToString(bin) != c.binary) {
				t.Errorf("%s: binary %x (%v), want %s", name, bin, err, c.binary)
			}
			if bin == nil {
				t.Errorf("%s: binary output is nil", name)
			}
			back, err := typ.Canonical(nil, 1, bin, nil)
			if err != nil || !bytes.Equal(back, got) {
				t.Errorf("%s: binary back to canonical %q (%v), want %q", name, short(string(back)), err, short(c.canonical))
			}
		}
	}
}

// TestBinaryEqualsText: the same value sent in binary and in text has the
// same canonical form.
func TestBinaryEqualsText(t *testing.T) {
	cases := []struct {
		spec, text, binhex string
	}{
		{"int4", "007", "00000007"},
		{"int2", "-1", "ffff"},
		{"int8", "+42", "000000000000002a"},
		{"numeric", "001.500", "0002000000000003" + "00011388"},
		{"numeric", "1.5", "0003000000000001" + "000113880000"},   // unstripped digits, dscale 1
		{"numeric", "1.2", "0002000000000001" + "000107d0"},       // 1.2000 cut to dscale 1
		{"numeric(4,1)", "1.25", "0002000000000002" + "000109c4"}, // rounded after receive
		{"float8", "1.5", "3ff8000000000000"},
		{"bool", "true", "07"},
		{"date", "2024-03-15", "00002288"},
		{"timestamp", "2000-01-02 00:00:00", "000000141dd76000"},
		{"timestamptz", "2000-01-01 09:00:00+09", "0000000000000000"},
		{"timestamp(1)", "2000-01-01 00:00:00.15", "00000000000249f0"},
		{"uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{"jsonb", `{"b":1,"a":2}`, "01" + hex.EncodeToString([]byte(`{"a":2, "b":1}`))},
		{"text", "山田", hex.EncodeToString([]byte("山田"))},
		{"char(3)", "a", "61"},
		{"bytea", `\x0102`, "0102"},
	}
	for _, c := range cases {
		typ := mustLookup(t, c.spec)
		fromText, err := typ.Canonical(nil, 0, []byte(c.text), nil)
		if err != nil {
			t.Fatalf("%s %q: %v", c.spec, c.text, err)
		}
		bin, _ := hex.DecodeString(c.binhex)
		fromBin, err := typ.Canonical(nil, 1, bin, nil)
		if err != nil || !bytes.Equal(fromBin, fromText) {
			t.Errorf("%s: binary %s → %q (%v); text %q → %q", c.spec, c.binhex, fromBin, err, c.text, fromText)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		spec, in string
		format   int16
		code     string
		msg      string
	}{
		{"int4", "abc", 0, "22P02", `invalid input syntax for type integer: "abc"`},
		{"int4", "", 0, "22P02", `invalid input syntax for type integer: ""`},
		{"int4", "2147483648", 0, "22003", `value "2147483648" is out of range for type integer`},
		{"int2", "1.0", 0, "22P02", `invalid input syntax for type smallint: "1.0"`},
		{"int8", "99999999999999999999", 0, "22003", `value "99999999999999999999" is out of range for type bigint`},
		{"numeric", "1..2", 0, "22P02", `invalid input syntax for type numeric: "1..2"`},
		{"numeric(5,2)", "1000", 0, "22003", "numeric field overflow"},
		{"numeric", "1e-20000", 0, "22003", "value overflows numeric format"},
		{"float8", "1e400", 0, "22003", `"1e400" is out of range for type double precision`},
		{"float8", "one", 0, "22P02", `invalid input syntax for type double precision: "one"`},
		{"bool", "maybe", 0, "22P02", `invalid input syntax for type boolean: "maybe"`},
		{"varchar(2)", "abc", 0, "22001", "value too long for type character varying(2)"},
		{"char(2)", "山田太", 0, "22001", "value too long for type character(2)"},
		{"date", "2024-02-30", 0, "22008", `date/time field value out of range: "2024-02-30"`},
		{"date", "2024-13-01", 0, "22008", `date/time field value out of range: "2024-13-01"`},
		{"date", "yesterday-ish", 0, "22007", `invalid input syntax for type date: "yesterday-ish"`},
		{"timestamp", "294277-01-01", 0, "22008", `timestamp out of range: "294277-01-01"`},
		{"timestamp(0)", "294276-12-31 23:59:59.5", 0, "22008", "timestamp out of range"}, // PostgreSQL 15 stores 294277-01-01
		{"timestamptz", "2024-01-01 12:00+16", 0, "22009", `time zone displacement out of range: "2024-01-01 12:00+16"`},
		{"timestamptz", "2024-01-01 12:00 Mars/Olympus", 0, "22023", `time zone "mars/olympus" not recognized`},
		{"timestamptz", "now", 0, "0A000", `date/time value "now" depends on the server's clock and cannot be stored in a protected column`},
		{"uuid", "a0eebc99", 0, "22P02", `invalid input syntax for type uuid: "a0eebc99"`},
		{"jsonb", `{"a":}`, 0, "22P02", "invalid input syntax for type json"},
		{"jsonb", `"\u0000"`, 0, "22P05", "unsupported Unicode escape sequence"},
		{"jsonb", strings.Repeat("[", 10001), 0, "54001", "stack depth limit exceeded"},
		{"bytea", `\x0`, 0, "22023", "invalid hexadecimal data: odd number of digits"},
		{"bytea", `\q`, 0, "22P02", "invalid input syntax for type bytea"},
		{"text", "a\x00b", 0, "22021", `invalid byte sequence for encoding "UTF8": 0x00`},
		{"text", "\xe5\xb1", 0, "22021", `invalid byte sequence for encoding "UTF8": 0xe5 0xb1`},
		{"int4", "7\xff", 0, "22021", `invalid byte sequence for encoding "UTF8": 0xff`},
		{"text", "\xff", 1, "22021", `invalid byte sequence for encoding "UTF8": 0xff`},
		{"int4", "\x00\x07", 1, "08P01", "insufficient data left in message"},
		{"int4", "\x00\x00\x00\x00\x07", 1, "22P03", "incorrect binary data format"},
		{"numeric", "\x00\x01\x00\x00\x00\x00\x00\x00\x27\x10", 1, "22P03", `invalid digit in external "numeric" value`},
		{"jsonb", "\x02{}", 1, "XX000", "unsupported jsonb version number 2"},
		{"date", "\x7f\xff\xff\x5d", 1, "22008", "date out of range"},
		{"int4", "1", 2, "22023", "unsupported format code: 2"},
	}
	for _, c := range cases {
		typ := mustLookup(t, c.spec)
		dst := []byte("prefix")
		got, err := typ.Canonical(dst, c.format, []byte(c.in), nil)
		var ve *values.ValueError
		if !errors.As(err, &ve) || ve.Code != c.code || ve.Message != c.msg {
			t.Errorf("%s %q: got %q, %v; want %s %q", c.spec, short(c.in), got, err, c.code, c.msg)
		}
		if string(got) != "prefix" {
			t.Errorf("%s %q: dst changed to %q on error", c.spec, short(c.in), got)
		}
	}
}

// TestEncodeCorrupt: a stored plaintext that is not canonical for the type
// fails with data_corrupted instead of being passed on.
func TestEncodeCorrupt(t *testing.T) {
	cases := []struct {
		spec, canonical string
		format          int16
	}{
		{"int4", "abc", 1}, {"int4", "99999999999", 1}, {"int2", "40000", 1}, {"numeric", "1.2.3", 1}, {"numeric", "01", 1},
		{"float8", "xyz", 1}, {"float8", "xyz", 0}, {"bool", "true", 1}, {"uuid", "xyz", 1}, {"date", "2024-02-30", 1},
		{"date", "15.03.2024", 0}, {"timestamp", "2024-01-01", 1}, {"timestamptz", "2024-01-01 00:00:00", 0},
		{"timestamptz", "2024-01-01 00:00:00+09", 1},
	}
	s := &values.Session{}
	if err := s.Set("DateStyle", "German"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("extra_float_digits", "0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		typ := mustLookup(t, c.spec)
		_, err := typ.Encode(nil, []byte(c.canonical), c.format, s)
		var ve *values.ValueError
		if !errors.As(err, &ve) || ve.Code != values.CodeDataCorrupted {
			t.Errorf("%s %q format %d: %v, want XX001", c.spec, c.canonical, c.format, err)
		} else if strings.Contains(ve.Message+ve.Detail, c.canonical) {
			t.Errorf("%s: error %q quotes the plaintext", c.spec, ve.Message+ve.Detail)
		}
	}
}

func TestSessionFormats(t *testing.T) {
	ts := mustLookup(t, "timestamptz")
	c, err := ts.Canonical(nil, 0, []byte("2024-07-02 03:04:05.5+00"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		settings [][2]string
		want     string
	}{
		{nil, "2024-07-02 03:04:05.5+00"},
		{[][2]string{{"TimeZone", "Asia/Tokyo"}}, "2024-07-02 12:04:05.5+09"},
		{[][2]string{{"TimeZone", "Asia/Kolkata"}}, "2024-07-02 08:34:05.5+05:30"},
		{[][2]string{{"TimeZone", "America/New_York"}, {"DateStyle", "SQL, MDY"}}, "07/01/2024 23:04:05.5 EDT"},
		{[][2]string{{"TimeZone", "Europe/Berlin"}, {"DateStyle", "German"}}, "02.07.2024 05:04:05.5 CEST"},
		{[][2]string{{"TimeZone", "Europe/Berlin"}, {"DateStyle", "Postgres, DMY"}}, "Tue 02 Jul 05:04:05.5 2024 CEST"},
		{[][2]string{{"TimeZone", "<+05:30>-05:30"}, {"DateStyle", "SQL, DMY"}}, "02/07/2024 08:34:05.5 +05:30"},
		{[][2]string{{"TimeZone", "UTC+3"}}, "2024-07-02 00:04:05.5-03"},
	}
	for _, c2 := range cases {
		s := &values.Session{}
		for _, kv := range c2.settings {
			if err := s.Set(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ts.Encode(nil, c, 0, s)
		if err != nil || string(got) != c2.want {
			t.Errorf("%v: %q (%v), want %q", c2.settings, got, err, c2.want)
		}
	}

	// A TimeZone that cannot be loaded fails timestamptz closed, and only
	// timestamptz.
	s := &values.Session{}
	if err := s.Set("TimeZone", "EST5EDT,M3.2.0,M11.1.0"); err == nil {
		t.Fatal("Set accepted a POSIX zone with rules")
	}
	var ve *values.ValueError
	if _, err := ts.Encode(nil, c, 0, s); !errors.As(err, &ve) || ve.Code != "0A000" {
		t.Errorf("Encode with a bad zone: %v", err)
	}
	if _, err := ts.Canonical(nil, 0, []byte("2024-01-01 00:00"), s); !errors.As(err, &ve) || ve.Code != "0A000" {
		t.Errorf("Canonical with a bad zone: %v", err)
	}
	if _, err := ts.Canonical(nil, 0, []byte("2024-01-01 00:00+02"), s); err != nil {
		t.Errorf("Canonical with an explicit offset needs no session zone: %v", err)
	}
	if _, err := mustLookup(t, "timestamp").Encode(nil, []byte("2024-01-01 00:00:00"), 0, s); err != nil {
		t.Errorf("timestamp does not need the zone: %v", err)
	}

	// DateStyle field order for input.
	d := mustLookup(t, "date")
	for style, want := range map[string]string{"ISO, MDY": "2024-01-02", "SQL, DMY": "2024-02-01", "Postgres, YMD": ""} {
		s := &values.Session{}
		if err := s.Set("DateStyle", style); err != nil {
			t.Fatal(err)
		}
		got, err := d.Canonical(nil, 0, []byte("01/02/2024"), s)
		if want == "" {
			if err == nil {
				t.Errorf("%s: 01/02/2024 → %q, want an error", style, got)
			}
		} else if string(got) != want {
			t.Errorf("%s: 01/02/2024 → %q (%v), want %s", style, got, err, want)
		}
	}

	// bytea_output and extra_float_digits.
	s = &values.Session{}
	_ = s.Set("bytea_output", "escape")
	_ = s.Set("extra_float_digits", "-2")
	if got, _ := mustLookup(t, "bytea").Encode(nil, []byte("a\\\x00é"), 0, s); string(got) != `a\\\000\303\251` {
		t.Errorf("bytea escape: %q", got)
	}
	if got, _ := mustLookup(t, "float8").Encode(nil, []byte("3.141592653589793"), 0, s); string(got) != "3.14159265359" {
		t.Errorf("float8 with extra_float_digits -2: %q", got)
	}
	for _, bad := range [][2]string{{"DateStyle", "ISO, SQL"}, {"DateStyle", "Swatch"}, {"bytea_output", "base64"}, {"extra_float_digits", "4"}} {
		if err := s.Set(bad[0], bad[1]); err == nil {
			t.Errorf("Set(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestClientEncoding(t *testing.T) {
	s := &values.Session{}
	if err := s.Set("client_encoding", "SJIS"); err != nil {
		t.Fatal(err)
	}
	text := mustLookup(t, "text")
	var ve *values.ValueError
	if _, err := text.Canonical(nil, 0, []byte("\x8eR\x93c"), s); !errors.As(err, &ve) || ve.Code != "0A000" {
		t.Errorf("SJIS bytes: %v, want 0A000", err)
	}
	if got, err := text.Canonical(nil, 0, []byte("ascii"), s); err != nil || string(got) != "ascii" {
		t.Errorf("ASCII under SJIS: %q %v", got, err)
	}
	if _, err := text.Encode(nil, []byte("山田"), 0, s); !errors.As(err, &ve) || ve.Code != "0A000" {
		t.Errorf("non-ASCII output under SJIS: %v, want 0A000", err)
	}
	for _, enc := range []string{"UTF8", "utf-8", "Unicode", "SQL_ASCII"} {
		if err := s.Set("client_encoding", enc); err != nil {
			t.Fatal(err)
		}
		if got, err := text.Canonical(nil, 0, []byte("山田"), s); err != nil || string(got) != "山田" {
			t.Errorf("%s: %q %v", enc, got, err)
		}
	}
}

// TestClientEncodingConverted checks the client encodings pgcloak converts:
// text arrives in them and leaves in them, the canonical plaintext is
// UTF-8, and what they cannot hold is PostgreSQL's error.
func TestClientEncodingConverted(t *testing.T) {
	text := mustLookup(t, "text")
	bin := mustLookup(t, "jsonb")
	for _, c := range []struct{ enc, client, utf8 string }{
		{"LATIN1", "M\xfcller", "Müller"},
		{"latin1", "\xe9t\xe9", "été"},
		{"WIN1252", "\x80 5", "€ 5"},
		{"KOI8R", "\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"},
		{"EUC_JP", "\xbb\xb3\xc5\xc4", "山田"},
		{"EUCJP", "\x8e\xb6\x8e\xc0", "ｶﾀ"},
		{"EUC_KR", "\xc7\xd1", "한"},
	} {
		s := &values.Session{}
		if err := s.Set("client_encoding", c.enc); err != nil {
			t.Fatal(err)
		}
		for _, format := range []int16{0, 1} {
			got, err := text.Canonical(nil, format, []byte(c.client), s)
			if err != nil || string(got) != c.utf8 {
				t.Errorf("%s format %d: canonical %q, %v; want %q", c.enc, format, got, err, c.utf8)
			}
			out, err := text.Encode(nil, []byte(c.utf8), format, s)
			if err != nil || string(out) != c.client {
				t.Errorf("%s format %d: output %q, %v; want %q", c.enc, format, out, err, c.client)
			}
		}
		j, err := bin.Canonical(nil, 0, []byte(`"`+c.client+`"`), s)
		if err != nil || string(j) != `"`+c.utf8+`"` {
			t.Errorf("%s jsonb: %q, %v", c.enc, j, err)
		}
	}
	s := &values.Session{}
	_ = s.Set("client_encoding", "LATIN1")
	var ve *values.ValueError
	if _, err := text.Encode(nil, []byte("山"), 0, s); !errors.As(err, &ve) || ve.Code != "22P05" ||
		ve.Message != `character with byte sequence 0xe5 0xb1 0xb1 in encoding "UTF8" has no equivalent in encoding "LATIN1"` {
		t.Errorf("untranslatable: %v", err)
	}
	_ = s.Set("client_encoding", "EUC_JP")
	if _, err := text.Canonical(nil, 0, []byte("a\xbb"), s); !errors.As(err, &ve) || ve.Code != "22021" ||
		ve.Message != `invalid byte sequence for encoding "EUC_JP": 0xbb` {
		t.Errorf("invalid EUC_JP: %v", err)
	}
}

// TestPgtypeDecodes checks our binary output with pgx's own decoders, an
// implementation independent of ours.
func TestPgtypeDecodes(t *testing.T) {
	m := pgtype.NewMap()
	scan := func(typ *values.Type, in string, dst any) {
		t.Helper()
		c, err := typ.Canonical(nil, 0, []byte(in), nil)
		if err != nil {
			t.Fatalf("%s %q: %v", typ, in, err)
		}
		bin, err := typ.Encode(nil, c, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Scan(typ.OID(), pgtype.BinaryFormatCode, bin, dst); err != nil {
			t.Fatalf("%s %q: pgtype scan of %x: %v", typ, in, bin, err)
		}
	}
	var i8 int64
	scan(mustLookup(t, "int8"), "-9223372036854775808", &i8)
	if i8 != math.MinInt64 {
		t.Errorf("int8: %d", i8)
	}
	var i2 int16
	scan(mustLookup(t, "int2"), "-300", &i2)
	if i2 != -300 {
		t.Errorf("int2: %d", i2)
	}
	for _, in := range []string{"1.50", "-123456789.000000001", "1e30", "0.0001", strings.Repeat("7", 1000) + "." + strings.Repeat("3", 500)} {
		var n pgtype.Numeric
		scan(mustLookup(t, "numeric"), in, &n)
		want, _ := new(big.Rat).SetString(in)
		got := new(big.Rat).SetInt(n.Int)
		if n.Exp > 0 {
			got.Mul(got, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n.Exp)), nil)))
		} else {
			got.Quo(got, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-n.Exp)), nil)))
		}
		if got.Cmp(want) != 0 {
			t.Errorf("numeric %q: pgtype reads %s", short(in), got.FloatString(5))
		}
	}
	var f float64
	scan(mustLookup(t, "float8"), "-2.5e-300", &f)
	if f != -2.5e-300 {
		t.Errorf("float8: %v", f)
	}
	var b bool
	scan(mustLookup(t, "bool"), "on", &b)
	if !b {
		t.Error("bool")
	}
	var d pgtype.Date
	scan(mustLookup(t, "date"), "1999-12-31", &d)
	if !d.Time.Equal(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date: %v", d.Time)
	}
	var ts pgtype.Timestamp
	scan(mustLookup(t, "timestamp"), "1969-07-20 20:17:40.123456", &ts)
	if !ts.Time.Equal(time.Date(1969, 7, 20, 20, 17, 40, 123456000, time.UTC)) {
		t.Errorf("timestamp: %v", ts.Time)
	}
	var tz time.Time
	scan(mustLookup(t, "timestamptz"), "2024-01-02 12:00:00 America/Los_Angeles", &tz)
	if !tz.Equal(time.Date(2024, 1, 2, 20, 0, 0, 0, time.UTC)) {
		t.Errorf("timestamptz: %v", tz)
	}
	var u pgtype.UUID
	scan(mustLookup(t, "uuid"), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", &u)
	if hex.EncodeToString(u.Bytes[:]) != "a0eebc999c0b4ef8bb6d6bb9bd380a11" {
		t.Errorf("uuid: %x", u.Bytes)
	}
	var j map[string]any
	scan(mustLookup(t, "jsonb"), `{"b": [1, 2], "a": "山田"}`, &j)
	if want, _ := json.Marshal(map[string]any{"a": "山田", "b": []any{1, 2}}); func() string { got, _ := json.Marshal(j); return string(got) }() != string(want) {
		t.Errorf("jsonb: %v", j)
	}
	var by []byte
	scan(mustLookup(t, "bytea"), `\x00ff10`, &by)
	if hex.EncodeToString(by) != "00ff10" {
		t.Errorf("bytea: %x", by)
	}
	var s string
	scan(mustLookup(t, "text"), "ｶﾀｶﾅ", &s)
	if s != "ｶﾀｶﾅ" {
		t.Errorf("text: %q", s)
	}
}

func TestLoadTimeZone(t *testing.T) {
	for name, want := range map[string]int{
		"UTC": 0, "utc": 0, "GMT": 0, "Asia/Tokyo": 9 * 3600, "asia/tokyo": 9 * 3600, "ASIA/KOLKATA": 19800,
		"<+05:30>-05:30": 19800, "UTC+3": -3 * 3600, "AB+3": -3 * 3600, "+3": -3 * 3600, "<-03>3": -3 * 3600, "Etc/GMT+3": -3 * 3600, "XYZ-2:30": 9000,
	} {
		loc, err := values.LoadTimeZone(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, off := time.Date(2024, 1, 15, 0, 0, 0, 0, loc).Zone(); off != want {
			t.Errorf("%s: offset %d, want %d", name, off, want)
		}
	}
	for _, bad := range []string{"", "Mars/Olympus", "EST5EDT,M3.2.0,M11.1.0", "ABC", "XYZ+168", "Local", "<+04"} {
		if _, err := values.LoadTimeZone(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestConcurrentUse runs Canonical and Encode on one Session and one Type
// from several goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	s := &values.Session{}
	if err := s.Set("TimeZone", "Europe/Paris"); err != nil {
		t.Fatal(err)
	}
	typ := mustLookup(t, "timestamptz")
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				var c, out []byte
				c, err = typ.Canonical(nil, 0, []byte("2024-06-01 12:00"), s)
				if err == nil {
					out, err = typ.Encode(nil, c, 0, s)
				}
				if err == nil && string(out) != "2024-06-01 12:00:00+02" {
					err = errors.New("got " + string(out))
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
