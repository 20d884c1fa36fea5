package proxy

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzFrameReader feeds arbitrary bytes to the framing code: it must never
// panic, and whatever it forwards must be a prefix of its input.
func FuzzFrameReader(f *testing.F) {
	f.Add(msg('Q', "SELECT 1\x00"))
	f.Add(append(msg('D', "\x00\x01\x00\x00\x00\x01x"), msg('Z', "I")...))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{'Q', 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 16)
		fr := newFrameReader(bytes.NewReader(in), w, 32)
		for {
			_, n, err := fr.header(1 << 16)
			if err != nil {
				break
			}
			if err := fr.forward(w, n); err != nil {
				break
			}
		}
		w.Flush()
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("forwarded bytes are not a prefix of the input")
		}
	})
}

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
