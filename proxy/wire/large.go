package wire

import (
	"fmt"
	"math/bits"
	"sync"
)

// Budget bounds the memory that messages read whole may hold (see
// LargeMessage). Every byte of a Large buffer is taken from it before the
// buffer is allocated and given back once the message has been handled.
// One Budget is shared by all the sessions of a server: its methods are safe
// for concurrent use.
type Budget interface {
	// Take reserves n bytes, or reports false when that would exceed the
	// budget (nothing is reserved then).
	Take(n int) bool
	// Give returns n bytes that Take reserved.
	Give(n int)
}

// Large holds a message that does not fit a Reader's buffer while it is
// read and handled. Its buffer grows as the bytes arrive, doubling at each
// step and never beyond the message, so it is about twice the bytes
// received at most: a header that claims a gigabyte and sends nothing costs
// 64 KiB, not a gigabyte. Each step is taken from Budget first; while the
// bytes move to the next buffer both are held (at most 1.5 times the message
// beyond 1 MiB).
//
// A Large belongs to one goroutine. The message LargeMessage returns lives
// in it until Release, which must follow every message (or error).
type Large struct {
	Budget Budget // nil: no bound
	buf    []byte
	held   int // bytes of buf taken from Budget
}

// Release gives the buffer back (to a pool when it is small enough to be
// reused) and returns its bytes to the budget.
func (l *Large) Release() {
	if l.buf != nil {
		putLarge(l.buf)
		l.buf = nil
	}
	if l.held > 0 {
		l.Budget.Give(l.held)
		l.held = 0
	}
}

// grow replaces the buffer, whose first got bytes hold the message so far,
// by the next size toward want bytes.
func (l *Large) grow(got, want int) bool {
	size := nextLargeSize(cap(l.buf), want)
	if l.Budget != nil && !l.Budget.Take(size) {
		return false
	}
	nb := getLarge(size)
	copy(nb, l.buf[:got])
	if l.buf != nil {
		putLarge(l.buf)
	}
	if l.Budget != nil {
		if l.held > 0 {
			l.Budget.Give(l.held)
		}
		l.held = size
	}
	l.buf = nb
	return true
}

// Buffers of messages read whole start at largeMin and double. Up to
// largePoolMax they are powers of two kept in pools, so a stream of rows of
// 40 KiB allocates nothing per row. A larger message grows through its own
// size halved k times (…, n/4, n/2, n): its last step copies half of it, so
// while it arrives it holds at most 1.5 times its size.
const (
	largeMin     = 64 << 10
	largePoolMax = 1 << 20
)

// nextLargeSize is the buffer size after one of have bytes, full, for a
// message of want bytes.
func nextLargeSize(have, want int) int {
	target := max(2*have, largeMin)
	if want <= largePoolMax {
		return target
	}
	n := want
	for (n+1)/2 >= target {
		n = (n + 1) / 2
	}
	return n
}

// largePools holds free buffers of 64 KiB, 128 KiB, 256 KiB, 512 KiB and
// 1 MiB (largePoolMax).
var largePools [5]sync.Pool

// largePool returns the pool for buffers of capacity n, or nil.
func largePool(n int) *sync.Pool {
	if n < largeMin || n > largePoolMax || n&(n-1) != 0 {
		return nil
	}
	return &largePools[bits.Len(uint(n/largeMin))-1]
}

func getLarge(n int) []byte {
	if p := largePool(n); p != nil {
		if b, ok := p.Get().(*[]byte); ok {
			return (*b)[:n]
		}
	}
	return make([]byte, n)
}

func putLarge(b []byte) {
	if p := largePool(cap(b)); p != nil {
		b = b[:cap(b)]
		p.Put(&b)
	}
}

// OverBudgetError is returned by LargeMessage when the budget cannot hold
// the next step of a message. The message is then partly read: Head holds
// its first bytes (header included; valid until the Large is released) and
// Left bytes of it are still to come, which Skip passes over.
type OverBudgetError struct {
	Type byte
	Size int // the whole message, header included
	Head []byte
	Left int
}

func (e *OverBudgetError) Error() string {
	return fmt.Sprintf("message of type %q (%d bytes) does not fit the memory budget for buffered messages", e.Type, e.Size)
}
