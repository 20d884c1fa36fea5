package engine

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// TestDecodeByteaText: the hex form decodes as encoding/hex does, for every
// byte value and with a prefix already in dst; invalid digits and odd
// lengths are errors that leave dst as it was; the escape form decodes.
func TestDecodeByteaText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(rng.IntN(256))
		}
		for _, enc := range []string{hex.EncodeToString(raw), string(bytes.ToUpper([]byte(hex.EncodeToString(raw))))} {
			got, err := decodeByteaText([]byte("pre"), []byte(`\x`+enc))
			if err != nil || !bytes.Equal(got, append([]byte("pre"), raw...)) {
				t.Fatalf("decode %q = %x, %v; want pre+%x", enc, got, err, raw)
			}
		}
	}
	for _, bad := range []string{`\x0`, `\x0g`, `\xg0`, `\x00 1`, "\\x0\x00", `\xzz`, `\x1:`, `\x:1`} {
		got, err := decodeByteaText([]byte("pre"), []byte(bad))
		if err == nil || string(got) != "pre" {
			t.Errorf("decode %q = %q, %v; want an error and dst unchanged", bad, got, err)
		}
		// Every non-digit byte, in either position, is refused.
		if _, err := hex.DecodeString(bad[2:]); err == nil {
			t.Errorf("encoding/hex accepts %q", bad)
		}
	}
	for c := range 256 {
		if _, werr := hex.DecodeString(string([]byte{'0', byte(c)})); werr != nil {
			if _, err := decodeByteaText(nil, []byte{'\\', 'x', '0', byte(c)}); err == nil {
				t.Errorf("byte %#x accepted as a hex digit", c)
			}
			if _, err := decodeByteaText(nil, []byte{'\\', 'x', byte(c), '0'}); err == nil {
				t.Errorf("byte %#x accepted as a hex digit", c)
			}
		}
	}
	got, err := decodeByteaText(nil, []byte(`a\\b\001\377`))
	if err != nil || !bytes.Equal(got, []byte("a\\b\x01\xff")) {
		t.Errorf("escape form = %q, %v", got, err)
	}
}

func BenchmarkDecodeByteaText(b *testing.B) {
	v := []byte(`\x` + hex.EncodeToString(make([]byte, 55))) // a 18-byte name, encrypted
	var dst []byte
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		dst, _ = decodeByteaText(dst[:0], v)
	}
}
