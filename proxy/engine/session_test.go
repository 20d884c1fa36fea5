package engine

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
)

// TestProtectorSessions: the rules apply to the protected database only;
// physical replication passes, logical replication is refused, and the
// protected database is refused until the catalog is loaded.
func TestProtectorSessions(t *testing.T) {
	e := newEngine(t)
	for _, c := range []struct {
		info proxy.SessionInfo
		hook bool
		code string
	}{
		{proxy.SessionInfo{User: "alice", Database: "other"}, false, ""},
		{proxy.SessionInfo{User: "alice", Database: "app", Replication: "true"}, false, ""},
		{proxy.SessionInfo{User: "alice", Database: "app", Replication: "database"}, false, "0A000"},
		{proxy.SessionInfo{User: "alice", Database: "app"}, true, ""},
	} {
		h, err := e.prot.Session(c.info)
		if (h != nil) != c.hook || sqlstate(err) != c.code {
			t.Errorf("%+v: hook %v, error %v", c.info, h, err)
		}
	}

	p, err := NewProtector("host=db user=pgcloak dbname=app", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Session(proxy.SessionInfo{User: "alice", Database: "app"})
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("a protector without a catalog: %v", err)
	}
}

// TestBindWaitsForParse: a Bind of a statement whose Parse was sent in an
// earlier group, not yet answered, waits for the server's answer: until
// then pgcloak cannot know the statement exists.
func TestBindWaitsForParse(t *testing.T) {
	e := newEngine(t)
	e.client(parse("w", "INSERT INTO people (name) VALUES ($1)"), syncMsg()).
		want(`Parse "w" "INSERT INTO people (name) VALUES ($1)"`, `Describe S "w"`, `Sync`)
	waiting := e.async(bind("", "w", "Alice Liddell"), execute("", 0), syncMsg())
	e.waiting()
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, &pgproto3.NoData{}, ready('I')).
		want(`ParseComplete`, `ReadyForQuery I`)
	waiting().done().want(`Bind "" "w" pf=[1] [⟨name=Alice Liddell⟩]`, `Execute "" 0`, `Sync`)
}

// TestServerGoneWakesClient: a client loop waiting for an answer stops
// waiting when the server loop ends.
func TestServerGoneWakesClient(t *testing.T) {
	e := newEngine(t)
	e.client(parse("w", "INSERT INTO people (name) VALUES ($1)"), syncMsg())
	waiting := e.async(bind("", "w", "Alice Liddell"))
	e.waiting()
	e.hook.ServerGone()
	if err := waiting().err; !errors.Is(err, errSessionClosed) {
		t.Fatalf("client loop: %v", err)
	}
	e.neverSent("Alice")
}

// TestSettingsWaitForAnswer: a statement planned after a SET that the
// server has not confirmed yet waits for the answer, and is then read
// with the setting in force.
func TestSettingsWaitForAnswer(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "SET DateStyle = 'SQL, DMY'"})
	waiting := e.async(&pgproto3.Query{String: "INSERT INTO people (born) VALUES ('01/02/2024')"})
	e.waiting()
	e.server(complete("SET"), &pgproto3.ParameterStatus{Name: "DateStyle", Value: "SQL, DMY"}, ready('I'))
	waiting().done().want(`Query "INSERT INTO people (born) VALUES (⟨born=2024-02-01⟩)"`)
	e.server(complete("INSERT 0 1"), ready('I'))

	// A SET that fails is undone: the next statement is read as before.
	e.client(&pgproto3.Query{String: "SET DateStyle = 'ISO, MDY'"})
	e.server(serverError("22023", "invalid value"), ready('I'))
	e.client(&pgproto3.Query{String: "INSERT INTO people (born) VALUES ('01/02/2024')"}).
		want(`Query "INSERT INTO people (born) VALUES (⟨born=2024-02-01⟩)"`)
}

// TestSetRolledBack: a SET inside a transaction that is rolled back is
// undone, as PostgreSQL undoes it.
func TestSetRolledBack(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "BEGIN; SET bytea_output = escape"})
	e.server(complete("BEGIN"), complete("SET"), ready('T'))
	e.client(&pgproto3.Query{String: "ROLLBACK"})
	e.server(complete("ROLLBACK"), ready('I'))
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(byteaText(e.ciphertext("secret", "\x00\xffA")))).
		want(`RowDescription secret:17`, `DataRow "\\x00ff41"`)
}

// TestSetUndoneByError: a SET in a group (a Query, or messages up to a
// Sync) that fails later is undone with the implicit transaction, as
// PostgreSQL undoes it.
func TestSetUndoneByError(t *testing.T) {
	e := newEngine(t)
	secret := byteaText(e.ciphertext("secret", "\x00\xffA"))
	e.client(&pgproto3.Query{String: "SET bytea_output = escape; SELECT 1/0"})
	e.server(complete("SET"), serverError("22012", "division by zero"), ready('I'))
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(secret), complete("SELECT 1"), ready('I')).
		want(`RowDescription secret:17`, `DataRow "\\x00ff41"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	e.client(parse("", "SET bytea_output = escape"), bind("", ""), execute("", 0), parse("", "SELECT 1/0"), bind("", ""), execute("", 0), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("SET"),
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rowDescription(text("?column?")), serverError("22012", "division by zero"), ready('I'))
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(secret), complete("SELECT 1"), ready('I')).
		want(`RowDescription secret:17`, `DataRow "\\x00ff41"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}

// archived adds archive.people, a table that has people's name in another
// schema: unqualified names then depend on the search_path.
func archived(f *fixture) {
	f.cfg.Tables["archive.people"] = map[string]config.Column{"name": {Type: "text", Key: "pii"}}
	f.tables = append(f.tables, catalog.StaticTable{Schema: "archive", Name: "people", OID: 16403, Columns: []string{"id", "name"}})
}

// TestSearchPathQualifies: a name that several schemas hold is qualified
// with the schema the session's search_path resolves it to, and a
// prepared statement that a later search_path would resolve elsewhere is
// refused rather than run against the other table.
func TestSearchPathQualifies(t *testing.T) {
	e := newEngine(t, archived)
	e.client(parse("ins", "INSERT INTO people (name) VALUES ($1)"), syncMsg()).
		want(`Parse "ins" "INSERT INTO public.people (name) VALUES ($1)"`, `Describe S "ins"`, `Sync`)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, &pgproto3.NoData{}, ready('I'))

	e.client(&pgproto3.Query{String: "SET search_path = archive, public"})
	e.server(complete("SET"), ready('I'))
	e.client(bind("", "ins", "Alice Liddell"), execute("", 0), syncMsg()).
		want(`Bind "" "\x01pgcloak refused" []`, `Execute "" 0`, `Sync`)
	e.neverSent("Alice")
	e.server(serverError("26000", "prepared statement does not exist"), ready('I')).
		want(`ErrorResponse ERROR 0A000 "pgcloak: prepared statement \"ins\" names a relation that several schemas hold (public.people), and search_path now resolves it elsewhere …`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "INSERT INTO people (name) VALUES ('Bob Bobson')"}).
		want(`Query "INSERT INTO archive.people (name) VALUES (⟨archive.people.name=Bob Bobson⟩)"`)
}

// TestStartedSettings: the settings the server does not report are read
// when the session starts: a search_path that names another schema first
// decides where an unqualified name goes. When they cannot be read,
// PostgreSQL's defaults are assumed.
func TestStartedSettings(t *testing.T) {
	archivePath := func(f *fixture) {
		f.settings = []pgproto3.BackendMessage{
			rowDescription(text("current_setting"), text("current_setting"), text("current_setting")),
			dataRow("archive, public", "hex", "1"), complete("SELECT 1"), ready('I'),
		}
	}
	e := newEngine(t, archived, archivePath)
	e.client(&pgproto3.Query{String: "INSERT INTO people (name) VALUES ('Alice Liddell')"}).
		want(`Query "INSERT INTO archive.people (name) VALUES (⟨archive.people.name=Alice Liddell⟩)"`)

	unreadable := func(f *fixture) {
		f.settings = []pgproto3.BackendMessage{serverError("42501", "permission denied"), ready('I')}
	}
	e = newEngine(t, archived, unreadable)
	e.client(&pgproto3.Query{String: "INSERT INTO people (name) VALUES ('Alice Liddell')"}).
		want(`Query "INSERT INTO public.people (name) VALUES (⟨name=Alice Liddell⟩)"`)
}

// TestServerInitiated: messages the server sends on its own (a notice, a
// setting's new value, the FATAL of a shutdown) pass whatever is pending.
func TestServerInitiated(t *testing.T) {
	e := newEngine(t)
	e.server(
		&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "hello"},
		&pgproto3.ParameterStatus{Name: "application_name", Value: "psql"},
		&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"},
	).want(
		`NoticeResponse NOTICE 00000 "hello"`,
		`ParameterStatus application_name=psql`,
		`ErrorResponse FATAL 57P01 "terminating connection due to administrator command"`,
	)
}

// TestAnswerDuringFlush: the relay's two loops run at once, so the server's
// answer can arrive while the client loop flushes the request it is about
// to wait for. The client loop then goes on with the answer instead of
// waiting for one already given (it used to wait for good: nothing more
// is sent until it returns).
func TestAnswerDuringFlush(t *testing.T) {
	e := newEngine(t)
	answered := false
	e.toServer = bufio.NewWriter(flushHook(func(p []byte) {
		e.up.Write(p)
		if !answered && bytes.Contains(p, []byte("SET DateStyle")) {
			answered = true
			if err := e.serverSend(complete("SET"), &pgproto3.ParameterStatus{Name: "DateStyle", Value: "SQL, DMY"}, ready('I')); err != nil {
				t.Errorf("server message: %v", err)
			}
		}
	}))
	e.client(&pgproto3.Query{String: "SET DateStyle = 'SQL, DMY'"},
		&pgproto3.Query{String: "INSERT INTO people (born) VALUES ('01/02/2024')"}).
		want(`Query "SET DateStyle = 'SQL, DMY'"`, `Query "INSERT INTO people (born) VALUES (⟨born=2024-02-01⟩)"`)
	if !answered {
		t.Fatal("the SET was not flushed before the INSERT was planned")
	}
}

// flushHook is an io.Writer that calls f with what is written.
type flushHook func(p []byte)

func (f flushHook) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}
