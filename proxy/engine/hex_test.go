package engine

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// TestHexInPlace: spreading bytes into hex inside their own buffer gives
// encoding/hex's answer, whatever the prefix and the spare capacity.
func TestHexInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 17, 1000, 70000} {
		for _, spare := range []int{0, 1, n, 2 * n} {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			prefix := []byte("E'\\\\x")
			b := make([]byte, 0, len(prefix)+n+spare)
			b = append(append(b, prefix...), data...)
			got := hexInPlace(b, len(prefix))
			want := append(append([]byte(nil), prefix...), hex.EncodeToString(data)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d spare=%d: got %.40q…, want %.40q…", n, spare, got, want)
			}
		}
	}
}
