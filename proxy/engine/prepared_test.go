package engine

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Prepared statements: SQL PREPARE/EXECUTE/DEALLOCATE and protocol
// Parse/Bind/Close share one namespace on the server, and in pgcloak.

// TestSQLPrepareProtocolBind: a statement prepared with SQL PREPARE is
// known once the server confirms it, and a protocol Bind of it is
// encrypted.
func TestSQLPrepareProtocolBind(t *testing.T) {
	e := newEngine(t)
	// Declared types would make the server expect text for a bytea column.
	e.refused("PREPARE ins (int, text) AS INSERT INTO people (id, name) VALUES ($1, $2)", "(int, text)",
		`ErrorResponse ERROR 0A000 "pgcloak: cannot bind $2 to public.people.name: PREPARE declares the parameter's type, but the server must receive bytea; leave the types out"`, 'I')

	e.client(&pgproto3.Query{String: "PREPARE ins AS INSERT INTO people (id, name) VALUES ($1, $2)"}).
		want(`Query "PREPARE ins AS INSERT INTO people (id, name) VALUES ($1, $2)"`)
	e.server(complete("PREPARE"), ready('I')).want(`CommandComplete "PREPARE"`, `ReadyForQuery I`)

	e.client(bind("", "ins", "1", "Alice Liddell"), execute("", 0), syncMsg()).
		want(`Bind "" "ins" pf=[0 1] ["1" ⟨name=Alice Liddell⟩]`, `Describe P ""`, `Execute "" 0`, `Sync`)
	e.server(&pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("INSERT 0 1"), ready('I')).
		want(`BindComplete`, `CommandComplete "INSERT 0 1"`, `ReadyForQuery I`)

	// DEALLOCATE removes it once the server confirms.
	e.client(&pgproto3.Query{String: "DEALLOCATE ins"})
	e.server(complete("DEALLOCATE"), ready('I'))
	e.client(bind("", "ins", "2", "Bob Bobson"), execute("", 0), syncMsg()).
		want(`Bind "" "\x01pgcloak refused" []`, `Execute "" 0`, `Sync`)
	e.neverSent("Bob Bobson")
}

// TestProtocolParseSQLExecute: a statement made by a protocol Parse runs
// with SQL EXECUTE; its literal arguments are encrypted for the columns of
// the statement, and its rows decrypted.
func TestProtocolParseSQLExecute(t *testing.T) {
	e := newEngine(t)
	e.client(parse("byemail", "SELECT id, name FROM people WHERE email = $1"), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, rowDescription(col("id"), col("name")), ready('I')).
		want(`ParseComplete`, `ReadyForQuery I`)

	e.client(&pgproto3.Query{String: "EXECUTE byemail('bob@example.com')"}).
		want(`Query "EXECUTE byemail(⟨email=bob@example.com⟩)"`)
	e.server(rowDescription(col("id"), col("name")), dataRow("2", byteaText(e.ciphertext("name", "Bob Bobson"))), complete("SELECT 1"), ready('I')).
		want(`RowDescription id:23 name:25`, `DataRow "2" "Bob Bobson"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	// An argument the server computes cannot be encrypted.
	e.refused("EXECUTE byemail(lower('BOB@example.com'))", "BOB@",
		`ErrorResponse ERROR 0A000 "pgcloak: cannot use public.people.email: EXECUTE byemail argument 1 is computed by the server; pass a literal"`, 'I')
}

// TestPrepareExecuteOneText: PREPARE and EXECUTE in the same Query text:
// the EXECUTE runs the statement the text just prepared.
func TestPrepareExecuteOneText(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "PREPARE q AS SELECT id FROM people WHERE email = $1; EXECUTE q('carol@example.com')"}).
		want(`Query "PREPARE q AS SELECT id FROM people WHERE email = $1; EXECUTE q(⟨email=carol@example.com⟩)"`)
	e.server(complete("PREPARE"), rowDescription(col("id")), dataRow("3"), complete("SELECT 1"), ready('I')).
		want(`CommandComplete "PREPARE"`, `RowDescription id:23`, `DataRow "3"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	// q is the session's now: EXECUTE in a later Query finds it.
	e.client(&pgproto3.Query{String: "EXECUTE q('dora@example.com')"}).
		want(`Query "EXECUTE q(⟨email=dora@example.com⟩)"`)
	e.server(rowDescription(col("id")), complete("SELECT 0"), ready('I'))

	// A statement deallocated earlier in the same text is unknown.
	e.refused("DEALLOCATE q; EXECUTE q('erin@example.com')", "erin@",
		`ErrorResponse ERROR 26000 "pgcloak: prepared statement \"q\" is not known to pgcloak …`, 'I')
}

// TestExecuteUnknown: SQL EXECUTE of a statement pgcloak does not know is
// refused rather than sent with its arguments in plaintext.
func TestExecuteUnknown(t *testing.T) {
	e := newEngine(t)
	e.refused("EXECUTE nosuch('alice@example.com')", "alice@",
		`ErrorResponse ERROR 26000 "pgcloak: prepared statement \"nosuch\" is not known to pgcloak …`, 'I')
}

// TestDiscardAll: DISCARD ALL drops every prepared statement.
func TestDiscardAll(t *testing.T) {
	e := newEngine(t)
	e.client(parse("a", "INSERT INTO people (name) VALUES ($1)"), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, &pgproto3.NoData{}, ready('I'))
	e.client(&pgproto3.Query{String: "DISCARD ALL"})
	e.server(complete("DISCARD ALL"), ready('I'))
	e.client(bind("", "a", "Alice Liddell"), syncMsg()).want(`Bind "" "\x01pgcloak refused" []`, `Sync`)
}
