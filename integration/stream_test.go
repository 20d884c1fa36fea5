package integration

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestLargeResultStreams reads a 200 MB result through pgcloak and checks
// that the heap of this process (pgcloak runs in it) grows by less than
// 64 MB while it flows: pgcloak streams, it does not buffer results.
//
// The client reads with pgconn's ResultReader and drops each row, so its
// own footprint is a few kilobytes and the growth measured is pgcloak's. Not
// parallel: the heap is the whole process's.
func TestLargeResultStreams(t *testing.T) {
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	c := connect(t, dsn(pg, addr, harness.TrustUser))
	ctx := queryCtx(t)

	const (
		rows     = 200_000
		rowBytes = 1000
		maxGrow  = 64 << 20
	)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	// Sample the heap while the result flows.
	var (
		mu                 sync.Mutex
		peakAlloc, peakUse uint64
		samples            int
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peakAlloc, peakUse = max(peakAlloc, ms.HeapAlloc), max(peakUse, ms.HeapInuse)
			samples++
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	rr := c.PgConn().ExecParams(ctx, "SELECT repeat('x', 1000) FROM generate_series(1, 200000)", nil, nil, nil, nil)
	var n, size int
	for rr.NextRow() {
		v := rr.Values()[0]
		n++
		size += len(v)
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled

	if n != rows || size != rows*rowBytes {
		t.Fatalf("read %d rows, %d bytes; want %d rows, %d bytes", n, size, rows, rows*rowBytes)
	}
	mu.Lock()
	defer mu.Unlock()
	growAlloc, growUse := int64(peakAlloc)-int64(base.HeapAlloc), int64(peakUse)-int64(base.HeapInuse)
	t.Logf("%d MB in %v; %d heap samples; peak growth HeapAlloc %.1f MB, HeapInuse %.1f MB",
		size>>20, elapsed.Round(time.Millisecond), samples, float64(growAlloc)/(1<<20), float64(growUse)/(1<<20))
	if samples < 3 {
		t.Errorf("only %d heap samples during the read; the measure means little", samples)
	}
	if growAlloc >= maxGrow || growUse >= maxGrow {
		t.Errorf("heap grew by %.1f MB (HeapAlloc) / %.1f MB (HeapInuse) while streaming; want < %d MB",
			float64(growAlloc)/(1<<20), float64(growUse)/(1<<20), maxGrow>>20)
	}
}
