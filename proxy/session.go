package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Buffer sizes per direction. A message that does not fit the read buffer is
// streamed through in chunks (or, when a hook wants it whole, read into a
// scratch buffer), so these bound memory per connection whatever the result
// or COPY size.
const (
	readBufSize  = 32 << 10
	writeBufSize = 32 << 10
)

// session relays one client connection to its upstream connection.
//
// After authentication two goroutines run: the one that called runSession
// reads the client and writes the server (clientLoop), another reads the
// server and writes the client (serverLoop). Each owns its reader, the writer
// it writes to and its buffer for large messages; nothing else is shared but
// tx (and what the hook synchronizes itself).
type session struct {
	srv    *Server
	log    *zap.Logger
	client net.Conn
	server net.Conn
	target upstreamTarget
	info   SessionInfo

	fromClient *wire.Reader // flushes toServer before blocking
	fromServer *wire.Reader // flushes toClient before blocking
	toClient   *bufio.Writer
	toServer   *bufio.Writer
	c2s, s2c   dirStats

	// hook sees the messages it wants; nil: plain relay. idler is the
	// hook, if it may hold server messages back.
	hook  Hook
	idler ServerIdler
	// maxBody is limits.max_message_bytes (less the length field) as it
	// was when the session started: a reload changes it for new sessions.
	maxBody int

	// cancelKey is BackendKeyData's process ID and secret key as sent by
	// PostgreSQL; CancelRequests carrying it are forwarded to this session.
	cancelKey string

	// tx follows requests and transaction boundaries, so a client that
	// vanishes mid-query gets its query cancelled rather than left running,
	// and the drain at shutdown closes the session only between
	// transactions (drain.go).
	tx txState
	// drainMu guards woken (the drain has woken the session) and fast (the
	// fast relay runs it).
	drainMu sync.Mutex
	woken   bool
	fast    fastDrainer

	// For the console and PAUSE (clients.go, pause.go): the id and start
	// of the session, the transaction status of the last ReadyForQuery,
	// whether PAUSE holds it, its database's gate, and what ends it on the
	// fast relay (nil on the goroutine relay).
	id       uint64
	started  time.Time
	txStatus atomic.Uint32
	waiting  atomic.Bool
	gate     *gate
	ender    atomic.Pointer[io.Closer]

	closeOnce sync.Once
	ended     chan struct{} // closed by close
}

// runSession connects upstream, relays authentication and then the session.
func (s *Server) runSession(client net.Conn, startup []byte, info SessionInfo, start time.Time, conf *live, lg *login) {
	log := s.log.With(zap.Stringer("client", client.RemoteAddr()), zap.String("user", info.User), zap.String("database", info.Database))
	var hook Hook
	if s.hooks != nil && !info.console {
		h, err := s.hooks.Session(info)
		if err != nil {
			s.metrics.connsRejected.WithLabelValues("not_ready").Inc()
			_, _ = client.Write(pgerr.Response(nil, pgerr.SeverityFatal, err))
			return
		}
		hook = h
	}
	ctx, cancel := context.WithDeadline(context.Background(), s.loginDeadline(start))
	server, target, err := conf.connector.connect(ctx)
	cancel()
	if err != nil {
		s.metrics.errors.WithLabelValues("upstream_connect").Inc()
		log.Warn("cannot connect to upstream", zap.Error(err))
		_, _ = client.Write(fatal(pgerrcode.SQLClientUnableToEstablishSQLConnection, "cannot connect to upstream PostgreSQL: "+err.Error()))
		return
	}
	if !s.track(server) {
		server.Close()
		return
	}
	defer s.untrack(server)
	_ = server.SetDeadline(s.loginDeadline(start))

	ss := &session{srv: s, log: log, client: client, server: server, target: target, info: info, hook: hook, started: start, ended: make(chan struct{}),
		maxBody: int(conf.cfg.Limits.MaxMessageBytes) - 4}
	ss.toClient = bufio.NewWriterSize(client, writeBufSize)
	ss.toServer = bufio.NewWriterSize(server, writeBufSize)
	ss.fromClient = wire.NewReader(client, ss.toServer, readBufSize)
	ss.fromServer = wire.NewReader(server, ss.toClient, readBufSize)
	ss.c2s, ss.s2c = s.metrics.direction("client_to_server"), s.metrics.direction("server_to_client")
	ss.fromClient.Stats, ss.fromServer.Stats = ss.c2s, ss.s2c
	defer ss.close()

	if _, err := ss.server.Write(startup); err != nil {
		log.Info("upstream write failed", zap.Error(err))
		return
	}
	ready, err := ss.authenticate()
	if !ready {
		ss.endStartup(err)
		return
	}
	if !lg.authenticated() {
		// Authenticated, but max_client_connections sessions already run
		// (they filled up while this one logged in).
		s.metrics.connsRejected.WithLabelValues("too_many").Inc()
		_, _ = ss.server.Write(terminateMsg)
		ss.writeClientFatal(pgerr.New(pgerrcode.TooManyConnections, "sorry, too many clients already"))
		return
	}
	if info.console {
		s.serveConsole(ss)
		return
	}
	if hook != nil {
		x := &exchange{ss: ss, large: wire.Large{Budget: &s.guard.budget}}
		err := hook.Started(x)
		x.large.Release()
		if err != nil {
			ss.endStartup(err)
			ss.writeClientFatal(err)
			return
		}
	}
	_ = client.SetDeadline(time.Time{})
	_ = server.SetDeadline(time.Time{})
	s.metrics.startupSeconds.Observe(time.Since(start).Seconds())
	log.Debug("session ready", zap.Stringer("upstream", target))

	s.register(ss)
	defer s.unregister(ss)
	if !s.drain.join(ss) {
		ss.sayGoodbye(ss.toClient) // shutting down: no new sessions
		return
	}
	defer s.drain.leave(ss)
	ss.txStatus.Store('I')
	ss.gate = s.pauses.gate(info.Database)
	s.clients.add(ss)
	defer s.clients.remove(ss)
	if hook == nil && !info.TLS && target.tls == nil {
		if busy, ok, err := ss.runFast(); ok {
			if err != nil && !isBenign(err) {
				log.Info("session ended", zap.Error(err))
			}
			if err != nil && busy {
				s.forwardCancel(ss.target, ss.cancelKey)
			}
			return
		}
	}
	if idler, ok := hook.(ServerIdler); ok {
		ss.idler = idler
		ss.fromServer.BeforeWait = ss.serverIdle
	}
	ss.relay()
}

// exchange is the server leg as Hook.Started sees it.
type exchange struct {
	ss    *session
	large wire.Large
}

func (x *exchange) Send(msg []byte) error {
	_, err := x.ss.toServer.Write(msg)
	return err
}

func (x *exchange) Receive() (wire.ServerMsg, []byte, error) {
	if err := x.ss.toServer.Flush(); err != nil {
		return 0, nil, err
	}
	x.large.Release()
	r := x.ss.fromServer
	typ, n, err := r.Header(x.ss.maxBody)
	if err != nil {
		return 0, nil, err
	}
	if !r.Fits(n) {
		m, err := r.LargeMessage(&x.large, n)
		return wire.ServerMsg(typ), m, err
	}
	m, err := r.Message(n)
	return wire.ServerMsg(typ), m, err
}

// endStartup logs why a session ended before its first ReadyForQuery.
func (ss *session) endStartup(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		ss.srv.metrics.errors.WithLabelValues("login_timeout").Inc()
		ss.log.Info("startup not finished within limits.login_timeout", zap.Duration("login_timeout", ss.srv.limits().LoginTimeout))
		return
	}
	if !isBenign(err) {
		ss.log.Info("startup failed", zap.Error(err))
	}
}

// Authentication request codes of AuthenticationXXX messages.
const (
	authOK          = 0
	authCleartext   = 3
	authMD5         = 5
	authGSS         = 7
	authGSSContinue = 8
	authSASL        = 10
	authSASLCont    = 11
	authSASLFinal   = 12
)

// authenticate relays the authentication exchange between client and server
// until ReadyForQuery (ready is true) or an error. PostgreSQL decides; pgcloak
// only removes SCRAM-SHA-256-PLUS from the offered SASL mechanisms: channel
// binding cannot succeed through a proxy that terminates TLS.
func (ss *session) authenticate() (ready bool, err error) {
	for {
		typ, n, err := ss.fromServer.Header(ss.maxBody)
		if err != nil {
			return false, err
		}
		if !ss.fromServer.Fits(n) {
			return false, wire.Protocol("authentication message too large")
		}
		msg, err := ss.fromServer.Message(n)
		if err != nil {
			return false, err
		}
		needReply := false
		switch t := wire.ServerMsg(typ); t {
		case wire.Authentication:
			if len(msg) < wire.HeaderLen+4 {
				return false, wire.Protocol("short authentication message")
			}
			switch binary.BigEndian.Uint32(msg[wire.HeaderLen:]) {
			case authSASL:
				msg = withoutChannelBinding(msg)
				needReply = true
			case authCleartext, authMD5, authGSS, authGSSContinue, authSASLCont:
				needReply = true
			}
		case wire.BackendKeyData:
			ss.cancelKey = string(msg[wire.HeaderLen:])
			if ss.hook != nil {
				ss.hook.StartupMessage(t, msg)
			}
		case wire.ParameterStatus:
			if ss.hook != nil {
				ss.hook.StartupMessage(t, msg)
			}
		case wire.ErrorResponse:
			_, _ = ss.toClient.Write(msg)
			return false, ss.toClient.Flush()
		case wire.ReadyForQuery:
			_, _ = ss.toClient.Write(msg)
			return true, ss.toClient.Flush()
		}
		if _, err := ss.toClient.Write(msg); err != nil {
			return false, err
		}
		if !needReply {
			continue
		}
		if err := ss.toClient.Flush(); err != nil {
			return false, err
		}
		ctyp, cn, err := ss.fromClient.Header(ss.maxBody)
		if err != nil {
			return false, err
		}
		if wire.ClientMsg(ctyp) != wire.Password {
			return false, wire.Protocol("expected a password or SASL response during authentication")
		}
		if saslStarted := typ == 'R' && binary.BigEndian.Uint32(msg[wire.HeaderLen:]) == authSASL; saslStarted && ss.info.TLS && ss.target.tls != nil && ss.fromClient.Fits(cn) {
			if err := ss.checkChannelBinding(cn); err != nil {
				return false, err
			}
		}
		if err := ss.fromClient.Forward(ss.toServer, cn); err != nil {
			return false, err
		}
		if err := ss.toServer.Flush(); err != nil {
			return false, err
		}
	}
}

// errChannelBinding ends a login that PostgreSQL would refuse with a
// confusing message: see checkChannelBinding.
var errChannelBinding = errors.New("channel binding refused")

// checkChannelBinding looks at the client's SASLInitialResponse (header read,
// body length n). A client on a TLS leg that supports channel binding but was
// not offered it sends the GS2 flag 'y'; PostgreSQL, itself on TLS, takes that
// as a downgrade attack and refuses. pgcloak cannot change the flag (the
// SCRAM proof covers it), so it says what to do instead.
func (ss *session) checkChannelBinding(n int) error {
	m, err := ss.fromClient.Peek(wire.HeaderLen + n)
	if err != nil {
		return err
	}
	_, rest, ok := bytes.Cut(m[wire.HeaderLen:], []byte{0}) // mechanism name
	if !ok || len(rest) < 5 || rest[4] != 'y' {
		return nil
	}
	_, _ = ss.toClient.Write(fatal(pgerrcode.InvalidAuthorizationSpecification,
		"SCRAM channel binding cannot pass through pgcloak while it reaches PostgreSQL over TLS: "+
			"set channel_binding=disable in the client's connection settings (the client-to-pgcloak and "+
			"pgcloak-to-PostgreSQL legs are each still protected by TLS)"))
	_ = ss.toClient.Flush()
	return errChannelBinding
}

// withoutChannelBinding rewrites an AuthenticationSASL message so it no longer
// offers SCRAM-SHA-256-PLUS. msg aliases the read buffer; the result may be a
// new slice.
func withoutChannelBinding(msg []byte) []byte {
	const plus = "SCRAM-SHA-256-PLUS"
	body := msg[wire.HeaderLen+4:]
	out := make([]byte, wire.HeaderLen+4, len(msg))
	copy(out, msg[:wire.HeaderLen+4])
	for len(body) > 0 && body[0] != 0 {
		mech, rest, ok := bytes.Cut(body, []byte{0})
		if !ok {
			return msg // malformed: let the client reject it
		}
		if string(mech) != plus {
			out = append(out, mech...)
			out = append(out, 0)
		}
		body = rest
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:], uint32(len(out)-1))
	return out
}

// relay runs both directions until either side goes away, then tears down
// both legs.
func (ss *session) relay() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ss.fromServer.Report() // each reader is owned by its loop
		err := ss.serverLoop()
		if err == errDrained {
			ss.sayGoodbye(ss.toClient)
		}
		if ss.hook != nil {
			ss.hook.ServerGone()
		}
		if !isBenign(err) {
			ss.log.Info("server leg ended", zap.Error(err))
		}
		ss.close()
	}()
	err := ss.clientLoop()
	if err == errDrained {
		<-done // the server loop says goodbye before both legs close
	}
	if err != nil && !isBenign(err) {
		ss.log.Info("client leg ended", zap.Error(err))
	}
	if err != nil && ss.tx.busy() {
		// The client went away with a query in flight; PostgreSQL would
		// run it to the end (it notices a lost client only when it
		// writes). Cancel it the way the client could have.
		ss.srv.forwardCancel(ss.target, ss.cancelKey)
	}
	ss.fromClient.Report()
	ss.close()
	<-done
}

// close closes both legs once.
func (ss *session) close() {
	ss.closeOnce.Do(func() {
		ss.client.Close()
		ss.server.Close()
		close(ss.ended)
	})
}

// clientLoop relays client messages to the server, through the hook for
// the messages it wants. It returns nil when the client terminated cleanly.
func (ss *session) clientLoop() error {
	r, w, hook := ss.fromClient, ss.toServer, ss.hook
	large := wire.Large{Budget: &ss.srv.guard.budget}
	defer large.Release()
	for {
		typ, n, err := r.Header(ss.maxBody)
		if err != nil {
			ss.reportClientError(err)
			if hook != nil {
				hook.ClientGone(w)
				_ = w.Flush()
			}
			return err
		}
		t := wire.ClientMsg(typ)
		if t == wire.Terminate {
			if err := r.Forward(w, n); err != nil {
				return err
			}
			_ = w.Flush()
			return nil
		}
		if !ss.tx.busy() && !ss.holdIfPaused() {
			return net.ErrClosed // ended while PAUSE held it
		}
		if !ss.tx.request(typ) {
			return errDrained
		}
		if hook == nil || !hook.ClientWants(t) {
			if err := r.Forward(w, n); err != nil {
				return err
			}
			continue
		}
		var m []byte
		if r.Fits(n) {
			m, err = r.Message(n)
		} else {
			var refused bool
			m, refused, err = ss.readWhole(&large, t, n)
			if refused {
				continue
			}
		}
		if err != nil {
			hook.ClientGone(w)
			return err
		}
		err = hook.ClientMessage(t, m, w)
		large.Release()
		if err != nil {
			ss.writeClientFatal(err)
			return err
		}
	}
}

// serverLoop relays server messages to the client, through the hook for the
// messages it wants, and flushes at each ReadyForQuery. It returns
// errDrained when the drain at shutdown ends the session at a message
// boundary (the caller says goodbye).
func (ss *session) serverLoop() error {
	r, w, hook := ss.fromServer, ss.toClient, ss.hook
	large := wire.Large{Budget: &ss.srv.guard.budget}
	defer large.Release()
	for {
		typ, n, err := r.Header(ss.maxBody)
		if err != nil {
			if ss.tx.drained() {
				return errDrained
			}
			return err
		}
		t := wire.ServerMsg(typ)
		wants := hook != nil && hook.ServerWants(t)
		var status byte // of a ReadyForQuery
		switch {
		case !wants && t == wire.ReadyForQuery && r.Fits(n):
			m, err := r.Message(n)
			if err != nil {
				return err
			}
			status = txStatus(m)
			if _, err := w.Write(m); err != nil {
				return err
			}
		case !wants:
			if err := r.Forward(w, n); err != nil {
				return err
			}
		default:
			var m []byte
			if r.Fits(n) {
				m, err = r.Message(n)
			} else {
				m, err = r.LargeMessage(&large, n)
			}
			if err != nil {
				if e := overBudget(err, ss.srv.guard.budget.limit.Load()); e != nil {
					ss.srv.metrics.errors.WithLabelValues("message_buffer_budget").Inc()
					err = e
				}
				ss.serverFailed(err)
				return err
			}
			status = txStatus(m)
			err = hook.ServerMessage(t, m, w)
			large.Release()
			if err != nil {
				ss.serverFailed(err)
				return err
			}
		}
		if t == wire.ReadyForQuery {
			ss.txStatus.Store(uint32(status))
			if err := w.Flush(); err != nil {
				return err
			}
			if ss.tx.ready(status) {
				return errDrained
			}
		}
	}
}

// txStatus is the transaction status of a ReadyForQuery message.
func txStatus(m []byte) byte {
	if len(m) > wire.HeaderLen {
		return m[wire.HeaderLen]
	}
	return 0
}

// serverIdle runs before the server loop may wait for the server: a hook
// that holds messages back writes them, unless more input is waiting
// already (then the loop reads on, and the hook keeps its batches going).
func (ss *session) serverIdle() error {
	if !ss.idler.ServerHolding() || pendingBytes(ss.server) {
		return nil
	}
	if err := ss.idler.ServerIdle(ss.toClient); err != nil {
		ss.serverFailed(err)
		return err
	}
	return nil
}

// serverFailed tells the client, from the server loop, why the hook ends
// the session (when that is the client's business).
func (ss *session) serverFailed(err error) {
	if e := fatalOf(err); e != nil {
		_, _ = ss.toClient.Write(e)
		_ = ss.toClient.Flush()
	}
}

// reportClientError tells the client why pgcloak ends its connection, when
// that is the client's fault (PostgreSQL would say the same).
func (ss *session) reportClientError(err error) {
	var tooLarge *wire.MessageTooLargeError
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &tooLarge):
		ss.srv.metrics.errors.WithLabelValues("message_too_large").Inc()
		ss.log.Warn("client message too large", zap.Error(err))
		ss.writeClientFatal(pgerr.New(pgerrcode.ProgramLimitExceeded, tooLarge.Error()))
	case errors.As(err, &pe):
		ss.srv.metrics.errors.WithLabelValues("protocol").Inc()
		ss.log.Warn("client protocol violation", zap.Error(err))
		ss.writeClientFatal(err)
	}
}

// fatalOf is the FATAL ErrorResponse that tells the client why the session
// ends with err, or nil when err is not the client's business (a connection
// gone).
func fatalOf(err error) []byte {
	var e *pgerr.Error
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &pe):
		return pgerr.New(pgerrcode.ProtocolViolation, pe.Msg).Append(nil, pgerr.SeverityFatal)
	case errors.As(err, &e):
		return e.Append(nil, pgerr.SeverityFatal)
	}
	return nil
}

// writeClientFatal sends the FATAL error for err to the client from the
// client loop (or before the loops start). The server loop owns toClient,
// so this writes to the socket directly, after which the connection is
// closed.
func (ss *session) writeClientFatal(err error) {
	b := fatalOf(err)
	if b == nil {
		return
	}
	_ = ss.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = ss.client.Write(b)
}
