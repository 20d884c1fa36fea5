package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// session is the engine of one client session: the proxy.Hook the relay
// passes the session's messages through. Its state (cloak) is shared by the
// two relay loops; see state.go for who owns what.
type session struct {
	prot *Protector
	// rs is the rule set the session keeps until it ends (reload.go);
	// pinned while it counts as a user of it.
	rs     *ruleSet
	pinned atomic.Bool
	log    *zap.Logger
	info   proxy.SessionInfo
	// user is the session user, for $user in search_path.
	user  string
	cloak *cloak
	// guard is the session's access and audit state (access.go), made
	// when the session is authenticated; backendPID and started identify
	// the session in audit records.
	guard      *sessionGuard
	backendPID uint32
	started    time.Time

	// The writers toward each peer, as the relay hands them in (always the
	// same two): toServer is used by the client loop only, toClient by the
	// server loop only.
	toServer, toClient *bufio.Writer
}

var _ proxy.Hook = (*session)(nil)

// StartupMessage implements proxy.Hook: ParameterStatus during
// authentication sets the settings that shape values.
func (ss *session) StartupMessage(t wire.ServerMsg, msg []byte) {
	if t == wire.ParameterStatus {
		ss.parameterStatus(msg)
	}
	if t == wire.BackendKeyData && len(msg) >= wire.HeaderLen+4 {
		ss.backendPID = binary.BigEndian.Uint32(msg[wire.HeaderLen:])
	}
}

// ClientWants implements proxy.Hook: the messages that carry SQL, values or
// protocol state, and COPY data while a COPY of a protected table runs.
func (ss *session) ClientWants(t wire.ClientMsg) bool {
	c := ss.cloak
	if c.describeNext != nil {
		return true // the injected Describe goes before whatever comes next
	}
	switch t {
	case wire.Query, wire.Parse, wire.Bind, wire.Describe, wire.Execute, wire.Close, wire.Sync, wire.FunctionCall:
		return true
	case wire.CopyDataIn, wire.CopyDoneIn, wire.CopyFail:
		return c.copyIn != nil || c.dropCopy
	}
	return false
}

// ClientMessage implements proxy.Hook.
func (ss *session) ClientMessage(t wire.ClientMsg, m []byte, w *bufio.Writer) error {
	ss.toServer = w
	c := ss.cloak
	defer c.trimClient()
	if c.describeNext != nil && t != wire.Describe {
		if err := ss.describeParsed(); err != nil {
			return err
		}
	}
	switch t {
	case wire.CopyDataIn, wire.CopyDoneIn, wire.CopyFail:
		if c.copyIn != nil {
			return ss.copyData(byte(t), m)
		}
		if c.dropCopy {
			// COPY data behind a refused request (pgx sends it without
			// waiting for CopyInResponse; the server, which skips to the
			// next Sync, would ignore it): it must not reach the server.
			return nil
		}
	case wire.Query, wire.Parse, wire.Bind, wire.Describe, wire.Execute, wire.Close, wire.Sync, wire.FunctionCall:
		// A catalog refresh may have made a new protection: statements
		// are planned against the newest (the client loop owns c.p).
		if p := ss.rs.prot.Load(); p != nil {
			c.p = p
		}
		return ss.clientMessage(byte(t), m)
	}
	_, err := w.Write(m)
	return err
}

// ClientRefused implements proxy.Hook: a message the relay could not hold
// whole is answered with err where the server's answer would have been, as
// pgcloak's own refusals are: a Query (or FunctionCall), Parse or Bind bound
// to fail goes to the server in its place, keeping the pipeline in step, and
// COPY data fails its COPY. Other messages (never large from a sane client)
// end the session.
func (ss *session) ClientRefused(t wire.ClientMsg, head []byte, err error, w *bufio.Writer) error {
	ss.toServer = w
	c := ss.cloak
	switch t {
	case wire.CopyDataIn:
		if st := c.copyIn; st != nil && !st.failed {
			return ss.failCopy(st, err)
		}
		return nil // dropped like the rest of a refused COPY's data
	case wire.Query, wire.FunctionCall, wire.Parse, wire.Bind:
	default:
		return err
	}
	if c.describeNext != nil {
		if derr := ss.describeParsed(); derr != nil {
			return derr
		}
	}
	if p := ss.rs.prot.Load(); p != nil {
		c.p = p
	}
	if gerr := ss.startGroup(); gerr != nil {
		return gerr
	}
	// A Parse starts with its statement's name, a Bind with its portal's.
	name, ok := "", false
	if len(head) > wire.HeaderLen {
		if i := bytes.IndexByte(head[wire.HeaderLen:], 0); i >= 0 {
			name, ok = string(head[wire.HeaderLen:wire.HeaderLen+i]), true
		}
	}
	switch {
	case t == wire.Query || t == wire.FunctionCall:
		return ss.refuseQuery(err)
	case !ok:
		return err // a name longer than the head: end the session
	case t == wire.Parse:
		return ss.refuseParse(name, err)
	default:
		return ss.refuseBind(name, err)
	}
}

// ClientGone implements proxy.Hook: a COPY FROM whose client went away is
// failed, so the server stores none of it.
func (ss *session) ClientGone(w *bufio.Writer) {
	ss.toServer = w
	ss.abandonCopy()
}

// ServerWants implements proxy.Hook: answers to pending requests, rows that
// hold protected (or unattributed bytea) columns, and COPY TO data of a
// protected table; while decrypted rows are held back (pipeline.go), every
// message, so that none overtakes them.
func (ss *session) ServerWants(t wire.ServerMsg) bool {
	c := ss.cloak
	switch t {
	case wire.DataRow:
		if c.cur == nil {
			c.cur = c.currentRows()
		}
		return c.cur != nil && (c.cur.protected || c.cur.scan)
	case wire.CopyDataOut, wire.CopyDoneOut:
		return c.copyOut != nil
	case wire.CopyOutResponse, wire.RowDescription, wire.ParameterDescription, wire.NoData, wire.ParseComplete,
		wire.BindComplete, wire.CloseComplete, wire.CommandComplete, wire.EmptyQueryResponse, wire.PortalSuspended,
		wire.ErrorResponse, wire.ReadyForQuery, wire.ParameterStatus:
		return true
	}
	return c.rows.holding()
}

// ServerGone implements proxy.Hook: a client loop waiting for an answer
// stops waiting. The session is over: it no longer holds its rule set.
func (ss *session) ServerGone() {
	ss.endResult(nil, true) // rows sent before the end are recorded
	ss.unpin()
	c := ss.cloak
	c.rows.endStreak()
	c.mu.Lock()
	c.closed = true
	c.answered.Broadcast()
	c.mu.Unlock()
}

// ServerMessage implements proxy.Hook.
func (ss *session) ServerMessage(t wire.ServerMsg, m []byte, w *bufio.Writer) error {
	ss.toClient = w
	c := ss.cloak
	defer c.trimServer()
	if t != wire.DataRow {
		if err := ss.rowsPause(w); err != nil { // rows held go first
			return err
		}
	}
	switch t {
	case wire.DataRow:
		if !c.cur.protected {
			if err := scanRow(c.cur, m); err != nil {
				return err
			}
			_, err := w.Write(m)
			return err
		}
		return ss.protectedRow(c.cur, m, w)
	case wire.CopyOutResponse:
		c.mu.Lock()
		if head := c.q.peek(); head != nil && head.copy != nil && !head.copy.plan.From {
			c.copyOut = head.copy
		}
		c.mu.Unlock()
		_, err := w.Write(m)
		return err
	case wire.CopyDataOut, wire.CopyDoneOut:
		return ss.copyOutData(byte(t), m)
	}
	out, err := ss.serverMessage(byte(t), m)
	if err != nil {
		return err
	}
	if out != nil {
		_, err = w.Write(out)
	}
	return err
}
