package engine

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The extended query protocol: Parse, Bind, Describe, Execute, Close, Sync,
// Flush and their answers.

const insertPerson = "INSERT INTO people (id, name, email, born) VALUES ($1, $2, $3, $4)"

// binaryDate is a date in PostgreSQL's binary format: days since 2000-01-01.
func binaryDate(y int, m time.Month, d int) []byte {
	days := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) / (24 * time.Hour)
	return binary.BigEndian.AppendUint32(nil, uint32(int32(days)))
}

// TestBindEncryptsParameters: an unnamed statement's protected parameters
// reach the server as ciphertext in binary format, the others as the client
// sent them. pgcloak asks for the portal's rows (a Describe the client did
// not send) and keeps the answer to itself.
func TestBindEncryptsParameters(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", insertPerson), bind("", "", "1", "Alice Liddell", "alice@example.com", "2024-03-15"), execute("", 0), syncMsg()).want(
		`Parse "" "INSERT INTO people (id, name, email, born) VALUES ($1, $2, $3, $4)"`,
		`Bind "" "" pf=[0 1 1 1] ["1" ⟨name=Alice Liddell⟩ ⟨email=alice@example.com⟩ ⟨born=2024-03-15⟩]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("INSERT 0 1"), ready('I')).
		want(`ParseComplete`, `BindComplete`, `CommandComplete "INSERT 0 1"`, `ReadyForQuery I`)

	// NULL stays NULL; binary parameters are read as the logical type's
	// binary form and encrypted as its canonical text.
	b := bind("", "", "2", null, "bob@example.com", "")
	b.ParameterFormatCodes = []int16{0, 0, 0, 1}
	b.Parameters[3] = binaryDate(2024, time.March, 15)
	e.client(parse("", insertPerson), b, execute("", 0), syncMsg()).want(
		`Parse "" "INSERT INTO people (id, name, email, born) VALUES ($1, $2, $3, $4)"`,
		`Bind "" "" pf=[0 0 1 1] ["2" NULL ⟨email=bob@example.com⟩ ⟨born=2024-03-15⟩]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
}

// TestParseDeclaredTypes: parameter types the client declares for
// protected columns reach the server as bytea, and its
// ParameterDescription reports them back as the client declared them.
func TestParseDeclaredTypes(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", insertPerson, oidInt4, oidInt4, oidText, oidText), describe('S', ""), syncMsg()).want(
		`Parse "" "INSERT INTO people (id, name, email, born) VALUES ($1, $2, $3, $4)" [23 17 17 17]`,
		`Describe S ""`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidInt4, oidBytea, oidBytea, oidBytea}}, &pgproto3.NoData{}, ready('I')).
		want(`ParseComplete`, `ParameterDescription [23 23 25 25]`, `NoData`, `ReadyForQuery I`)

	// Undeclared, they are reported with the column's logical type.
	e.client(parse("", "UPDATE people SET born = $1 WHERE note = $2 RETURNING id"), describe('S', ""), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea, oidText}}, rowDescription(col("id")), ready('I')).
		want(`ParseComplete`, `ParameterDescription [1082 25]`, `RowDescription id:23`, `ReadyForQuery I`)
}

// TestNamedStatementRows: pgcloak describes a named statement before its
// first Bind, binds protected result columns in binary (raw ciphertext
// from the server) and gives the client the format it asked for.
func TestNamedStatementRows(t *testing.T) {
	e := newEngine(t)
	e.client(parse("byemail", "SELECT id, name, born FROM people WHERE email = $1"), bind("p", "byemail", "alice@example.com"), execute("p", 0), syncMsg()).want(
		`Parse "byemail" "SELECT id, name, born FROM people WHERE email = $1"`,
		`Describe S "byemail"`,
		`Bind "p" "byemail" pf=[1] [⟨email=alice@example.com⟩] rf=[0 1 1]`,
		`Execute "p" 0`,
		`Sync`,
	)
	e.server(
		&pgproto3.ParseComplete{},
		&pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}},
		rowDescription(col("id"), col("name"), col("born")),
		&pgproto3.BindComplete{},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1"), e.ciphertext("name", "Alice Liddell"), e.ciphertext("born", "2024-03-15")}},
		complete("SELECT 1"), ready('I'),
	).want(`ParseComplete`, `BindComplete`, `DataRow "1" "Alice Liddell" "2024-03-15"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)

	// A client that asks for binary results gets the logical type's binary
	// form.
	b := bind("", "byemail", "alice@example.com")
	b.ResultFormatCodes = []int16{1}
	e.client(b, execute("", 0), syncMsg()).want(
		`Bind "" "byemail" pf=[1] [⟨email=alice@example.com⟩] rf=[1]`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.BindComplete{},
		&pgproto3.DataRow{Values: [][]byte{{0, 0, 0, 1}, e.ciphertext("name", "Alice Liddell"), e.ciphertext("born", "2024-03-15")}},
		complete("SELECT 1"), ready('I'),
	).want(`BindComplete`, `DataRow 0x00000001 "Alice Liddell" 0x`+hex.EncodeToString(binaryDate(2024, time.March, 15)), `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}

// TestDescribePortal: the client's Describe of a portal reports the
// logical types and the formats the client asked for, not the ones pgcloak
// bound the portal with.
func TestDescribePortal(t *testing.T) {
	e := newEngine(t)
	b := bind("", "", "alice@example.com")
	b.ResultFormatCodes = []int16{1, 0}
	e.client(parse("", "SELECT id, born FROM people WHERE email = $1"), b, describe('P', ""), execute("", 0), syncMsg()).want(
		`Parse "" "SELECT id, born FROM people WHERE email = $1"`,
		`Bind "" "" pf=[1] [⟨email=alice@example.com⟩] rf=[1 1]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		rowDescription(colBin("id"), colBin("born")),
		&pgproto3.DataRow{Values: [][]byte{{0, 0, 0, 7}, e.ciphertext("born", "1999-12-31")}},
		complete("SELECT 1"), ready('I'),
	).want(`ParseComplete`, `BindComplete`, `RowDescription id:23:bin born:1082`, `DataRow 0x00000007 "1999-12-31"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}

// TestPortalSuspended: an Execute with a row limit stops at
// PortalSuspended; the next Execute of the portal goes on with the same row
// plan.
func TestPortalSuspended(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", "SELECT name FROM people"), bind("cur", ""), describe('P', "cur"), execute("cur", 1), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rowDescription(col("name")),
		dataRow(byteaText(e.ciphertext("name", "Alice Liddell"))), &pgproto3.PortalSuspended{}, ready('T'),
	).want(`ParseComplete`, `BindComplete`, `RowDescription name:25`, `DataRow "Alice Liddell"`, `PortalSuspended`, `ReadyForQuery T`)
	e.client(execute("cur", 1), syncMsg()).want(`Execute "cur" 1`, `Sync`)
	e.server(dataRow(byteaText(e.ciphertext("name", "Bob Bobson"))), complete("SELECT 1"), ready('T')).
		want(`DataRow "Bob Bobson"`, `CommandComplete "SELECT 1"`, `ReadyForQuery T`)
}

// TestPipeline: several statements and portals before one Sync; each
// answer is matched with its request, so each portal's rows are decrypted
// with its own plan.
func TestPipeline(t *testing.T) {
	e := newEngine(t)
	e.client(
		parse("ins", "INSERT INTO people (id, name) VALUES ($1, $2)"),
		bind("", "ins", "1", "Alice Liddell"), execute("", 0),
		bind("", "ins", "2", "Bob Bobson"), execute("", 0),
		parse("", "SELECT email, id FROM people WHERE name IS NOT NULL"), bind("", ""), execute("", 0),
		parse("", "SELECT born FROM people"), bind("", ""), execute("", 0),
		syncMsg(),
	).want(
		`Parse "ins" "INSERT INTO people (id, name) VALUES ($1, $2)"`,
		`Describe S "ins"`,
		`Bind "" "ins" pf=[0 1] ["1" ⟨name=Alice Liddell⟩]`,
		`Execute "" 0`,
		`Bind "" "ins" pf=[0 1] ["2" ⟨name=Bob Bobson⟩]`,
		`Execute "" 0`,
		`Parse "" "SELECT email, id FROM people WHERE name IS NOT NULL"`,
		`Bind "" "" [] rf=[1 0]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Parse "" "SELECT born FROM people"`,
		`Bind "" "" [] rf=[1]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(
		&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidInt4, oidBytea}}, &pgproto3.NoData{},
		&pgproto3.BindComplete{}, complete("INSERT 0 1"),
		&pgproto3.BindComplete{}, complete("INSERT 0 1"),
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rowDescription(colBin("email"), col("id")),
		&pgproto3.DataRow{Values: [][]byte{e.ciphertext("email", "alice@example.com"), []byte("1")}},
		complete("SELECT 1"),
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rowDescription(colBin("born")),
		&pgproto3.DataRow{Values: [][]byte{e.ciphertext("born", "2001-02-03")}},
		complete("SELECT 1"),
		ready('I'),
	).want(
		`ParseComplete`,
		`BindComplete`, `CommandComplete "INSERT 0 1"`,
		`BindComplete`, `CommandComplete "INSERT 0 1"`,
		`ParseComplete`, `BindComplete`, `DataRow "alice@example.com" "1"`, `CommandComplete "SELECT 1"`,
		`ParseComplete`, `BindComplete`, `DataRow "2001-02-03"`, `CommandComplete "SELECT 1"`,
		`ReadyForQuery I`,
	)
}

// TestPipelineError: an ErrorResponse in the middle of a pipeline makes
// PostgreSQL skip the rest up to Sync; pgcloak's queue of pending requests
// skips it too and stays in step for the next group.
func TestPipelineError(t *testing.T) {
	e := newEngine(t)
	e.client(
		parse("ins", "INSERT INTO people (id, name) VALUES ($1, $2)"),
		parse("sel", "SELECT name FROM people WHERE id = $1"),
		bind("", "ins", "1", "Alice Liddell"), execute("", 0),
		bind("", "ins", "1", "Alice Again"), execute("", 0),
		bind("", "sel", "1"), execute("", 0),
		syncMsg(),
	)
	e.server(
		&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidInt4, oidBytea}}, &pgproto3.NoData{},
		&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidInt4}}, rowDescription(col("name")),
		&pgproto3.BindComplete{}, complete("INSERT 0 1"),
		&pgproto3.BindComplete{}, serverError("23505", `duplicate key value violates unique constraint "people_pkey"`),
		ready('I'),
	).want(
		`ParseComplete`, `ParseComplete`,
		`BindComplete`, `CommandComplete "INSERT 0 1"`,
		`BindComplete`, `ErrorResponse ERROR 23505 "duplicate key value violates unique constraint \"people_pkey\""`,
		`ReadyForQuery I`,
	)

	// Both statements were confirmed before the error: the next group
	// uses them, and its rows are read with sel's plan.
	e.client(bind("", "sel", "1"), execute("", 0), syncMsg()).want(`Bind "" "sel" ["1"] rf=[1]`, `Execute "" 0`, `Sync`)
	e.server(&pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{e.ciphertext("name", "Alice Liddell")}}, complete("SELECT 1"), ready('I')).
		want(`BindComplete`, `DataRow "Alice Liddell"`, `CommandComplete "SELECT 1"`, `ReadyForQuery I`)
}
