package integration

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// startProxyMetrics starts a relaying pgcloak in front of pg (see
// startProxy) and returns its address and metrics.
func startProxyMetrics(t *testing.T, pg *harness.Postgres, configure func(*config.Config)) (string, *prometheus.Registry) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream = upstreamFor(pg)
	configure(cfg)
	p := startPgcloak(t, cfg, zaptest.NewLogger(t), true)
	return p.addr, p.reg
}

// metricValue is the value of the series name{label="value"} (label ""
// for a series without labels), 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == label && l.GetValue() == value
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestPendingLoginsCap: sockets that have not logged in count against
// limits.max_pending_logins, not limits.max_client_connections. With room
// for 2 sessions and 3 pending logins, 2 silent sockets leave both sessions
// to clients that log in; a third client is refused (53300, too many
// clients); once 3 sockets wait silently, a further connection is refused
// at once (53300, logging in) and counted; a silent socket that goes away
// gives its place back.
func TestPendingLoginsCap(t *testing.T) {
	pg := sharedPG(t)
	addr, reg := startProxyMetrics(t, pg, func(cfg *config.Config) {
		cfg.Limits.MaxClientConnections = 2
		cfg.Limits.MaxPendingLogins = 3
	})
	// waitPending waits until pgcloak counts n connections logging in (a
	// silent socket sends nothing, so nothing else tells).
	waitPending := func(n float64) {
		t.Helper()
		deadline := time.Now().Add(connectTimeout)
		for metricValue(t, reg, "pgcloak_pending_logins", "", "") != n {
			if time.Now().After(deadline) {
				t.Fatalf("pending logins: %v, want %v", metricValue(t, reg, "pgcloak_pending_logins", "", ""), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	silent := func(pending float64) net.Conn {
		c := rawConn(t, addr)
		waitPending(pending)
		return c
	}
	s1, s2 := silent(1), silent(2)
	// Before limits.max_pending_logins, these two would have filled
	// max_client_connections until the login timeout.
	c1 := connect(t, dsn(pg, addr, harness.TrustUser))
	c2 := connect(t, dsn(pg, addr, harness.SCRAMUser))
	if queryString(t, c1, "SELECT 'one'") != "one" || queryString(t, c2, "SELECT 'two'") != "two" {
		t.Fatal("sessions do not work")
	}
	_, err := tryConnect(t, dsn(pg, addr, harness.TrustUser))
	requirePgError(t, err, "53300", "too many clients already")

	waitPending(2) // the refused client has gone
	s3 := silent(3)
	c := rawConn(t, addr)
	fe := pgproto3.NewFrontend(c, c)
	m, err := fe.Receive()
	e, ok := m.(*pgproto3.ErrorResponse)
	if err != nil || !ok || e.Code != "53300" || !strings.Contains(e.Message, "limits.max_pending_logins") {
		t.Fatalf("a fourth socket while 3 are pending: %#v %v, want 53300 naming limits.max_pending_logins", m, err)
	}
	requireClosed(t, c)
	if n := metricValue(t, reg, "pgcloak_client_connections_rejected_total", "reason", "pending_logins"); n != 1 {
		t.Errorf("rejected{reason=pending_logins} = %v, want 1", n)
	}

	// A silent socket leaves: a client can log in again (a session ended
	// to make room under max_client_connections).
	s1.Close()
	c1.Close(context.Background())
	deadline := time.Now().Add(connectTimeout)
	for {
		c, err := tryConnect(t, dsn(pg, addr, harness.TrustUser))
		if err == nil {
			c.Close(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login once a silent socket left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s2.Close()
	s3.Close()
}

// cancelRequest sends a CancelRequest for (pid, secret) to addr from the
// local address from (nil: any).
func cancelRequest(t *testing.T, addr string, from net.Addr, pid uint32, secret []byte) {
	t.Helper()
	d := net.Dialer{LocalAddr: from, Timeout: connectTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	pkt = binary.BigEndian.AppendUint32(pkt, 80877102)
	pkt = binary.BigEndian.AppendUint32(pkt, pid)
	pkt = append(pkt, secret...)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	// pgcloak answers nothing and closes, as PostgreSQL does.
	_ = c.SetReadDeadline(time.Now().Add(connectTimeout))
	var b [1]byte
	if n, _ := c.Read(b[:]); n != 0 {
		t.Fatalf("CancelRequest answered with %q", b[:n])
	}
}

// TestCancelRateLimit: with limits.cancel_rate at 5, a burst of 40
// CancelRequests with guessed keys from one address is mostly dropped
// unread (counted as rate_limited), so a real cancel from that address is
// dropped too until its bucket refills, while one from another address
// cancels its query at once.
func TestCancelRateLimit(t *testing.T) {
	pg := sharedPG(t)
	const perSecond = 5
	addr, reg := startProxyMetrics(t, pg, func(cfg *config.Config) { cfg.Limits.CancelRate = perSecond })
	victim := connect(t, dsn(pg, addr, harness.TrustUser))
	pid, secret := victim.PgConn().PID(), victim.PgConn().SecretKey()

	start := time.Now()
	const guesses = 40
	for range guesses {
		cancelRequest(t, addr, nil, pid, binary.BigEndian.AppendUint32(nil, rand.Uint32()))
	}
	elapsed := time.Since(start)
	limited := metricValue(t, reg, "pgcloak_cancel_requests_total", "result", "rate_limited")
	unknown := metricValue(t, reg, "pgcloak_cancel_requests_total", "result", "unknown_key")
	// The bucket holds perSecond tokens and gains perSecond a second.
	allowed := perSecond + int(float64(perSecond)*elapsed.Seconds()) + 1
	t.Logf("%d guesses in %v: %v rate limited, %v tried (at most %d allowed)", guesses, elapsed.Round(time.Millisecond), limited, unknown, allowed)
	if limited+unknown != guesses || unknown > float64(allowed) || unknown < perSecond {
		t.Fatalf("%v rate limited, %v looked up; want %d in all, between %d and %d looked up", limited, unknown, guesses, perSecond, allowed)
	}

	// A real cancel from another address has a bucket of its own.
	err := runCancel(t, pg, addr, victim, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, pid, secret)
	requirePgError(t, err, "57014")

	// From the guessing address, the victim's own cancel goes through only
	// when its bucket has refilled: a guesser cannot crowd out less of the
	// limit than that. Which of the two happens depends on timing, so it is
	// checked for consistency only.
	for range 2 * perSecond {
		cancelRequest(t, addr, nil, pid, binary.BigEndian.AppendUint32(nil, rand.Uint32()))
	}
	before := metricValue(t, reg, "pgcloak_cancel_requests_total", "result", "forwarded")
	err = runCancel(t, pg, addr, victim, nil, pid, secret)
	forwarded := metricValue(t, reg, "pgcloak_cancel_requests_total", "result", "forwarded") > before
	if cancelled := err != nil; cancelled != forwarded {
		t.Errorf("own cancel from the guessing address: forwarded %v, statement error %v", forwarded, err)
	}
	t.Logf("own cancel right after more guesses: forwarded %v", forwarded)
}

// runCancel runs pg_sleep(2) on victim and sends its CancelRequest from
// from once PostgreSQL runs it; it returns the statement's error.
func runCancel(t *testing.T, pg *harness.Postgres, addr string, victim *pgx.Conn, from net.Addr, pid uint32, secret []byte) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := victim.Exec(queryCtx(t), "SELECT pg_sleep(2)")
		done <- err
	}()
	waitActive(t, connect(t, directDSN(pg, harness.SuperUser)), "", "SELECT pg_sleep(2)")
	cancelRequest(t, addr, from, pid, secret)
	return <-done
}
