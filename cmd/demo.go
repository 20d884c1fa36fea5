package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
)

func demoCommand(g *globals) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run pgcloak end to end on a throwaway PostgreSQL with sample data",
		Long: `demo starts a throwaway PostgreSQL cluster in a temporary directory, puts
pgcloak in front of it, loads sample data and runs a psql session through
pgcloak. With --keep it then waits (Ctrl-C to stop) so you can connect yourself.
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
// cleanups run when it ends.
type demoTB struct {
	cleanups []func()
	log      io.Writer
}

type demoAbort struct{ msg string }

func (d *demoTB) Helper()                           {}
func (d *demoTB) Fatalf(format string, args ...any) { panic(demoAbort{fmt.Sprintf(format, args...)}) }
func (d *demoTB) Logf(format string, args ...any) {
	fmt.Fprintf(d.log, "  "+format+"\n", args...)
}
func (d *demoTB) Cleanup(f func()) { d.cleanups = append(d.cleanups, f) }
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

// demoSQL is the sample data, loaded directly into PostgreSQL.
const demoSQL = `
CREATE TABLE customers (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  full_name  text NOT NULL,
  email      text NOT NULL,
  country    text NOT NULL
);
INSERT INTO customers (full_name, email, country) VALUES
  ('山田太郎', 'taro.yamada@example.jp', 'JP'),
  ('Ada Lovelace', 'ada@example.org', 'GB'),
  ('Grace Hopper', 'grace@example.com', 'US');
`

// demoSession is what the scripted psql session runs through pgcloak.
const demoSession = `\echo '-- through pgcloak: psql, unchanged, with only the port changed'
SELECT id, full_name, email, country FROM customers ORDER BY id;
INSERT INTO customers (full_name, email, country) VALUES ('Alan Turing', 'alan@example.org', 'GB') RETURNING id;
SELECT pg_backend_pid() AS backend_pid, current_user, version();
`

func runDemo(out io.Writer, keep bool) (err error) {
	tb := &demoTB{log: out}
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
		return errors.New("demo needs psql: apt-get install -y postgresql")
	}

	fmt.Fprintln(out, "== starting a throwaway PostgreSQL")
	pg := harness.StartPostgres(tb, harness.PostgresOptions{})
	if err := pg.ExecDB(harness.AppDB, "SET ROLE "+harness.TrustUser+";"+demoSQL); err != nil {
		return fmt.Errorf("loading sample data: %w", err)
	}

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream = fmt.Sprintf("host=%s port=%d sslmode=disable", pg.Host, pg.Port)
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", port, harness.TrustUser, harness.AppDB)
	fmt.Fprintf(out, "== pgcloak listening on 127.0.0.1:%d, upstream PostgreSQL on %s:%d\n\n", port, pg.Host, pg.Port)

	cmd := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", dsn)
	cmd.Stdin = strings.NewReader(demoSession)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("psql through pgcloak: %w", err)
	}

	if keep {
		fmt.Fprintf(out, "\n== still running: psql \"%s\"\n== press Ctrl-C to stop\n", dsn)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
	}
	fmt.Fprintln(out, "\n== demo done; stopping pgcloak and PostgreSQL")
	return nil
}
