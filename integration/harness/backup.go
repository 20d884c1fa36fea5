package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ReplicationHBA are the pg_hba.conf lines (PostgresOptions.HBA) that let
// BaseBackup connect: the superuser over the Unix socket, trusted.
var ReplicationHBA = []string{"local replication " + SuperUser + " trust"}

// BaseBackup takes a base backup of the running cluster with pg_basebackup
// (WAL streamed alongside, so it restores on its own) and returns its
// directory, removed at cleanup. The cluster needs ReplicationHBA.
func (p *Postgres) BaseBackup(t TB) string {
	t.Helper()
	root, err := serverDir("pgcloak-basebackup-")
	if err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(root) })
		err = p.acct.chown(root)
	}
	if err != nil {
		t.Fatalf("harness: base backup: %v", err)
	}
	dir := filepath.Join(root, "data")
	cmd := p.acct.command(filepath.Join(p.BinDir, "pg_basebackup"), "-D", dir, "-X", "stream", "-c", "fast",
		"-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", SuperUser, "--no-sync")
	cmd.Env = serverEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("harness: pg_basebackup: %v\n%s", err, out)
	}
	return dir
}

// StartFromBackup starts a new cluster on a free port from a copy of a
// base backup (BaseBackup's directory): PostgreSQL replays the backup's WAL
// and opens the data as it was when the backup was taken. A Cleanup on t
// stops it and removes the copy.
func StartFromBackup(t TB, backup string) *Postgres {
	t.Helper()
	begin := time.Now()
	p, err := fromBackup(backup)
	if p != nil {
		t.Cleanup(func() { p.cleanup(t) })
	}
	if err == nil {
		err = p.start(PostgresOptions{})
	}
	if err != nil {
		t.Fatalf("harness: start PostgreSQL from a base backup: %v", err)
	}
	t.Logf("harness: PostgreSQL restored from %s on %s:%d in %v", backup, p.Host, p.Port, time.Since(begin).Round(time.Millisecond))
	return p
}

func fromBackup(backup string) (*Postgres, error) {
	p, err := newServerRoot()
	if err != nil {
		return p, err
	}
	cp := p.acct.command("cp", "-a", backup, p.DataDir)
	if out, err := cp.CombinedOutput(); err != nil {
		return p, fmt.Errorf("copy the backup: %v\n%s", err, out)
	}
	// The backup's own settings name the old cluster's socket directory.
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return p, err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "unix_socket_directories = %s\n", quote(p.SocketDir))
	return p, err
}
