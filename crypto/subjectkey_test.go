package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"
)

// The worked Subject example of FORMAT.md, computed independently with
// Python cryptography 48 (HKDF, AESGCM): subject data key 0x00…0x1f, key id
// 0xa0…0xaf, column public.users.email, nonce 0xf0…0xfb.
const (
	goldenSubjectGCMKey = "771566cad550edc40d71d8d44c8382f6d30e05a7296bb97ad0609e118da25428"
	goldenSubject       = "5047430103" + "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" + "f0f1f2f3f4f5f6f7f8f9fafb" +
		"40827a0d78835abbff8e99e76791b648ab" + "f7c7db4da313ed92c8a720528b8b6447"
)

func goldenSubjectKey(t testing.TB) *SubjectKey {
	t.Helper()
	var id SubjectKeyID
	for i := range id {
		id[i] = byte(0xa0 + i)
	}
	k, err := NewSubjectKey(id, testDEK())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSubjectGolden(t *testing.T) {
	k := goldenSubjectKey(t)
	col := mustColumn(t, "public", "users", "email")
	pt, err := k.Decrypt(nil, unhex(t, goldenSubject), col)
	if err != nil || string(pt) != goldenPlaintext {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
	// The same value rebuilt from the documented key, header and AD with
	// nothing but crypto/cipher.
	v := unhex(t, goldenSubject)
	gcm := newGCM(t, unhex(t, goldenSubjectGCMKey))
	ad := append(append([]byte{}, v[:SubjectHeaderLen]...), "public\x00users\x00email"...)
	want := gcm.Seal(append([]byte{}, v[:SubjectHeaderLen+12]...), v[SubjectHeaderLen:SubjectHeaderLen+12], []byte(goldenPlaintext), ad)
	if !bytes.Equal(want, v) {
		t.Fatalf("rebuilt %x\nwant    %s", want, goldenSubject)
	}
}

func TestSubjectRoundTrip(t *testing.T) {
	k := goldenSubjectKey(t)
	col := mustColumn(t, "public", "customers", "email")
	for _, pt := range []string{"", "x", "alice@example.com", string(make([]byte, 5000))} {
		v, err := k.Encrypt(nil, []byte(pt), col)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != len(pt)+SubjectOverhead || !IsCiphertext(v) {
			t.Fatalf("len %d, IsCiphertext %v", len(v), IsCiphertext(v))
		}
		h, err := ParseHeader(v)
		if err != nil || h.Mode != Subject || h.KeyID != k.ID() {
			t.Fatalf("header %+v, %v", h, err)
		}
		got, err := k.Decrypt(nil, v, col)
		if err != nil || string(got) != pt {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		// Every single-bit change fails.
		for i := 0; i < len(v) && i < 80; i++ {
			w := bytes.Clone(v)
			w[i] ^= 1
			if _, err := k.Decrypt(nil, w, col); err == nil {
				t.Fatalf("bit flip at byte %d decrypts", i)
			}
		}
	}
}

func TestSubjectWrongKeyOrColumn(t *testing.T) {
	k := goldenSubjectKey(t)
	other, err := NewSubjectKey(NewSubjectKeyID(), testDEK()) // same bytes, another id
	if err != nil {
		t.Fatal(err)
	}
	col := mustColumn(t, "public", "customers", "email")
	v, _ := k.Encrypt(nil, []byte("a@b"), col)
	if _, err := other.Decrypt(nil, v, col); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("another subject's key: %v", err)
	}
	if _, err := k.Decrypt(nil, v, mustColumn(t, "public", "customers", "phone")); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("another column: %v", err)
	}
	// A keyring refuses Subject values, and a subject key keyring values.
	kr := newTestKeyring(t, 1)
	if _, err := kr.Decrypt(nil, v, col); !errors.Is(err, ErrSubjectValue) {
		t.Fatalf("keyring on a Subject value: %v", err)
	}
	rv, _ := kr.Encrypt(nil, []byte("a@b"), col, Randomized)
	if _, err := k.Decrypt(nil, rv, col); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("subject key on a keyring value: %v", err)
	}
	if s := k.String(); s != "subject key a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" {
		t.Fatal(s)
	}
	if id := NewSubjectKeyID(); hex.EncodeToString(id[:]) == "00000000000000000000000000000000" {
		t.Fatal("zero id")
	}
}

func TestSubjectAllocs(t *testing.T) {
	k := goldenSubjectKey(t)
	col := mustColumn(t, "public", "customers", "email")
	pt := []byte("alice@example.com")
	buf := make([]byte, 0, 256)
	v, _ := k.Encrypt(nil, pt, col)
	if n := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(buf[:0], pt, col) }); n > 0 && !raceEnabled {
		t.Fatalf("Encrypt allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = k.Decrypt(buf[:0], v, col) }); n > 0 && !raceEnabled {
		t.Fatalf("Decrypt allocates %v", n)
	}
}

func newGCM(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	blk, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
