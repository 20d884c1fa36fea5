package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto/localkms"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

func demoCommand(g *globals) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run pgcloak end to end on a throwaway PostgreSQL and Vault with sample data",
		Long: `demo starts a throwaway PostgreSQL cluster and a Vault dev server (or, if the
Vault binary has not been built with 'make vault', the local file KMS), creates the
data keys with 'pgcloak keys init', creates a customers table whose personal columns
pgcloak protects, and puts pgcloak in front of PostgreSQL. A scripted psql session
then writes and reads plaintext through pgcloak, shows a query pgcloak refuses, and
reads the same rows directly from PostgreSQL, where only ciphertext is stored.
With --keep it then waits (Ctrl-C to stop) so you can connect yourself.
Everything it starts is stopped and removed at the end.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runDemo(c.OutOrStdout(), keep)
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep running after the scripted session until interrupted")
	return c
}

// demoTB lets the test harness run outside `go test`: Fatalf aborts the demo,
// cleanups run when it ends. The harness's own progress notes are not shown.
type demoTB struct {
	cleanups []func()
}

type demoAbort struct{ msg string }

func (d *demoTB) Helper()                           {}
func (d *demoTB) Fatalf(format string, args ...any) { panic(demoAbort{fmt.Sprintf(format, args...)}) }
func (d *demoTB) Logf(format string, args ...any)   {}
func (d *demoTB) Cleanup(f func())                  { d.cleanups = append(d.cleanups, f) }
func (d *demoTB) TempDir() string {
	dir, err := os.MkdirTemp("", "pgcloak-demo-")
	if err != nil {
		d.Fatalf("temp dir: %v", err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (d *demoTB) close() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

// demoSchema is the sample table, created directly in PostgreSQL: the
// protected columns are bytea there.
const demoSchema = `
CREATE TABLE customers (
  id           int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  full_name    bytea NOT NULL,
  email        bytea NOT NULL,
  phone        bytea,
  birth_date   bytea,
  credit_limit bytea,
  country      text NOT NULL
);`

// demoTables is the tables: section of the demo's configuration.
const demoTables = `tables:
  public.customers:
    full_name:    {type: text,    key: pii}
    email:        {type: text,    key: pii}
    phone:        {type: text,    key: pii}
    birth_date:   {type: date,    key: pii}
    credit_limit: {type: numeric, key: pii}
`

// demoThrough is the psql session through pgcloak: the application's view.
const demoThrough = `\echo '-- The application writes plaintext ...'
INSERT INTO customers (full_name, email, phone, birth_date, credit_limit, country) VALUES
  ('山田太郎', 'taro.yamada@example.jp', '+81 3-1234-5678', '1980-04-01', 500000, 'JP'),
  ('Ada Lovelace', 'ada@example.org', '+44 20 7946 0000', '1815-12-10', 1200.50, 'GB'),
  ('Grace Hopper', 'grace@example.com', NULL, '1906-12-09', 99999.99, 'US');
UPDATE customers SET credit_limit = 2500.00 WHERE id = 2;
\echo '-- ... and reads plaintext back, in the declared types:'
SELECT id, full_name, email, phone, birth_date, credit_limit, country FROM customers ORDER BY id;
\echo '-- A query that would search the ciphertext gives no right answer, so pgcloak refuses it:'
SELECT * FROM customers WHERE email LIKE '%example%';
\echo '-- The session goes on:'
SELECT full_name, birth_date FROM customers WHERE id = 1;
`

// demoDirect is the psql session straight to PostgreSQL: what the database,
// its logs, backups and anyone with access to them hold.
const demoDirect = `SELECT id, substring(email::text for 40) AS email, substring(credit_limit::text for 24) AS credit_limit, country FROM customers ORDER BY id;
\echo '-- Anything that goes around pgcloak is refused by the database itself (the backstop):'
INSERT INTO customers (full_name, email, country) VALUES ('Mallory', 'mallory@example.net', 'XX');
`

func runDemo(out io.Writer, keep bool) (err error) {
	tb := &demoTB{}
	defer tb.close()
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(demoAbort)
			if !ok {
				panic(r)
			}
			err = errors.New(a.msg)
		}
	}()
	psql, lookErr := exec.LookPath("psql")
	if lookErr != nil {
		return errors.New("demo needs psql: apt-get install -y postgresql-client")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	step := func(format string, args ...any) { fmt.Fprintf(out, "== "+format+"\n", args...) }

	begin := time.Now()
	pg := harness.StartPostgres(tb, harness.PostgresOptions{})
	step("PostgreSQL:  throwaway cluster on %s:%d", pg.Host, pg.Port)
	if err := pg.Exec(demoSchema); err != nil {
		return fmt.Errorf("creating the sample table: %w", err)
	}

	dir := tb.TempDir()
	var kms string
	if vaultBuilt() {
		v := harness.StartVault(tb, harness.VaultOptions{})
		tokenFile := filepath.Join(dir, "vault-token")
		if err := os.WriteFile(tokenFile, []byte(v.RootToken+"\n"), 0o600); err != nil {
			return err
		}
		kms = fmt.Sprintf("kms:\n  vault:\n    address: %s\n    auth: {method: token, token_file: %s}\nkeys:\n  pii: {transit_key: pgcloak-demo-pii}\n", v.Addr, tokenFile)
		step("KMS:         Vault %s dev server on %s (Transit key pgcloak-demo-pii wraps the data keys)", harness.VaultVersion, v.Addr)
	} else {
		kms = fmt.Sprintf("kms:\n  local: {key_file: %s}\nkeys:\n  pii: {}\n", filepath.Join(dir, "master.key"))
		step("KMS:         local key file, because Vault is not built (run 'make vault' once, about 6 minutes)")
		step("             WARNING: %s", localkms.Warning)
	}

	cfgPath := filepath.Join(dir, "pgcloak.yaml")
	yaml := fmt.Sprintf("listen: 127.0.0.1:0\nupstream: \"host=%s port=%d sslmode=disable\"\nadmin_dsn: %q\n%s%s",
		pg.Host, pg.Port, pg.DSN(harness.SuperUser, harness.AppDB), kms, demoTables)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return err
	}
	var keysOut, keysErr bytes.Buffer
	if code := RunKeys([]string{"init", "--config", cfgPath, "--log-level", "error"}, &keysOut, &keysErr); code != 0 {
		return fmt.Errorf("pgcloak keys init: %s", strings.TrimSpace(keysErr.String()))
	}
	for _, line := range strings.Split(strings.TrimSpace(keysOut.String()), "\n") {
		if strings.HasPrefix(line, "keyring ") {
			step("keys init:   %s", line)
		}
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	// pgcloak's warnings and errors, short; the local KMS warning was shown.
	ec := zap.NewDevelopmentEncoderConfig()
	ec.TimeKey, ec.CallerKey = "", ""
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.AddSync(os.Stderr), zapcore.ErrorLevel))
	// The database's own backstop: PostgreSQL refuses anything but
	// ciphertext in the protected columns, whoever writes.
	var protectOut, protectErr bytes.Buffer
	if code := RunProtect([]string{"--config", cfgPath, "--apply", "--log-level", "error"}, &protectOut, &protectErr); code != 0 {
		return fmt.Errorf("pgcloak protect --apply: %s%s", protectOut.String(), strings.TrimSpace(protectErr.String()))
	}
	step("protect:     CHECK constraints pgcloak_<column>_encrypted added: PostgreSQL refuses anything but ciphertext")
	prot, err := engine.NewProtector(cfg.AdminDSN, log)
	if err != nil {
		return err
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Logger: log, Hooks: prot})
	if err != nil {
		return err
	}
	fatal := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if closeKeys := ServeProtection(wctx, cfg, log, prot, fatal); closeKeys != nil {
		defer closeKeys()
	}
	for ready, why := srv.Ready(); !ready; ready, why = srv.Ready() {
		select {
		case err := <-fatal:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(begin) > time.Minute {
			return fmt.Errorf("pgcloak not ready: %s", why)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	step("pgcloak:     listening on 127.0.0.1:%d, protecting public.customers with this rule (pgcloak.yaml):", port)
	fmt.Fprintf(out, "\n%s\n", indentLines(demoTables, "    "))
	step("ready in %v\n", time.Since(begin).Round(100*time.Millisecond))

	through := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", port, harness.TrustUser, harness.AppDB)
	direct := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", pg.Host, pg.Port, harness.SuperUser, harness.AppDB)

	step("psql through pgcloak (port %d), as the application user %s:\n", port, harness.TrustUser)
	if err := runPsql(ctx, psql, through, demoThrough, out); err != nil {
		return fmt.Errorf("psql through pgcloak: %w", err)
	}
	fmt.Fprintln(out)
	step("psql straight to PostgreSQL (port %d), as the superuser: the same rows hold only ciphertext\n", pg.Port)
	if err := runPsql(ctx, psql, direct, demoDirect, out); err != nil {
		return fmt.Errorf("psql to PostgreSQL: %w", err)
	}
	fmt.Fprintln(out, "Each value is AES-256-GCM ciphertext behind a 'PGC' header (hex 504743), bound to its column;")
	fmt.Fprintln(out, "country is not protected and stays readable. Byte layout: crypto/FORMAT.md; keys: docs/keys.md.")

	if keep {
		fmt.Fprintf(out, "\n== still running; press Ctrl-C to stop\n   through pgcloak:   psql \"%s\"\n   PostgreSQL itself: psql \"%s\"\n   config:            %s\n", through, direct, cfgPath)
		<-ctx.Done()
	}
	fmt.Fprintln(out, "\n== done; stopping pgcloak, PostgreSQL and the KMS")
	return nil
}

// vaultBuilt reports whether the harness can start Vault without building
// it first (a build takes minutes).
func vaultBuilt() bool {
	if p := os.Getenv("PGCLOAK_VAULT"); p != "" {
		return true
	}
	_, err := os.Stat(filepath.Join(harness.CacheDir(), "vault-"+harness.VaultVersion, "vault"))
	return err == nil
}

// runPsql runs script with psql on dsn, echoing each statement; errors go
// to out in order with the results and do not stop the script.
func runPsql(ctx context.Context, psql, dsn, script string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-e", "-v", "ON_ERROR_STOP=0", "-P", "footer=off", dsn)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "PGAPPNAME=pgcloak-demo", "PGCLIENTENCODING=UTF8")
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

func indentLines(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
