package crypto

import (
	"bytes"
	"testing"
)

// TestToken: equal values give equal tokens in any column of the keyring,
// different values and different keys different ones; a new version does not
// change them; the token holds nothing of the value.
func TestToken(t *testing.T) {
	k := NewKeyring("pii")
	if err := k.Add(1, bytes.Repeat([]byte{1}, DEKSize)); err != nil {
		t.Fatal(err)
	}
	a, err := k.Token(nil, []byte("taro@example.jp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != TokenLen || bytes.Contains(a, []byte("taro")) {
		t.Fatalf("token %q", a)
	}
	b, _ := k.Token([]byte("x"), []byte("taro@example.jp"))
	if string(b[1:]) != string(a) || b[0] != 'x' {
		t.Errorf("same value, token %q then %q", a, b[1:])
	}
	if c, _ := k.Token(nil, []byte("hanako@example.jp")); bytes.Equal(c, a) {
		t.Error("different values give the same token")
	}
	if err := k.Add(2, bytes.Repeat([]byte{2}, DEKSize)); err != nil {
		t.Fatal(err)
	}
	if c, _ := k.Token(nil, []byte("taro@example.jp")); !bytes.Equal(c, a) {
		t.Error("a new key version changed the token")
	}
	other := NewKeyring("other")
	if err := other.Add(1, bytes.Repeat([]byte{3}, DEKSize)); err != nil {
		t.Fatal(err)
	}
	if c, _ := other.Token(nil, []byte("taro@example.jp")); bytes.Equal(c, a) {
		t.Error("another keyring gives the same token")
	}
	if _, err := NewKeyring("empty").Token(nil, []byte("x")); err == nil {
		t.Error("an empty keyring made a token")
	}
}
