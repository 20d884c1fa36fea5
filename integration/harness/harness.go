package harness

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// TB is the part of testing.TB that the harness uses, so that `pgcloak demo`
// can start the same servers with its own implementation.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// failed reports whether t is a testing.TB whose test has failed.
func failed(t TB) bool {
	f, ok := t.(interface{ Failed() bool })
	return ok && f.Failed()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("harness: free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until addr accepts TCP connections or timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: %s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// installHints maps a binary to the command that installs it on Debian.
var installHints = map[string]string{
	"postgres":  "apt-get install -y postgresql",
	"initdb":    "apt-get install -y postgresql",
	"pg_ctl":    "apt-get install -y postgresql",
	"psql":      "apt-get install -y postgresql-client",
	"pgbench":   "apt-get install -y postgresql-contrib",
	"pgbouncer": "apt-get install -y pgbouncer",
	"python3":   "apt-get install -y python3 python3-psycopg2",
	"java":      "apt-get install -y openjdk-17-jre-headless libpostgresql-jdbc-java",
	"node":      "apt-get install -y nodejs npm",
	"npm":       "apt-get install -y npm",
	"go":        "install Go from https://go.dev/dl/",
}

// RequireBinary returns the path of the named program, looking in PATH and in
// the PostgreSQL binary directory. A missing program fails the test (it does
// not skip it) with a hint how to install it.
func RequireBinary(t TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if dir, err := PostgresBinDir(); err == nil {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	hint, ok := installHints[name]
	if !ok {
		hint = "install it and put it in PATH"
	}
	t.Fatalf("harness: %s not found in PATH or the PostgreSQL bin directory; to install: %s", name, hint)
	return ""
}

// PostgresBinDir returns the directory of the PostgreSQL server binaries:
// $PGCLOAK_PGBIN, else the newest /usr/lib/postgresql/*/bin (Debian), else
// the directory of initdb in PATH.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("PGCLOAK_PGBIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("harness: PostgreSQL server binaries not found (set PGCLOAK_PGBIN, or %s)", installHints["postgres"])
}

// pgMajor extracts N from /usr/lib/postgresql/N/bin.
func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// account is the OS user that runs a server: the current user, or the
// `postgres` system user when running as root.
type account struct {
	cred *syscall.Credential // nil: run as the current user
}

// serverAccount returns the account that PostgreSQL must run as.
func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, fmt.Errorf("harness: running as root, PostgreSQL needs the unprivileged `postgres` user: %w (%s)", err, installHints["postgres"])
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

// chown gives path to the account; it does nothing when running as the
// current user.
func (a account) chown(path string) error {
	if a.cred == nil {
		return nil
	}
	return os.Chown(path, int(a.cred.Uid), int(a.cred.Gid))
}

// canTraverse checks that the account can reach entries below dir: every
// directory from dir up to / must be searchable by it.
func (a account) canTraverse(dir string) error {
	if a.cred == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		ok := st.Mode().Perm()&0o001 != 0 ||
			sys.Uid == a.cred.Uid && st.Mode().Perm()&0o100 != 0 ||
			sys.Gid == a.cred.Gid && st.Mode().Perm()&0o010 != 0
		if !ok {
			return fmt.Errorf("the postgres user cannot enter %s (mode %v); set TMPDIR to a directory it can reach, such as /tmp", d, st.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// command returns a command that runs as the account, in its own process
// group, and that the kernel kills when this process dies.
func (a account) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: a.cred,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// process is a running child server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status; valid after done is closed
}

// startProcess starts cmd and watches for its exit.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends sig and waits up to grace for the exit, then kills the whole
// process group. It is safe to call more than once.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ownerFile, in each server directory, holds the pid of the process that
// made it, so that a later run can remove directories whose owner died
// without running its cleanups (a test timeout, a panic).
const ownerFile = "harness.pid"

// serverDir creates a temporary directory named prefix*, after removing
// stale ones of the same prefix.
func serverDir(prefix string) (string, error) {
	stale, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range stale {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	return d, os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, 0)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(b)
}
