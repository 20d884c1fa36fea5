package proxy

import (
	"encoding/binary"
	"slices"
	"sync"
	"time"
)

// clients are the sessions that have logged in, by id, for the console
// (SHOW CLIENTS, SHOW SERVERS, KILL) and for PAUSE to know who is inside a
// transaction.
type clients struct {
	mu     sync.Mutex
	nextID uint64
	byID   map[uint64]*session
}

// add gives ss its id and lists it.
func (c *clients) add(ss *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = make(map[uint64]*session)
	}
	c.nextID++
	ss.id = c.nextID
	c.byID[ss.id] = ss
}

func (c *clients) remove(ss *session) {
	c.mu.Lock()
	delete(c.byID, ss.id)
	c.mu.Unlock()
}

// list returns the sessions, by id.
func (c *clients) list() []*session {
	c.mu.Lock()
	out := make([]*session, 0, len(c.byID))
	for _, ss := range c.byID {
		out = append(out, ss)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b *session) int { return int(a.id - b.id) })
	return out
}

func (c *clients) get(id uint64) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

// atBoundary reports whether the session is between transactions with
// nothing in flight: where PAUSE holds it.
func (ss *session) atBoundary() bool {
	return !ss.tx.busy() && ss.txStatus.Load() == 'I'
}

// ClientInfo describes a client session (the console's SHOW CLIENTS and
// SHOW SERVERS).
type ClientInfo struct {
	ID              uint64
	User, Database  string
	ApplicationName string
	ClientAddr      string
	TLS             bool
	Since           time.Time
	State           string // active, idle, idle in transaction, idle in failed transaction, paused
	Encrypting      bool   // the encryption engine sees the session's messages
	Upstream        string // the upstream address (with " (TLS)")
	BackendPID      uint32 // PostgreSQL's process ID (BackendKeyData)
}

// Clients lists the sessions that have logged in, by id.
func (s *Server) Clients() []ClientInfo {
	var out []ClientInfo
	for _, ss := range s.clients.list() {
		out = append(out, ss.describe())
	}
	return out
}

func (ss *session) describe() ClientInfo {
	ci := ClientInfo{
		ID:              ss.id,
		User:            ss.info.User,
		Database:        ss.info.Database,
		ApplicationName: ss.info.ApplicationName,
		ClientAddr:      ss.info.ClientAddr,
		TLS:             ss.info.TLS,
		Since:           ss.started,
		Encrypting:      ss.hook != nil,
		Upstream:        ss.target.String(),
	}
	if len(ss.cancelKey) >= 4 {
		ci.BackendPID = binary.BigEndian.Uint32([]byte(ss.cancelKey[:4]))
	}
	switch {
	case ss.waiting.Load():
		ci.State = "paused"
	case ss.tx.busy():
		ci.State = "active"
	case ss.txStatus.Load() == 'T':
		ci.State = "idle in transaction"
	case ss.txStatus.Load() == 'E':
		ci.State = "idle in failed transaction"
	default:
		ci.State = "idle"
	}
	return ci
}

// Kill ends the session with id as if its connections had dropped (a query
// in flight is cancelled upstream). It reports whether there was one.
func (s *Server) Kill(id uint64) bool {
	ss := s.clients.get(id)
	if ss == nil {
		return false
	}
	if e := ss.ender.Load(); e != nil {
		(*e).Close()
	}
	ss.close()
	return true
}

// KillDatabase ends every session of database db, as Kill does, and
// returns how many there were.
func (s *Server) KillDatabase(db string) int {
	n := 0
	for _, ss := range s.clients.list() {
		if ss.info.Database == db && s.Kill(ss.id) {
			n++
		}
	}
	return n
}
