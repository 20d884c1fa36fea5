package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/cmd"
)

// TestAuditFailClosed: with the default audit.on_failure (block), a log
// that cannot be written stops decryption: the session that would decrypt
// next ends with 58030, new sessions are refused with 57P03 (and /readyz
// says why), and once the disk has room again everything resumes, with no
// record lost. The log lives on a small tmpfs that the test fills.
func TestAuditFailClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mounting a small tmpfs for the audit log needs root (CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) })
	log := filepath.Join(disk, "audit.log")
	e := newEncEnv(t, encEnvOptions{
		schema: "CREATE TABLE t (id int PRIMARY KEY, secret bytea)",
		tables: "public.t:\n  secret: {type: text, key: pii}\n",
		extra:  "audit: {file: " + log + ", transit_key: pgcloak-audit-" + randomSuffix() + "}\n",
	})
	c := e.connect()
	run := func(c *pgconn.PgConn, sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := c.Exec(ctx, sql).ReadAll()
		return err
	}
	if err := run(c.PgConn(), "INSERT INTO t VALUES (1, 'tell no one')"); err != nil {
		t.Fatal(err)
	}
	if err := run(c.PgConn(), "SELECT secret FROM t"); err != nil {
		t.Fatal(err)
	}
	// Fill the disk.
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	filler.Close()
	// The results admitted before the log fails are sent, and their
	// records wait in memory. The log's last page may still have room for
	// a few.
	answered := 1
	var pe *pgconn.PgError
	var fatal error // the session's end, when a SELECT of the loop met it
	for i := 0; ; i++ {
		if ok, _ := e.srv.Ready(); !ok {
			break
		}
		if i == 200 {
			t.Fatal("pgcloak did not notice the full disk")
		}
		if err := run(c.PgConn(), "SELECT secret FROM t"); err != nil {
			if errors.As(err, &pe) && pe.Code == "58030" {
				fatal = err // the writer failed between the check and the SELECT
				break
			}
			t.Fatal(err)
		}
		answered++
		time.Sleep(5 * time.Millisecond) // let the writer write
	}
	waitFor(t, 10*time.Second, "pgcloak to stop being ready", func() bool { ok, _ := e.srv.Ready(); return !ok })
	if _, why := e.srv.Ready(); !strings.Contains(why, "audit log cannot be written") {
		t.Errorf("not ready because %q, want the audit log named", why)
	}
	if fatal == nil {
		fatal = run(c.PgConn(), "SELECT secret FROM t")
	}
	if !errors.As(fatal, &pe) || pe.Code != "58030" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "does not decrypt until it can") {
		t.Errorf("decrypting while the log cannot be written: %v, want FATAL 58030", fatal)
	}
	_, err = tryConnect(t, e.dsn())
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Errorf("a new session while the log cannot be written: %v, want 57P03", err)
	}
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pgcloak to write the log again", func() bool { ok, _ := e.srv.Ready(); return ok })
	c = e.connect()
	if err := run(c.PgConn(), "SELECT secret FROM t"); err != nil {
		t.Errorf("after the disk has room again: %v", err)
	}
	answered++
	e.stop()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte(`"event":"read"`)); n != answered {
		t.Errorf("%d read records, want %d (one per SELECT that was answered):\n%s", n, answered, data)
	}
	var out, errb bytes.Buffer
	if code := cmd.RunAudit([]string{"verify", "--config", e.config, "--log-level", "warn", log}, &out, &errb); code != 0 {
		t.Errorf("audit verify: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
