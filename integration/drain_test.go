package integration

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// The drain tests run `pgcloak serve` built from this tree as a process of
// its own, so that SIGTERM is a real signal. Sessions are raw protocol
// clients that read only when told, so the 57P01 that pgcloak sends after a
// transaction's last ReadyForQuery is read where it arrives. Sessions in
// plaintext run on the fast relay (epoll), sessions over TLS on the
// goroutine relay: the tests use both.

// serveProc is a `pgcloak serve` process.
type serveProc struct {
	cmd  *exec.Cmd
	addr string
	logs *lockedBuffer
	exit chan error // receives the process's end
	ca   *harness.CA
}

// startServe writes a config (listen on a free port, upstream pg, client TLS
// optional with a certificate from a new CA, plus extra) and runs bin serve
// with it until the port answers.
func startServe(t *testing.T, bin string, pg *harness.Postgres, extra string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	ca := harness.NewCA(t, "pgcloak drain test CA")
	cert := ca.Issue(t, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	yaml := fmt.Sprintf("listen: %s\nupstream: \"host=%s port=%d sslmode=disable\"\ntls:\n  cert_file: %s\n  key_file: %s\n%s",
		addr, pg.Host, pg.Port, cert.CertFile, cert.KeyFile, extra)
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{addr: addr, logs: &lockedBuffer{}, exit: make(chan error, 1), ca: ca}
	p.cmd = exec.Command(bin, "serve", "--config", path, "--log-level", "info")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exit <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("pgcloak serve output:\n%s", p.logs.Bytes())
		}
	})
	deadline := time.Now().Add(connectTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-p.exit:
			t.Fatalf("pgcloak serve ended: %v\n%s", err, p.logs.Bytes())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgcloak serve does not listen on %s:\n%s", addr, p.logs.Bytes())
		}
	}
}

func (p *serveProc) signal(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the process has logged text.
func (p *serveProc) waitLog(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(connectTimeout)
	for !strings.Contains(string(p.logs.Bytes()), text) {
		if time.Now().After(deadline) {
			t.Fatalf("pgcloak serve did not log %q:\n%s", text, p.logs.Bytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits for the process to end and fails t unless it exits 0.
func (p *serveProc) waitExit(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-p.exit:
		if err != nil {
			t.Fatalf("pgcloak serve: %v", err)
		}
	case <-time.After(within):
		t.Fatalf("pgcloak serve still running %v after SIGTERM", within)
	}
}

// rawClient is a protocol session that reads only when told.
type rawClient struct {
	t    *testing.T
	name string
	conn net.Conn
	fe   *pgproto3.Frontend
}

// dialRaw logs in to db through p as the superuser (trusted), over TLS when
// useTLS.
func (p *serveProc) dialRaw(t *testing.T, name, db string, useTLS bool) *rawClient {
	t.Helper()
	conn := rawConn(t, p.addr)
	if useTLS {
		if _, err := conn.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil { // SSLRequest
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != 'S' {
			t.Fatalf("SSLRequest: %q %v", b, err)
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	c := &rawClient{t: t, name: name, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": harness.SuperUser, "database": db, "application_name": name}})
	if code, msg := c.finish(); code != "" {
		t.Fatalf("%s: login: %s %s", name, code, msg)
	}
	return c
}

// finish flushes and reads up to ReadyForQuery, returning the error's code
// and message if any.
func (c *rawClient) finish() (code, msg string) {
	c.t.Helper()
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	for {
		m, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("%s: %v", c.name, err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			code, msg = m.Code, m.Message
		case *pgproto3.ReadyForQuery:
			return code, msg
		}
	}
}

// exec runs sql and fails t on an error.
func (c *rawClient) exec(sql string) {
	c.t.Helper()
	c.fe.Send(&pgproto3.Query{String: sql})
	if code, msg := c.finish(); code != "" {
		c.t.Fatalf("%s: %s: %s %s", c.name, sql, code, msg)
	}
}

// expectShutdown reads the FATAL 57P01 that ends a drained session, then
// the end of the connection.
func (c *rawClient) expectShutdown() {
	c.t.Helper()
	m, err := c.fe.Receive()
	e, ok := m.(*pgproto3.ErrorResponse)
	if err != nil || !ok || e.Severity != "FATAL" || e.Code != "57P01" {
		c.t.Fatalf("%s: got %#v, %v; want FATAL 57P01", c.name, m, err)
	}
	if m, err := c.fe.Receive(); err == nil {
		c.t.Fatalf("%s: %T after the FATAL, want the connection closed", c.name, m)
	}
}

// drainSetup returns the shared cluster, the pgcloak binary, a new table
// (id int) named after prefix and a direct connection.
func drainSetup(t *testing.T, prefix string) (*harness.Postgres, string, string, *pgx.Conn) {
	t.Helper()
	pg := sharedPG(t)
	bin := lcBuildPgcloak(t)
	table := uniqueName(t, prefix)
	if err := pg.ExecDB(harness.AppDB, "CREATE TABLE "+table+" (id int)"); err != nil {
		t.Fatal(err)
	}
	return pg, bin, table, connect(t, directDSN(pg, harness.SuperUser))
}

// TestShutdownDrains sends SIGTERM to a pgcloak serving, on each relay
// (plaintext: fast relay; TLS: goroutine relay), an idle session and one
// in an open transaction, plus a statement running: the idle sessions get
// 57P01 at once; new connections are refused; the transactions go on and
// commit, their sessions then get 57P01; the running statement returns its
// result, then 57P01; the process exits 0 once they are gone.
func TestShutdownDrains(t *testing.T) {
	pg, bin, table, direct := drainSetup(t, "drain")
	p := startServe(t, bin, pg, "shutdown_timeout: 1min\n")

	type pair struct{ idle, tx *rawClient }
	var pairs []pair
	for i, useTLS := range []bool{false, true} {
		idle := p.dialRaw(t, fmt.Sprintf("%s_idle%d", table, i), harness.AppDB, useTLS)
		idle.exec("SELECT 1")
		tx := p.dialRaw(t, fmt.Sprintf("%s_tx%d", table, i), harness.AppDB, useTLS)
		tx.exec("BEGIN")
		tx.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d)", table, 10*i+1))
		pairs = append(pairs, pair{idle, tx})
	}
	sleeper := p.dialRaw(t, table+"_sleep", harness.AppDB, true)
	sleeper.fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(1)::text"})
	if err := sleeper.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	waitActive(t, direct, table+"_sleep", "SELECT pg_sleep(1)::text")

	p.signal(t)
	for _, pr := range pairs {
		pr.idle.expectShutdown()
	}
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted while draining")
	}
	for i, pr := range pairs {
		pr.tx.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d)", table, 10*i+2))
		pr.tx.exec("COMMIT")
		pr.tx.expectShutdown()
	}
	if code, msg := sleeper.finish(); code != "" {
		t.Fatalf("the running statement: %s %s", code, msg)
	}
	sleeper.expectShutdown()
	p.waitExit(t, 10*time.Second)

	var ids []int
	rows, err := direct.Query(queryCtx(t), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	if fmt.Sprint(ids) != "[1 2 11 12]" {
		t.Errorf("committed rows %v, want [1 2 11 12]", ids)
	}
	if logs := string(p.logs.Bytes()); !strings.Contains(logs, "draining") || !strings.Contains(logs, "drained") {
		t.Errorf("the log does not tell the drain:\n%s", logs)
	}
}

// TestShutdownDeadline: a transaction still open at shutdown_timeout is
// closed with 57P01 and rolled back, on both relays; a second SIGTERM ends
// the drain at once.
func TestShutdownDeadline(t *testing.T) {
	pg, bin, table, direct := drainSetup(t, "deadline")
	count := func() int {
		var n int
		if err := direct.QueryRow(queryCtx(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("deadline", func(t *testing.T) {
		p := startServe(t, bin, pg, "shutdown_timeout: 1s\n")
		var txs []*rawClient
		for i, useTLS := range []bool{false, true} {
			tx := p.dialRaw(t, fmt.Sprintf("%s_%d", table, i), harness.AppDB, useTLS)
			tx.exec("BEGIN")
			tx.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d)", table, i))
			txs = append(txs, tx)
		}
		p.signal(t)
		for _, tx := range txs {
			tx.expectShutdown()
		}
		p.waitExit(t, 10*time.Second)
		for i := range txs {
			sessionGone(t, direct, fmt.Sprintf("%s_%d", table, i), false, time.Now(), 10*time.Second)
		}
		if n := count(); n != 0 {
			t.Errorf("%d rows of the transactions cut at the deadline were committed", n)
		}
	})

	t.Run("second signal", func(t *testing.T) {
		p := startServe(t, bin, pg, "shutdown_timeout: 1min\n")
		tx := p.dialRaw(t, table+"_again", harness.AppDB, false)
		tx.exec("BEGIN")
		p.signal(t)
		// Two signals sent before the first is handled are one signal.
		p.waitLog(t, "draining")
		tx.exec(fmt.Sprintf("INSERT INTO %s VALUES (7)", table)) // still served while draining
		p.signal(t)
		p.waitExit(t, 10*time.Second) // well before shutdown_timeout
		if _, err := tx.fe.Receive(); err == nil || !isConnEnd(err) {
			t.Errorf("after the second SIGTERM: %v, want the connection closed", err)
		}
		if n := count(); n != 0 {
			t.Errorf("%d rows committed", n)
		}
	})
}

// isConnEnd reports whether err ends a connection (EOF or reset).
func isConnEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "connection reset")
}
