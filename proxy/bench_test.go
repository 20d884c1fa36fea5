package proxy

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Last results (2-core VM, go1.26, GOMAXPROCS=2):
// see README "Benchmarks"; refresh with
//   go test -run '^$' -bench . -benchmem ./proxy/

// loopReader replays the same bytes forever, like a server sending rows.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

// BenchmarkRelayDataRow measures the passthrough path for one DataRow of a
// pgbench-sized row (4 columns, ~100 bytes): read header, forward.
func BenchmarkRelayDataRow(b *testing.B) {
	row := msg('D', "\x00\x04\x00\x00\x00\x04abcd\x00\x00\x00\x08abcdefgh\x00\x00\x00\x04wxyz\x00\x00\x00\x54"+string(bytes.Repeat([]byte{' '}, 84)))
	benchRelay(b, row)
}

// BenchmarkRelayLargeDataRow forwards a 1 MiB DataRow, streamed through the
// 32 KiB buffer.
func BenchmarkRelayLargeDataRow(b *testing.B) {
	benchRelay(b, msg('D', "\x00\x01\x00\x10\x00\x00"+string(bytes.Repeat([]byte{'x'}, 1<<20))))
}

func benchRelay(b *testing.B, m []byte) {
	w := bufio.NewWriterSize(io.Discard, writeBufSize)
	f := wire.NewReader(&loopReader{data: m}, w, readBufSize)
	b.SetBytes(int64(len(m)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_, n, err := f.Header(1 << 30)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Forward(w, n); err != nil {
			b.Fatal(err)
		}
	}
}
