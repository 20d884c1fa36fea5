package values

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCheckTextEveryOffset: a NUL or an invalid UTF-8 byte is found, and
// reported with its own bytes, wherever it sits relative to the eight-byte
// ASCII steps; valid text of any length, with multi-byte characters
// anywhere, passes.
func TestCheckTextEveryOffset(t *testing.T) {

	for n := 0; n <= 40; n++ {
		base := strings.Repeat("a", n)
		if err := checkText([]byte(base)); err != nil {
			t.Fatalf("%d ASCII bytes: %v", n, err)
		}
		for at := 0; at < n; at++ {
			for _, bad := range []string{"\x00", "\xff", "\xc3", "\xe5\xb1"} {
				v := []byte(base[:at] + bad + base[at:])
				err := checkText(v)
				if err == nil {
					t.Fatalf("%q accepted", v)
				}
				if bad == "\x00" || bad == "\xff" {
					want := "0x00"
					if bad == "\xff" {
						want = "0xff"
					}
					if !strings.Contains(err.Error(), ": "+want) {
						t.Fatalf("%q: %v, want it to name %s", v, err, want)
					}
				}
			}
			v := base[:at] + "山é" + base[at:]
			if !utf8.ValidString(v) || checkText([]byte(v)) != nil {
				t.Fatalf("%q refused", v)
			}
		}
	}
}
