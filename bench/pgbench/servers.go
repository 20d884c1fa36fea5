package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// targetKind is a server that can be measured: PostgreSQL itself or a proxy.
type targetKind struct {
	name  string
	title string // for people, in the markdown table
	// perVariant: one target per pgcloak variant (see variants.go).
	perVariant bool
	// start returns the port that pgbench connects to and the process
	// whose CPU time is measured (0: none).
	start func(context.Context, *servers, variant) (port, pid int, err error)
}

// knownTargets are the targets a run can compare, in their default order.
// A new target (pgcloak with another configuration, say) is one more entry
// here.
var knownTargets = []targetKind{
	{"direct", "direct", false, func(_ context.Context, s *servers, _ variant) (int, int, error) { return s.pg.Port, 0, nil }},
	{"pgbouncer", "PgBouncer", false, func(ctx context.Context, s *servers, _ variant) (int, int, error) { return s.startPgBouncer(ctx) }},
	{"pgcloak", "pgcloak", true, func(ctx context.Context, s *servers, v variant) (int, int, error) {
		return s.startPgcloak(ctx, "pgcloak"+v.suffix, v, "")
	}},
	// pgcloak with the tables of bench/sql/encryption_setup.sql protected.
	{"pgcloak-enc", "pgcloak (encrypting)", true, func(ctx context.Context, s *servers, v variant) (int, int, error) {
		return s.startPgcloakEnc(ctx, "pgcloak-enc"+v.suffix, v, false)
	}},
	// The same with access rules and the audit log on.
	{"pgcloak-access", "pgcloak (encrypting, access rules, audit log)", true, func(ctx context.Context, s *servers, v variant) (int, int, error) {
		return s.startPgcloakEnc(ctx, "pgcloak-access"+v.suffix, v, true)
	}},
}

func targetNames() []string {
	var names []string
	for _, t := range knownTargets {
		names = append(names, t.name)
	}
	return names
}

func findTarget(name string) *targetKind {
	for i := range knownTargets {
		if knownTargets[i].name == name {
			return &knownTargets[i]
		}
	}
	return nil
}

// title is the target's name for people.
func title(t target) string {
	k := findTarget(t.Kind)
	if k == nil {
		return t.Name
	}
	if !k.perVariant || t.Variant == "" {
		return k.title
	}
	return k.title + " " + t.Variant
}

// servers starts the proxies in front of one PostgreSQL.
type servers struct {
	env     *env
	pg      *harness.Postgres
	clients int
	unix    bool // proxies reach PostgreSQL over its Unix socket
	// encYAML is the configuration of pgcloak-enc once its keys exist;
	// encFilled: the protected tables were filled. The first pgcloak-enc
	// variant does both; the others share the keys and the tables.
	encYAML   string
	encFilled bool
}

// upstreamHost is the host both proxies connect to: PostgreSQL's socket
// directory, or its TCP address.
func (s *servers) upstreamHost() string {
	if s.unix {
		return s.pg.SocketDir
	}
	return s.pg.Host
}

// startPgBouncer runs PgBouncer in session mode in the foreground, as a
// child process, with trust authentication for benchUser. PgBouncer refuses
// to run as root; then it runs as the postgres user, like PostgreSQL.
func (s *servers) startPgBouncer(ctx context.Context) (port, pid int, err error) {
	dir := s.env.TempDir()
	port = harness.FreePort(s.env)
	auth := filepath.Join(dir, "userlist.txt")
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = session
max_client_conn = %d
default_pool_size = %d
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`, s.upstreamHost(), s.pg.Port, port, auth, 4*s.clients+100, s.clients+10)
	if err := os.WriteFile(auth, []byte(strconv.Quote(benchUser)+` ""`+"\n"), 0o644); err != nil {
		return 0, 0, err
	}
	conf := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
		return 0, 0, err
	}
	prog := harness.RequireBinary(s.env, "pgbouncer")
	c, err := s.env.start(ctx, "pgbouncer", serverCredential(), nil, prog, conf)
	if err != nil {
		return 0, 0, err
	}
	return port, c.cmd.Process.Pid, c.waitListening(port)
}

// startPgcloak runs variant v of pgcloak in front of PostgreSQL. extraYAML
// is appended to the configuration, for targets that need more than a
// relay. The child gets GOMAXPROCS=v.procs; see the package documentation.
func (s *servers) startPgcloak(ctx context.Context, name string, v variant, extraYAML string) (port, pid int, err error) {
	port = harness.FreePort(s.env)
	conf := filepath.Join(s.env.TempDir(), "pgcloak.yaml")
	yaml := fmt.Sprintf("listen: 127.0.0.1:%d\nupstream: \"host=%s port=%d sslmode=disable\"\nlimits:\n  max_client_connections: %d\n%s",
		port, s.upstreamHost(), s.pg.Port, 4*s.clients+100, extraYAML)
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		return 0, 0, err
	}
	var env []string
	if v.procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(v.procs))
	}
	c, err := s.env.start(ctx, name, nil, env, v.bin, "serve", "--config", conf, "--log-level", "warn")
	if err != nil {
		return 0, 0, err
	}
	return port, c.cmd.Process.Pid, c.waitListening(port)
}

// module is pgcloak's module path.
const module = "github.com/pgcloak/pgcloak"

// checkTarget connects through port and reads a pgbench table, so that a
// broken target fails in seconds rather than after the warm-up.
func checkTarget(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var n int
	return c.QueryRow(ctx, "SELECT count(*) FROM pgbench_branches").Scan(&n)
}

// pgcloakVersion returns the commit and Go version the binary was built
// from.
func pgcloakVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown"
	}
	rev, dirty := "unknown", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+modified"
		}
	}
	return rev + dirty + " " + bi.GoVersion
}

// firstLine runs a program and returns the first line of its output.
func firstLine(prog string, args ...string) string {
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// env runs the servers of one benchmark run. It implements harness.TB for a
// program: Fatalf panics with a fatal, which run recovers and returns, and
// close runs the cleanups, last registered first.
type env struct {
	root     string // temporary directory, reachable by the server account
	cleanups []func()
	verbose  bool
}

// fatal is the panic value of env.Fatalf.
type fatal struct{ err error }

func newEnv(verbose bool) (*env, error) {
	root, err := os.MkdirTemp("", "pgcloak-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{root: root, verbose: verbose}
	e.Cleanup(func() { os.RemoveAll(root) })
	if err := chownServer(root); err != nil {
		return e, err
	}
	return e, os.Chmod(root, 0o755)
}

func (e *env) Helper() {}

func (e *env) Fatalf(format string, args ...any) { panic(fatal{fmt.Errorf(format, args...)}) }

func (e *env) Logf(format string, args ...any) {
	if e.verbose {
		logf(format, args...)
	}
}

func (e *env) Cleanup(f func()) { e.cleanups = append(e.cleanups, f) }

// TempDir returns a new directory below root that the server account owns.
func (e *env) TempDir() string {
	d, err := os.MkdirTemp(e.root, "")
	if err == nil {
		err = chownServer(d)
	}
	if err == nil {
		err = os.Chmod(d, 0o755)
	}
	if err != nil {
		e.Fatalf("bench: temp dir: %v", err)
	}
	return d
}

// close runs the cleanups; it is safe to call more than once.
func (e *env) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// child is a server process started by env.start.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string        // its stdout and stderr
	done chan struct{} // closed when it has exited
	err  error         // exit status, valid after done
}

// start runs prog as a child server that env.close stops. cred, if not nil,
// is the account it runs as; extraEnv is added to its environment.
func (e *env) start(ctx context.Context, name string, cred *syscall.Credential, extraEnv []string, prog string, args ...string) (*child, error) {
	c := &child{name: name, log: filepath.Join(e.root, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	c.cmd = exec.Command(prog, args...)
	c.cmd.SysProcAttr = childAttr(cred)
	c.cmd.Env = append(cleanEnv(), extraEnv...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	e.Cleanup(c.stop)
	return c, ctx.Err()
}

// childAttr puts a child in its own process group (a Ctrl-C in the terminal
// reaches only us, and we stop the children in order) and has the kernel
// kill it if we die without cleaning up.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitListening waits until the child accepts TCP connections on port.
func (c *child) waitListening(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return conn.Close()
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited (%v); its output:\n%s", c.name, c.err, readTail(c.log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after 15s; its output:\n%s", c.name, addr, readTail(c.log))
		}
	}
}

// stop sends SIGTERM (PgBouncer's immediate shutdown, pgcloak's graceful
// one: no sessions are left by then) and kills the process group after 5s.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// serverCredential is the account PgBouncer runs as: nil (ourselves) unless
// we are root, then the postgres system user, as for PostgreSQL.
func serverCredential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil // PgBouncer will say that it cannot run as root
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
}

// chownServer gives path to the server account, if there is one.
func chownServer(path string) error {
	cred := serverCredential()
	if cred == nil {
		return nil
	}
	err := os.Chown(path, int(cred.Uid), int(cred.Gid))
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("give %s to the postgres user: %w", path, err)
	}
	return err
}
