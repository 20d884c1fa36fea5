package integration

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// opsSchema is a protected table (email) with its backstop.
const opsSchema = `CREATE TABLE customers (id int PRIMARY KEY, email bytea, ` + "%s" + `);
GRANT ALL ON customers TO scram_user, md5_user;`

func opsSchemaSQL() string {
	return strings.Replace(opsSchema, "%s", catalog.BackstopConstraint("email"), 1)
}

var opsRules = []lcRule{{"public.customers", "email", "{type: text, key: pii}"}}

// TestConsole connects psql and pgx to the admin console of a serve
// process: who may log in (the upstream server checks the password; roles
// outside admin_users are refused before anything reaches it), the SHOW
// commands, errors, KILL, and a RELOAD that enables another admin.
func TestConsole(t *testing.T) {
	e := newOpsEnv(t, opsSchemaSQL())
	e.write("encrypted", opsRules, "admin_users: [scram_user]")
	e.start()
	ctx := stepCtx(t)

	// An application session, encrypting.
	app := connect(t, e.dsn(harness.SCRAMUser, e.db, "application_name", "shop"))
	if _, err := app.Exec(ctx, "INSERT INTO customers VALUES (1, $1)", "ada@example.org"); err != nil {
		t.Fatal(err)
	}

	// psql as an admin: PostgreSQL checked the SCRAM password.
	out := e.mustPsql(harness.SCRAMUser, "SHOW VERSION", "SHOW CLIENTS", "SHOW SERVERS", "SHOW RULES", "SHOW KEYS",
		"SHOW DATABASES", "SHOW HOSTS", "SHOW CONFIG", "SHOW STATS")
	t.Logf("psql:\n%s", out)
	table := psqlCells(out)
	for _, want := range []string{
		`pgcloak dev`,
		// SHOW CLIENTS: the application's session, idle, encrypting.
		`\d+\|scram_user\|` + e.db + `\|shop\|127\.0\.0\.1:\d+\|no\|idle\|yes\|`,
		// SHOW SERVERS: its upstream connection and backend PID.
		`\d+\|scram_user\|` + e.db + `\|127\.0\.0\.1:\d+\|[1-9]\d*\|idle`,
		// SHOW RULES: the column, its backstop, the catalog in order.
		`public\.customers\|email\|text\|randomized\|pii\|encrypted\|ok\|ok`,
		// SHOW KEYS: the keyring, its Transit key and version 1.
		`pii\|pgcloak-pii-` + e.db + `\|1\|1\|`,
		e.db + `\|1\|no`,
		`admin_users\|scram_user`,
		`pgcloak_client_connections\|\|2`, // the application and this console
	} {
		if !regexp.MustCompile(`(?m)^` + want).MatchString(table) {
			t.Errorf("psql output lacks a line like %s", want)
		}
	}

	// Wrong password: PostgreSQL refuses it, as for any session.
	wrong := strings.Replace(e.dsn(harness.SCRAMUser, "pgcloak"), e.pg.SCRAMPassword, "wrong", 1)
	if _, err := pgx.Connect(ctx, wrong); pgErrorCode(err) != "28P01" {
		t.Errorf("console with a wrong password: %v, want 28P01 from PostgreSQL", err)
	}
	// A role that is not an admin is refused by pgcloak.
	if _, err := pgx.Connect(ctx, e.dsn(harness.MD5User, "pgcloak")); pgErrorCode(err) != "28000" || !strings.Contains(err.Error(), "admin_users") {
		t.Errorf("console as md5_user: %v, want 28000 naming admin_users", err)
	}
	// An unknown command: 42601 with the list of commands.
	if out, err := e.psql(harness.SCRAMUser, "SHOW TABLES"); err == nil || !strings.Contains(out, "SHOW CLIENTS | SERVERS") {
		t.Errorf("unknown command: %v\n%s", err, out)
	}

	// pgx in the simple protocol; the extended protocol is refused and the
	// session stays usable.
	con := connect(t, e.dsn(harness.SCRAMUser, "pgcloak"))
	rows, err := con.Query(ctx, "SHOW CLIENTS", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var appID, appState string
	for rows.Next() {
		vals, _ := rows.Values()
		if vals[3] == "shop" {
			appID, appState = vals[0].(string), vals[6].(string)
		}
	}
	if rows.Err() != nil || appID == "" || appState != "idle" {
		t.Fatalf("SHOW CLIENTS through pgx: id %q state %q, %v", appID, appState, rows.Err())
	}
	var pe *pgconn.PgError
	if _, err := con.PgConn().Prepare(ctx, "", "SHOW CLIENTS", nil); !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Errorf("extended protocol: %v, want 0A000", err)
	}
	// KILL ends the application's session.
	if _, err := con.Exec(ctx, "KILL "+appID, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the killed session still runs statements")
	}
	if _, err := con.Exec(ctx, "KILL "+appID, pgx.QueryExecModeSimpleProtocol); pgErrorCode(err) != "42704" {
		t.Errorf("KILL of a session gone: %v, want 42704", err)
	}

	// RELOAD with md5_user added, and the log level debug: md5_user may
	// log in now, and sessions log at debug.
	if strings.Contains(e.logs.String(), "session ready") {
		t.Fatal("debug lines logged at level info")
	}
	e.write("encrypted", opsRules, "admin_users: [scram_user, md5_user]\nlog_level: debug")
	if _, err := con.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if out := e.mustPsql(harness.MD5User, "SHOW VERSION"); !strings.Contains(out, "pgcloak") {
		t.Errorf("md5_user after RELOAD:\n%s", out)
	}
	connect(t, e.dsn(harness.SCRAMUser, e.db)).Close(ctx)
	waitFor(t, 10*time.Second, "a debug line", func() bool { return strings.Contains(e.logs.String(), "session ready") })
	// A file with a mistake: RELOAD says what is wrong, the config stays.
	e.write("encrypted", opsRules, "admin_users: [scram_user]\nlimits: {max_client_connections: 0}")
	_, err = con.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol)
	if !errors.As(err, &pe) || pe.Code != "F0000" || !strings.Contains(pe.Message, "limits.max_client_connections: must be at least 1") {
		t.Errorf("RELOAD of a bad file: %v, want F0000 naming the problem", err)
	}
	if out := e.mustPsql(harness.MD5User, "SHOW CONFIG"); !strings.Contains(out, "md5_user") {
		t.Errorf("after a failed RELOAD the running config changed:\n%s", out)
	}
	if v := e.metric(`pgcloak_config_reloads_total{result="error"}`); v != "1" {
		t.Errorf("pgcloak_config_reloads_total{result=\"error\"} = %q, want 1", v)
	}
}

// psqlCells is psql's aligned output with the padding around cells
// removed: " 1  | ada " becomes "1|ada".
func psqlCells(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = regexp.MustCompile(`\s*\|\s*`).ReplaceAllString(strings.TrimSpace(l), "|")
	}
	return strings.Join(lines, "\n")
}
