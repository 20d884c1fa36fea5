//go:build unix

package subject

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/crypto"
)

// BenchmarkCacheHit is what a warm subject costs beyond the AES work: the
// lookup of its key by id (reads) or by subject (writes, with the SHA-256
// of the subject).
func BenchmarkCacheHit(b *testing.B) {
	c := newCache(20000)
	var ids []crypto.SubjectKeyID
	var subjects []string
	for i := range 20000 {
		k, _ := crypto.NewSubjectKey(crypto.NewSubjectKeyID(), crypto.NewDEK())
		subjects = append(subjects, fmt.Sprint(i))
		c.put(k.ID(), k, subjectRef{"public.customers", HashOf("public.customers", subjects[i])}, 0)
		ids = append(ids, k.ID())
	}
	b.Run("byID", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu := 0, processCPU()
		for b.Loop() {
			if _, _, ok := c.byKeyID(ids[i%len(ids)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("bySubject", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu := 0, processCPU()
		defer func() { b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op") }()
		for b.Loop() {
			if c.bySubjectRef(subjectRef{"public.customers", HashOf("public.customers", subjects[i%len(subjects)])}) == nil {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// processCPU is the user+system CPU time of this process: on a shared
// machine wall time also counts the waits for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
