//go:build unix

package subject

import (
	"fmt"
	"testing"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/internal/cputime"
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
		i, cpu := 0, cputime.Self()
		for b.Loop() {
			if _, _, ok := c.byKeyID(ids[i%len(ids)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
		b.ReportMetric(float64(cputime.Self()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("bySubject", func(b *testing.B) {
		b.ReportAllocs()
		i, cpu := 0, cputime.Self()
		defer func() { b.ReportMetric(float64(cputime.Self()-cpu)/float64(b.N), "cpu-ns/op") }()
		for b.Loop() {
			if c.bySubjectRef(subjectRef{"public.customers", HashOf("public.customers", subjects[i%len(subjects)])}) == nil {
				b.Fatal("miss")
			}
			i++
		}
	})
}
