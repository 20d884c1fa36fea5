package crypto

// `go test -run '^$' -bench . -benchmem -count 3 ./crypto/`; the figures
// of the last run are in the README (Benchmarks, Building blocks).
// Encrypt/Decrypt append into a buffer with room (as the proxy does).
//
// Randomized Encrypt includes ~70 ns of crypto/rand for the nonce. AES-SIV is
// bound by CMAC, one serial AES call (~26 ns through crypto/aes) per block;
// the per-column S2V cache leaves only the plaintext's blocks for 64 B.
// For comparison, Tink v2.9.0 daead/subtle.AESSIV took 0.8-1.5 µs and 7
// allocations (1.2 KB) per 64-byte operation on the same machine.
//
// On a busy machine compare cpu-ns/op (process CPU time per op), which leaves
// out time spent waiting for a core.

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/internal/cputime"
)

var benchSizes = []int{16, 64, 256, 4096}

func benchSetup(b *testing.B) (*Keyring, ColumnID) {
	kr := NewKeyring("pii")
	if err := kr.Add(1, NewDEK()); err != nil {
		b.Fatal(err)
	}
	col, _ := NewColumnID("public", "customers", "email")
	return kr, col
}

// reportCPU adds cpu-ns/op: process CPU time since start per iteration.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cputime.Self()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkEncrypt appends into a buffer with room, as the proxy does with its
// pooled row buffers.
func BenchmarkEncrypt(b *testing.B) {
	kr, col := benchSetup(b)
	for _, mode := range modes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%v/%d", mode, n), func(b *testing.B) {
				pt := make([]byte, n)
				dst := make([]byte, 0, n+mode.Overhead())
				b.ReportAllocs()
				b.SetBytes(int64(n))
				cpu := cputime.Self()
				for b.Loop() {
					if _, err := kr.Encrypt(dst, pt, col, mode); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	kr, col := benchSetup(b)
	for _, mode := range modes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%v/%d", mode, n), func(b *testing.B) {
				v, _ := kr.Encrypt(nil, make([]byte, n), col, mode)
				dst := make([]byte, 0, n)
				b.ReportAllocs()
				b.SetBytes(int64(n))
				cpu := cputime.Self()
				for b.Loop() {
					if _, err := kr.Decrypt(dst, v, col); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
		}
	}
}

// BenchmarkEncryptNilDst shows the cost when the caller has no buffer: one
// allocation, the output.
func BenchmarkEncryptNilDst(b *testing.B) {
	kr, col := benchSetup(b)
	pt := make([]byte, 64)
	for _, mode := range modes {
		b.Run(mode.String()+"/64", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(64)
			for b.Loop() {
				kr.Encrypt(nil, pt, col, mode)
			}
		})
	}
}

// BenchmarkSubject is Encrypt and Decrypt of a Subject value (a subject's
// own key instead of a keyring version), 64 bytes.
func BenchmarkSubject(b *testing.B) {
	k, err := NewSubjectKey(NewSubjectKeyID(), NewDEK())
	if err != nil {
		b.Fatal(err)
	}
	col, _ := NewColumnID("public", "customers", "email")
	pt := make([]byte, 64)
	dst := make([]byte, 0, 64+SubjectOverhead)
	v, _ := k.Encrypt(nil, pt, col)
	for _, op := range []string{"Encrypt", "Decrypt"} {
		b.Run(op+"/64", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(64)
			cpu := cputime.Self()
			for b.Loop() {
				if op == "Encrypt" {
					_, err = k.Encrypt(dst, pt, col)
				} else {
					_, err = k.Decrypt(dst, v, col)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}
