package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// opsEnv is `pgcloak serve` run as a process, as systemd runs it, with a
// config file the test rewrites and reloads (SIGHUP, the console's
// RELOAD): an lcEnv (a database of its own on the shared cluster, keys in
// the shared Vault) and the binary built for the test.
type opsEnv struct {
	*lcEnv
	t       *testing.T
	config  string // the file serve reads
	listen  string // pgcloak's client address
	metrics string // its /metrics address
	bin     string

	proc   *exec.Cmd
	logs   *lockedBuffer
	exited chan error
}

// newOpsEnv creates the database, runs schema in it, makes the keyring
// (pgcloak keys init) and builds the binary. The config is written by
// write.
func newOpsEnv(t *testing.T, schema string) *opsEnv {
	t.Helper()
	e := newRelayEnv(t, sharedPG(t))
	e.lcEnv = newLCEnv(t, schema, nil)
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	return e
}

// newRelayEnv is an opsEnv for serve as a plain relay (no tables, no keys)
// in front of pg; writeRelay writes its config.
func newRelayEnv(t *testing.T, pg *harness.Postgres) *opsEnv {
	t.Helper()
	e := &opsEnv{lcEnv: &lcEnv{t: t, pg: pg, dir: t.TempDir()}, t: t}
	e.listen = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	e.metrics = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	e.bin = servedPgcloak(t)
	return e
}

// servedBinary is the pgcloak binary that the ops tests run as a process,
// built once per package run (linking takes seconds) and removed by
// TestMain.
var servedBinary struct {
	once sync.Once
	tb   packageTB
	path string
	err  error
}

// servedPgcloak builds the binary on first use and returns its path.
func servedPgcloak(t testing.TB) string {
	t.Helper()
	b := &servedBinary
	b.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		b.path = filepath.Join(b.tb.TempDir(), "pgcloak")
		begin := time.Now()
		c := exec.Command(harness.RequireBinary(t, "go"), "build", "-o", b.path, ".")
		c.Dir = filepath.Dir(filepath.Dir(file))
		if out, err := c.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		t.Logf("built %s in %v", b.path, time.Since(begin).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// writeRelay writes a relay's config: upstream, the superuser as the
// console's admin, and extra top-level YAML.
func (e *opsEnv) writeRelay(upstream, extra string) {
	e.t.Helper()
	yaml := fmt.Sprintf("listen: %s\nmetrics_listen: %s\nupstream: %q\nadmin_users: [postgres]\n%s\n", e.listen, e.metrics, upstream, extra)
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// write writes serve's config file: rules in state, and extra top-level
// YAML.
func (e *opsEnv) write(state string, rules []lcRule, extra string) {
	e.t.Helper()
	extra = fmt.Sprintf("listen: %s\nmetrics_listen: %s\ncatalog_refresh: 500ms\n%s", e.listen, e.metrics, extra)
	data, err := os.ReadFile(e.configWith(state, rules, extra))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.config, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// start runs serve and waits until /readyz says ready.
func (e *opsEnv) start() {
	e.t.Helper()
	e.logs = &lockedBuffer{}
	e.proc = exec.Command(e.bin, "serve", "--config", e.config)
	e.proc.Dir = e.dir
	e.proc.Stdout, e.proc.Stderr = e.logs, e.logs
	if err := e.proc.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.exited = make(chan error, 1)
	go func() { e.exited <- e.proc.Wait() }()
	e.t.Cleanup(func() {
		_ = e.proc.Process.Kill()
		<-e.exited
		if e.t.Failed() {
			e.t.Logf("serve log:\n%s", e.logs.String())
		}
	})
	waitFor(e.t, 30*time.Second, "serve to be ready", func() bool {
		code, _ := e.get("/readyz")
		return code == http.StatusOK
	})
}

// get fetches path from the metrics listener.
func (e *opsEnv) get(path string) (int, string) {
	resp, err := http.Get("http://" + e.metrics + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample whose line starts with series
// (name and labels as /metrics prints them), or "" when there is none.
func (e *opsEnv) metric(series string) string {
	_, body := e.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// hup sends SIGHUP (systemctl reload) and waits until the reload counter
// for result has grown.
func (e *opsEnv) hup(result string) {
	e.t.Helper()
	series := `pgcloak_config_reloads_total{result="` + result + `"}`
	before := e.metric(series)
	if err := e.proc.Process.Signal(syscall.SIGHUP); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, 30*time.Second, "the reload to end with "+result, func() bool { return e.metric(series) != before })
}

// dsn connects to db through pgcloak as user (password filled in).
func (e *opsEnv) dsn(user, db string, params ...string) string {
	u := strings.Replace(e.pg.DSN(user, db), fmt.Sprintf("%s:%d", e.pg.Host, e.pg.Port), e.listen, 1)
	for i := 0; i+1 < len(params); i += 2 {
		u += "&" + params[i] + "=" + params[i+1]
	}
	return u
}

// psql runs psql against the console as user and returns what it printed
// (aligned, no pager) and its error.
func (e *opsEnv) psql(user string, sql ...string) (string, error) {
	args := []string{"-X", "-v", "ON_ERROR_STOP=1", "-d", e.dsn(user, "pgcloak")}
	for _, s := range sql {
		args = append(args, "-c", s)
	}
	c := exec.Command(harness.RequireBinary(e.t, "psql"), args...)
	c.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := c.CombinedOutput()
	return string(out), err
}

// mustPsql is psql that fails the test on error.
func (e *opsEnv) mustPsql(user string, sql ...string) string {
	e.t.Helper()
	out, err := e.psql(user, sql...)
	if err != nil {
		e.t.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return out
}

// stepCtx is a context for one test step.
func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
