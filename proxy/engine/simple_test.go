package engine

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The simple query protocol: Query, its answers up to ReadyForQuery.

// TestQueryEncryptsLiterals: the literals a Query stores into or compares
// with protected columns reach the server as ciphertext of the column's
// canonical value (a date in any accepted spelling, a decimal rounded into
// an int4 as PostgreSQL's assignment does); the rest of the text is
// untouched.
func TestQueryEncryptsLiterals(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "INSERT INTO people (id, name, email, born) VALUES (1, 'Alice Liddell', 'alice@example.com', 'March 15, 2024')"}).
		want(`Query "INSERT INTO people (id, name, email, born) VALUES (1, ⟨name=Alice Liddell⟩, ⟨email=alice@example.com⟩, ⟨born=2024-03-15⟩)"`)
	e.server(complete("INSERT 0 1"), ready('I')).
		want(`CommandComplete "INSERT 0 1"`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "UPDATE accounts SET pin = 41.5 WHERE email = 'alice@example.com'"}).
		want(`Query "UPDATE accounts SET pin = ⟨pin=42⟩ WHERE email = ⟨email=alice@example.com⟩"`)
	e.server(complete("UPDATE 1"), ready('I')).
		want(`CommandComplete "UPDATE 1"`, `ReadyForQuery I`)

	// NULL stays NULL.
	e.client(&pgproto3.Query{String: "INSERT INTO people (id, name) VALUES (2, NULL::text)"}).
		want(`Query "INSERT INTO people (id, name) VALUES (2, NULL)"`)
}

// TestQueryUnprotectedUntouched: a statement that touches no protected
// table is forwarded byte for byte, and its rows are relayed without being
// read.
func TestQueryUnprotectedUntouched(t *testing.T) {
	e := newEngine(t)
	q := &pgproto3.Query{String: "SELECT 'Alice Liddell' AS name"}
	if f := e.client(q); string(f.raw) != string(encode(t, q)) {
		t.Fatalf("forwarded %q", f.raw)
	}
	e.server(rowDescription(text("name")), dataRow("Alice Liddell"), complete("SELECT 1"), ready('I')).
		want(`RowDescription name:25`, `DataRow "Alice Liddell"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
	e.client(&pgproto3.Query{String: ""}).want(`Query ""`)
	e.server(&pgproto3.EmptyQueryResponse{}, ready('I')).want(`EmptyQueryResponse`, `ReadyForQuery I`)
}

// TestQueryDecryptsRows: the rows of a Query carry the logical types in
// RowDescription and the decrypted values in the client's text format;
// NULL stays NULL.
func TestQueryDecryptsRows(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "SELECT id, name, email, born, note FROM people ORDER BY id"}).
		want(`Query "SELECT id, name, email, born, note FROM people ORDER BY id"`)
	e.server(
		rowDescription(col("id"), col("name"), col("email"), col("born"), col("note")),
		dataRow("1", byteaText(e.ciphertext("name", "Alice Liddell")), byteaText(e.ciphertext("email", "alice@example.com")),
			byteaText(e.ciphertext("born", "2024-03-15")), "hello"),
		dataRow("2", null, null, null, null),
		complete("SELECT 2"), ready('I'),
	).want(
		`RowDescription id:23 name:25 email:25 born:1082 note:25`,
		`DataRow "1" "Alice Liddell" "alice@example.com" "2024-03-15" "hello"`,
		`DataRow "2" NULL NULL NULL NULL`,
		`CommandComplete "SELECT 2"`,
		`ReadyForQuery I`,
	)
}

// TestQueryMultiStatement: every statement of a Query is analysed, and an
// ErrorResponse in the middle ends it (the rest is skipped, as PostgreSQL
// does) without disturbing the next one.
func TestQueryMultiStatement(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "INSERT INTO people (id, name) VALUES (3, 'Carol Cruz'); SELECT name FROM people WHERE email = 'carol@example.com'"}).
		want(`Query "INSERT INTO people (id, name) VALUES (3, ⟨name=Carol Cruz⟩); SELECT name FROM people WHERE email = ⟨email=carol@example.com⟩"`)
	e.server(complete("INSERT 0 1"), serverError("42P01", `relation "people" does not exist`), ready('I')).
		want(`CommandComplete "INSERT 0 1"`, `ErrorResponse ERROR 42P01 "relation \"people\" does not exist"`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "SELECT name FROM people"}).want(`Query "SELECT name FROM people"`)
	e.server(rowDescription(col("name")), dataRow(byteaText(e.ciphertext("name", "Carol Cruz"))), complete("SELECT 1"), ready('I')).
		want(`RowDescription name:25`, `DataRow "Carol Cruz"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}

// TestQueryRefused: a statement pgcloak cannot run safely is replaced by
// one bound to fail, so that the server keeps the session's state as for a
// failed statement; its error is replaced by pgcloak's, which names the
// column and the reason. Nothing of the refused text reaches the server.
func TestQueryRefused(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "BEGIN"}).want(`Query "BEGIN"`)
	e.server(complete("BEGIN"), ready('T')).want(`CommandComplete "BEGIN"`, `ReadyForQuery T`)

	e.refused("SELECT id FROM people WHERE name LIKE 'Alice Lid%'", "Alice Lid",
		`ErrorResponse ERROR 0A000 "pgcloak: cannot match public.people.name: LIKE, ILIKE and SIMILAR TO cannot be evaluated on ciphertext"`, 'E')

	e.client(&pgproto3.Query{String: "ROLLBACK"}).want(`Query "ROLLBACK"`)
	e.server(complete("ROLLBACK"), ready('I')).want(`CommandComplete "ROLLBACK"`, `ReadyForQuery I`)

	// A value that is not valid for the column's type is refused with the
	// SQLSTATE PostgreSQL gives for the same mistake.
	e.refused("INSERT INTO people (id, born) VALUES (4, 'Mooncake Day')", "Mooncake",
		`ErrorResponse ERROR 22007 "pgcloak: public.people.born (date): invalid input syntax for type date: \"Mooncake Day\""`, 'I')
}

// TestQueryShadow: in shadow mode a statement pgcloak would refuse is
// logged and forwarded as the client sent it.
func TestQueryShadow(t *testing.T) {
	e := newEngine(t, shadow)
	e.client(&pgproto3.Query{String: "SELECT id FROM people WHERE name LIKE 'Al%'"}).
		want(`Query "SELECT id FROM people WHERE name LIKE 'Al%'"`)
}

// TestParameterStatusShapesValues: the settings the server reports
// (ParameterStatus, relayed to the client) decide how decrypted values
// are written.
func TestParameterStatusShapesValues(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "SET DateStyle = 'SQL, DMY'"}).want(`Query "SET DateStyle = 'SQL, DMY'"`)
	e.server(complete("SET"), &pgproto3.ParameterStatus{Name: "DateStyle", Value: "SQL, DMY"}, ready('I')).
		want(`CommandComplete "SET"`, `ParameterStatus DateStyle=SQL, DMY`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "SELECT born FROM people"})
	e.server(rowDescription(col("born")), dataRow(byteaText(e.ciphertext("born", "2024-03-15"))), complete("SELECT 1"), ready('I')).
		want(`RowDescription born:1082`, `DataRow "15/03/2024"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	// The client's values are read with the same setting.
	e.client(&pgproto3.Query{String: "INSERT INTO people (born) VALUES ('01/02/2024')"}).
		want(`Query "INSERT INTO people (born) VALUES (⟨born=2024-02-01⟩)"`)
}

// TestUnreportedSettingFollowed: bytea_output, which the server does not
// report, is followed from the SET the server confirmed, through a Query
// or the extended protocol: a protected bytea is written in escape form
// after it, in hex before.
func TestUnreportedSettingFollowed(t *testing.T) {
	e := newEngine(t)
	secret := byteaText(e.ciphertext("secret", "\x00\xffA"))
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(secret), complete("SELECT 1"), ready('I')).
		want(`RowDescription secret:17`, `DataRow "\\x00ff41"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "SET bytea_output = escape"}).want(`Query "SET bytea_output = escape"`)
	e.server(complete("SET"), ready('I')).want(`CommandComplete "SET"`, `ReadyForQuery I`)
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(secret), complete("SELECT 1"), ready('I')).
		want(`RowDescription secret:17`, `DataRow "\\000\\377A"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	e.client(parse("", "SET bytea_output = hex"), bind("", ""), execute("", 0), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("SET"), ready('I')).
		want(`ParseComplete`, `BindComplete`, `CommandComplete "SET"`, `ReadyForQuery I`)
	e.client(&pgproto3.Query{String: "SELECT secret FROM people"})
	e.server(rowDescription(col("secret")), dataRow(secret), complete("SELECT 1"), ready('I')).
		want(`RowDescription secret:17`, `DataRow "\\x00ff41"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}

// TestFunctionCall: a FunctionCall is answered up to ReadyForQuery like a
// Query; its answer passes untouched.
func TestFunctionCall(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.FunctionCall{Function: 1598, ResultFormatCode: 0}).want(`FunctionCall`)
	e.server(&pgproto3.FunctionCallResponse{Result: []byte("0.5")}, ready('I')).
		want(`FunctionCallResponse 0x302e35`, `ReadyForQuery I`)
	e.client(&pgproto3.Query{String: "SELECT name FROM people"})
	e.server(rowDescription(col("name")), dataRow(byteaText(e.ciphertext("name", "Dora")))).
		want(`RowDescription name:25`, `DataRow "Dora"`)
}

// TestTerminate: Terminate is the relay's; it passes untouched.
func TestTerminate(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Terminate{}).want(`Terminate`)
}
