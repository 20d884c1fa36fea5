package integration

import (
	"bytes"
	"context"
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
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// The two kinds of dump a DBA can take of a protected database:
//
//   - pg_dump straight from PostgreSQL is the backup: it holds ciphertext
//     (and pgcloak's wrapped data keys), restores with plain pg_restore
//     without pgcloak, and is read through a pgcloak that has the keys.
//   - pg_dump through pgcloak is the application's view: a plaintext export,
//     for moving the data to a system without pgcloak or into another
//     protected database through its own pgcloak.

// tool runs a PostgreSQL client program and fails the test on an error,
// returning its output and how long it took.
func tool(t *testing.T, name string, args ...string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(harness.RequireBinary(t, name), args...).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), took
}

// exportRowsOf reads customers and orders through conn (pgcloak or the
// plaintext twin) as COPY text, in id order, and a few customers with a
// SELECT (decrypted by the column's table OID, where COPY goes by name).
func exportRowsOf(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	for _, q := range []string{
		`COPY (SELECT * FROM customers ORDER BY id) TO STDOUT`,
		`COPY (SELECT * FROM orders ORDER BY id) TO STDOUT`,
	} {
		if _, err := conn.PgConn().CopyTo(ctx, &b, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT id, full_name, email, phone, birth_date, credit_limit, vip FROM customers WHERE id IN (3, 10, 1234) ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%#v\n", v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// requireCiphertext checks, directly in PostgreSQL, that db's customers
// hold n rows, every protected value pgcloak ciphertext (the backstops say
// so too) and no marker.
func requireCiphertext(t *testing.T, pg *harness.Postgres, db string, n int) {
	t.Helper()
	c := connect(t, pg.DSN(harness.SuperUser, db))
	var conds []string
	for _, col := range exportProtected {
		conds = append(conds, fmt.Sprintf("(%[1]s IS NOT NULL AND (substring(%[1]s for 3) <> 'PGC' OR position('%[2]s'::bytea in %[1]s) > 0))", col, exportMarker))
	}
	var rows, bad, backstops int
	if err := c.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE `+strings.Join(conds, " OR ")+`),
		(SELECT count(*) FROM pg_constraint WHERE conrelid = 'customers'::regclass AND conname LIKE 'pgcloak\_%\_encrypted' AND convalidated)
		FROM customers`).Scan(&rows, &bad, &backstops); err != nil {
		t.Fatal(err)
	}
	if rows != n || bad != 0 || backstops != len(exportProtected) {
		t.Fatalf("%s: %d rows (want %d), %d with a protected value that is not ciphertext, %d of %d backstops", db, rows, n, bad, backstops, len(exportProtected))
	}
}

// cloakOver starts pgcloak over an existing database db of pg, with the
// export tables and the keys wrapped by Transit key transitKey. keysInit
// runs `pgcloak keys init` first (a database without pgcloak's key table).
// It returns the env, or the error pgcloak gives at start.
func cloakOver(t *testing.T, pg *harness.Postgres, db, transitKey string, keysInit bool) (*encEnv, error) {
	t.Helper()
	e := &encEnv{t: t, pg: pg, vault: sharedVault(t), db: db, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(e.dir, "vault-token"), []byte(e.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`upstream: "host=%s port=%d sslmode=disable"
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: %s}
tables:
%s`, pg.Host, pg.Port, pg.DSN(harness.SuperUser, db), e.vault.Addr, transitKey, indent(exportTables))
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if keysInit {
		var out, errb bytes.Buffer
		if code := cmd.RunKeys([]string{"init", "--config", e.config, "--log-level", "warn"}, &out, &errb); code != 0 {
			t.Fatalf("pgcloak keys init: exit %d: %s", code, errb.String())
		}
	}
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	// LoadProtection is what serve runs first; report its error rather
	// than fail, so a test can show what pgcloak says.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, closeKeys, err := cmd.OpenKeyrings(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, cfg.AdminDSN)
	if err != nil {
		closeKeys()
		t.Fatal(err)
	}
	_, err = engine.LoadProtection(ctx, conn, cfg, keys)
	conn.Close(ctx)
	closeKeys()
	if err != nil {
		return nil, err
	}
	e.addr, e.srv = startCloakProxy(t, cfg, zaptest.NewLogger(t))
	return e, nil
}

// newDatabase creates an empty database on pg, dropped when the test ends.
func newDatabase(t *testing.T, pg *harness.Postgres, prefix, schema string) string {
	t.Helper()
	db := prefix + randomSuffix()
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	if schema != "" {
		if err := pg.ExecDB(db, schema); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// TestDumpRestore takes both kinds of dump of a protected database and
// restores each the way it is meant to be restored.
func TestDumpRestore(t *testing.T) {
	src := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
	twin := newPlainTwin(t, src, exportPlainSchema)
	loadExport(t, src, twin)
	want := exportRowsOf(t, src.connect())
	if twinRows := exportRowsOf(t, connect(t, src.pg.DSN(harness.SuperUser, twin))); want != twinRows {
		t.Fatalf("the source through pgcloak differs from its plaintext twin before any dump")
	}
	requireCiphertext(t, src.pg, src.db, exportRows)
	dir := t.TempDir()

	// (a) Through pgcloak: a plaintext export of the application's data
	// (-n public: pgcloak's own key table is not the application's), in
	// pg_dump's custom format (uncompressed, so the check for plaintext
	// can read it) and as plain SQL.
	t.Run("through pgcloak", func(t *testing.T) {
		custom, plain := filepath.Join(dir, "through.dump"), filepath.Join(dir, "through.sql")
		_, took := tool(t, "pg_dump", "-Fc", "-Z0", "-n", "public", "-f", custom, "-d", src.dsn())
		t.Logf("pg_dump -Fc through pgcloak: %v", took)
		_, took = tool(t, "pg_dump", "--data-only", "-n", "public", "-f", plain, "-d", src.dsn())
		t.Logf("pg_dump --data-only (plain SQL) through pgcloak: %v", took)
		for _, f := range []string{custom, plain} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(b, []byte(exportMarker)); n < exportRows {
				t.Errorf("%s holds the marker %d times; a plaintext export holds it in every e-mail address (%d rows)", filepath.Base(f), n, exportRows)
			}
			if !bytes.Contains(b, []byte("user1234."+exportMarker+"@example.com")) || !bytes.Contains(b, []byte("山田 \""+exportMarker+"1234\"; a\\\\b\\tc,d")) {
				t.Errorf("%s lacks row 1234 in plaintext", filepath.Base(f))
			}
		}

		// Restored through a second pgcloak, with keys of its own, into a
		// protected database whose schema exists: the same rows, stored
		// as that database's ciphertext.
		for _, tc := range []struct {
			name    string
			restore func(dsn string) time.Duration
		}{
			{"pg_restore --data-only", func(dsn string) time.Duration {
				_, took := tool(t, "pg_restore", "--data-only", "-n", "public", "--exit-on-error", "-d", dsn, custom)
				return took
			}},
			{"psql -f plain.sql", func(dsn string) time.Duration {
				_, took := tool(t, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", plain, "-d", dsn)
				return took
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dst := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
				took := tc.restore(dst.dsn())
				t.Logf("%s through pgcloak: %v", tc.name, took)
				if got := exportRowsOf(t, dst.connect()); got != want {
					t.Fatalf("rows restored through pgcloak differ from the source (%d vs %d bytes as COPY text)", len(got), len(want))
				}
				requireCiphertext(t, dst.pg, dst.db, exportRows)
			})
		}
	})

	// (b) Directly: the backup. Ciphertext only, restored with plain
	// pg_restore into an empty database; a pgcloak with the same Transit
	// key in front of it reads the plaintext.
	t.Run("direct", func(t *testing.T) {
		custom, plain := filepath.Join(dir, "direct.dump"), filepath.Join(dir, "direct.sql")
		_, took := tool(t, "pg_dump", "-Fc", "-Z0", "-f", custom, "-d", src.directDSN())
		t.Logf("pg_dump -Fc directly: %v", took)
		tool(t, "pg_dump", "-f", plain, "-d", src.directDSN())
		for _, f := range []string{custom, plain} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(exportMarker)) {
				t.Errorf("the direct dump %s holds plaintext (the marker %q)", filepath.Base(f), exportMarker)
			}
			if !bytes.Contains(b, []byte("pgcloak_email_encrypted")) {
				t.Errorf("the direct dump %s lacks the backstop constraints", filepath.Base(f))
			}
		}
		restored := newDatabase(t, src.pg, "restored_", "")
		_, took = tool(t, "pg_restore", "--exit-on-error", "-d", src.pg.DSN(harness.SuperUser, restored), custom)
		t.Logf("pg_restore of the direct dump, directly: %v", took)
		requireCiphertext(t, src.pg, restored, exportRows)
		e, err := cloakOver(t, src.pg, restored, "pgcloak-pii-"+src.db, false)
		if err != nil {
			t.Fatalf("pgcloak over the restored database: %v", err)
		}
		if got := exportRowsOf(t, e.connect()); got != want {
			t.Fatalf("rows read through pgcloak from the restored backup differ from the source")
		}
		plainDB := newDatabase(t, src.pg, "restored_sql_", "")
		tool(t, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", plain, "-d", src.pg.DSN(harness.SuperUser, plainDB))
		requireCiphertext(t, src.pg, plainDB, exportRows)
	})

	// (c) A full restore (schema and data) of the plaintext export through
	// pgcloak into an empty database.
	// The tables do not exist when pgcloak starts: their rules apply once
	// the restore creates them (with the backstops the dump carries).
	t.Run("full restore through pgcloak", func(t *testing.T) {
		custom := filepath.Join(dir, "through.dump")
		if _, err := os.Stat(custom); err != nil {
			t.Skip("needs the dump of the subtest before")
		}
		empty := newDatabase(t, src.pg, "empty_", "")
		e, err := cloakOver(t, src.pg, empty, "pgcloak-pii-"+empty, true)
		if err != nil {
			t.Fatalf("pgcloak over an empty database: %v", err)
		}
		out, took := tool(t, "pg_restore", "-n", "public", "--exit-on-error", "-d", e.dsn(), custom)
		t.Logf("full pg_restore through pgcloak: %v\n%s", took, out)
		if got := exportRowsOf(t, e.connect()); got != want {
			t.Fatalf("rows restored through pgcloak differ from the source")
		}
		requireCiphertext(t, src.pg, empty, exportRows)
	})

	// Over an existing protected database, pg_restore --clean would drop
	// the protected tables through pgcloak: refused, with what to do, and
	// the database is left as it was.
	t.Run("clean restore through pgcloak is refused", func(t *testing.T) {
		custom := filepath.Join(dir, "through.dump")
		if _, err := os.Stat(custom); err != nil {
			t.Skip("needs the dump of the subtest before")
		}
		dst := newEncEnv(t, encEnvOptions{schema: exportSchema(), tables: exportTables})
		out, err := exec.Command(harness.RequireBinary(t, "pg_restore"), "--clean", "--if-exists", "-n", "public", "--exit-on-error", "-d", dst.dsn(), custom).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "pgcloak: cannot drop public.customers: it is a protected table; change the rules first") {
			t.Fatalf("pg_restore --clean through pgcloak: %v\n%s", err, out)
		}
		var n int
		if err := dst.direct().QueryRow(context.Background(), `SELECT count(*) FROM pg_class WHERE relname = 'customers'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("customers after the refused restore: %d, %v", n, err)
		}
	})
}
