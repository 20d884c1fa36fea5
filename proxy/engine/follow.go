package engine

import (
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// pgcloak follows the session as the server sees it. Two things decide how a
// statement is planned: the settings in force (search_path, and the settings
// that shape values) and the prepared statements the session has. Both
// change only when the server says so:
//
//   - The server loop keeps the committed state. It applies a request's
//     changes when the server confirms it: ParseComplete for a Parse,
//     CloseComplete for a Close, each CommandComplete for the statements of
//     a Query or an executed portal (SET, RESET, BEGIN, COMMIT, savepoints,
//     PREPARE, DEALLOCATE …), an ErrorResponse (the innermost transaction
//     level is aborted, the rest of the group is skipped), and
//     ReadyForQuery (an implicit transaction ends; its status is the
//     server's word on the transaction).
//   - The client loop plans with a view: the committed state plus the
//     changes of the group it is sending (the messages up to a Sync, or one
//     Query), which it applies as if they succeed. If one fails, the server
//     skips the rest of the group, so nothing was planned on a change that
//     did not happen.
//   - A change made in an earlier group is not known to have happened until
//     that group is answered. A message that depends on one (a Bind of a
//     statement whose Parse is still unanswered in an earlier group, any
//     planning after an unanswered SET) waits for the answer first. Clients
//     that wait for results between groups (almost all) never wait here.
//
// What the server does inside functions (set_config in a function body,
// PREPARE in a DO block) is not seen; docs/failclosed.md says what that
// means and why the database's backstop makes it safe.

// errSessionClosed ends a wait of the client loop when the server loop has
// ended.
var errSessionClosed = errors.New("session closed")

// stmtChange is a prepared statement that a request defines (st) or removes
// (st nil; all: every one) once the server confirms it. stmtIndex is the
// statement of a Query that makes it (0 for protocol messages).
type stmtChange struct {
	stmtIndex int
	name      string
	st        *statement
	all       bool
}

// lookupStatement returns the prepared statement called name as the server
// will have it when the message being planned runs, waiting first when an
// earlier group's unanswered request changes it. Client loop only.
func (ss *session) lookupStatement(name string) (*statement, error) {
	c := ss.cloak
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		st, pending, current := c.pendingStatement(name)
		if !pending {
			return c.stmts[name], nil
		}
		if current {
			return st, nil
		}
		if err := ss.waitLocked(); err != nil {
			return nil, err
		}
	}
}

// pendingStatement looks for the newest unanswered change of name: found
// reports whether there is one, current whether it is in the group being
// sent (then st is the statement it defines, nil if it removes it).
// Called with mu held.
func (c *cloak) pendingStatement(name string) (st *statement, found, current bool) {
	for i := len(c.q.items) - 1; i >= c.q.head; i-- {
		e := &c.q.items[i]
		for j := len(e.changes) - 1; j >= 0; j-- {
			ch := &e.changes[j]
			if ch.all || ch.name == name {
				return ch.st, true, e.group == c.group
			}
		}
	}
	return nil, false, false
}

// waitLocked waits, with mu held, until the server loop has answered a
// group: what the client sent is flushed first, so the answer can come.
// mu is let go during the flush; an answer that arrives then counts, so
// the caller rechecks its condition instead of waiting for a later answer
// that may never come (nothing more is sent until it returns).
func (ss *session) waitLocked() error {
	c := ss.cloak
	seen := c.answers
	c.mu.Unlock()
	err := ss.toServer.Flush()
	c.mu.Lock()
	if err != nil {
		return err
	}
	for c.answers == seen && !c.closed {
		c.answered.Wait()
	}
	if c.closed {
		return errSessionClosed
	}
	return nil
}

// syncView brings the client loop's view of the settings up to date at the
// start of a group: it waits while an earlier group with settings changes is
// unanswered, then takes the committed settings if they changed. Client
// loop only.
func (ss *session) syncView() error {
	c := ss.cloak
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.settingsInflight > 0 {
		if err := ss.waitLocked(); err != nil {
			return err
		}
	}
	if c.viewVersion != c.version {
		c.view = c.settings.Clone()
		c.fmtClient = c.fmtCommitted
		c.viewVersion = c.version
	}
	return nil
}

// startGroup is called before the client loop plans the first message of a
// group.
func (ss *session) startGroup() error {
	c := ss.cloak
	if c.groupOpen {
		return nil
	}
	c.groupOpen, c.groupSettings, c.dropCopy = true, false, false
	return ss.syncView()
}

// endGroup is called when the client loop has sent a Sync or a Query: the
// group is closed; the entry it pushed (last) records whether it changed
// settings, so later groups wait for its answer.
func (ss *session) endGroupLocked(e *pending) {
	c := ss.cloak
	if c.groupSettings {
		e.settingsGroup = true
		c.settingsInflight++
	}
	c.group++
	c.groupOpen, c.groupSettings = false, false
}

// applyView applies, in the client loop's view, the effects of a statement
// that will run in the group being sent.
func (ss *session) applyView(effects []sqlplan.Effect) {
	c := ss.cloak
	for _, e := range effects {
		switch e.Kind {
		case sqlplan.EffectPrepare, sqlplan.EffectDeallocate, sqlplan.EffectDeallocateAll:
			continue // statement changes travel with their request
		case sqlplan.EffectBegin, sqlplan.EffectCommit, sqlplan.EffectRollback, sqlplan.EffectSavepoint,
			sqlplan.EffectRelease, sqlplan.EffectRollbackTo:
			// Transaction levels change values only when some are set
			// at a level now.
			if c.view.Stacked() {
				c.groupSettings = true
			}
		default:
			c.groupSettings = true
		}
		c.view.Apply([]sqlplan.Effect{e})
		if e.Kind == sqlplan.EffectSet || e.Kind == sqlplan.EffectSetLocal {
			_ = c.fmtClient.Set(e.Name, e.Value)
		} else {
			refreshFmt(&c.fmtClient, c.view)
		}
	}
}

// refreshFmt sets the unreported settings that shape values from settings.
func refreshFmt(f *values.Session, s *sqlplan.Settings) {
	for _, name := range [...]string{sqlplan.ByteaOutput, sqlplan.ExtraFloatDigits} {
		if v, ok := s.Get(name); ok {
			_ = f.Set(name, v)
		}
	}
}

// applyCommitted applies, in the committed state, the effects of statement i
// of request e that the server confirmed. Server loop, mu held.
func (ss *session) applyCommittedLocked(e *pending, i int, effects []sqlplan.Effect) {
	c := ss.cloak
	if len(effects) > 0 {
		c.settings.Apply(effects)
		refreshFmt(&c.fmtCommitted, c.settings)
		c.version++
	}
	for _, ch := range e.changes {
		if ch.stmtIndex == i {
			c.commitChangeLocked(ch)
		}
	}
}

// commitChangeLocked makes a confirmed statement change. mu held.
func (c *cloak) commitChangeLocked(ch stmtChange) {
	switch {
	case ch.all:
		clear(c.stmts)
	case ch.st == nil:
		delete(c.stmts, ch.name)
	default:
		c.stmts[ch.name] = ch.st
	}
}

// failedLocked applies an ErrorResponse to the committed settings. mu held.
func (c *cloak) failedLocked() {
	c.settings.Failed()
	// A rollback may undo a SET of the settings that shape values.
	refreshFmt(&c.fmtCommitted, c.settings)
	c.version++
}

// readyLocked applies a ReadyForQuery to the committed settings and wakes
// the client loop if it waits. mu held.
func (ss *session) readyLocked(status byte, answered *pending) {
	c := ss.cloak
	c.settings.EndImplicit()
	c.settings.Sync(status)
	c.version++
	if answered != nil && answered.settingsGroup {
		c.settingsInflight--
	}
	c.answers++
	c.answered.Broadcast()
}

// observeParameter applies a ParameterStatus: the server's word on a
// reported setting. Server loop (or the session goroutine at startup).
func (ss *session) observeParameter(name, value string) {
	c := ss.cloak
	c.mu.Lock()
	defer c.mu.Unlock()
	lower := strings.ToLower(name)
	c.settings.Observe(lower, value)
	_ = c.fmtCommitted.Set(lower, value)
	c.version++
}

// settingsQuery asks the server for the settings it does not report, at the
// start of the session: their values then are also what RESET returns to,
// whatever set them (the server's configuration, ALTER ROLE or DATABASE …
// SET, the startup packet's options and parameters, in PostgreSQL's order).
const settingsQuery = "SELECT /* pgcloak: session settings */ pg_catalog.current_setting('search_path'), " +
	"pg_catalog.current_setting('bytea_output'), pg_catalog.current_setting('extra_float_digits')"

// Started implements proxy.Hook: it pins the session to its rule set
// (reload.go) and reads the settings the server does not report, so that
// pgcloak starts with the session's real values.
func (ss *session) Started(x proxy.Exchange) error {
	ss.acquire()
	ss.pinned.Store(true)
	if err := ss.startGuard(); err != nil {
		ss.unpin()
		return err
	}
	if err := ss.readSettings(x); err != nil {
		ss.unpin()
		return err
	}
	return nil
}

// readSettings runs settingsQuery.
func (ss *session) readSettings(x proxy.Exchange) error {
	if err := x.Send(wire.AppendQuery(nil, settingsQuery)); err != nil {
		return err
	}
	var vals []string
	for {
		t, m, err := x.Receive()
		if err != nil {
			return err
		}
		switch t {
		case wire.DataRow:
			r, n, err := wire.ReadRow(m)
			if err != nil {
				return err
			}
			for range n {
				v, null, err := r.Next()
				if err != nil {
					return err
				}
				if null {
					vals = append(vals, "")
				} else {
					vals = append(vals, string(v))
				}
			}
		case wire.ErrorResponse:
			ss.log.Warn("could not read the session's settings; pgcloak assumes PostgreSQL's defaults")
		case wire.ParameterStatus:
			ss.StartupMessage(t, m)
		case wire.ReadyForQuery:
			if len(vals) == 3 {
				c := ss.cloak
				c.mu.Lock()
				for i, name := range [...]string{sqlplan.SearchPath, sqlplan.ByteaOutput, sqlplan.ExtraFloatDigits} {
					c.settings.Start(name, vals[i])
				}
				refreshFmt(&c.fmtCommitted, c.settings)
				c.version++
				c.mu.Unlock()
			}
			ss.log.Debug("session settings", zap.Strings("values", vals))
			return nil
		}
	}
}
