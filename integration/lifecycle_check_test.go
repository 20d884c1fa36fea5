package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// checkSchema has one table per kind of finding that pgcloak check reports
// about a column.
const checkSchema = `
CREATE TABLE good (id int PRIMARY KEY, email bytea, ssn bytea);
CREATE INDEX good_ssn ON good (ssn);
INSERT INTO good VALUES (1, 'ada@example.org', '123-45-6789'), (2, NULL, NULL);
CREATE TABLE plain (id int PRIMARY KEY, email text);
CREATE TABLE nobackstop (id int PRIMARY KEY, email bytea);
CREATE TABLE hasplain (id int PRIMARY KEY, email bytea);
INSERT INTO hasplain VALUES (1, 'plain@example.org');
CREATE TABLE notvalid (id int PRIMARY KEY, email bytea);
CREATE TABLE differs (id int PRIMARY KEY, email bytea CONSTRAINT pgcloak_email_encrypted CHECK (octet_length(email) > 0));
CREATE TABLE rnd (id int PRIMARY KEY, email bytea);
CREATE UNIQUE INDEX rnd_email ON rnd (email);
CREATE TABLE det (id int PRIMARY KEY, ssn bytea);`

// checkOutput is what pgcloak check --json prints.
type checkOutput struct {
	Findings []cmd.Finding `json:"findings"`
	Errors   int           `json:"errors"`
	Warnings int           `json:"warnings"`
}

// TestCheck runs pgcloak check --json against a config with one kind of
// problem at a time and requires that finding, on the right target, with
// its level, a fix, and the exit status (1 with an error, 0 with warnings
// only); a sound setup gives no finding at all.
func TestCheck(t *testing.T) {
	e := newLCEnv(t, checkSchema, nil)
	ctx := context.Background()
	d := e.direct()
	// good, rnd and det get their backstops (and good its ciphertext) the
	// way a DBA would: migrate encrypt.
	setup := e.checkConfig("setup", ckOpts{tables: `
  public.good:
    email: {type: text, key: pii, state: migrating}
    ssn: {type: text, key: pii, mode: deterministic, state: migrating}
  public.rnd:
    email: {type: text, key: pii, state: migrating}
  public.det:
    ssn: {type: text, key: pii, mode: deterministic, state: migrating}`})
	for _, tbl := range []string{"good", "rnd", "det"} {
		e.mustMigrate(setup, "encrypt", "--table", tbl, "--yes")
	}
	if _, err := d.Exec(ctx, fmt.Sprintf("ALTER TABLE notvalid ADD CONSTRAINT pgcloak_email_encrypted CHECK (%s) NOT VALID", crypto.CheckExpr("email"))); err != nil {
		t.Fatal(err)
	}
	const goodTables = `
  public.good:
    email: {type: text, key: pii}
    ssn: {type: text, key: pii, mode: deterministic}`

	t.Run("sound", func(t *testing.T) {
		out, code := e.check(t, ckOpts{tables: goodTables})
		if code != 0 || len(out.Findings) != 0 {
			t.Fatalf("exit %d, findings %+v", code, out.Findings)
		}
		// The text form: one summary line.
		var stdout, stderr bytes.Buffer
		if code := cmd.RunCheck([]string{"--config", e.checkConfig("sound-text", ckOpts{tables: goodTables})}, &stdout, &stderr); code != 0 ||
			!strings.Contains(stdout.String(), "0 errors, 0 warnings (1 tables, 2 columns, 1 keyrings checked)") {
			t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
	})

	vaultDown := fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t))
	dbDown := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=x connect_timeout=5", harness.FreePort(t))
	emptyDB := "lc_empty_" + randomSuffix()
	if err := e.pg.ExecDB("postgres", "CREATE DATABASE "+emptyDB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+emptyDB+" WITH (FORCE)") })
	// A keyring whose stored data key Vault cannot unwrap.
	broken := e.checkConfig("broken-init", ckOpts{keys: "  broken: {transit_key: pgcloak-broken-" + e.db + "}\n"})
	if code, _, errs := e.keysCmd(broken, "init"); code != 0 {
		t.Fatalf("keys init: %s", errs)
	}
	if _, err := d.Exec(ctx, `UPDATE pgcloak.keys SET wrapped = 'vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE keyring = 'broken'`); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		opts   ckOpts
		before string // SQL run directly first
		kind   string
		target string
		level  string
		code   int
	}{
		{name: "kms unreachable", opts: ckOpts{tables: goodTables, vault: vaultDown}, kind: "kms_unreachable", target: "kms", level: "error", code: 1},
		{name: "database unreachable", opts: ckOpts{tables: goodTables, adminDSN: dbDown}, kind: "database_unreachable", target: "admin_dsn", level: "error", code: 1},
		{name: "keys table missing", opts: ckOpts{adminDSN: e.pg.DSN(harness.SuperUser, emptyDB)}, kind: "keys_table_missing", target: "pgcloak.keys", level: "error", code: 1},
		{name: "keyring missing", opts: ckOpts{tables: goodTables, keys: "  other: {transit_key: pgcloak-other}\n"}, kind: "keyring_missing", target: "keys.other", level: "error", code: 1},
		{name: "keyring cannot be unwrapped", opts: ckOpts{tables: goodTables, keys: "  broken: {transit_key: pgcloak-broken-" + e.db + "}\n"}, kind: "keyring_unwrap", target: "keys.broken", level: "error", code: 1},
		{name: "rule type", opts: ckOpts{tables: "  public.good:\n    email: {type: varchar(0), key: pii}\n"}, kind: "rule_type", target: "public.good.email", level: "error", code: 1},
		{name: "table missing", opts: ckOpts{tables: "  public.nosuch:\n    email: {type: text, key: pii}\n"}, kind: "table_missing", target: "public.nosuch", level: "error", code: 1},
		{name: "column missing", opts: ckOpts{tables: "  public.good:\n    phone: {type: text, key: pii}\n"}, kind: "column_missing", target: "public.good.phone", level: "error", code: 1},
		{name: "column type", opts: ckOpts{tables: "  public.plain:\n    email: {type: text, key: pii}\n"}, kind: "column_type", target: "public.plain.email", level: "error", code: 1},
		{name: "backstop missing", opts: ckOpts{tables: "  public.nobackstop:\n    email: {type: text, key: pii}\n"}, kind: "backstop_missing", target: "public.nobackstop.email", level: "error", code: 1},
		{name: "plaintext values", opts: ckOpts{tables: "  public.hasplain:\n    email: {type: text, key: pii}\n"}, kind: "plaintext_values", target: "public.hasplain.email", level: "error", code: 1},
		{name: "backstop not valid", opts: ckOpts{tables: "  public.notvalid:\n    email: {type: text, key: pii}\n"}, kind: "backstop_not_valid", target: "public.notvalid.email", level: "warning", code: 0},
		{name: "backstop differs", opts: ckOpts{tables: "  public.differs:\n    email: {type: text, key: pii}\n"}, kind: "backstop_differs", target: "public.differs.email", level: "error", code: 1},
		{name: "state migrating", opts: ckOpts{tables: "  public.good:\n    email: {type: text, key: pii, state: migrating}\n"}, kind: "state_migrating", target: "public.good.email", level: "warning", code: 0},
		{name: "index missing", opts: ckOpts{tables: "  public.det:\n    ssn: {type: text, key: pii, mode: deterministic}\n"}, kind: "index_missing", target: "public.det.ssn", level: "warning", code: 0},
		{name: "index useless", opts: ckOpts{tables: "  public.rnd:\n    email: {type: text, key: pii}\n"}, kind: "index_useless", target: "public.rnd.email", level: "warning", code: 0},
		{name: "migration unfinished", opts: ckOpts{tables: goodTables},
			before: `INSERT INTO pgcloak.migrations (table_name, columns, operation, key_columns, last_key, rows_done) VALUES ('public.good', 'email', 'rotate', 'id', '{1}', 1)`,
			kind:   "migration_unfinished", target: "public.good", level: "warning", code: 0},
		// Last: it changes the database's sessions.
		{name: "nonstandard strings", opts: ckOpts{tables: goodTables},
			before: `ALTER DATABASE ` + e.db + ` SET standard_conforming_strings = off`,
			kind:   "nonstandard_strings", target: "standard_conforming_strings", level: "warning", code: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != "" {
				if _, err := d.Exec(ctx, c.before); err != nil {
					t.Fatal(err)
				}
			}
			out, code := e.check(t, c.opts)
			var f *cmd.Finding
			for i := range out.Findings {
				if out.Findings[i].Kind == c.kind {
					f = &out.Findings[i]
				}
			}
			switch {
			case f == nil:
				t.Fatalf("no %s finding: %+v", c.kind, out.Findings)
			case f.Target != c.target || f.Level != c.level || f.Fix == "" || f.Message == "":
				t.Fatalf("finding %+v, want target %s level %s and a fix", *f, c.target, c.level)
			case code != c.code:
				t.Fatalf("exit %d, want %d; findings %+v", code, c.code, out.Findings)
			}
			t.Logf("%s %s: %s\n  fix: %s", f.Level, f.Target, f.Message, f.Fix)
		})
	}
}

// ckOpts shapes a check config; empty fields take the env's own.
type ckOpts struct {
	tables   string // YAML of tables: (indented by two spaces)
	keys     string // more keyrings (indented YAML lines)
	vault    string // Vault address
	adminDSN string
}

// checkConfig writes a config named name.
func (e *lcEnv) checkConfig(name string, o ckOpts) string {
	if o.vault == "" {
		o.vault = e.vault.Addr
	}
	if o.adminDSN == "" {
		o.adminDSN = e.directDSN()
	}
	tables := ""
	if strings.TrimSpace(o.tables) != "" {
		tables = "tables:\n" + strings.TrimLeft(o.tables, "\n") + "\n"
	}
	yaml := fmt.Sprintf(`upstream: "host=%s port=%d sslmode=disable"
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: {method: token, token_file: vault-token}
keys:
  pii: {transit_key: pgcloak-pii-%s}
%s%s`, e.pg.Host, e.pg.Port, o.adminDSN, o.vault, e.db, o.keys, tables)
	path := filepath.Join(e.dir, "check-"+strings.NewReplacer(" ", "-", "/", "_").Replace(name)+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// check runs pgcloak check --json in process.
func (e *lcEnv) check(t *testing.T, o ckOpts) (checkOutput, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cmd.RunCheck([]string{"--json", "--log-level", "error", "--config", e.checkConfig(t.Name(), o)}, &stdout, &stderr)
	var out checkOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("exit %d, not JSON: %v\n%s%s", code, err, stdout.String(), stderr.String())
	}
	return out, code
}
