package crypto

import "testing"

// TestRandomizedSealsDiffer: the same plaintext sealed many times never
// gives the same value.
func TestRandomizedSealsDiffer(t *testing.T) {
	kr := NewKeyring("pii")
	if err := kr.Add(1, testDEK()); err != nil {
		t.Fatal(err)
	}
	col, _ := NewColumnID("public", "t", "c")
	seen := make(map[string]bool)
	for range 2000 {
		v, err := kr.Encrypt(nil, []byte("same"), col, Randomized)
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(v)] {
			t.Fatal("randomized encryption repeated a value")
		}
		seen[string(v)] = true
	}
}
