package integration

// The ORM matrix (issue 11): each ORM's application program (testdata/orm/<orm>/)
// runs the same scenario twice, directly against a plaintext twin database
// (the protected columns have their logical types) and through pgcloak
// against the protected database (those columns are bytea with the CHECK
// backstop), and prints one JSON line per step. orm_test.go compares the two
// runs step by step. The shared pieces live here: the two schemas, the
// rules, running a program, reading its steps, the comparison and the check
// of what the protected tables hold.
//
// The scenario is in two phases. "main" runs every CRUD step and ends with
// the ORM's migration tool adding a column (nickname) to customers: bytea in
// the protected database, text in the twin. Between the phases the test
// adds the column's backstop and starts a second pgcloak whose config also
// protects customers.nickname (as a DBA would roll out the new rule), and
// "migrated" writes and reads the new column through it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// ormProtected are the protected columns of the scenario: table, column,
// logical type (the twin's column type and the rule's type) and mode.
var ormProtected = []struct{ table, column, typ, mode string }{
	{"customers", "email", "text", "deterministic"},
	{"customers", "full_name", "text", ""},
	{"customers", "phone", "varchar(32)", ""},
	{"customers", "birth_date", "date", ""},
	{"customers", "credit_limit", "numeric(12,2)", ""},
	{"orders", "note", "text", ""},
}

// ormMigratedColumn is the column the ORM's migration tool adds in the
// main phase; it is protected from the migrated phase on.
const ormMigratedColumn = "nickname"

// ormSchema is the schema of the scenario with each protected column's type
// given by typeOf: the logical type for the twin, bytea for the protected
// database. tier and version are never protected (a plaintext column to
// filter on, and the optimistic-locking counter).
func ormSchema(typeOf func(table, column, logical string) string) string {
	t := map[string]string{}
	for _, c := range ormProtected {
		t[c.table+"."+c.column] = typeOf(c.table, c.column, c.typ)
	}
	return fmt.Sprintf(`
CREATE TABLE customers (
  id           serial PRIMARY KEY,
  email        %s NOT NULL UNIQUE,
  full_name    %s NOT NULL,
  phone        %s,
  birth_date   %s,
  credit_limit %s,
  tier         text NOT NULL DEFAULT 'basic',
  version      int NOT NULL DEFAULT 0
);
CREATE TABLE orders (
  id          serial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers (id),
  product     text NOT NULL,
  quantity    int NOT NULL,
  note        %s
);`, t["customers.email"], t["customers.full_name"], t["customers.phone"], t["customers.birth_date"],
		t["customers.credit_limit"], t["orders.note"])
}

// ormTwinSchema has the logical types; ormCloakSchema has bytea and the
// backstop on every protected column, as pgcloak migrate leaves a table.
func ormTwinSchema() string {
	return ormSchema(func(_, _, logical string) string { return logical })
}

func ormCloakSchema() string {
	s := ormSchema(func(_, _, _ string) string { return "bytea" })
	for _, c := range ormProtected {
		s += "\n" + ormBackstop(c.table, c.column) + ";"
	}
	return s
}

// ormBackstop is the CHECK constraint pgcloak installs on a protected column
// (migrate.BackstopSQL, validated at once: the tables are empty or hold only
// ciphertext).
func ormBackstop(table, column string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)", table, catalog.BackstopName(column), crypto.CheckExpr(column))
}

// ormRules is the tables: section of pgcloak's config.
func ormRules(withNickname bool) string {
	byTable := map[string][]string{}
	for _, c := range ormProtected {
		rule := fmt.Sprintf("  %s: {type: %q, key: pii", c.column, c.typ)
		if c.mode != "" {
			rule += ", mode: " + c.mode
		}
		byTable[c.table] = append(byTable[c.table], rule+"}")
	}
	if withNickname {
		byTable["customers"] = append(byTable["customers"], "  "+ormMigratedColumn+": {type: text, key: pii}")
	}
	var b strings.Builder
	for _, table := range []string{"customers", "orders"} {
		b.WriteString("public." + table + ":\n" + strings.Join(byTable[table], "\n") + "\n")
	}
	return b.String()
}

// ormStep is one line a program prints: a step of the scenario and what
// came of it. Rows are the step's result as the ORM returned it, every value
// rendered as a string by the program (nil for NULL); an error carries the
// SQLSTATE and the server's primary message and detail when the error came
// from the server, or the ORM's exception name when it did not. Skip says
// why an ORM has no such feature (e.g. no optimistic locking).
type ormStep struct {
	Step     string      `json:"step"`
	OK       bool        `json:"ok"`
	Rows     [][]*string `json:"rows,omitempty"`
	SQLState string      `json:"sqlstate,omitempty"`
	Error    string      `json:"error,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Skip     string      `json:"skip,omitempty"`
}

// ormSteps are the steps every program prints, in this order (the
// migrated phase's last two after the main phase's). A program may add
// steps of its own (e.g. Sequelize's findCreateFind), which are compared
// like the others.
var ormSteps = []string{
	"create", "bulk_create", "create_orders", "get_by_email", "in_list", "update", "bulk_update",
	"get_or_create", "get_or_create_new", "count", "pagination", "is_null", "eager_join",
	"related_filter", "exists", "unique_violation", "raw_sql", "rollback", "savepoint",
	"optimistic_lock", "delete", "order_by_randomized", "like_randomized", "full_dump", "migrate",
	"migrated_write", "migrated_read",
}

// ormRun is what one run of a program printed: its version line and the
// steps in order.
type ormRun struct {
	version string
	steps   []ormStep
}

// ormProgram is one ORM's application program.
type ormProgram struct {
	name string
	// check returns "" when the program can run here, else what is missing
	// and the command that installs it.
	check func() string
	// prepare is run once before the program (npm ci, javac, go build) and
	// returns the command line that runs it.
	prepare func(t *testing.T, dir string) []string
}

// ormTarget is one database a program runs against.
type ormTarget struct {
	host      string
	port      int
	db        string
	protected bool
}

// ormEnv is the protected database with its pgcloak and the plaintext twin
// on the same cluster.
type ormEnv struct {
	cloak *encEnv
	twin  string // database name
	pg    *harness.Postgres
}

func newORMEnv(t *testing.T) *ormEnv {
	t.Helper()
	e := newEncEnv(t, encEnvOptions{schema: ormCloakSchema(), tables: ormRules(false)})
	twin := "orm_twin_" + randomSuffix()
	if err := e.pg.ExecDB("postgres", "CREATE DATABASE "+twin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+twin+" WITH (FORCE)") })
	if err := e.pg.ExecDB(twin, ormTwinSchema()); err != nil {
		t.Fatal(err)
	}
	return &ormEnv{cloak: e, twin: twin, pg: e.pg}
}

func (e *ormEnv) twinTarget() ormTarget {
	return ormTarget{host: e.pg.Host, port: e.pg.Port, db: e.twin}
}

// cloakTarget is the protected database through the pgcloak at addr.
func (e *ormEnv) cloakTarget(t *testing.T, addr string) ormTarget {
	t.Helper()
	host, port, ok := strings.Cut(addr, ":")
	p, err := strconv.Atoi(port)
	if !ok || err != nil {
		t.Fatalf("pgcloak address %q", addr)
	}
	return ormTarget{host: host, port: p, db: e.cloak.db, protected: true}
}

// startMigratedCloak adds the backstop of the column the migration made,
// directly, and starts a second pgcloak on the same keys whose config also
// protects it. It fails the test if the migration did not make the column
// bytea (pgcloak would refuse the rule).
func (e *ormEnv) startMigratedCloak(t *testing.T) string {
	t.Helper()
	if err := e.pg.ExecDB(e.cloak.db, ormBackstop("customers", ormMigratedColumn)); err != nil {
		t.Fatalf("adding the backstop of customers.%s after the ORM's migration: %v", ormMigratedColumn, err)
	}
	yaml, err := os.ReadFile(e.cloak.config)
	if err != nil {
		t.Fatal(err)
	}
	old := indent(ormRules(false))
	if !bytes.Contains(yaml, []byte(old)) {
		t.Fatalf("the tables section of %s is not where it was expected:\n%s", e.cloak.config, yaml)
	}
	yaml = bytes.Replace(yaml, []byte(old), []byte(indent(ormRules(true))), 1)
	path := filepath.Join(e.cloak.dir, "pgcloak-migrated.yaml")
	if err := os.WriteFile(path, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	addr, _ := startCloakProxy(t, cfg, zaptest.NewLogger(t))
	return addr
}

// runORM runs one phase of a program against target and reads its steps.
func runORM(t *testing.T, dir string, argv []string, target ormTarget, phase string) ormRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	protected := "0"
	if target.protected {
		protected = "1"
	}
	// PGCLOAK_ORM_SQL=1 makes each program log the SQL its ORM sends (on
	// stderr, shown here): how the differences were traced to statements.
	showSQL := os.Getenv("PGCLOAK_ORM_SQL") == "1"
	sqlLog := "0"
	if showSQL {
		sqlLog = "1"
	}
	cmd.Env = matrixEnviron(
		"ORM_DB_HOST="+target.host, "ORM_DB_PORT="+strconv.Itoa(target.port), "ORM_DB_NAME="+target.db,
		"ORM_DB_USER="+harness.SuperUser, "ORM_PROTECTED="+protected, "ORM_PHASE="+phase, "ORM_SQL_LOG="+sqlLog)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	begin := time.Now()
	err := cmd.Run()
	where := "directly"
	if target.protected {
		where = "through pgcloak"
	}
	t.Logf("%s %s %s: %v", filepath.Base(dir), phase, where, time.Since(begin).Round(time.Millisecond))
	if showSQL {
		t.Logf("%s %s %s, stderr:\n%s", filepath.Base(dir), phase, where, errb.String())
	}
	if err != nil {
		t.Fatalf("%s (%s, %s): %v\nstderr:\n%s\nstdout:\n%.4000s", strings.Join(argv, " "), phase, where, err, errb.String(), out.String())
	}
	var run ormRun
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			t.Logf("%s: not a step line: %s", filepath.Base(dir), line)
			continue
		}
		var s ormStep
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("%s printed a line that is not a step (%v): %s", filepath.Base(dir), err, line)
		}
		if s.Step == "version" {
			if len(s.Rows) == 1 && len(s.Rows[0]) == 1 && s.Rows[0][0] != nil {
				run.version = *s.Rows[0][0]
			}
			continue
		}
		run.steps = append(run.steps, s)
	}
	if len(run.steps) == 0 {
		t.Fatalf("%s (%s, %s) printed no step\nstderr:\n%s", filepath.Base(dir), phase, where, errb.String())
	}
	return run
}

// ormRefusal is a step pgcloak must refuse: the direct run succeeds and the
// run through pgcloak fails with this SQLSTATE and a message that starts
// with "pgcloak:" and contains want.
type ormRefusal struct {
	sqlstate string
	want     string
}

// ormOutcome counts what the comparison found for one ORM.
type ormOutcome struct {
	identical, refused, knownDiff, skipped int
	refusedSteps, knownSteps               []string
}

// compareORM compares the direct run with the run through pgcloak step by
// step. refusals are the steps pgcloak must refuse; known are the
// differences that are allowed for now (step → cause), which must still
// differ (a known difference that went away fails the test, so the table
// shrinks as pgcloak is fixed).
func compareORM(t *testing.T, orm string, direct, cloak []ormStep, refusals map[string]ormRefusal, known map[string]string) ormOutcome {
	t.Helper()
	var out ormOutcome
	byName := func(steps []ormStep, which string) map[string]ormStep {
		m := map[string]ormStep{}
		for _, s := range steps {
			if _, dup := m[s.Step]; dup {
				t.Errorf("%s: step %s printed twice %s", orm, s.Step, which)
			}
			m[s.Step] = s
		}
		return m
	}
	dm, cm := byName(direct, "directly"), byName(cloak, "through pgcloak")
	for _, name := range ormSteps {
		if _, ok := dm[name]; !ok {
			t.Errorf("%s: the program printed no step %s directly", orm, name)
		}
	}
	for _, d := range direct {
		c, ok := cm[d.Step]
		if !ok {
			t.Errorf("%s: step %s ran directly but not through pgcloak", orm, d.Step)
			continue
		}
		delete(cm, d.Step)
		if d.Skip != "" || c.Skip != "" {
			if d.Skip != c.Skip {
				t.Errorf("%s: step %s skipped differently: directly %q, through pgcloak %q", orm, d.Step, d.Skip, c.Skip)
			}
			out.skipped++
			continue
		}
		if r, ok := refusals[d.Step]; ok {
			if !d.OK {
				t.Errorf("%s: step %s, which pgcloak must refuse, failed directly too (the scenario is wrong): %s %s", orm, d.Step, d.SQLState, d.Error)
			}
			switch {
			case c.OK:
				t.Errorf("%s: step %s succeeded through pgcloak; it must be refused with %s %q", orm, d.Step, r.sqlstate, r.want)
			case c.SQLState != r.sqlstate || !strings.HasPrefix(c.Error, "pgcloak:") || !strings.Contains(c.Error, r.want):
				t.Errorf("%s: step %s through pgcloak failed with %s %q; want %s and a message starting \"pgcloak:\" containing %q",
					orm, d.Step, c.SQLState, c.Error, r.sqlstate, r.want)
			default:
				out.refused++
				out.refusedSteps = append(out.refusedSteps, d.Step)
				t.Logf("%s: %s refused as it must be: %s %s", orm, d.Step, c.SQLState, c.Error)
			}
			continue
		}
		same := reflect.DeepEqual(d, c)
		if cause, ok := known[d.Step]; ok {
			if same {
				t.Errorf("%s: step %s is listed as a known difference (%s) but is now identical: remove it from ormKnownDiffs", orm, d.Step, cause)
				out.identical++
				continue
			}
			out.knownDiff++
			out.knownSteps = append(out.knownSteps, d.Step)
			t.Logf("%s: known difference in %s (%s):\n  directly:        %s\n  through pgcloak: %s", orm, d.Step, cause, ormShow(d), ormShow(c))
			continue
		}
		if !same {
			t.Errorf("%s: step %s differs:\n  directly:        %s\n  through pgcloak: %s", orm, d.Step, ormShow(d), ormShow(c))
			continue
		}
		if !d.OK && d.Step != "unique_violation" {
			t.Logf("%s: step %s failed both ways alike: %s %s", orm, d.Step, d.SQLState, d.Error)
		}
		out.identical++
	}
	for name := range cm {
		t.Errorf("%s: step %s ran through pgcloak but not directly", orm, name)
	}
	return out
}

func ormShow(s ormStep) string {
	b, _ := json.Marshal(s)
	if len(b) > 3000 {
		return string(b[:3000]) + "…"
	}
	return string(b)
}

// checkORMStored reads the protected tables directly: every non-NULL value
// of a protected column is pgcloak ciphertext, and there are some.
func (e *ormEnv) checkORMStored(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn := e.cloak.direct()
	cols := map[string][]string{}
	for _, c := range ormProtected {
		cols[c.table] = append(cols[c.table], c.column)
	}
	cols["customers"] = append(cols["customers"], ormMigratedColumn)
	for _, table := range []string{"customers", "orders"} {
		rows, err := conn.Query(ctx, fmt.Sprintf("SELECT id, %s FROM %s", strings.Join(cols[table], ", "), table))
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for rows.Next() {
			raw := rows.RawValues()
			for i, v := range raw[1:] {
				if v == nil {
					continue
				}
				n[cols[table][i]]++
				if !crypto.IsCiphertext(v) {
					t.Errorf("stored %s.%s of row %s is not pgcloak ciphertext: %q", table, cols[table][i], raw[0], v[:min(len(v), 40)])
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, c := range cols[table] {
			if n[c] == 0 {
				t.Errorf("no stored value of %s.%s to check: the scenario wrote none", table, c)
			}
		}
	}
}

// ormRequire reports a missing client: a failure in CI (CI is set, as
// .ci/run runs) or with PGCLOAK_ORM=require, a skip elsewhere, both with
// the command that installs it (make test runs tools/testdeps.sh, which does).
func ormRequire(t *testing.T, missing string) {
	t.Helper()
	if os.Getenv("CI") != "" || os.Getenv("PGCLOAK_ORM") == "require" {
		t.Fatalf("%s (CI must run every ORM)", missing)
	}
	t.Skipf("%s; skipped outside CI", missing)
}
