package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Buffer sizes per direction. A message that does not fit the read buffer is
// streamed through in chunks, so these bound memory per connection whatever
// the result or COPY size.
const (
	readBufSize  = 32 << 10
	writeBufSize = 32 << 10
)

// session relays one client connection to its upstream connection.
//
// After authentication two goroutines run: the one that called runSession
// reads the client and writes the server (clientLoop), another reads the
// server and writes the client (serverLoop). Each owns its reader and the
// writer it writes to; nothing else is shared but the busy flag.
type session struct {
	srv    *Server
	log    *zap.Logger
	client net.Conn
	server net.Conn
	target upstreamTarget

	fromClient *frameReader // flushes toServer before blocking
	fromServer *frameReader // flushes toClient before blocking
	toClient   *bufio.Writer
	toServer   *bufio.Writer

	// user is the user name from the startup message.
	user string
	// cloak is the encryption layer; nil when no columns are protected.
	cloak *cloak

	// cancelKey is BackendKeyData's process ID and secret key as sent by
	// PostgreSQL; CancelRequests carrying it are forwarded to this session.
	cancelKey string

	// busy is set when the client sends a message and cleared by
	// ReadyForQuery, so a client that vanishes mid-query gets its query
	// cancelled rather than left running.
	busy atomic.Bool

	closeOnce sync.Once
}

// runSession connects upstream, relays authentication and then the session.
func (s *Server) runSession(client net.Conn, startup []byte, p startupParams, clientTLS bool, start time.Time) {
	log := s.log.With(zap.Stringer("client", client.RemoteAddr()), zap.String("user", p.user), zap.String("database", p.database))
	ctx, cancel := context.WithDeadline(context.Background(), s.loginDeadline(start))
	server, target, err := s.connector.connect(ctx)
	cancel()
	if err != nil {
		s.metrics.errors.WithLabelValues("upstream_connect").Inc()
		log.Warn("cannot connect to upstream", zap.Error(err))
		_, _ = client.Write(fatal(codeCannotConnect, "cannot connect to upstream PostgreSQL: "+err.Error()))
		return
	}
	if !s.track(server) {
		server.Close()
		return
	}
	defer s.untrack(server)
	_ = server.SetDeadline(s.loginDeadline(start))

	ss := &session{srv: s, log: log, client: client, server: server, target: target, user: p.user}
	if prot := s.protection.Load(); prot != nil && p.database == prot.database {
		// Protected columns live in one database; sessions to the others
		// on the same server are relayed as they are.
		ss.cloak = newCloak(prot, expandSearchPath(p.searchPath, p.searchPath == nil, p.user), p.settings)
	}
	ss.toClient = bufio.NewWriterSize(client, writeBufSize)
	ss.toServer = bufio.NewWriterSize(server, writeBufSize)
	ss.fromClient = newFrameReader(client, ss.toServer, readBufSize)
	ss.fromServer = newFrameReader(server, ss.toClient, readBufSize)
	c2s, s2c := s.metrics.direction("client_to_server"), s.metrics.direction("server_to_client")
	ss.fromClient.stats, ss.fromServer.stats = &c2s, &s2c
	defer ss.close()

	if _, err := ss.server.Write(startup); err != nil {
		log.Info("upstream write failed", zap.Error(err))
		return
	}
	ready, err := ss.authenticate(clientTLS)
	if !ready {
		ss.endStartup(err)
		return
	}
	_ = client.SetDeadline(time.Time{})
	_ = server.SetDeadline(time.Time{})
	s.metrics.startupSeconds.Observe(time.Since(start).Seconds())
	log.Debug("session ready", zap.Stringer("upstream", target))

	s.register(ss)
	defer s.unregister(ss)
	if ss.cloak == nil && !clientTLS && target.tls == nil {
		if err, busy, ok := ss.runFast(); ok {
			if err != nil && !isBenign(err) {
				log.Info("session ended", zap.Error(err))
			}
			if err != nil && busy {
				s.forwardCancel(ss.target, ss.cancelKey)
			}
			return
		}
	}
	ss.relay()
}

// endStartup logs why a session ended before its first ReadyForQuery.
func (ss *session) endStartup(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		ss.srv.metrics.errors.WithLabelValues("login_timeout").Inc()
		ss.log.Info("startup not finished within limits.login_timeout", zap.Duration("login_timeout", ss.srv.cfg.Limits.LoginTimeout))
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
func (ss *session) authenticate(clientTLS bool) (ready bool, err error) {
	for {
		typ, n, err := ss.fromServer.header(ss.srv.maxBody)
		if err != nil {
			return false, err
		}
		if !ss.fromServer.fits(n) {
			return false, &protocolError{"authentication message too large"}
		}
		msg, err := ss.fromServer.message(n)
		if err != nil {
			return false, err
		}
		needReply := false
		switch typ {
		case 'R':
			if len(msg) < headerLen+4 {
				return false, &protocolError{"short authentication message"}
			}
			switch binary.BigEndian.Uint32(msg[headerLen:]) {
			case authSASL:
				msg = withoutChannelBinding(msg)
				needReply = true
			case authCleartext, authMD5, authGSS, authGSSContinue, authSASLCont:
				needReply = true
			}
		case 'K':
			ss.cancelKey = string(msg[headerLen:])
		case 'S':
			if ss.cloak != nil {
				ss.parameterStatus(msg)
			}
		case 'E':
			_, _ = ss.toClient.Write(msg)
			return false, ss.toClient.Flush()
		case 'Z':
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
		ctyp, cn, err := ss.fromClient.header(ss.srv.maxBody)
		if err != nil {
			return false, err
		}
		if ctyp != 'p' {
			return false, &protocolError{"expected a password or SASL response during authentication"}
		}
		if saslStarted := typ == 'R' && binary.BigEndian.Uint32(msg[headerLen:]) == authSASL; saslStarted && clientTLS && ss.target.tls != nil && ss.fromClient.fits(cn) {
			if err := ss.checkChannelBinding(cn); err != nil {
				return false, err
			}
		}
		if err := ss.fromClient.forward(ss.toServer, cn); err != nil {
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
	r := ss.fromClient
	if err := r.ensure(headerLen + n); err != nil {
		return err
	}
	body := r.buf[r.r+headerLen : r.r+headerLen+n]
	_, rest, ok := bytes.Cut(body, []byte{0}) // mechanism name
	if !ok || len(rest) < 5 || rest[4] != 'y' {
		return nil
	}
	_, _ = ss.toClient.Write(fatal(codeInvalidAuthorization,
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
	body := msg[headerLen+4:]
	out := make([]byte, headerLen+4, len(msg))
	copy(out, msg[:headerLen+4])
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
		defer ss.fromServer.report() // each reader is owned by its loop
		var err error
		if ss.cloak != nil {
			err = ss.serverLoopCloaked()
		} else {
			err = ss.serverLoop()
		}
		if !isBenign(err) {
			ss.log.Info("server leg ended", zap.Error(err))
		}
		ss.close()
	}()
	var err error
	if ss.cloak != nil {
		err = ss.clientLoopCloaked()
	} else {
		err = ss.clientLoop()
	}
	if err != nil && !isBenign(err) {
		ss.log.Info("client leg ended", zap.Error(err))
	}
	if err != nil && ss.busy.Load() {
		// The client went away with a query in flight; PostgreSQL would
		// run it to the end (it notices a lost client only when it
		// writes). Cancel it the way the client could have.
		ss.srv.forwardCancel(ss.target, ss.cancelKey)
	}
	ss.fromClient.report()
	ss.close()
	<-done
}

// close closes both legs once.
func (ss *session) close() {
	ss.closeOnce.Do(func() {
		ss.client.Close()
		ss.server.Close()
	})
}

// errTerminated ends the client loop after the client's Terminate.
var errTerminated = errors.New("client sent Terminate")

// clientLoop relays client messages to the server. It returns nil when the
// client terminated cleanly.
func (ss *session) clientLoop() error {
	r := ss.fromClient
	for {
		typ, n, err := r.header(ss.srv.maxBody)
		if err != nil {
			ss.reportClientError(err)
			return err
		}
		if typ == 'X' {
			if err := r.forward(ss.toServer, n); err != nil {
				return err
			}
			_ = ss.toServer.Flush()
			return nil
		}
		ss.busy.Store(true)
		if err := r.forward(ss.toServer, n); err != nil {
			return err
		}
	}
}

// reportClientError tells the client why pgcloak ends its connection, when
// that is the client's fault (PostgreSQL would say the same).
func (ss *session) reportClientError(err error) {
	var tooLarge *messageTooLargeError
	var pe *protocolError
	switch {
	case errors.As(err, &tooLarge):
		ss.srv.metrics.errors.WithLabelValues("message_too_large").Inc()
		ss.log.Warn("client message too large", zap.Error(err))
		ss.writeClientFatal(codeProgramLimitExceeded, tooLarge.Error())
	case errors.As(err, &pe):
		ss.srv.metrics.errors.WithLabelValues("protocol").Inc()
		ss.log.Warn("client protocol violation", zap.Error(err))
		ss.writeClientFatal(codeProtocolViolation, pe.msg)
	}
}

// writeClientFatal sends a FATAL error to the client from the client loop.
// The server loop owns toClient, so this writes to the socket directly, after
// which the connection is closed.
func (ss *session) writeClientFatal(code, msg string) {
	_ = ss.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = ss.client.Write(fatal(code, msg))
}

// serverLoop relays server messages to the client.
func (ss *session) serverLoop() error {
	r := ss.fromServer
	for {
		typ, n, err := r.header(ss.srv.maxBody)
		if err != nil {
			return err
		}
		if err := r.forward(ss.toClient, n); err != nil {
			return err
		}
		if typ == 'Z' {
			ss.busy.Store(false)
			if err := ss.toClient.Flush(); err != nil {
				return err
			}
		}
	}
}
