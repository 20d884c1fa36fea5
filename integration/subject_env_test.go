package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// subjEnv is a database with tables whose values are encrypted under
// per-subject keys, a Vault, and any number of pgcloak instances in front.
//
//	customers (id int8 PK = subject, email*, phone*, seen timestamptz)
//	orders    (id serial, customer_id → customers.id = subject through
//	           orders_customer_id_fkey, address*, created_at)
//	notes     (id, body*)   keyring pii, no subjects
type subjEnv struct {
	t      testing.TB
	pg     *harness.Postgres
	vault  *harness.Vault
	db     string
	dir    string
	config string
	cfg    *config.Config
	// transit is the Transit key of the subject keyring.
	transit string
}

// subjSchema is subjEnv's tables (the backstops come from pgcloak protect).
const subjSchema = `
CREATE TABLE customers (id int8 PRIMARY KEY, email bytea, phone bytea, seen timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int8 NOT NULL, address bytea, created_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE);
CREATE TABLE notes (id int PRIMARY KEY, body bytea);`

// subjEnvOptions shapes a subjEnv.
type subjEnvOptions struct {
	pg    *harness.Postgres // default: the shared cluster
	vault *harness.Vault    // default: the shared Vault
	extra string            // more top-level YAML (retention:, shred_window: …)
	reads string            // forgotten_reads of customers ("" = null)
}

// newSubjEnv makes the database and the config, and runs pgcloak keys
// init and pgcloak protect --apply.
func newSubjEnv(t testing.TB, o subjEnvOptions) *subjEnv {
	t.Helper()
	if o.pg == nil {
		o.pg = sharedPG(t.(*testing.T))
	}
	if o.vault == nil {
		o.vault = sharedVault(t.(*testing.T))
	}
	e := &subjEnv{t: t, pg: o.pg, vault: o.vault, dir: t.TempDir(), db: "subj_" + randomSuffix()}
	e.transit = "pgcloak-subjects-" + e.db
	if err := e.pg.ExecDB("postgres", "CREATE DATABASE "+e.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	if err := e.pg.ExecDB(e.db, subjSchema); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "vault-token"), []byte(e.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reads := ""
	if o.reads != "" {
		reads = ", forgotten_reads: " + o.reads
	}
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
upstream: "host=%s port=%d sslmode=disable"
admin_dsn: %q
kms: {vault: {address: %s, auth: {method: token, token_file: vault-token}}}
keys:
  pii: {transit_key: pgcloak-pii-%s}
  subjects: {transit_key: %s}
key_refresh: 500ms
tables:
  public.customers:
    email: {type: text, key: subjects}
    phone: {type: text, key: subjects}
  public.orders:
    address: {type: text, key: subjects}
  public.notes:
    body: {type: text, key: pii}
subjects:
  public.customers: {column: id, key: subjects%s}
  public.orders: {column: customer_id, key: subjects, foreign_key: orders_customer_id_fkey}
%s
`, e.pg.Host, e.pg.Port, e.pg.DSN(harness.SuperUser, e.db), e.vault.Addr, e.db, e.transit, reads, o.extra)
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := e.run(cmd.RunKeys, "init"); code != 0 {
		t.Fatalf("pgcloak keys init: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := e.run(cmd.RunProtect, "--apply"); code != 0 {
		t.Fatalf("pgcloak protect --apply: exit %d: %s%s", code, out, errs)
	}
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	return e
}

// run runs a pgcloak command in process with the env's config.
func (e *subjEnv) run(run func(args []string, stdout, stderr io.Writer) int, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append(args, "--config", e.config, "--log-level", "warn"), &out, &errb)
	e.t.Logf("pgcloak %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// start starts a pgcloak instance and returns its address.
func (e *subjEnv) start() *pgcloakProc {
	cfg := *e.cfg
	return startPgcloak(e.t, &cfg, zaptest.NewLogger(e.t), true)
}

// through connects through a pgcloak instance.
func (e *subjEnv) through(p *pgcloakProc) *pgx.Conn {
	return connect(e.t, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, p.addr, e.db))
}

// direct connects straight to PostgreSQL.
func (e *subjEnv) direct() *pgx.Conn { return connect(e.t, e.pg.DSN(harness.SuperUser, e.db)) }

// subjectEmails reads id → email of the customers through conn (NULL as "<null>").
func subjectEmails(t *testing.T, conn *pgx.Conn) map[int64]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT id, email FROM customers ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var email *string
		if err := rows.Scan(&id, &email); err != nil {
			t.Fatal(err)
		}
		out[id] = "<null>"
		if email != nil {
			out[id] = *email
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// addresses reads the order addresses of customer id through conn.
func addresses(t *testing.T, conn *pgx.Conn, id int64) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT address FROM orders WHERE customer_id = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var a *string
		if err := r.Scan(&a); err != nil || a == nil {
			return "<null>", err
		}
		return *a, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keyIDs returns the subject key id of every value of column col of table
// (keyed by the row's subject), read directly.
func keyIDs(t *testing.T, conn *pgx.Conn, table, subjectCol, col string) map[int64][]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), fmt.Sprintf(`SELECT %s, %s FROM %s WHERE %s IS NOT NULL ORDER BY 1`, subjectCol, col, table, col))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]string{}
	for rows.Next() {
		var id int64
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		if len(v) < 49 || string(v[:5]) != "PGC\x01\x03" {
			t.Fatalf("%s.%s of %d is not a Subject value: %x", table, col, id, v)
		}
		out[id] = append(out[id], fmt.Sprintf("%x", v[5:21]))
	}
	return out
}
