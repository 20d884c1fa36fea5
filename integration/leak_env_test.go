package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
)

// cloakEnvOptions shapes newCloakEnv: an encEnv whose cluster and pgcloak
// logger the test chooses.
type cloakEnvOptions struct {
	encEnvOptions
	// pg is the cluster that holds the env's database; nil is the shared
	// cluster.
	pg *harness.Postgres
	// log is pgcloak's logger; nil logs to the test.
	log *zap.Logger
	// upstream, if set, is the host:port pgcloak relays sessions to instead
	// of the cluster's (a wireRecorder in front of it); admin_dsn and the
	// direct connections still go to the cluster.
	upstream string
	// noBackstop leaves the protected columns without their CHECK
	// backstop (allow_missing_backstop: true): for tests of what pgcloak
	// refuses by itself, or of stored values that are not ciphertext.
	noBackstop bool
	// unprotected leaves the backstops out without allowing it: pgcloak
	// starts not ready.
	unprotected bool
}

// newCloakEnv makes an encEnv: a database of its own, the config, `pgcloak
// keys init`, and pgcloak started as serve starts it. The cluster may be the
// test's own (the leak scan needs statement logging) and the logger one it
// can read (shadow mode's only trace is a warning).
func newCloakEnv(t *testing.T, o cloakEnvOptions) *encEnv {
	t.Helper()
	pg := o.pg
	if pg == nil {
		pg = sharedPG(t)
	}
	e := &encEnv{t: t, pg: pg, vault: sharedVault(t), dir: t.TempDir()}
	e.db = "enc_" + randomSuffix()
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+e.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	if o.schema != "" {
		if err := pg.ExecDB(e.db, o.schema); err != nil {
			t.Fatal(err)
		}
	}
	extra := o.extra
	if o.noBackstop {
		extra += "\nallow_missing_backstop: true\n"
	}
	if err := os.WriteFile(filepath.Join(e.dir, "vault-token"), []byte(e.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upHost, upPort := pg.Host, strconv.Itoa(pg.Port)
	if o.upstream != "" {
		var err error
		if upHost, upPort, err = net.SplitHostPort(o.upstream); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`upstream: "host=%s port=%s sslmode=disable"
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: pgcloak-pii-%s}
tables:
%s
%s
`, upHost, upPort, pg.DSN(harness.SuperUser, e.db), e.vault.Addr, e.db, indent(o.tables), extra)
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cmd.RunKeys([]string{"init", "--config", e.config, "--log-level", "warn"}, &out, &errb); code != 0 {
		t.Fatalf("pgcloak keys init: exit %d: %s", code, errb.String())
	}
	if !o.noBackstop && !o.unprotected {
		// As a DBA does after creating the tables: the database refuses
		// anything but ciphertext in the protected columns.
		out.Reset()
		errb.Reset()
		if code := cmd.RunProtect([]string{"--config", e.config, "--apply", "--log-level", "warn"}, &out, &errb); code != 0 {
			t.Fatalf("pgcloak protect --apply: exit %d: %s%s", code, out.String(), errb.String())
		}
	}
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	log := o.log
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	p := startPgcloak(t, cfg, log, !o.unprotected)
	e.addr, e.srv, e.prot, e.stop, e.reg = p.addr, p.srv, p.prot, p.stop, p.reg
	return e
}

// startCloakProxy starts pgcloak in process as serve does, with the logger
// given, and waits until it is ready.
func startCloakProxy(t *testing.T, cfg *config.Config, log *zap.Logger) (string, *proxy.Server) {
	t.Helper()
	p := startPgcloak(t, cfg, log, true)
	return p.addr, p.srv
}

// wireRecorder is a TCP relay between pgcloak and PostgreSQL that keeps
// every byte sent each way, so a test can prove what reached the server.
type wireRecorder struct {
	addr string
	mu   sync.Mutex
	up   []byte // pgcloak → PostgreSQL
	down []byte // PostgreSQL → pgcloak
}

// startWireRecorder relays connections on a free port of 127.0.0.1 to pg.
func startWireRecorder(t *testing.T, pg *harness.Postgres) *wireRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireRecorder{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var connMu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)))
			if err != nil {
				c.Close()
				continue
			}
			connMu.Lock()
			conns = append(conns, c, s)
			connMu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); w.pipe(s, c, &w.up) }()
			go func() { defer wg.Done(); w.pipe(c, s, &w.down) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		connMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connMu.Unlock()
		wg.Wait()
	})
	return w
}

// pipe copies src to dst, appending what passes to *rec.
func (w *wireRecorder) pipe(dst, src net.Conn, rec *[]byte) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w.mu.Lock()
			*rec = append(*rec, buf[:n]...)
			w.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// bytes returns copies of what went up (to PostgreSQL) and down so far.
func (w *wireRecorder) bytes() (up, down []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.up), bytes.Clone(w.down)
}
