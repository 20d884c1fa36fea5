package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartStandby makes a streaming standby of p, as a DBA does: it lets the
// superuser replicate (pg_hba.conf, reloaded), copies the cluster with
// pg_basebackup -R (which writes primary_conninfo and standby.signal) and
// starts the copy on a free port. It waits until the standby accepts
// connections; a Cleanup on t stops it and removes its directory.
func (p *Postgres) StartStandby(t TB) *Postgres {
	t.Helper()
	s, err := p.newStandby()
	if s != nil {
		t.Cleanup(func() { s.cleanup(t) })
	}
	if err == nil {
		err = s.start(PostgresOptions{})
	}
	if err != nil {
		t.Fatalf("harness: start a standby of %s:%d: %v", p.Host, p.Port, err)
	}
	t.Logf("harness: standby of %d on %s:%d (data %s)", p.Port, s.Host, s.Port, s.DataDir)
	return s
}

func (p *Postgres) newStandby() (*Postgres, error) {
	hba, err := os.OpenFile(filepath.Join(p.DataDir, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(hba, "local replication %s trust\nhost replication %s 127.0.0.1/32 trust\n", SuperUser, SuperUser)
	if cerr := hba.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.ExecDB("postgres", "SELECT pg_reload_conf()")
	}
	if err != nil {
		return nil, err
	}
	root, err := serverDir("pgcloak-pg-standby-")
	if err != nil {
		return nil, err
	}
	s := &Postgres{
		Host: p.Host, SocketDir: root, DataDir: filepath.Join(root, "data"), BinDir: p.BinDir,
		MD5Password: p.MD5Password, SCRAMPassword: p.SCRAMPassword, CAFile: p.CAFile,
		root: root, acct: p.acct,
	}
	s.LogPath = filepath.Join(s.DataDir, "postgres.log")
	if err := os.Chmod(root, 0o755); err != nil {
		return s, err
	}
	if err := p.acct.chown(root); err != nil {
		return s, err
	}
	backup := p.acct.command(filepath.Join(p.BinDir, "pg_basebackup"), "-h", p.SocketDir, "-p", fmt.Sprint(p.Port),
		"-U", SuperUser, "-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.Env = serverEnv()
	if out, err := backup.CombinedOutput(); err != nil {
		return s, fmt.Errorf("pg_basebackup: %v\n%s", err, out)
	}
	// The copy has the primary's settings; its socket goes in its own
	// directory (a later line wins).
	conf, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return s, err
	}
	_, err = fmt.Fprintf(conf, "unix_socket_directories = %s\n", quote(root))
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	return s, err
}

// Promote ends recovery on a standby (pg_ctl promote) and waits until it
// accepts writes.
func (p *Postgres) Promote() error {
	promote := p.acct.command(filepath.Join(p.BinDir, "pg_ctl"), "promote", "-w", "-D", p.DataDir)
	promote.Env = serverEnv()
	if out, err := promote.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl promote: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var inRecovery bool
		c, err := pgx.Connect(ctx, p.SocketDSN(SuperUser, "postgres"))
		if err == nil {
			err = c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			c.Close(ctx)
		}
		if err == nil && !inRecovery {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still in recovery after pg_ctl promote: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
