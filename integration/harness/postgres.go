package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles that StartPostgres creates. Each of the three application roles
// authenticates with the method in its name, over TCP and the Unix socket.
const (
	SuperUser = "postgres"   // superuser, trust over the socket and loopback
	TrustUser = "trust_user" // trust
	MD5User   = "md5_user"   // md5, password stored as MD5
	SCRAMUser = "scram_user" // scram-sha-256
	AppDB     = "app"        // database the application roles share
)

// PostgresOptions configures StartPostgres. The zero value is a plain
// cluster without TLS.
type PostgresOptions struct {
	// TLS, if set, turns on ssl with this server certificate and key.
	TLS *CertPair
	// RequireTLS makes every TCP line of pg_hba.conf `hostssl`, so that
	// plain TCP connections are refused. Needs TLS.
	RequireTLS bool
	// Settings are extra postgresql.conf settings; they override the
	// harness defaults. Values are written as given (quote strings:
	// {"log_statement": "'all'"}).
	Settings map[string]string
	// HBA are extra pg_hba.conf lines placed before the harness's own, so
	// that they match first.
	HBA []string
	// StartTimeout bounds the wait for the server to accept connections
	// (default 30s).
	StartTimeout time.Duration
}

// Postgres is a running throwaway PostgreSQL cluster listening on
// 127.0.0.1:Port and on a Unix socket in SocketDir.
type Postgres struct {
	Host      string // always 127.0.0.1
	Port      int
	SocketDir string // directory of the Unix socket (.s.PGSQL.<Port>)
	DataDir   string
	BinDir    string
	LogPath   string // server log (stderr of postgres), kept until cleanup

	MD5Password   string // password of MD5User
	SCRAMPassword string // password of SCRAMUser

	// CAFile is the TLS.CAFile of the options: DSN uses it for
	// sslmode=verify-full. Empty without TLS.
	CAFile string

	root string // temporary directory holding everything above
	acct account
	proc *process
}

// defaultSettings are the harness's postgresql.conf settings, tuned for
// throwaway clusters.
var defaultSettings = map[string]string{
	"listen_addresses":   "'127.0.0.1'",
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "200",
	"shared_buffers":     "'128MB'",
	"logging_collector":  "off",
	"log_destination":    "'stderr'",
	"log_line_prefix":    "'%m [%p] %q%u@%d '",
	"lc_messages":        "'C'",
}

// StartPostgres creates a cluster in a new temporary directory, starts it on
// a free port and creates the roles and the AppDB database. A Cleanup on t
// stops the server and removes the directory.
func StartPostgres(t TB, opts PostgresOptions) *Postgres {
	t.Helper()
	begin := time.Now()
	p, err := newPostgres(opts)
	if p != nil {
		t.Cleanup(func() { p.cleanup(t) })
	}
	if err == nil {
		err = p.start(opts)
	}
	if err == nil {
		err = p.createRoles()
	}
	if err != nil {
		t.Fatalf("harness: start PostgreSQL: %v", err)
	}
	t.Logf("harness: PostgreSQL on %s:%d ready in %v (data %s, log %s)",
		p.Host, p.Port, time.Since(begin).Round(time.Millisecond), p.DataDir, p.LogPath)
	return p
}

// newPostgres runs initdb and writes the configuration. It returns p as soon
// as there is a directory to clean up.
func newPostgres(opts PostgresOptions) (*Postgres, error) {
	p, err := newServerRoot()
	if err != nil {
		return p, err
	}
	bin, acct := p.BinDir, p.acct
	initdb := acct.command(filepath.Join(bin, "initdb"), "-D", p.DataDir, "-U", SuperUser,
		"-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Env = serverEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		return p, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if opts.TLS != nil {
		if err := p.installTLS(*opts.TLS); err != nil {
			return p, err
		}
	}
	if err := p.writeConfig(opts); err != nil {
		return p, err
	}
	return p, nil
}

// newServerRoot makes the directory of a new cluster, which the server
// account owns (its data directory is still to be made), and returns p as
// soon as there is a directory to clean up.
func newServerRoot() (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parent directory is 0700 root, which the postgres
	// user cannot traverse.
	root, err := serverDir("pgcloak-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		Host:          "127.0.0.1",
		SocketDir:     root,
		DataDir:       filepath.Join(root, "data"),
		BinDir:        bin,
		MD5Password:   randomHex(12),
		SCRAMPassword: randomHex(12),
		root:          root,
		acct:          acct,
	}
	p.LogPath = filepath.Join(p.DataDir, "postgres.log")
	if err := os.Chmod(root, 0o755); err != nil {
		return p, err
	}
	if err := acct.chown(root); err != nil {
		return p, err
	}
	return p, acct.canTraverse(filepath.Dir(root))
}

// serverEnv is the environment of initdb and postgres: ours, with messages
// in English and no libpq variables that could redirect them.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// installTLS copies the server certificate and key into the data directory,
// where the server user can read them.
func (p *Postgres) installTLS(c CertPair) error {
	for _, f := range []struct {
		name string
		data []byte
	}{{"server.crt", c.CertPEM}, {"server.key", c.KeyPEM}} {
		path := filepath.Join(p.DataDir, f.name)
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			return err
		}
		if err := p.acct.chown(path); err != nil {
			return err
		}
	}
	p.CAFile = c.CAFile
	return nil
}

// writeConfig appends the settings to postgresql.conf and replaces
// pg_hba.conf.
func (p *Postgres) writeConfig(opts PostgresOptions) error {
	settings := map[string]string{}
	for k, v := range defaultSettings {
		settings[k] = v
	}
	settings["unix_socket_directories"] = quote(p.SocketDir)
	if opts.TLS != nil {
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = "'server.crt'"
		settings["ssl_key_file"] = "'server.key'"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# pgcloak integration harness\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.DataDir, "pg_hba.conf"), []byte(hba(opts)), 0o600)
}

// hba returns pg_hba.conf: the extra lines, then one line per role and
// address, each role with the method it is named after. Roles created by
// tests fall through to scram-sha-256.
func hba(opts PostgresOptions) string {
	var b strings.Builder
	b.WriteString("# TYPE DATABASE USER ADDRESS METHOD\n")
	for _, l := range opts.HBA {
		b.WriteString(l + "\n")
	}
	host := "host"
	if opts.TLS != nil && opts.RequireTLS {
		host = "hostssl"
	}
	methods := [][2]string{
		{SuperUser, "trust"},
		{TrustUser, "trust"},
		{MD5User, "md5"},
		{SCRAMUser, "scram-sha-256"},
		{"all", "scram-sha-256"},
	}
	for _, m := range methods {
		fmt.Fprintf(&b, "local all %s %s\n", m[0], m[1])
		for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
			fmt.Fprintf(&b, "%s all %s %s %s\n", host, m[0], addr, m[1])
		}
	}
	return b.String()
}

// start starts postgres on a free port and waits until it accepts
// connections. A port taken between FreePort and bind is retried.
func (p *Postgres) start(opts PostgresOptions) error {
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if p.Port, err = freePort(); err != nil {
			return err
		}
		if err = p.startOnce(timeout); err == nil || !strings.Contains(tail(p.LogPath, 4096), "could not bind") {
			return err
		}
	}
	return err
}

func (p *Postgres) startOnce(timeout time.Duration) error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := p.acct.command(filepath.Join(p.BinDir, "postgres"), "-D", p.DataDir, "-p", strconv.Itoa(p.Port))
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.proc, err = startProcess(cmd); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, p.SocketDSN(SuperUser, "postgres"))
		if err == nil {
			return c.Close(ctx)
		}
		if p.proc.exited() {
			return fmt.Errorf("postgres exited (%v); log %s:\n%s", p.proc.err, p.LogPath, tail(p.LogPath, 4096))
		}
		select {
		case <-ctx.Done():
			p.proc.stop(syscall.SIGQUIT, 5*time.Second)
			return fmt.Errorf("postgres not ready after %v: %v; log %s:\n%s", timeout, err, p.LogPath, tail(p.LogPath, 4096))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// createRoles creates the roles and AppDB. Every role can use every table,
// sequence and function that another of them creates in AppDB's public
// schema.
func (p *Postgres) createRoles() error {
	roles := TrustUser + ", " + MD5User + ", " + SCRAMUser
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB", TrustUser),
		fmt.Sprintf("SET password_encryption = 'md5'; CREATE ROLE %s LOGIN CREATEDB PASSWORD %s", MD5User, quote(p.MD5Password)),
		fmt.Sprintf("SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN CREATEDB PASSWORD %s", SCRAMUser, quote(p.SCRAMPassword)),
		"CREATE DATABASE " + AppDB, // not in a transaction block
		fmt.Sprintf("GRANT ALL ON DATABASE %s TO %s", AppDB, roles),
	} {
		if err := p.ExecDB("postgres", sql); err != nil {
			return err
		}
	}
	return p.Exec(fmt.Sprintf(`
		GRANT ALL ON SCHEMA public TO %[1]s;
		ALTER DEFAULT PRIVILEGES FOR ROLE %[2]s, %[1]s IN SCHEMA public GRANT ALL ON TABLES TO %[1]s;
		ALTER DEFAULT PRIVILEGES FOR ROLE %[2]s, %[1]s IN SCHEMA public GRANT ALL ON SEQUENCES TO %[1]s;
		ALTER DEFAULT PRIVILEGES FOR ROLE %[2]s, %[1]s IN SCHEMA public GRANT ALL ON FUNCTIONS TO %[1]s;`,
		roles, SuperUser))
}

// DSN returns a pgx/libpq URL that connects to db over TCP as user, with
// the user's password. Without TLS it has sslmode=disable; with TLS it has
// sslmode=verify-full against the CA that issued the server certificate.
func (p *Postgres) DSN(user, db string) string {
	u := url.URL{
		Scheme: "postgres",
		Host:   net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path:   "/" + db,
	}
	switch user {
	case MD5User:
		u.User = url.UserPassword(user, p.MD5Password)
	case SCRAMUser:
		u.User = url.UserPassword(user, p.SCRAMPassword)
	default:
		u.User = url.User(user)
	}
	q := url.Values{}
	if p.CAFile == "" {
		q.Set("sslmode", "disable")
	} else {
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", p.CAFile)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// SocketDSN is DSN over the Unix socket in SocketDir (never TLS).
func (p *Postgres) SocketDSN(user, db string) string {
	u, _ := url.Parse(p.DSN(user, db))
	u.Host = ""
	q := url.Values{}
	q.Set("host", p.SocketDir)
	q.Set("port", strconv.Itoa(p.Port))
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs sql in AppDB as SuperUser over the Unix socket. Without args, sql may hold several
// statements (simple protocol).
func (p *Postgres) Exec(sql string, args ...any) error {
	return p.ExecDB(AppDB, sql, args...)
}

// ExecDB runs sql in db as SuperUser.
func (p *Postgres) ExecDB(db, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, p.SocketDSN(SuperUser, db))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", strings.TrimSpace(sql), err)
	}
	return nil
}

// MustExec is Exec that fails t on error.
func (p *Postgres) MustExec(t TB, sql string, args ...any) {
	t.Helper()
	if err := p.Exec(sql, args...); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// Stop shuts the server down at once (immediate mode: no checkpoint) and
// waits for it. The data directory and the log stay until cleanup. It is
// safe to call more than once.
func (p *Postgres) Stop() {
	if p.proc != nil {
		p.proc.stop(syscall.SIGQUIT, 10*time.Second)
	}
}

// cleanup stops the server, shows the end of its log if the test failed,
// and removes the directory.
func (p *Postgres) cleanup(t TB) {
	p.Stop()
	if failed(t) {
		t.Logf("harness: end of PostgreSQL log %s:\n%s", p.LogPath, tail(p.LogPath, 8192))
	}
	if err := os.RemoveAll(p.root); err != nil {
		t.Logf("harness: remove %s: %v", p.root, err)
	}
}

// quote returns s as an SQL string literal.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
