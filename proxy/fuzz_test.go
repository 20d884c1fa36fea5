package proxy

import (
	"testing"
)

// FuzzStartupParams checks the StartupMessage parser never panics.
func FuzzStartupParams(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x17\x00\x03\x00\x00user\x00bob\x00\x00"))
	f.Add([]byte("\x00\x00\x00\x08\x00\x03\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 8 {
			return
		}
		_, _ = parseStartupParams(in)
	})
}
