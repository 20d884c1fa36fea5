package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// The tests in this file send what no good client sends. Each checks the
// outcome a client observes, that pgcloak keeps serving a normal client
// afterwards, and (checkLeaks) that no goroutine is left once pgcloak is
// closed. They are not parallel: the leak check sees the whole process.

// sessionGone waits until the backend with application_name app has ended
// (or gone idle, when idleOK), at most within after since, and fails t if
// it does not. It returns how long after since that was. direct is a
// connection to PostgreSQL that does not go through pgcloak.
func sessionGone(t *testing.T, direct *pgx.Conn, app string, idleOK bool, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	ctx := queryCtx(t)
	for {
		var state, query string
		err := direct.QueryRow(ctx, "SELECT state, query FROM pg_stat_activity WHERE application_name = $1", app).Scan(&state, &query)
		if errors.Is(err, pgx.ErrNoRows) || idleOK && err == nil && state == "idle" {
			return time.Since(since)
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(since) > within {
			t.Fatalf("backend of %s still there %v after: state %q, query %q", app, within, state, query)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadInputHugeMessageLength sends, after a normal startup, message
// headers whose length no message may have: pgcloak answers FATAL and closes
// both legs.
func TestBadInputHugeMessageLength(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	direct := connect(t, directDSN(pg, harness.SuperUser))

	for _, tc := range []struct {
		name   string
		length uint32
		code   string
		want   string
	}{
		// The largest length the int32 field can hold: 2 GiB - 1.
		{"2GiB", 0x7fffffff, "54000", "over limits.max_message_bytes"},
		// 2 GiB and more read as negative lengths.
		{"negative", 0x80000000, "08P01", "invalid message length"},
		{"under 4", 3, "08P01", "invalid message length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := uniqueName(t, "huge")
			c, fe, _ := rawSession(t, addr, app)
			hdr := []byte{'Q', 0, 0, 0, 0}
			binary.BigEndian.PutUint32(hdr[1:], tc.length)
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			e := readFatal(t, fe)
			if e.Code != tc.code || !strings.Contains(e.Message, tc.want) || !strings.HasPrefix(e.Message, "pgcloak: ") {
				t.Errorf("got %s %s %q, want %s mentioning %q", e.Severity, e.Code, e.Message, tc.code, tc.want)
			}
			t.Logf("client sees: %s %s %s", e.Severity, e.Code, e.Message)
			requireClosed(t, c)
			sessionGone(t, direct, app, false, time.Now(), 10*time.Second)
			requireWorks(t, pg, addr)
		})
	}
}

// TestBadInputLongStartupPacket sends a StartupMessage over PostgreSQL's
// 10,000-byte limit.
func TestBadInputLongStartupPacket(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	startup := &pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{
			"user": harness.TrustUser, "database": harness.AppDB,
			"application_name": strings.Repeat("a", 10_100),
		},
	}
	pkt, err := startup.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, addr)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	e := readFatal(t, pgproto3.NewFrontend(c, c))
	if e.Code != "08P01" || !strings.Contains(e.Message, "invalid length of startup packet") {
		t.Errorf("got %s %s %q, want FATAL 08P01 invalid length of startup packet", e.Severity, e.Code, e.Message)
	}
	t.Logf("client sees: %s %s %s", e.Severity, e.Code, e.Message)
	requireClosed(t, c)
	requireWorks(t, pg, addr)
}

// TestBadInputBytesAfterSSLRequest sends an SSLRequest and, in the same
// write, bytes that would have to come after the TLS handshake. pgcloak has
// TLS configured, but does not answer 'S': bytes that arrive before the
// handshake could have been injected by a man in the middle
// (CVE-2021-23214). What the client observes: no 'S', a plaintext FATAL
// 08P01 "received unencrypted data after SSL request", then the end of the
// connection.
func TestBadInputBytesAfterSSLRequest(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	ca := harness.NewCA(t, "pgcloak CA")
	addr, _ := startProxy(t, pg, withClientTLS(t, ca, nil))

	c := rawConn(t, addr)
	msg := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f} // SSLRequest (80877103)
	msg = append(msg, []byte("\x00\x00\x00\x29\x00\x03\x00\x00user\x00trust_user\x00database\x00app\x00\x00")...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	if len(got) > 0 && got[0] == 'S' {
		t.Fatalf("pgcloak answered 'S' to an SSLRequest followed by plaintext: %q", got)
	}
	if len(got) == 0 {
		t.Fatalf("connection closed without a word (%v), want a FATAL ErrorResponse", err)
	}
	fe := pgproto3.NewFrontend(strings.NewReader(string(got)), io.Discard)
	e := readFatal(t, fe)
	if e.Code != "08P01" || !strings.Contains(e.Message, "received unencrypted data after SSL request") {
		t.Errorf("got %s %s %q", e.Severity, e.Code, e.Message)
	}
	if _, err := fe.Receive(); err == nil {
		t.Errorf("more messages after the FATAL error")
	}
	t.Logf("client sees: %d bytes, %s %s %s, then the connection ends (%v)", len(got), e.Severity, e.Code, e.Message, err)
	requireWorks(t, pg, addr)

	// The well-behaved order still works: SSLRequest, 'S', handshake.
	c2 := connect(t, dsn(pg, addr, harness.TrustUser, "sslmode", "verify-full", "sslrootcert", ca.CertFile))
	requireTLS(t, c2)
}

// TestBadInputGarbageStartup sends an HTTP request instead of a startup
// packet: its first four bytes read as a length far over the limit.
func TestBadInputGarbageStartup(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	for _, garbage := range []string{"GET / HTTP/1.1\r\n\r\n", "\x00\x00\x00\x03xyz", "\x00\x00\x00\x10\x00\x04\x00\x00junkjunk"} {
		c := rawConn(t, addr)
		if _, err := c.Write([]byte(garbage)); err != nil {
			t.Fatal(err)
		}
		e := readFatal(t, pgproto3.NewFrontend(c, c))
		if e.Code != "08P01" && e.Code != "0A000" {
			t.Errorf("%q: got %s %s %q, want FATAL 08P01", garbage, e.Severity, e.Code, e.Message)
		}
		t.Logf("%q: client sees %s %s %s", garbage, e.Severity, e.Code, e.Message)
		requireClosed(t, c)
		requireWorks(t, pg, addr)
	}
}

// TestBadInputClientVanishes closes the client socket while its query runs:
// pgcloak cancels the query, so the backend does not sleep on.
func TestBadInputClientVanishes(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)
	app := uniqueName(t, "vanish")
	direct := connect(t, directDSN(pg, harness.SuperUser))

	c, fe, _ := rawSession(t, addr, app)
	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	waitActive(t, direct, app, "SELECT pg_sleep(30)")
	closed := time.Now()
	c.Close()
	took := sessionGone(t, direct, app, true, closed, 2*time.Second)
	t.Logf("backend gone or idle %v after the client vanished", took.Round(time.Millisecond))
	requireWorks(t, pg, addr)
}

// TestBadInputUnreachableUpstream points pgcloak at a port where nothing
// listens: clients get FATAL 08001 naming the upstream, pgcloak keeps
// answering, and another pgcloak with a good upstream is unaffected.
func TestBadInputUnreachableUpstream(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	port := harness.FreePort(t)
	upstream := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	badAddr, _ := startProxy(t, nil, func(cfg *config.Config) {
		cfg.Upstream = fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable", port)
	})
	goodAddr, _ := startProxy(t, pg, nil)

	for range 2 { // and again: the failure does not wedge the listener
		_, err := tryConnect(t, dsn(pg, badAddr, harness.TrustUser))
		pe := requirePgError(t, err, "08001", upstream, "cannot connect to upstream")
		if pe.Severity != "FATAL" {
			t.Errorf("severity %s", pe.Severity)
		}
		t.Logf("client sees: %s %s %s", pe.Severity, pe.Code, pe.Message)
	}
	requireWorks(t, pg, goodAddr)
}

// TestBadInputTooManyConnections sets limits.max_client_connections to 2:
// a third client gets PostgreSQL's 53300; once one leaves, a new one gets in.
func TestBadInputTooManyConnections(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	addr, srv := startProxy(t, pg, func(cfg *config.Config) { cfg.Limits.MaxClientConnections = 2 })

	first := connect(t, dsn(pg, addr, harness.TrustUser))
	connect(t, dsn(pg, addr, harness.MD5User))
	_, err := tryConnect(t, dsn(pg, addr, harness.SCRAMUser))
	requirePgError(t, err, "53300", "too many clients")

	first.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for srv.ActiveConnections() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted after one client left", srv.ActiveConnections())
		}
		time.Sleep(10 * time.Millisecond)
	}
	requireWorks(t, pg, addr)
}

// TestBadInputLoginTimeout sets limits.login_timeout to 300ms: clients that
// do not finish startup in time are closed, wherever they stall.
func TestBadInputLoginTimeout(t *testing.T) {
	checkLeaks(t)
	pg := sharedPG(t)
	const timeout = 300 * time.Millisecond
	addr, _ := startProxy(t, pg, func(cfg *config.Config) { cfg.Limits.LoginTimeout = timeout })

	startup := func(user string) []byte {
		b, err := (&pgproto3.StartupMessage{
			ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters:      map[string]string{"user": user, "database": harness.AppDB},
		}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"sends nothing", nil},
		{"half a startup packet", startup(harness.TrustUser)[:10]},
		{"no answer to the password request", startup(harness.MD5User)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, addr)
			start := time.Now()
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			var got []byte
			var err error
			buf := make([]byte, 512)
			for {
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			elapsed := time.Since(start)
			if err != io.EOF && !isReset(err) {
				t.Fatalf("after %v: %v, want the connection closed", elapsed, err)
			}
			if elapsed < timeout-50*time.Millisecond || elapsed > 10*time.Second {
				t.Errorf("closed after %v, want about %v", elapsed, timeout)
			}
			t.Logf("closed after %v; received %q", elapsed.Round(time.Millisecond), got)
			normalLogin(t, pg, addr)
		})
	}
	// login_timeout bounds the login only: a session may idle longer.
	c := normalLogin(t, pg, addr)
	time.Sleep(2 * timeout)
	if got := queryString(t, c, "SELECT 'idle is fine'"); got != "idle is fine" {
		t.Errorf("got %q", got)
	}
}

// normalLogin is requireWorks under a short login_timeout: on a loaded
// machine an honest login (upstream dial, backend fork, auth) can now and
// then take longer than 300ms, so it gets three tries.
func normalLogin(t *testing.T, pg *harness.Postgres, addr string) *pgx.Conn {
	t.Helper()
	var err error
	for range 3 {
		var c *pgx.Conn
		if c, err = tryConnect(t, dsn(pg, addr, harness.TrustUser)); err == nil {
			if got := queryString(t, c, "SELECT 'still serving'"); got != "still serving" {
				t.Fatalf("got %q", got)
			}
			return c
		}
	}
	t.Fatalf("pgcloak no longer serves a normal client: %v", err)
	return nil
}
