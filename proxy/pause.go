package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
)

// PAUSE and RESUME (the console's commands) hold the sessions of a database
// at a transaction boundary, for a schema change that must not race with
// the application's writes (docs/lifecycle.md).
//
// While a database is paused, a session of it that is between transactions
// (its last ReadyForQuery said 'I' and every request is answered) does not
// pass its next message on: the message waits, unread on the fast relay or
// read but held on the goroutine relay, until RESUME. Sessions inside a
// transaction go on until it ends (COMMIT or ROLLBACK answered), then wait
// at their next message; queries running when PAUSE came finish. Nothing
// is refused, and answers already on their way still reach the client. New
// sessions log in, then wait at their first statement.

// pauses are the databases paused now. A gate is made for each database a
// session logs in to and kept: sessions hold theirs.
type pauses struct {
	srv   *Server
	mu    sync.Mutex
	all   bool // PAUSE without a database: gates made from now on start paused
	gates map[string]*gate
}

// gate is one database's pause.
type gate struct {
	db     string
	paused atomic.Bool
	mu     sync.Mutex
	// resumed is closed by RESUME; a new one is made by PAUSE.
	resumed chan struct{}
}

func (p *pauses) init(s *Server) {
	p.srv = s
	p.gates = make(map[string]*gate)
}

// gate returns db's gate, made on first use.
func (p *pauses) gate(db string) *gate {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gates[db]
	if g == nil {
		g = &gate{db: db, resumed: make(chan struct{})}
		close(g.resumed)
		p.gates[db] = g
		if p.all {
			p.pauseLocked(g)
		} else {
			p.srv.ops.paused.WithLabelValues(db).Set(0)
		}
	}
	return g
}

func (p *pauses) pauseLocked(g *gate) {
	g.mu.Lock()
	if !g.paused.Load() {
		g.resumed = make(chan struct{})
		g.paused.Store(true)
	}
	g.mu.Unlock()
	p.srv.ops.paused.WithLabelValues(g.db).Set(1)
}

func (p *pauses) resumeLocked(g *gate) {
	g.mu.Lock()
	if g.paused.Load() {
		g.paused.Store(false)
		close(g.resumed)
	}
	g.mu.Unlock()
	p.srv.ops.paused.WithLabelValues(g.db).Set(0)
}

// wait blocks while g is paused, until RESUME or done is closed; it reports
// whether the session may go on.
func (g *gate) wait(done <-chan struct{}) bool {
	for g.paused.Load() {
		g.mu.Lock()
		ch := g.resumed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
	return true
}

// Pause pauses database db, or every database when db is "" (sessions that
// log in later to any database included). It returns at once; Quiet says
// when no session of the paused databases is inside a transaction any
// more.
func (s *Server) Pause(db string) {
	p := &s.pauses
	p.mu.Lock()
	defer p.mu.Unlock()
	if db == "" {
		p.all = true
		for _, g := range p.gates {
			p.pauseLocked(g)
		}
		return
	}
	g := p.gates[db]
	if g == nil {
		g = &gate{db: db}
		p.gates[db] = g
	}
	p.pauseLocked(g)
}

// Resume ends the pause of db, or of every database when db is "", and
// lets the sessions held go on.
func (s *Server) Resume(db string) {
	p := &s.pauses
	p.mu.Lock()
	if db == "" {
		p.all = false
		for _, g := range p.gates {
			p.resumeLocked(g)
		}
	} else if g := p.gates[db]; g != nil {
		p.resumeLocked(g)
	}
	p.mu.Unlock()
	s.fast.unpark()
}

// Paused lists the databases paused now, sorted; all reports a PAUSE of
// every database.
func (s *Server) Paused() (dbs []string, all bool) {
	p := &s.pauses
	p.mu.Lock()
	defer p.mu.Unlock()
	for db, g := range p.gates {
		if g.paused.Load() {
			dbs = append(dbs, db)
		}
	}
	slices.Sort(dbs)
	return dbs, p.all
}

// Unpaused lists the sessions of paused databases that are not held yet:
// inside a transaction, or with a request in flight. PAUSE waits until it
// is empty.
func (s *Server) Unpaused() []ClientInfo {
	var out []ClientInfo
	for _, ss := range s.clients.list() {
		if ss.gate != nil && ss.gate.paused.Load() && !ss.atBoundary() {
			out = append(out, ss.describe())
		}
	}
	return out
}

// holdIfPaused is called by the client loop when a message arrives at a
// transaction boundary: it waits while the session's database is paused.
// It returns false when the session ended meanwhile.
func (ss *session) holdIfPaused() bool {
	g := ss.gate
	if g == nil || !g.paused.Load() || !ss.atBoundary() {
		return true
	}
	ss.waiting.Store(true)
	ss.srv.ops.pausedClients.Inc()
	defer func() {
		ss.waiting.Store(false)
		ss.srv.ops.pausedClients.Dec()
	}()
	return g.wait(ss.ended)
}
