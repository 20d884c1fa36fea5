package proxy

import (
	"bufio"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"
)

// Shutdown that drains (Server.Shutdown): pgcloak stops accepting, closes
// each session at its next transaction boundary, and closes what is still
// busy when the deadline comes, as PostgreSQL's smart shutdown turns fast:
//
//	SIGTERM ─▶ listener closed (new clients: connection refused)
//	           idle sessions ─────────────────────▶ FATAL 57P01, Terminate upstream
//	           busy sessions ─ ReadyForQuery 'I' ─▶ FATAL 57P01, Terminate upstream
//	shutdown_timeout ─▶ the rest ─────────────────▶ FATAL 57P01 (at a message
//	                    boundary), query cancelled, both legs closed
//
// A session is busy while a request is unanswered (a Query, FunctionCall or
// Sync not yet answered by ReadyForQuery), an extended-protocol group is
// open (Parse, Bind … sent without their Sync: PostgreSQL holds an implicit
// transaction), or the last ReadyForQuery said 'T' or 'E' (a transaction
// block). txState follows that from both relay loops.

// errDrained ends a session that the drain closed.
var errDrained = errors.New("closed by shutdown")

// shutdownFatal is what a drained session's client reads last: PostgreSQL's
// code for a session ended by the administrator, which drivers and pools
// know to retry elsewhere.
var shutdownFatal = fatal(pgerrcode.AdminShutdown, "terminating connection due to administrator command (pgcloak is shutting down)")

// terminateMsg is a Terminate: the backend ends cleanly.
var terminateMsg = []byte{'X', 0, 0, 0, 4}

// forceGrace is how long Shutdown waits, after closing busy sessions, for
// their goroutines to end before it closes every socket.
const forceGrace = 2 * time.Second

// txState follows whether a session is at a transaction boundary. The
// relay updates it for every client message and every ReadyForQuery; the
// drain reads and changes it from another goroutine. It is one word changed
// by compare-and-swap, so "idle, close it" (drain) and "a request arrives,
// forward it" (request) cannot both win.
type txState struct{ v atomic.Uint64 }

const (
	txDrained   = 1 << iota // closed by the drain: nothing more is forwarded
	txDraining              // close at the next transaction boundary
	txForced                // closed at the deadline, busy or not
	txGroupOpen             // extended-protocol messages since the last Sync
	txInBlock               // the last ReadyForQuery said 'T' or 'E'
	// Bits from txShift up count the requests that ReadyForQuery answers
	// (Query, FunctionCall, Sync) not answered yet.
	txShift = 8
)

func txIdle(v uint64) bool { return v&(txGroupOpen|txInBlock) == 0 && v>>txShift == 0 }

// request records a client message of type t about to be forwarded. False:
// the session has been drained and t must not go out.
func (s *txState) request(t byte) bool {
	for {
		old := s.v.Load()
		if old&txDrained != 0 {
			return false
		}
		v := old
		switch t {
		case 'Q', 'F':
			v += 1 << txShift
		case 'S':
			v = (v + 1<<txShift) &^ txGroupOpen
		case 'P', 'B', 'D', 'E', 'C':
			v |= txGroupOpen
		}
		if s.v.CompareAndSwap(old, v) {
			return true
		}
	}
}

// ready records a ReadyForQuery with transaction status status. True: the
// session was draining and is now idle, so it has just been drained; the
// caller ends it.
func (s *txState) ready(status byte) bool {
	for {
		old := s.v.Load()
		v := old
		if v>>txShift > 0 {
			v -= 1 << txShift
		}
		if status == 'I' {
			v &^= txInBlock
		} else {
			v |= txInBlock
		}
		now := v&txDraining != 0 && v&txDrained == 0 && txIdle(v)
		if now {
			v |= txDrained
		}
		if s.v.CompareAndSwap(old, v) {
			return now
		}
	}
}

// drain asks for the session to end at its next transaction boundary. True:
// that is now (it was idle), and the caller must wake the relay.
func (s *txState) drain() bool {
	for {
		old := s.v.Load()
		v := old | txDraining
		now := old&txDrained == 0 && txIdle(v)
		if now {
			v |= txDrained
		}
		if s.v.CompareAndSwap(old, v) {
			return now
		}
	}
}

// force ends the session now, busy or not. True unless it was drained
// already.
func (s *txState) force() bool {
	old := s.v.Or(txDraining | txDrained | txForced)
	return old&txDrained == 0
}

func (s *txState) drained() bool { return s.v.Load()&txDrained != 0 }
func (s *txState) forced() bool  { return s.v.Load()&txForced != 0 }

// busy reports whether a request is in flight (answers are due), so that a
// client vanishing now leaves a query to cancel.
func (s *txState) busy() bool {
	v := s.v.Load()
	return v>>txShift > 0 || v&txGroupOpen != 0
}

// fastDrainer is a session on the fast relay, which the drain reaches
// through its loop.
type fastDrainer interface{ drain() }

// onFast records that the session now runs on the fast relay; true when the
// drain has already woken it (the fast relay must check it at once).
func (ss *session) onFast(f fastDrainer) bool {
	ss.drainMu.Lock()
	defer ss.drainMu.Unlock()
	ss.fast = f
	return ss.woken
}

// drainSet is the sessions a drain must reach.
type drainSet struct {
	mu       sync.Mutex
	started  bool
	sessions map[*session]struct{}
}

// join adds a session that has just authenticated; false when the drain has
// begun (the session is to be closed before it starts).
func (d *drainSet) join(ss *session) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return false
	}
	if d.sessions == nil {
		d.sessions = make(map[*session]struct{})
	}
	d.sessions[ss] = struct{}{}
	return true
}

func (d *drainSet) leave(ss *session) {
	d.mu.Lock()
	delete(d.sessions, ss)
	d.mu.Unlock()
}

// begin marks the drain as started and returns the sessions running.
func (d *drainSet) begin() []*session {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = true
	return d.list()
}

func (d *drainSet) isStarted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started
}

func (d *drainSet) running() []*session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.list()
}

func (d *drainSet) list() []*session {
	out := make([]*session, 0, len(d.sessions))
	for ss := range d.sessions {
		out = append(out, ss)
	}
	return out
}

// Shutdown drains the server: it stops accepting, closes idle sessions with
// 57P01 at once and busy ones as soon as they reach a transaction boundary.
// When ctx ends first, the sessions still busy are closed with 57P01 (their
// queries cancelled). It returns once every connection has ended: nil, or
// ctx's error when busy sessions had to be closed.
//
// Connections still logging in finish their login and are then closed with
// 57P01 (or refused with 57P03 after SetNotReady); sockets that never send
// a StartupMessage end at limits.login_timeout or at ctx's end.
func (s *Server) Shutdown(ctx context.Context) error {
	running := s.drain.begin() // before the listener closes: Serve then returns nil
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	s.log.Info("draining: idle sessions are closed now, busy ones at their next transaction boundary", zap.Int("sessions", len(running)))
	for _, ss := range running {
		if ss.tx.drain() {
			ss.wake(false)
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.log.Info("drained: every session has ended")
		return nil
	case <-ctx.Done():
	}
	busy := s.drain.running()
	s.log.Warn("shutdown deadline reached: closing the sessions still busy", zap.Int("sessions", len(busy)))
	for _, ss := range busy {
		if ss.tx.force() {
			ss.wake(true)
		}
	}
	select {
	case <-done:
	case <-time.After(forceGrace):
	}
	s.Close()
	return ctx.Err()
}

// wake makes the relay of a drained session notice: the fast relay checks it
// under its loop's lock; the goroutine relay's server loop is woken from its
// read (a deadline in the past), says goodbye at the message boundary it is
// at and ends the session. A forced session's client writes are cut short
// too, in case the server loop is blocked on a client that does not read.
func (ss *session) wake(forced bool) {
	ss.drainMu.Lock()
	ss.woken = true
	fast := ss.fast
	ss.drainMu.Unlock()
	if fast != nil {
		fast.drain()
		return
	}
	past := time.Unix(1, 0)
	_ = ss.server.SetReadDeadline(past)
	if forced {
		_ = ss.client.SetWriteDeadline(past)
	}
}

// sayGoodbye ends a drained session at a message boundary, from the
// goroutine that owns w (toClient): the client reads 57P01; the server gets
// a Terminate unless the session was forced closed while busy (then the
// client loop may be writing to it, and the closing connection ends the
// backend, its query cancelled).
func (ss *session) sayGoodbye(w *bufio.Writer) {
	_ = ss.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = w.Write(shutdownFatal)
	_ = w.Flush()
	if !ss.tx.forced() {
		_ = ss.server.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = ss.server.Write(terminateMsg)
	}
}
