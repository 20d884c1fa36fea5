//go:build unix

package audit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/internal/cputime"
)

// BenchmarkRecord is the cost of one read record: the session's Admit and
// Commit, and the writer's fingerprint (cached), JSON, HMAC and write.
func BenchmarkRecord(b *testing.B) {
	w := open(&testing.T{}, filepath.Join(b.TempDir(), "audit.log"), Options{Buffer: 16384})
	cols := []Column{{Column: "public.t_enc.full_name", Outcome: "plaintext", Values: 1, KeyVersions: []uint32{1}},
		{Column: "public.t_enc.email", Outcome: "plaintext", Values: 1, KeyVersions: []uint32{1}},
		{Column: "public.t_enc.phone", Outcome: "plaintext", Values: 1, KeyVersions: []uint32{1}}}
	b.ReportAllocs()
	cpu := cputime.Self()
	for b.Loop() {
		ok, err := w.Admit()
		for err != nil { // faster than any server: wait for the writer
			time.Sleep(time.Millisecond)
			ok, err = w.Admit()
		}
		w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT full_name, email, phone FROM t_enc WHERE id = $1",
			Command: "SELECT", Rows: 1, Columns: cols}, ok)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	// On a shared machine wall time also counts waiting for a core.
	b.ReportMetric(float64(cputime.Self()-cpu)/float64(b.N), "cpu-ns/op")
}
