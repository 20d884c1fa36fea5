package integration

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/vault"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestSubjectShredBackups: a pg_dump and a base backup taken before a
// subject is forgotten hold its key, wrapped. After the shred rotation
// (what shred_window schedules) nothing can unwrap it from them, with
// pgcloak's keys and Vault, while a backup taken after the rotation
// restores and reads the live subjects through pgcloak. pgcloak keys
// status says which backups can be read.
func TestSubjectShredBackups(t *testing.T) {
	pg := harness.StartPostgres(t, harness.PostgresOptions{HBA: harness.ReplicationHBA})
	e := newSubjEnv(t, subjEnvOptions{pg: pg})
	c := e.through(e.start())
	mustExec(t, c, `INSERT INTO customers (id, email) VALUES ($1, $2), ($3, $4)`, int64(1), "one@x", int64(2), "two@x")
	mustExec(t, c, `INSERT INTO orders (customer_id, address) VALUES ($1, $2), ($3, $4)`, int64(1), "1 First St", int64(2), "2 Second St")
	mustExec(t, c, `INSERT INTO notes (id, body) VALUES ($1, $2)`, 1, "a keyring value")

	dumpBefore := e.dump(t)
	baseBefore := pg.BaseBackup(t)
	if code, _, _ := e.run(cmd.RunForget, "--table", "public.customers", "--subject", "1"); code != 0 {
		t.Fatal("forget failed")
	}
	code, out, _ := e.run(cmd.RunKeys, "status")
	if code != 0 || !strings.Contains(out, "no shred rotation yet") || !strings.Contains(out, "forgotten: 1 subject(s)") {
		t.Fatalf("status before the rotation: %d\n%s", code, out)
	}
	// The window passes: the shred rotation serve or cron runs.
	code, out, _ = e.run(cmd.RunKeys, "shred", "--now")
	if code != 0 || !strings.Contains(out, "version 2 wraps every subject key (1 rewrapped); destroyed version(s) 1") || !strings.Contains(out, "versions below 2 retired and trimmed") {
		t.Fatalf("shred: %d\n%s", code, out)
	}
	code, out, _ = e.run(cmd.RunKeys, "status")
	if code != 0 || !strings.Contains(out, "backups: the oldest that can read subject-keyed values was taken after") ||
		!strings.Contains(out, "0 since the last shred rotation") || !strings.Contains(out, "1 before it: gone everywhere") ||
		!strings.Contains(out, "min_decryption_version 2, versions below 2 deleted") {
		t.Fatalf("status after the rotation: %d\n%s", code, out)
	}
	// Vault's root cannot bring version 1 back: it is deleted, not only
	// refused.
	if err := e.vault.Call("POST", "transit/keys/"+e.transit+"/config", map[string]any{"min_decryption_version": 1}, nil); err == nil {
		t.Fatal("Vault lowered min_decryption_version below the trimmed versions")
	}
	// The instance keeps serving the live subject across the rotation.
	if got := subjectEmails(t, c); got[1] != "<null>" || got[2] != "two@x" {
		t.Fatalf("after the rotation: %v", got)
	}
	mustExec(t, c, `INSERT INTO customers (id, email) VALUES ($1, $2)`, int64(3), "three@x")
	dumpAfter := e.dump(t)

	// Backups from before the forget: neither Vault nor the current keys
	// unwrap the forgotten subject's key.
	restored := e.restore(t, dumpBefore)
	e.tryToReveal(t, pg.DSN(harness.SuperUser, restored), "1")
	// Nor with the recovery procedure of docs/keys.md: the subject keys of
	// the live database copied in; the live subject reads, the forgotten
	// one is NULL.
	e.copySubjectKeys(t, pg.DSN(harness.SuperUser, restored))
	r := e.throughTo(e.startOn(pg, restored), restored)
	if got := subjectEmails(t, r); got[1] != "<null>" || got[2] != "two@x" {
		t.Fatalf("old dump with the current subject keys: %v", got)
	}
	if got := addresses(t, r, 1); strings.Join(got, "|") != "<null>" {
		t.Fatalf("old dump: orders of the forgotten subject: %v", got)
	}
	var body string
	if err := r.QueryRow(context.Background(), `SELECT body FROM notes WHERE id = 1`).Scan(&body); err != nil || body != "a keyring value" {
		t.Fatalf("old dump: a keyring column: %q %v", body, err)
	}

	base := harness.StartFromBackup(t, baseBefore)
	e.tryToReveal(t, base.DSN(harness.SuperUser, e.db), "1")

	// A backup from after the rotation restores and reads as it is.
	after := e.restore(t, dumpAfter)
	a := e.throughTo(e.startOn(pg, after), after)
	if got := subjectEmails(t, a); got[1] != "<null>" || got[2] != "two@x" || got[3] != "three@x" {
		t.Fatalf("dump after the rotation: %v", got)
	}
	if got := addresses(t, a, 2); strings.Join(got, "|") != "2 Second St" {
		t.Fatalf("dump after the rotation: orders: %v", got)
	}
}

// dump runs pg_dump of the env's database into a file.
func (e *subjEnv) dump(t *testing.T) string {
	t.Helper()
	path := filepath.Join(e.dir, "dump-"+randomSuffix()+".sql")
	run(t, filepath.Join(e.pg.BinDir, "pg_dump"), "-d", e.pg.DSN(harness.SuperUser, e.db), "-f", path)
	return path
}

// restore loads a dump into a new database and returns its name.
func (e *subjEnv) restore(t *testing.T, dump string) string {
	t.Helper()
	db := "restored_" + randomSuffix()
	if err := e.pg.ExecDB("postgres", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	run(t, filepath.Join(e.pg.BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", e.pg.DSN(harness.SuperUser, db), "-f", dump)
	return db
}

// startOn starts pgcloak, with the env's config, in front of database db of
// cluster pg.
func (e *subjEnv) startOn(pg *harness.Postgres, db string) *pgcloakProc {
	cfg := *e.cfg
	cfg.AdminDSN = pg.DSN(harness.SuperUser, db)
	cfg.Upstream = fmt.Sprintf("host=%s port=%d sslmode=disable", pg.Host, pg.Port)
	return startPgcloak(e.t, &cfg, zaptest.NewLogger(e.t), true)
}

// throughTo connects through a pgcloak instance to database db.
func (e *subjEnv) throughTo(p *pgcloakProc, db string) *pgx.Conn {
	return connect(e.t, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, p.addr, db))
}

// tryToReveal tries to unwrap the key of customer subject from the
// database at dsn (a restored backup) every way pgcloak could: its subject
// keyring versions with Vault, and its wrapped subject key with the
// versions the live database holds now. Both must fail.
func (e *subjEnv) tryToReveal(t *testing.T, dsn, subject string) {
	t.Helper()
	ctx := context.Background()
	old := connect(t, dsn)
	kms, err := vault.New(ctx, vault.Config{Address: e.vault.Addr, Auth: vault.Auth{Method: vault.MethodToken, TokenFile: filepath.Join(e.dir, "vault-token")}})
	if err != nil {
		t.Fatal(err)
	}
	defer kms.Close(ctx)
	rows, err := old.Query(ctx, `SELECT version, kek, wrapped FROM pgcloak.keys WHERE keyring = 'subjects'`)
	if err != nil {
		t.Fatal(err)
	}
	type ver struct {
		V       int32
		KEK     string
		Wrapped []byte
	}
	olds, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ver])
	if err != nil || len(olds) == 0 {
		t.Fatalf("the backup's subject keyring: %v %v", olds, err)
	}
	for _, o := range olds {
		if dek, err := kms.Unwrap(ctx, o.KEK, o.Wrapped); err == nil {
			t.Fatalf("Vault unwrapped the backup's subject keyring version %d (%d bytes)", o.V, len(dek))
		} else {
			t.Logf("the backup's version %d does not unwrap: %v", o.V, err)
		}
	}
	// The live database's versions do not open the backup's subject key.
	ring := crypto.NewKeyring("subjects")
	defer ring.Zero()
	live := e.direct()
	rows, err = live.Query(ctx, `SELECT version, kek, wrapped FROM pgcloak.keys WHERE keyring = 'subjects'`)
	if err != nil {
		t.Fatal(err)
	}
	lives, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ver])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lives {
		if err := ring.AddWrapped(ctx, kms, l.KEK, uint32(l.V), l.Wrapped); err != nil {
			t.Fatal(err)
		}
	}
	var id, wrapped []byte
	if err := old.QueryRow(ctx, `SELECT key_id, wrapped FROM pgcloak.subject_keys WHERE subject_hash = pgcloak.subject_hash('public.customers', $1)`, subject).Scan(&id, &wrapped); err != nil {
		t.Fatalf("the backup holds no key for subject %s: %v", subject, err)
	}
	col, err := crypto.NewColumnID("\x01pgcloak", "subject key", hex.EncodeToString(id))
	if err != nil {
		t.Fatal(err)
	}
	if dek, err := ring.Decrypt(nil, wrapped, col); err == nil {
		t.Fatalf("the live keyring unwrapped the backup's key of subject %s (%d bytes)", subject, len(dek))
	}
}

// copySubjectKeys replaces the subject keys of the database at dsn (a
// restored backup) with the live database's: its subject keyring versions,
// subject keys and tombstones.
func (e *subjEnv) copySubjectKeys(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	live, old := e.direct(), connect(t, dsn)
	mustExec(t, old, `DELETE FROM pgcloak.keys WHERE keyring = 'subjects'`)
	mustExec(t, old, `TRUNCATE pgcloak.subject_keys, pgcloak.forgotten`)
	for _, q := range [][2]string{
		{`SELECT keyring, version, wrapped, kek, created_at FROM pgcloak.keys WHERE keyring = 'subjects'`, "pgcloak.keys"},
		{`SELECT key_id, scope, subject_hash, keyring, wrap_version, wrapped, created_at FROM pgcloak.subject_keys`, "pgcloak.subject_keys"},
		{`SELECT seq, key_id, scope, keyring, wrap_version, reason, forgotten_at FROM pgcloak.forgotten`, "pgcloak.forgotten"},
	} {
		rows, err := live.Query(ctx, q[0])
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatal(err)
		}
		cols := strings.TrimPrefix(strings.Split(q[0], " FROM ")[0], "SELECT ")
		if _, err := old.CopyFrom(ctx, pgx.Identifier{"pgcloak", strings.TrimPrefix(q[1], "pgcloak.")}, strings.Split(cols, ", "), pgx.CopyFromRows(vals)); err != nil {
			t.Fatalf("copy %s: %v", q[1], err)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// TestSubjectShredSchedule: serve rotates the subject keyring by itself
// every shred_window (3s here) while two instances write and read; every
// live subject stays readable through both, cold or cached, and only the
// newest keyring version is left.
func TestSubjectShredSchedule(t *testing.T) {
	e := newSubjEnv(t, subjEnvOptions{extra: "shred_window: 3s"})
	a, b := e.start(), e.start()
	ca, cb := e.through(a), e.through(b)
	ctx := context.Background()
	d := e.direct()
	shreds := func() (n int) {
		if err := d.QueryRow(ctx, `SELECT count(*) FROM pgcloak.shreds WHERE kek_min_version IS NOT NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := map[int64]string{}
	for id := int64(1); shreds() < 2; id++ {
		w := ca
		if id%2 == 0 {
			w = cb
		}
		email := fmt.Sprintf("c%d@x", id)
		mustExec(t, w, `INSERT INTO customers (id, email) VALUES ($1, $2)`, id, email)
		want[id] = email
		for _, c := range []*pgx.Conn{ca, cb} {
			got := subjectEmails(t, c)
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("subject %d reads %q, want %q (after %d rotations)", k, got[k], v, shreds())
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
		if id > 300 {
			t.Fatal("serve did not rotate the subject keyring within a minute")
		}
	}
	// A third instance starts cold after the rotations and reads them all.
	c := e.through(e.start())
	if got := subjectEmails(t, c); len(got) != len(want) || got[1] != want[1] {
		t.Fatalf("a new instance reads %v", got)
	}
	var versions int
	if err := d.QueryRow(ctx, `SELECT count(*) FROM pgcloak.keys WHERE keyring = 'subjects'`).Scan(&versions); err != nil || versions != 1 {
		t.Fatalf("subject keyring versions left: %d, %v", versions, err)
	}
}
