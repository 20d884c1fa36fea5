package proxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestTxState follows requests and ReadyForQuery through the cases the
// drain must tell apart: a session is closed only when every request is
// answered, no extended-protocol group is open and no transaction block.
func TestTxState(t *testing.T) {
	type step struct {
		client byte // a client message, or 0
		ready  byte // a ReadyForQuery status, or 0
	}
	q := func(t byte) step { return step{client: t} }
	z := func(s byte) step { return step{ready: s} }
	for _, tc := range []struct {
		name    string
		steps   []step
		busy    bool
		idleNow bool // drain() closes it at once
	}{
		{"fresh", nil, false, true},
		{"query answered", []step{q('Q'), z('I')}, false, true},
		{"query in flight", []step{q('Q')}, true, false},
		{"transaction open", []step{q('Q'), z('T')}, false, false},
		{"failed transaction", []step{q('Q'), z('T'), q('Q'), z('E')}, false, false},
		{"transaction ends", []step{q('Q'), z('T'), q('Q'), z('I')}, false, true},
		{"extended without Sync", []step{q('P'), q('B'), q('E'), q('H')}, true, false},
		{"extended synced", []step{q('P'), q('B'), q('E'), q('S'), z('I')}, false, true},
		{"pipelined groups", []step{q('P'), q('S'), q('B'), q('S'), z('I')}, true, false},
		{"pipelined groups answered", []step{q('P'), q('S'), q('B'), q('S'), z('I'), z('I')}, false, true},
		{"copy in a query", []step{q('Q'), q('d'), q('d'), q('c'), z('I')}, false, true},
		{"function call", []step{q('F'), z('I')}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s txState
			for _, st := range tc.steps {
				if st.client != 0 && !s.request(st.client) {
					t.Fatalf("request %q refused", st.client)
				}
				if st.ready != 0 && s.ready(st.ready) {
					t.Fatal("closed without a drain")
				}
			}
			if s.busy() != tc.busy {
				t.Errorf("busy = %v, want %v", s.busy(), tc.busy)
			}
			if got := s.drain(); got != tc.idleNow {
				t.Errorf("drain() = %v, want %v", got, tc.idleNow)
			}
			if tc.idleNow {
				if s.request('Q') {
					t.Error("a request after the drain closed the session was let through")
				}
				if s.force() {
					t.Error("force() after the drain: want false (already drained)")
				}
			}
		})
	}

	// Drain first, then a transaction that ends.
	var s txState
	s.request('Q')
	s.ready('T')
	if s.drain() {
		t.Fatal("drained inside a transaction")
	}
	if !s.request('Q') {
		t.Fatal("a statement of the open transaction was refused while draining")
	}
	if s.ready('T') {
		t.Fatal("drained inside a transaction")
	}
	s.request('Q') // COMMIT
	if !s.ready('I') {
		t.Fatal("not drained at the end of the transaction")
	}
	if s.request('Q') || s.forced() {
		t.Fatal("a request went through after the drain, or forced set")
	}

	// Force: busy or not.
	var f txState
	f.request('Q')
	if !f.force() || !f.forced() || f.request('Q') {
		t.Fatal("force did not close a busy session")
	}
}

// TestSourcePrefix: CancelRequests are counted per IPv4 address and per
// IPv6 /64; an IPv4-mapped address is its IPv4 address.
func TestSourcePrefix(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
	} {
		pa := sourcePrefix(&net.TCPAddr{IP: net.ParseIP(tc.a)})
		pb := sourcePrefix(&net.TCPAddr{IP: net.ParseIP(tc.b)})
		if (pa == pb) != tc.same {
			t.Errorf("%s (%v) and %s (%v): same source %v, want %v", tc.a, pa, tc.b, pb, pa == pb, tc.same)
		}
	}
}

// TestCancelLimiter: a source gets its bucket's worth, then one a second;
// others are not affected; idle sources are forgotten once there are many;
// a spray of sources beyond the map's bound shares one bucket instead of
// growing the map.
func TestCancelLimiter(t *testing.T) {
	c := cancelLimiter{perSecond: 3, buckets: map[netip.Prefix]*rate.Limiter{}}
	addr := func(i int) net.Addr {
		return &net.TCPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))}
	}
	now := time.Now()
	allowed := 0
	for range 10 {
		if c.allowAt(addr(1), now) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("10 at once from one source: %d allowed, want 3", allowed)
	}
	if c.allowAt(addr(1), now.Add(100*time.Millisecond)) || !c.allowAt(addr(1), now.Add(400*time.Millisecond)) {
		t.Error("the bucket does not refill at 3 a second")
	}
	if !c.allowAt(addr(2), now) {
		t.Error("another source was refused")
	}

	// A spray of sources within one second: the map stops at its bound.
	for i := range cancelMaxBuckets + 100 {
		c.allowAt(addr(1000+i), now)
	}
	if len(c.buckets) != cancelMaxBuckets || c.overflow == nil {
		t.Fatalf("%d buckets (bound %d), overflow %v", len(c.buckets), cancelMaxBuckets, c.overflow != nil)
	}
	// A second later their buckets are full again: a new source sweeps
	// them away.
	if !c.allowAt(addr(999), now.Add(2*time.Second)) || len(c.buckets) > 10 {
		t.Errorf("after a sweep: %d buckets", len(c.buckets))
	}
}
