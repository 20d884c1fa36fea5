package values

import (
	"strings"
	"testing"
)

// Encode runs once per protected field of every DataRow, Canonical once per
// protected parameter or literal. Last results: go test -run '^$' -bench .
// -benchmem -count 3 ./proxy/values/, best of 3, Go 1.26, linux/amd64, a
// shared 2-vCPU Xeon with other builds running (so noisy: treat as upper
// bounds). Every Encode path allocates nothing; so does every Canonical
// path except jsonb (it builds a tree to sort keys).
//
//	                              Encode text   Encode binary   Canonical text   Canonical binary
//	text                            12 ns          18 ns           54 ns             50 ns
//	int4                            19 ns          33 ns           53 ns             24 ns
//	numeric(12,2)                   15 ns         131 ns           85 ns             78 ns
//	float8                          13 ns         109 ns          252 ns            122 ns
//	uuid                             8 ns         110 ns          129 ns             41 ns
//	timestamptz, ISO, UTC           12 ns          43 ns          557 ns            147 ns
//	timestamptz, ISO, Asia/Tokyo   190 ns          59 ns          822 ns            170 ns
//	timestamptz, SQL, New York     218 ns          36 ns          457 ns            152 ns
//	date, German                    80 ns          22 ns          182 ns             62 ns
//	jsonb (small object)            14 ns           9 ns         2.1 µs (16 allocs)  2.5 µs
//	bytea (32 bytes)                33 ns (hex)     7 ns          259 ns             12 ns
//	text, 1 MB (BenchmarkEncode1MBText)  45 µs, 0 allocs (a copy)

type benchCase struct {
	name  string
	typ   string
	text  string // client text input
	setup func(*Session)
}

var benchCases = []benchCase{
	{"text", "text", "山田太郎 yamada@example.com", nil},
	{"int4", "int4", "123456", nil},
	{"numeric", "numeric(12,2)", "1234567.89", nil},
	{"timestamptz", "timestamptz", "2024-01-02 12:34:56.789+09", nil},
	{"timestamptz_tokyo", "timestamptz", "2024-01-02 12:34:56.789+09", func(s *Session) { _ = s.Set("TimeZone", "Asia/Tokyo") }},
	{"timestamptz_sql_ny", "timestamptz", "2024-01-02 12:34:56.789+09", func(s *Session) {
		_ = s.Set("TimeZone", "America/New_York")
		_ = s.Set("DateStyle", "SQL, MDY")
	}},
	{"uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", nil},
	{"float8", "float8", "3.141592653589793", nil},
	{"date_german", "date", "2024-03-15", func(s *Session) { _ = s.Set("DateStyle", "German") }},
	{"jsonb", "jsonb", `{"name": "山田", "tags": ["a", "b"], "n": 1.50}`, nil},
	{"bytea", "bytea", `\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f`, nil},
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range benchCases {
		typ, err := Lookup(c.typ)
		if err != nil {
			b.Fatal(err)
		}
		s := &Session{}
		if c.setup != nil {
			c.setup(s)
		}
		canonical, err := typ.Canonical(nil, 0, []byte(c.text), s)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range []struct {
			name string
			code int16
		}{{"text", 0}, {"binary", 1}} {
			b.Run(c.name+"/"+f.name, func(b *testing.B) {
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := typ.Encode(buf[:0], canonical, f.code, s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	for _, c := range benchCases {
		typ, err := Lookup(c.typ)
		if err != nil {
			b.Fatal(err)
		}
		s := &Session{}
		if c.setup != nil {
			c.setup(s)
		}
		canonical, err := typ.Canonical(nil, 0, []byte(c.text), s)
		if err != nil {
			b.Fatal(err)
		}
		bin, err := typ.Encode(nil, canonical, 1, s)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range []struct {
			name string
			code int16
			in   []byte
		}{{"text", 0, []byte(c.text)}, {"binary", 1, bin}} {
			b.Run(c.name+"/"+f.name, func(b *testing.B) {
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := typ.Canonical(buf[:0], f.code, f.in, s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncode1MBText(b *testing.B) {
	c := []byte(strings.Repeat("山田太郎", 1<<20/12))
	buf := make([]byte, 0, 2<<20)
	b.SetBytes(int64(len(c)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := base[kindText].Encode(buf[:0], c, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}
