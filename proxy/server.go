package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Server accepts client connections and relays each to its own upstream
// PostgreSQL connection.
type Server struct {
	log     *zap.Logger
	metrics *metrics
	ops     *opsMetrics
	// live is the configuration of new connections (reload.go).
	live atomic.Pointer[live]
	// console serves the admin database (console.go); nil: off.
	console Console
	// hooks look into the sessions (the encryption engine); nil: pure relay.
	hooks Hooks
	// notReady, when set, is why new sessions are refused (SQLSTATE 57P03)
	// whatever the hooks say (the server is shutting down).
	notReady atomic.Pointer[string]

	active atomic.Int64 // client connections open now
	fast   fastRelays   // epoll loops of plain sessions (fastrelay_linux.go)
	wg     sync.WaitGroup
	guard  *guard   // memory budget, login caps, cancel rate (limits.go)
	drain  drainSet // the sessions Shutdown drains (drain.go)

	mu       sync.Mutex
	ln       net.Listener
	conns    map[io.Closer]struct{} // every open client and upstream conn (or fast-relay session)
	sessions map[string]*session    // by cancel key (BackendKeyData pid+secret)
	closed   bool

	clients clients // sessions by id, for the console (clients.go)
	pauses  pauses  // PAUSE and RESUME (pause.go)
}

// Options are the collaborators of a Server.
type Options struct {
	Logger   *zap.Logger           // nil: no logs
	Registry prometheus.Registerer // nil: metrics are kept but not exported
	// Hooks look into sessions: the encryption engine (engine.Protector).
	// Nil: pgcloak relays without looking into queries.
	Hooks Hooks
	// Console serves the admin console (proxy/admin); nil: off.
	Console Console
}

// SetNotReady refuses new sessions with reason (SQLSTATE 57P03), whatever
// the hooks say; sessions already running go on.
func (s *Server) SetNotReady(reason string) { s.notReady.Store(&reason) }

// Ready reports whether sessions are served, and if not, why.
func (s *Server) Ready() (bool, string) {
	if r := s.notReady.Load(); r != nil {
		return false, *r
	}
	if s.hooks != nil {
		return s.hooks.Ready()
	}
	return true, ""
}

// NewServer validates what the configuration needs at run time (upstream
// setting, certificates) and returns a Server that is not yet listening.
func NewServer(cfg *config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		log:      log,
		metrics:  newMetrics(opts.Registry),
		ops:      newOpsMetrics(opts.Registry),
		console:  opts.Console,
		conns:    make(map[io.Closer]struct{}),
		sessions: make(map[string]*session),
	}
	s.hooks = opts.Hooks
	l, err := s.newLive(cfg)
	if err != nil {
		return nil, err
	}
	s.live.Store(l)
	s.pauses.init(s)
	s.guard = newGuard(cfg.Limits, opts.Registry)
	warnUnverified(log, "upstream", l.connector.targets())
	if cfg.AdminDSN != "" {
		if admin, err := newConnector(&config.Config{Upstream: cfg.AdminDSN, Limits: cfg.Limits}, nil); err == nil {
			warnUnverified(log, "admin_dsn", admin.targets())
		}
	}
	return s, nil
}

func serverTLS(c *config.TLS) (*tls.Config, error) {
	if c.Mode() == config.ClientTLSDisable {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if m := c.Mode(); m == config.ClientTLSVerifyCA || m == config.ClientTLSVerifyFull {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file: %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Listen opens the configured listen address.
func (s *Server) Listen() (net.Listener, error) {
	return net.Listen("tcp", s.Config().Listen)
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.drain.isStarted() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	s.log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("upstream", s.settings().connector.describe()))
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() || s.drain.isStarted() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or similar: back off, keep serving.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(conn) {
			conn.Close()
			return nil
		}
		s.wg.Add(1)
		go s.handleConn(conn)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers an open connection so Close can end it.
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every client and upstream connection and
// waits for their goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.fast.stop()
	s.settings().connector.close()
	return nil
}

// ActiveConnections reports how many client connections are open.
func (s *Server) ActiveConnections() int { return int(s.active.Load()) }

// handleConn owns one client connection from accept to close.
func (s *Server) handleConn(conn net.Conn) {
	defer s.wg.Done()
	start := time.Now()
	s.active.Add(1)
	s.metrics.connsActive.Inc()
	s.metrics.connsTotal.Inc()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session panic (connection closed)", zap.Any("panic", r), zap.Stack("stack"))
		}
		conn.Close()
		s.untrack(conn)
		s.active.Add(-1)
		s.metrics.connsActive.Dec()
	}()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	conf := s.settings()
	lg, ok := s.guard.logins.start()
	if !ok {
		// Said before reading anything: a client waiting for the answer
		// to its SSLRequest reads the ErrorResponse too.
		s.reject(conn, "pending_logins", pgerrcode.TooManyConnections,
			fmt.Sprintf("too many connections logging in (limits.max_pending_logins %d); try again", s.guard.logins.maxPending.Load()))
		return
	}
	defer lg.end()
	_ = conn.SetDeadline(s.loginDeadline(start))

	c, pkt, tlsDone, err := s.negotiate(conn, conf.tls)
	if pkt == nil {
		s.startupFailed(c, conn.RemoteAddr(), err)
		return
	}
	if code, msg := clientTLSRefusal(conf.cfg.TLS, tlsDone); code != "" {
		s.reject(c, "tls_required", code, msg)
		return
	}
	if reason := s.notReady.Load(); reason != nil {
		s.reject(c, "not_ready", pgerrcode.CannotConnectNow, "not ready: "+*reason)
		return
	}
	if s.guard.logins.full() {
		s.reject(c, "too_many", pgerrcode.TooManyConnections, "sorry, too many clients already")
		return
	}
	info, err := parseStartupParams(pkt)
	if err != nil {
		s.startupFailed(c, conn.RemoteAddr(), err)
		return
	}
	if code, msg := clientCertRefusal(c, conf.cfg.TLS, info.User); code != "" {
		s.reject(c, "tls_required", code, msg)
		return
	}
	info.ClientAddr, info.TLS = conn.RemoteAddr().String(), tlsDone
	if tc, ok := c.(*tls.Conn); ok {
		if cs := tc.ConnectionState(); len(cs.VerifiedChains) > 0 {
			info.CertSubject, info.CertCN = cs.PeerCertificates[0].Subject.String(), cs.PeerCertificates[0].Subject.CommonName
		}
	}
	if s.console != nil && info.Database == config.ConsoleDatabase {
		pkt, info.console = s.consoleLogin(c, pkt, info, conf)
		if pkt == nil {
			return
		}
	}
	s.runSession(c, pkt, info, start, conf, lg)
}

// reject sends a FATAL error to a client during startup and counts it.
func (s *Server) reject(c net.Conn, reason, code, msg string) {
	s.metrics.connsRejected.WithLabelValues(reason).Inc()
	_, _ = c.Write(fatal(code, msg))
}

// startupFailed reports why a connection ended before a session began.
func (s *Server) startupFailed(c net.Conn, remote net.Addr, err error) {
	if err == nil {
		return // a CancelRequest: nothing more to say
	}
	var pe *wire.ProtocolError
	var up *unsupportedProtocolError
	var te *tlsError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		s.metrics.errors.WithLabelValues("protocol").Inc()
		_, _ = c.Write(fatal(pgerrcode.ProtocolViolation, pe.Msg))
	case errors.As(err, &up):
		s.metrics.errors.WithLabelValues("protocol").Inc()
		_, _ = c.Write(fatal(pgerrcode.FeatureNotSupported, up.Error()))
	case errors.As(err, &te):
		// The handshake failed: there is no channel to report on.
	case errors.As(err, &ne) && ne.Timeout():
		s.metrics.errors.WithLabelValues("login_timeout").Inc()
		err = fmt.Errorf("startup not finished within limits.login_timeout (%s)", s.limits().LoginTimeout)
	case isBenign(err):
		return
	}
	s.log.Info("client startup failed", zap.Stringer("client", remote), zap.Error(err))
}
