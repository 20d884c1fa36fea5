package integration

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestAuthPassthrough logs in through pgcloak with each authentication
// method PostgreSQL asks for; a wrong password gets PostgreSQL's own 28P01.
func TestAuthPassthrough(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	for _, user := range []string{harness.TrustUser, harness.MD5User, harness.SCRAMUser} {
		c := connect(t, dsn(pg, addr, user))
		if got := queryString(t, c, "SELECT current_user::text"); got != user {
			t.Errorf("logged in as %s, current_user is %s", user, got)
		}
	}
	method := queryString(t, connect(t, directDSN(pg, harness.SuperUser)),
		"SELECT string_agg(rolname || '=' || left(rolpassword, 6), ',' ORDER BY rolname) FROM pg_authid WHERE rolname IN ($1, $2)",
		harness.MD5User, harness.SCRAMUser)
	if !strings.HasPrefix(method, "md5_user=md5") || !strings.Contains(method, ",scram_user=SCRAM-") {
		t.Errorf("roles do not store the passwords their names promise: %s", method)
	}

	for _, user := range []string{harness.MD5User, harness.SCRAMUser} {
		bad := strings.Replace(dsn(pg, addr, user), ":"+pgPassword(pg, user)+"@", ":wrong-password@", 1)
		_, err := tryConnect(t, bad)
		pe := requirePgError(t, err, "28P01", "password authentication failed for user \""+user+"\"")
		if strings.HasPrefix(pe.Message, "pgcloak:") {
			t.Errorf("the error is pgcloak's (%q), want PostgreSQL's own", pe.Message)
		}

		// The same with lib/pq.
		db, err := sql.Open("postgres", bad)
		if err != nil {
			t.Fatal(err)
		}
		err = db.PingContext(queryCtx(t))
		db.Close()
		if pqe, ok := err.(*pq.Error); !ok || pqe.Code != "28P01" {
			t.Errorf("lib/pq, %s with a wrong password: %v, want *pq.Error 28P01", user, err)
		}
	}
	requireWorks(t, pg, addr)
}

func pgPassword(pg *harness.Postgres, user string) string {
	switch user {
	case harness.MD5User:
		return pg.MD5Password
	case harness.SCRAMUser:
		return pg.SCRAMPassword
	}
	return ""
}

// TestStartupParametersForwarded checks that startup parameters reach
// PostgreSQL untouched: options (-c settings), application_name, a GUC as a
// parameter of its own, and a protocol 3.2 request, which PostgreSQL 15
// answers with NegotiateProtocolVersion.
func TestStartupParametersForwarded(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	addr, _ := startProxy(t, pg, nil)

	c := connect(t, dsn(pg, addr, harness.TrustUser,
		"options", "-c search_path=foo -c DateStyle=German,DMY",
		"application_name", "pgcloak test-app 1",
	))
	for sql, want := range map[string]string{
		"SHOW search_path":                           "foo",
		"SELECT current_setting('application_name')": "pgcloak test-app 1",
		"SHOW DateStyle":                             "German, DMY",
		"SELECT date '2024-02-29'::text":             "29.02.2024",
	} {
		if got := queryString(t, c, sql); got != want {
			t.Errorf("%s = %q, want %q", sql, got, want)
		}
	}
	if got := c.PgConn().ParameterStatus("application_name"); got != "pgcloak test-app 1" {
		t.Errorf("ParameterStatus application_name = %q", got)
	}
	if got := c.PgConn().ParameterStatus("DateStyle"); got != "German, DMY" {
		t.Errorf("ParameterStatus DateStyle = %q", got)
	}

	// Settings as startup parameters of their own, as pgx and JDBC send
	// them (search_path, client_min_messages).
	c = connect(t, dsn(pg, addr, harness.TrustUser, "search_path", "bar, public", "client_min_messages", "warning"))
	if got := queryString(t, c, "SHOW search_path"); got != "bar, public" {
		t.Errorf("search_path = %q", got)
	}
	if got := queryString(t, c, "SHOW client_min_messages"); got != "warning" {
		t.Errorf("client_min_messages = %q", got)
	}

	// Protocol 3.2 requested: PostgreSQL 15 negotiates down to 3.0.
	c = connect(t, dsn(pg, addr, harness.TrustUser, "max_protocol_version", "3.2"))
	if got := queryString(t, c, "SELECT 'negotiated'"); got != "negotiated" {
		t.Errorf("got %q", got)
	}
}
