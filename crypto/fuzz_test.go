package crypto

import (
	"bytes"
	"testing"
)

// FuzzDecrypt feeds arbitrary bytes to Decrypt. It must never panic, never
// return plaintext with an error, and anything it accepts in deterministic
// mode must be exactly what Encrypt makes of the plaintext. The committed
// corpus (testdata/fuzz/FuzzDecrypt) holds the FORMAT.md examples and damaged
// variants of them.
func FuzzDecrypt(f *testing.F) {
	kr := NewKeyring("pii")
	if err := kr.Add(1, testDEK()); err != nil {
		f.Fatal(err)
	}
	if err := kr.Add(2, bytes.Repeat([]byte{2}, DEKSize)); err != nil {
		f.Fatal(err)
	}
	col, _ := NewColumnID("public", "users", "email")
	f.Add(unhex(f, goldenDeterministic))
	f.Add(unhex(f, goldenRandomized))
	f.Fuzz(func(t *testing.T, value []byte) {
		pt, err := kr.Decrypt(make([]byte, 0, 8), value, col)
		if err != nil {
			if pt != nil {
				t.Fatalf("plaintext %q returned with error %v", pt, err)
			}
			return
		}
		h, _ := ParseHeader(value)
		if !IsCiphertext(value) {
			t.Fatalf("decrypted a value that IsCiphertext rejects: %x", value)
		}
		if h.Mode == Deterministic && h.KeyVersion == 2 {
			v, _ := kr.Encrypt(nil, pt, col, Deterministic)
			if !bytes.Equal(v, value) {
				t.Fatalf("accepted %x, but Encrypt gives %x", value, v)
			}
		}
	})
}
