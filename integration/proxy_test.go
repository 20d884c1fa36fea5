package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
)

// Timeouts. The machine is small and shared: every bound is generous except
// the ones a test is about.
const (
	connectTimeout = 20 * time.Second
	queryTimeout   = 60 * time.Second
)

// startProxy runs a pgcloak in this process in front of pg and returns the
// address it listens on. The configuration is config.Default listening on a
// free loopback port, with pg as upstream (verify-full against pg's CA when pg
// has TLS, sslmode=disable otherwise); configure may change it before the
// server is built. The server is closed, and its Serve has returned, when
// the test ends.
func startProxy(t *testing.T, pg *harness.Postgres, configure func(*config.Config)) (string, *proxy.Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	if pg != nil {
		cfg.Upstream = upstreamFor(pg)
	}
	if configure != nil {
		configure(cfg)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{
		Logger:   zaptest.NewLogger(t),
		Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatalf("proxy.NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
	return ln.Addr().String(), srv
}

// upstreamFor is the upstream setting that reaches pg over TCP: verify-full
// against its CA when it has TLS.
func upstreamFor(pg *harness.Postgres) string {
	if pg.CAFile != "" {
		return fmt.Sprintf("host=%s port=%d sslmode=verify-full sslrootcert=%s", pg.Host, pg.Port, pg.CAFile)
	}
	return fmt.Sprintf("host=%s port=%d sslmode=disable", pg.Host, pg.Port)
}

// dsn returns a URL that connects to AppDB at addr as user, with the user's
// password on pg. It has sslmode=disable unless params say otherwise;
// params are key, value pairs added to the query string.
func dsn(pg *harness.Postgres, addr, user string, params ...string) string {
	u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + harness.AppDB}
	switch user {
	case harness.MD5User:
		u.User = url.UserPassword(user, pg.MD5Password)
	case harness.SCRAMUser:
		u.User = url.UserPassword(user, pg.SCRAMPassword)
	default:
		u.User = url.User(user)
	}
	q := url.Values{"sslmode": {"disable"}, "connect_timeout": {strconv.Itoa(int(connectTimeout / time.Second))}}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	// Spaces as %20: pgx, like libpq, does not read '+' as a space.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// directDSN connects to pg itself, as user (TLS verify-full when pg has it).
func directDSN(pg *harness.Postgres, user string, params ...string) string {
	addr := net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port))
	if pg.CAFile != "" {
		params = append([]string{"sslmode", "verify-full", "sslrootcert", pg.CAFile}, params...)
	}
	return dsn(pg, addr, user, params...)
}

// connect opens a pgx connection that the test closes when it ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := tryConnect(t, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	return c
}

// tryConnect is connect that returns the error.
func tryConnect(t testing.TB, dsn string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return connectConfig(t, cfg)
}

func connectConfig(t testing.TB, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, nil
}

// queryString runs sql on c and returns the single text value it yields.
func queryString(t *testing.T, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	var s string
	if err := c.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// requireWorks checks that a fresh pgx connection through addr runs a query:
// pgcloak keeps serving others whatever the case before did to it.
func requireWorks(t *testing.T, pg *harness.Postgres, addr string) {
	t.Helper()
	c, err := tryConnect(t, dsn(pg, addr, harness.TrustUser))
	if err != nil {
		t.Fatalf("pgcloak no longer serves a normal client: %v", err)
	}
	if got := queryString(t, c, "SELECT 'still serving'"); got != "still serving" {
		t.Fatalf("got %q", got)
	}
	c.Close(context.Background())
}

// pgErrorCode returns the SQLSTATE of err's *pgconn.PgError, or "" if it has
// none.
func pgErrorCode(err error) string {
	if pe := pgError(err); pe != nil {
		return pe.Code
	}
	return ""
}

// pgError returns err's *pgconn.PgError, or nil.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// requirePgError fails t unless err carries a *pgconn.PgError with code and
// a message that contains each of parts. It returns the PgError.
func requirePgError(t *testing.T, err error, code string, parts ...string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want a PostgreSQL error with SQLSTATE %s", err, err, code)
	}
	if pe.Code != code {
		t.Fatalf("got SQLSTATE %s (%s: %s), want %s", pe.Code, pe.Severity, pe.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(pe.Message, p) {
			t.Errorf("error message %q does not mention %q", pe.Message, p)
		}
	}
	return pe
}

// checkLeaks makes the test fail if, once it and its cleanups are done
// (pgcloak closed, clients closed), goroutines are left that were not there
// when it began. Call it before startProxy and before opening connections,
// so its check runs after their cleanups; do not use it in parallel tests.
func checkLeaks(t *testing.T) {
	t.Helper()
	sharedPG(t) // its process watcher lives as long as the package
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opts) })
}

// rawConn is a plain TCP connection to addr for tests that write bytes no
// driver would, with a deadline far enough for a loaded machine. It is
// closed when the test ends.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, connectTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(queryTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawSession opens a raw connection to addr and logs in as TrustUser with
// the given application_name, returning the connection, its pgproto3
// frontend and the backend PID from BackendKeyData.
func rawSession(t *testing.T, addr, appName string) (net.Conn, *pgproto3.Frontend, uint32) {
	t.Helper()
	c := rawConn(t, addr)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": harness.TrustUser, "database": harness.AppDB, "application_name": appName},
	})
	if err := fe.Flush(); err != nil {
		t.Fatalf("send StartupMessage: %v", err)
	}
	var pid uint32
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("startup: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.BackendKeyData:
			pid = m.ProcessID
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s %s: %s", m.Severity, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return c, fe, pid
		}
	}
}

// wireError is an ErrorResponse read from a raw connection.
type wireError struct {
	Severity, Code, Message string
}

// readFatal reads messages from fe until an ErrorResponse and returns it;
// it fails t if the connection ends first or the error is not FATAL.
func readFatal(t *testing.T, fe *pgproto3.Frontend) wireError {
	t.Helper()
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("connection ended without an ErrorResponse: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			// e aliases fe's buffer: copy what we keep.
			we := wireError{Severity: e.Severity, Code: e.Code, Message: e.Message}
			if we.Severity != "FATAL" {
				t.Errorf("severity %s, want FATAL (%s: %s)", we.Severity, we.Code, we.Message)
			}
			return we
		}
	}
}

// requireClosed reads c until it ends and fails t if more bytes arrive or
// the end does not come before the connection's deadline. A reset counts as
// closed: the peer may close with our unread bytes in its socket.
func requireClosed(t *testing.T, c net.Conn) {
	t.Helper()
	var b [512]byte
	n, err := c.Read(b[:])
	if n > 0 {
		t.Fatalf("got %d more bytes %q, want the connection closed", n, b[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open: %v", err)
	}
	if err != io.EOF && !isReset(err) {
		t.Fatalf("read after close: %v, want EOF", err)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// uniqueName returns prefix followed by the test's name and the time, usable
// as an application_name or (lower-cased, without specials) a table name.
func uniqueName(t *testing.T, prefix string) string {
	r := strings.NewReplacer("/", "_", "-", "_", " ", "_")
	return strings.ToLower(fmt.Sprintf("%s_%s_%d", prefix, r.Replace(t.Name()), time.Now().UnixNano()%1e9))
}

// lockedBuffer collects output that other goroutines or a process write
// while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *lockedBuffer) String() string { return string(b.Bytes()) }
