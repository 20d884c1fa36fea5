package crypto

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in   string // hex
		want Header
		err  error
	}{
		{"504743010100000001", Header{Format: 1, Mode: Randomized, KeyVersion: 1}, nil},
		{"5047430102fffffffe", Header{Format: 1, Mode: Deterministic, KeyVersion: 0xfffffffe}, nil},
		{"504743010200000001" + "ff", Header{Format: 1, Mode: Deterministic, KeyVersion: 1}, nil},
		{"5047430103" + "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", Header{Format: 1, Mode: Subject, KeyID: SubjectKeyID{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf}}, nil},
		{"504743010300000001", Header{}, ErrNotCiphertext}, // mode 3 is shorter than its 21-byte header
		{"5047430102000000", Header{}, ErrNotCiphertext},   // 8 bytes
		{"", Header{}, ErrNotCiphertext},                       // empty
		{"50474401010000000100", Header{}, ErrNotCiphertext},   // "PGD"
		{"706763010100000001", Header{}, ErrNotCiphertext},     // "pgc"
		{"504743020100000001", Header{}, ErrUnsupportedFormat}, // format 2
		{"504743000100000001", Header{}, ErrUnsupportedFormat}, // format 0
		{"504743010000000001", Header{}, ErrUnsupportedFormat}, // mode 0
		{"504743010400000001", Header{}, ErrUnsupportedFormat}, // mode 4
	}
	for _, tc := range tests {
		h, err := ParseHeader(unhex(t, tc.in))
		if h != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("ParseHeader(%s) = %+v, %v; want %+v, %v", tc.in, h, err, tc.want, tc.err)
		}
	}
}

func TestIsCiphertext(t *testing.T) {
	rnd := "504743010100000001" + strings.Repeat("00", 28)
	det := "504743010200000001" + strings.Repeat("00", 16)
	for in, want := range map[string]bool{
		rnd:              true,
		rnd[:len(rnd)-2]: false, // one byte short of the GCM overhead
		det:              true,
		det[:len(det)-2]: false,
		det + "ff":       true,
		"504743010400000001" + strings.Repeat("00", 40): false, // mode 4
		"5047430103" + strings.Repeat("00", 44):         true,  // Subject: 49 bytes
		"5047430103" + strings.Repeat("00", 43):         false,
		"616c696365406578616d706c652e636f6d":            false, // alice@example.com
	} {
		if got := IsCiphertext(unhex(t, in)); got != want {
			t.Errorf("IsCiphertext(%s) = %v", in, got)
		}
	}
}

func TestCheckExpr(t *testing.T) {
	got := CheckExpr(`e"mail`)
	want := `((substring("e""mail" from 1 for 5) = decode('5047430101', 'hex') AND octet_length("e""mail") >= 37)` +
		` OR (substring("e""mail" from 1 for 5) = decode('5047430102', 'hex') AND octet_length("e""mail") >= 25))`
	if got != want {
		t.Fatalf("CheckExpr =\n%s\nwant\n%s", got, want)
	}
}

func TestSubjectCheckExpr(t *testing.T) {
	got := SubjectCheckExpr(`e"mail`)
	want := `(substring("e""mail" from 1 for 5) = decode('5047430103', 'hex') AND octet_length("e""mail") >= 49)`
	if got != want {
		t.Fatalf("SubjectCheckExpr =\n%s\nwant\n%s", got, want)
	}
}

func TestModes(t *testing.T) {
	if RandomizedOverhead != 37 || DeterministicOverhead != 25 || SubjectOverhead != 49 || Mode(0).Overhead() != 0 || Mode(4).Overhead() != 0 {
		t.Fatal("overheads changed: that is a format change")
	}
	for _, m := range modes {
		p, err := ParseMode(m.String())
		if err != nil || p != m {
			t.Fatalf("ParseMode(%q) = %v, %v", m.String(), p, err)
		}
	}
	if _, err := ParseMode("Randomized"); err == nil {
		t.Fatal("ParseMode is case-sensitive, like the rest of the config")
	}
	if Mode(9).String() != "Mode(9)" {
		t.Fatal(Mode(9).String())
	}
}

func TestColumnID(t *testing.T) {
	c := mustColumn(t, "public", "Users", "e.mail")
	if string(c.p.ad) != "public\x00Users\x00e.mail" {
		t.Fatalf("identity = %q", c.p.ad)
	}
	if c.String() != `public."Users"."e.mail"` || c.Schema() != "public" || c.Table() != "Users" || c.Column() != "e.mail" {
		t.Fatalf("String = %s", c)
	}
	if mustColumn(t, "s", "t_1", "c$").String() != "s.t_1.c$" {
		t.Fatal("plain names should not be quoted")
	}
	for _, bad := range [][3]string{
		{"", "t", "c"}, {"s", "", "c"}, {"s", "t", ""},
		{"s", "t\x00x", "c"}, {"s", "t", strings.Repeat("c", 256)},
	} {
		if _, err := NewColumnID(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("NewColumnID(%q) accepted", bad)
		}
	}
	if _, err := NewColumnID(strings.Repeat("s", 255), strings.Repeat("t", 255), strings.Repeat("c", 255)); err != nil {
		t.Fatal(err)
	}
	if !(ColumnID{}).IsZero() || (ColumnID{}).String() != "<no column>" {
		t.Fatal("zero ColumnID")
	}
}

// TestLongestColumn checks that the longest identity fits the pooled AD buffer.
func TestLongestColumn(t *testing.T) {
	kr := newTestKeyring(t, 1)
	col := mustColumn(t, strings.Repeat("s", 255), strings.Repeat("t", 255), strings.Repeat("c", 255))
	for _, m := range modes {
		v, err := kr.Encrypt(nil, []byte("x"), col, m)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := kr.Decrypt(nil, v, col); err != nil || string(pt) != "x" {
			t.Fatalf("%v: %v", m, err)
		}
	}
}
