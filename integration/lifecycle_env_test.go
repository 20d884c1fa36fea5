package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
)

// lcEnv is a database of its own on the shared cluster with a table that
// starts as plaintext, the shared Vault, and config files that protect the
// table's columns in each state of the migration procedure
// (docs/lifecycle.md). pgcloak instances are started and stopped by the
// test, as a DBA restarts them between the steps.
type lcEnv struct {
	t     testing.TB
	pg    *harness.Postgres
	vault *harness.Vault
	db    string
	dir   string
	rules []lcRule
	// upstream and adminDSN replace the config's defaults (the shared
	// cluster, sslmode=disable; the database as the superuser) when set.
	upstream, adminDSN string
}

// lcRule is one protected column: "public.customers", "email", "{type:
// text, key: pii}" without the state, which the config files add.
type lcRule struct{ table, column, rule string }

// newLCEnv creates the database on the shared cluster, runs schema in it
// (directly), writes the vault token and runs pgcloak keys init.
func newLCEnv(t *testing.T, schema string, rules []lcRule) *lcEnv {
	t.Helper()
	return newLCEnvOn(t, sharedPG(t), sharedVault(t), schema, rules)
}

// newLCEnvOn is newLCEnv on the given cluster and Vault (a benchmark starts
// its own).
func newLCEnvOn(t testing.TB, pg *harness.Postgres, vault *harness.Vault, schema string, rules []lcRule) *lcEnv {
	t.Helper()
	return newLCEnvDB(t, pg, vault, "lc_"+randomSuffix(), schema, rules)
}

// newLCEnvDB is newLCEnvOn with the database named db.
func newLCEnvDB(t testing.TB, pg *harness.Postgres, vault *harness.Vault, db, schema string, rules []lcRule) *lcEnv {
	t.Helper()
	e := &lcEnv{t: t, pg: pg, vault: vault, dir: t.TempDir(), rules: rules, db: db}
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+e.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	if schema != "" {
		if err := pg.ExecDB(e.db, schema); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.dir, "vault-token"), []byte(e.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cmd.RunKeys([]string{"init", "--config", e.config("encrypted"), "--log-level", "warn"}, &out, &errb); code != 0 {
		t.Fatalf("pgcloak keys init: exit %d: %s", code, errb.String())
	}
	return e
}

// config writes and returns the config file that protects every rule with
// the given state ("migrating" or "encrypted"), or with no tables at all for
// "none".
func (e *lcEnv) config(state string) string {
	return e.configWith(state, e.rules, "")
}

// configWith writes a config named after state whose tables: are rules,
// each with state:, and extra top-level YAML.
func (e *lcEnv) configWith(state string, rules []lcRule, extra string) string {
	path := filepath.Join(e.dir, "pgcloak-"+state+".yaml")
	byTable := map[string][]lcRule{}
	var tables []string
	for _, r := range rules {
		if _, ok := byTable[r.table]; !ok {
			tables = append(tables, r.table)
		}
		byTable[r.table] = append(byTable[r.table], r)
	}
	sort.Strings(tables)
	var tb strings.Builder
	if state != "none" && len(rules) > 0 {
		tb.WriteString("tables:\n")
		for _, tname := range tables {
			fmt.Fprintf(&tb, "  %s:\n", tname)
			for _, r := range byTable[tname] {
				rule := strings.TrimSuffix(strings.TrimSpace(r.rule), "}") + ", state: " + state + "}"
				fmt.Fprintf(&tb, "    %s: %s\n", r.column, rule)
			}
		}
	}
	upstream, adminDSN := e.upstream, e.adminDSN
	if upstream == "" {
		upstream = fmt.Sprintf("host=%s port=%d sslmode=disable", e.pg.Host, e.pg.Port)
	}
	if adminDSN == "" {
		adminDSN = e.pg.DSN(harness.SuperUser, e.db)
	}
	yaml := fmt.Sprintf(`upstream: %q
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: pgcloak-pii-%s}
key_refresh: 1s
%s%s
`, upstream, adminDSN, e.vault.Addr, e.db, tb.String(), extra)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// directDSN connects straight to PostgreSQL.
func (e *lcEnv) directDSN() string { return e.pg.DSN(harness.SuperUser, e.db) }

// direct opens a pgx connection straight to PostgreSQL, closed when the
// test ends.
func (e *lcEnv) direct() *pgx.Conn { return e.connect(e.directDSN()) }

// connect opens a pgx connection that is closed when the test ends.
func (e *lcEnv) connect(dsn string) *pgx.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		e.t.Fatalf("connect %s: %v", dsn, err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// migrate runs `pgcloak migrate ARGS --config CONFIG` in process.
func (e *lcEnv) migrate(config string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmd.RunMigrate(append(args, "--config", config, "--log-level", "warn"), &out, &errb)
	e.t.Logf("pgcloak migrate %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// mustMigrate is migrate that fails the test unless the command succeeds.
func (e *lcEnv) mustMigrate(config string, args ...string) string {
	e.t.Helper()
	code, out, errs := e.migrate(config, args...)
	if code != 0 {
		e.t.Fatalf("pgcloak migrate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// keysCmd runs `pgcloak keys ARGS` in process with the config at path.
func (e *lcEnv) keysCmd(path string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmd.RunKeys(append(args, "--config", path, "--log-level", "warn"), &out, &errb)
	e.t.Logf("pgcloak keys %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// keys loads the keyrings as serve does, for the test to decrypt what it
// reads directly.
func (e *lcEnv) keys() crypto.Keyrings {
	e.t.Helper()
	cfg, err := config.Load(e.config("encrypted"))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, closeKeys, err := cmd.OpenKeyrings(ctx, cfg, zap.NewNop())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(closeKeys)
	return l
}

// lcProxy is one pgcloak instance, started in process as serve starts it.
type lcProxy struct {
	addr string
	srv  *proxy.Server
	keys crypto.Keyrings
	stop func()
}

// startProxy starts pgcloak with the config file at path on a free port.
func (e *lcEnv) startProxy(path string) *lcProxy {
	e.t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	log := zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel))
	pc := startPgcloak(e.t, cfg, log, true)
	p := &lcProxy{addr: pc.addr, srv: pc.srv, stop: pc.stop, keys: pc.prot.Keys()}
	e.t.Cleanup(p.stop)
	return p
}

// dsn connects to the env's database through p.
func (e *lcEnv) dsn(p *lcProxy) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, p.addr, e.db)
}

// lcBuildPgcloak builds the pgcloak binary, once per test run, into a
// temporary directory that TestMain removes, for tests that run the CLI as a
// separate process (to kill it or signal it).
func lcBuildPgcloak(t testing.TB) string {
	t.Helper()
	return servedPgcloak(t)
}
