package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/pgcloak/pgcloak/config"
)

// guard holds what bounds the cost of clients across the server: the
// memory budget for messages held whole, the caps on logins and sessions,
// and the CancelRequest rate per source address.
type guard struct {
	budget  messageBudget
	logins  logins
	cancels cancelLimiter
}

func newGuard(lim config.Limits, reg prometheus.Registerer) *guard {
	g := &guard{cancels: cancelLimiter{buckets: map[netip.Prefix]*rate.Limiter{}}}
	g.setLimits(lim)
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgcloak_message_buffer_bytes",
			Help: "Bytes held by messages read whole to be looked into, across all sessions (bounded by limits.message_buffer_budget).",
		}, func() float64 { return float64(g.budget.used.Load()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgcloak_pending_logins",
			Help: "Client connections not yet authenticated (bounded by limits.max_pending_logins).",
		}, func() float64 { return float64(g.logins.pending.Load()) }))
	}
	return g
}

// setLimits makes lim the limits in force (at start, and at a reload: the
// caps apply to the next login, message and CancelRequest; what is held
// already is not given back early).
func (g *guard) setLimits(lim config.Limits) {
	// A Config not made by config.Load or config.Default (a test's, say)
	// gets the defaults rather than limits of zero.
	def := config.Default().Limits
	if lim.MaxPendingLogins <= 0 {
		lim.MaxPendingLogins = def.MaxPendingLogins
	}
	if lim.MaxClientConnections <= 0 {
		lim.MaxClientConnections = def.MaxClientConnections
	}
	if lim.CancelRate <= 0 {
		lim.CancelRate = def.CancelRate
	}
	if lim.MessageBufferBudget <= 0 {
		lim.MessageBufferBudget = def.MessageBufferBudget
	}
	g.budget.limit.Store(int64(lim.MessageBufferBudget))
	g.logins.maxPending.Store(int64(lim.MaxPendingLogins))
	g.logins.maxClients.Store(int64(lim.MaxClientConnections))
	g.cancels.setRate(lim.CancelRate)
}

// messageBudget is limits.message_buffer_budget: the bytes that the buffers
// of messages read whole (wire.Large) may hold at once, all sessions
// together. It implements wire.Budget.
type messageBudget struct {
	limit atomic.Int64
	used  atomic.Int64
}

// Take implements wire.Budget.
func (b *messageBudget) Take(n int) bool {
	for {
		u := b.used.Load()
		if u+int64(n) > b.limit.Load() {
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// Give implements wire.Budget.
func (b *messageBudget) Give(n int) { b.used.Add(-int64(n)) }

// logins counts client connections against two caps. A connection is
// pending from accept until PostgreSQL has authenticated it, and only then
// takes one of max_client_connections: sockets that never log in (silent,
// slow, or failing to) use up max_pending_logins, never the sessions of
// clients that did log in.
type logins struct {
	maxPending, maxClients atomic.Int64
	pending, clients       atomic.Int64
}

// login is one client connection's place in logins.
type login struct {
	l      *logins
	client bool // authenticated: counted in clients, no longer in pending
}

// start counts a new connection as pending; ok is false (and nothing is
// counted) when max_pending_logins are already pending.
func (l *logins) start() (lg *login, ok bool) {
	if l.pending.Add(1) > l.maxPending.Load() {
		l.pending.Add(-1)
		return nil, false
	}
	return &login{l: l}, true
}

// full reports whether max_client_connections sessions run: a new login is
// refused before it costs an upstream connection.
func (l *logins) full() bool { return l.clients.Load() >= l.maxClients.Load() }

// authenticated moves the connection from pending to the sessions; false
// when max_client_connections sessions already run (it stays pending).
func (lg *login) authenticated() bool {
	l := lg.l
	for {
		n := l.clients.Load()
		if n >= l.maxClients.Load() {
			return false
		}
		if l.clients.CompareAndSwap(n, n+1) {
			break
		}
	}
	l.pending.Add(-1)
	lg.client = true
	return true
}

// end gives the connection's place back.
func (lg *login) end() {
	if lg.client {
		lg.l.clients.Add(-1)
	} else {
		lg.l.pending.Add(-1)
	}
}

// cancelLimiter is limits.cancel_rate: a token bucket per source address
// (IPv4 address, IPv6 /64, the block one host usually holds), refilled at
// perSecond and holding as many. A CancelRequest carries a 32-bit secret
// that an attacker would have to guess; at 20 a second that takes years
// per address instead of hours.
type cancelLimiter struct {
	perSecond int
	mu        sync.Mutex
	buckets   map[netip.Prefix]*rate.Limiter
	overflow  *rate.Limiter // shared by new sources once buckets is full
	swept     time.Time
}

// Bucket bookkeeping: full buckets (sources idle for a second) are dropped
// once there are sweepAt of them; beyond maxBuckets, new sources share one
// bucket, so a spray of addresses cannot grow the map without bound.
const (
	cancelSweepAt    = 4096
	cancelMaxBuckets = 65536
)

// setRate sets the rate; buckets made before keep theirs until they are
// swept.
func (c *cancelLimiter) setRate(perSecond int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perSecond != perSecond {
		c.perSecond = perSecond
		clear(c.buckets)
		c.overflow = nil
	}
}

// allow takes a token for a CancelRequest from addr.
func (c *cancelLimiter) allow(addr net.Addr) bool { return c.allowAt(addr, time.Now()) }

func (c *cancelLimiter) allowAt(addr net.Addr, now time.Time) bool {
	key := sourcePrefix(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	lim := c.buckets[key]
	if lim == nil {
		if len(c.buckets) >= cancelSweepAt && now.Sub(c.swept) >= time.Second {
			c.swept = now
			for k, b := range c.buckets {
				if b.TokensAt(now) >= float64(c.perSecond) {
					delete(c.buckets, k)
				}
			}
		}
		if len(c.buckets) >= cancelMaxBuckets {
			if c.overflow == nil {
				c.overflow = rate.NewLimiter(rate.Limit(c.perSecond), c.perSecond)
			}
			return c.overflow.AllowN(now, 1)
		}
		lim = rate.NewLimiter(rate.Limit(c.perSecond), c.perSecond)
		c.buckets[key] = lim
	}
	return lim.AllowN(now, 1)
}

// sourcePrefix is the source a CancelRequest is counted against: the IPv4
// address, or the /64 of an IPv6 one. Unix sockets share one source.
func sourcePrefix(addr net.Addr) netip.Prefix {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
