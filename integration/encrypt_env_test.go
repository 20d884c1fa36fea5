package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
)

// encEnv is pgcloak with protected columns in front of a database of its
// own on the shared cluster, with keys in a real Vault dev server.
type encEnv struct {
	t      *testing.T
	pg     *harness.Postgres
	vault  *harness.Vault
	db     string
	dir    string
	config string
	addr   string // pgcloak
	srv    *proxy.Server
}

// encEnvOptions shapes an encEnv.
type encEnvOptions struct {
	schema string // SQL run directly (as superuser) before pgcloak starts
	tables string // YAML of the tables: section
	extra  string // more top-level YAML (e.g. "shadow: true")
}

// newEncEnv creates the database, runs schema, writes the config, runs
// `pgcloak keys init` and starts pgcloak with the protected columns loaded as
// `serve` loads them.
func newEncEnv(t *testing.T, o encEnvOptions) *encEnv {
	t.Helper()
	pg := sharedPG(t)
	e := &encEnv{t: t, pg: pg, vault: sharedVault(t), dir: t.TempDir()}
	e.db = "enc_" + randomSuffix()
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+e.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	if o.schema != "" {
		if err := pg.ExecDB(e.db, o.schema); err != nil {
			t.Fatal(err)
		}
	}
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
  pii: {transit_key: pgcloak-pii-%s}
tables:
%s
%s
`, pg.Host, pg.Port, pg.DSN(harness.SuperUser, e.db), e.vault.Addr, e.db, indent(o.tables), o.extra)
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cmd.RunKeys([]string{"init", "--config", e.config, "--log-level", "warn"}, &out, &errb); code != 0 {
		t.Fatalf("pgcloak keys init: exit %d: %s", code, errb.String())
	}
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	e.addr, e.srv = startEncProxy(t, cfg)
	return e
}

// startEncProxy loads keys and the catalog the way serve does and starts
// pgcloak in process, logging to the test.
func startEncProxy(t *testing.T, cfg *config.Config) (string, *proxy.Server) {
	t.Helper()
	return startCloakProxy(t, cfg, zaptest.NewLogger(t))
}

// dsn is a connection string to the env's database through pgcloak as the
// superuser (trusted on 127.0.0.1), plus key, value params.
func (e *encEnv) dsn(params ...string) string {
	s := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, e.addr, e.db)
	for i := 0; i+1 < len(params); i += 2 {
		s += "&" + params[i] + "=" + params[i+1]
	}
	return s
}

// directDSN connects to the env's database straight to PostgreSQL.
func (e *encEnv) directDSN() string { return e.pg.DSN(harness.SuperUser, e.db) }

// connect opens a pgx connection through pgcloak.
func (e *encEnv) connect(params ...string) *pgx.Conn { return connect(e.t, e.dsn(params...)) }

// direct opens a pgx connection straight to PostgreSQL.
func (e *encEnv) direct() *pgx.Conn { return connect(e.t, e.directDSN()) }

// indent indents YAML lines by two spaces (the tables: section).
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}
