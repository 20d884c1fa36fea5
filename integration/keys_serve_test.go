package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// TestServeVaultOutage runs `pgcloak serve` as a process against a Vault it
// reaches through a gate the test opens and closes, and checks DESIGN §5's
// failure rules end to end, as a client and an orchestrator see them:
//
//  1. Vault unreachable at start: /readyz is 503 naming Vault's address, and
//     clients are refused with 57P03 instead of being relayed unprotected.
//  2. Vault comes up: serve becomes ready by itself and encrypts.
//  3. Vault lost later: values under the cached data key still decrypt and
//     writes still encrypt.
//  4. A value under a key version this instance never loaded (another
//     instance rotated): the client gets a FATAL 58000 naming the column,
//     the version and Vault, never plaintext or ciphertext; new sessions
//     still read what the cached keys decrypt.
//  5. Vault back: the same row decrypts without a restart.
//  6. SIGTERM: serve exits 0.
func TestServeVaultOutage(t *testing.T) {
	bin := lcBuildPgcloak(t)
	e := newKeysEnv(t, keysConfigOpts{})
	e.mustKeys("init")
	if err := e.pg.ExecDB(e.db, "CREATE TABLE customers (id int PRIMARY KEY, email bytea, "+catalog.BackstopConstraint("email")+")"); err != nil {
		t.Fatal(err)
	}

	gate := newTCPGate(t, strings.TrimPrefix(e.vault.Addr, "http://"))
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	config := filepath.Join(e.dir, "serve.yaml")
	yaml := fmt.Sprintf(`listen: %s
metrics_listen: %s
upstream: "host=%s port=%d sslmode=disable"
admin_dsn: %q
kms:
  vault:
    address: http://%s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: pgcloak-pii}
key_refresh: 500ms
tables:
  public.customers:
    email: {type: text, key: pii}
`, listen, metrics, e.pg.Host, e.pg.Port, e.adminDSN, gate.addr)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// 1. Vault unreachable at start.
	var logs lockedBuffer
	p := exec.Command(bin, "serve", "--config", config)
	p.Dir = e.dir
	p.Env = append(os.Environ(), "VAULT_MAX_RETRIES=0")
	p.Stdout, p.Stderr = &logs, &logs
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()
	t.Cleanup(func() {
		_ = p.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("serve log:\n%s", logs.String())
		}
	})
	ready := func() (int, string) {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 30*time.Second, "serve to report that Vault is unreachable", func() bool {
		code, body := ready()
		return code == http.StatusServiceUnavailable && strings.Contains(body, gate.addr)
	})
	code, body := ready()
	t.Logf("Vault down at start: /readyz %d %q", code, strings.TrimSpace(body))
	dsn := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, listen, e.db)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := pgx.Connect(ctx, dsn)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P03" || !strings.Contains(pgErr.Message, gate.addr) {
		t.Fatalf("connecting while Vault is unreachable: %v; want 57P03 naming %s", err, gate.addr)
	}

	// 2. Vault comes up.
	gate.open()
	waitFor(t, 30*time.Second, "serve to become ready once Vault is up", func() bool {
		code, _ := ready()
		return code == http.StatusOK
	})
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(context.Background()) }()
	if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (1, $1)`, "before@example.org"); err != nil {
		t.Fatal(err)
	}

	// 3. Vault lost.
	gate.close()
	if _, err := c.Exec(ctx, `INSERT INTO customers VALUES (2, $1)`, "during@example.org"); err != nil {
		t.Fatalf("insert with Vault down: %v", err)
	}
	if got := emails(t, c, "id IN (1, 2)"); got != "before@example.org,during@example.org" {
		t.Fatalf("with Vault down: %q", got)
	}

	// 4. Another instance, which reaches Vault, rotates and writes a row
	// under version 2.
	e.mustKeys("rotate", "pii")
	other := e.instance(nil)
	v2 := encrypt(t, other, "pii", "rotated@example.org")
	if keyVersion(t, v2) != 2 {
		t.Fatalf("other instance encrypts with version %d", keyVersion(t, v2))
	}
	d, err := pgx.Connect(ctx, e.adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	if _, err := d.Exec(ctx, `INSERT INTO customers VALUES (3, $1)`, v2); err != nil {
		t.Fatal(err)
	}
	var got string
	err = c.QueryRow(ctx, `SELECT email FROM customers WHERE id = 3`).Scan(&got)
	if !errors.As(err, &pgErr) || pgErr.Code != "58000" || pgErr.Severity != "FATAL" ||
		!strings.Contains(pgErr.Message, "public.customers.email") || !strings.Contains(pgErr.Message, "version 2") || !strings.Contains(pgErr.Message, gate.addr) {
		t.Fatalf("reading a version 2 value with Vault down: %q, %v; want FATAL 58000 naming the column, the version and Vault", got, err)
	}
	t.Logf("Vault down, unknown key version: %s %s: %s", pgErr.Severity, pgErr.Code, pgErr.Message)
	// The result stream cannot go on after a row that cannot be decrypted,
	// so that session ended; a new one reads what the cached keys can.
	c.Close(ctx)
	if c, err = pgx.Connect(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	if got := emails(t, c, "id IN (1, 2)"); got != "before@example.org,during@example.org" {
		t.Fatalf("new session with Vault down: %q", got)
	}

	// 5. Vault back: the row decrypts without a restart.
	gate.open()
	waitFor(t, 30*time.Second, "the version 2 row to decrypt once Vault is back", func() bool {
		if c.IsClosed() { // ended by a FATAL while the key was not loaded yet
			if c, err = pgx.Connect(ctx, dsn); err != nil {
				t.Fatal(err)
			}
		}
		err := c.QueryRow(ctx, `SELECT email FROM customers WHERE id = 3`).Scan(&got)
		return err == nil && got == "rotated@example.org"
	})
	if got := emails(t, c, "true"); got != "before@example.org,during@example.org,rotated@example.org" {
		t.Fatalf("after Vault came back: %q", got)
	}
	c.Close(ctx)

	// 6. SIGTERM.
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not exit after SIGTERM")
	}
	if s := logs.String(); strings.Contains(s, "example.org") {
		t.Errorf("serve logged a protected value:\n%s", s)
	}
}

// emails returns the emails of customers matching where, by id, joined by
// commas.
func emails(t *testing.T, c *pgx.Conn, where string) string {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT email FROM customers WHERE `+where+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(got, ",")
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tcpGate is a TCP port that forwards to target while open and refuses
// connections while closed (nothing listens), like a server that is down.
type tcpGate struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

// newTCPGate reserves a free port for a gate to target, closed.
func newTCPGate(t *testing.T, target string) *tcpGate {
	g := &tcpGate{t: t, addr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(g.close)
	return g
}

func (g *tcpGate) open() {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("gate: %v", err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", g.target)
			if err != nil {
				in.Close()
				continue
			}
			g.mu.Lock()
			g.conns[in], g.conns[out] = true, true
			g.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

// close stops listening and cuts every forwarded connection.
func (g *tcpGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}
