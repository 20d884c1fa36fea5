package engine

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Refusals in the extended protocol: the refused message is replaced by one
// bound to fail (a Parse of text that cannot parse, a Bind of a statement
// that cannot exist, both without the client's values), and the error it
// draws is replaced by pgcloak's.

// TestRefusedParse: a refused Parse reaches the server as the placeholder,
// its Binds carry no values, and the client gets one error (pgcloak's)
// for the group, then ReadyForQuery.
func TestRefusedParse(t *testing.T) {
	e := newEngine(t)
	e.client(parse("bad", "SELECT id FROM people WHERE name LIKE $1"), bind("", "bad", "Alice Lid%"), execute("", 0), syncMsg()).want(
		`Parse "bad" "pgcloak refused this statement"`,
		`Bind "" "\x01pgcloak refused" []`,
		`Execute "" 0`,
		`Sync`,
	)
	e.neverSent("Alice Lid", "LIKE")
	e.server(serverError("42601", `syntax error at or near "pgcloak"`), ready('I')).want(
		`ErrorResponse ERROR 0A000 "pgcloak: cannot match public.people.name: LIKE, ILIKE and SIMILAR TO cannot be evaluated on ciphertext"`,
		`ReadyForQuery I`,
	)

	// The statement does not exist on the server, nor for pgcloak.
	e.client(bind("", "bad", "Alice Lid%"), execute("", 0), syncMsg()).want(
		`Bind "" "\x01pgcloak refused" []`,
		`Execute "" 0`,
		`Sync`,
	)
	e.neverSent("Alice Lid")
	e.server(serverError("26000", `prepared statement "\x01pgcloak refused" does not exist`), ready('I')).want(
		`ErrorResponse ERROR 26000 "pgcloak: prepared statement \"bad\" is not known to pgcloak …`,
		`ReadyForQuery I`,
	)
}

// TestRefusedBindValue: a parameter that is not valid for the column's
// logical type is refused with the SQLSTATE PostgreSQL gives for it; the
// Bind that reaches the server carries no value, and the pipeline stays in
// step.
func TestRefusedBindValue(t *testing.T) {
	e := newEngine(t)
	e.client(parse("ins", insertPerson)).want(`Parse "ins" "INSERT INTO people (id, name, email, born) VALUES ($1, $2, $3, $4)"`)
	e.client(
		bind("", "ins", "1", "Alice Liddell", "alice@example.com", "the Ides of March"), execute("", 0),
		bind("", "ins", "2", "Bob Bobson", "bob@example.com", "2024-03-15"), execute("", 0),
		syncMsg(),
	).want(
		`Describe S "ins"`,
		`Bind "" "\x01pgcloak refused" []`,
		`Execute "" 0`,
		`Bind "" "ins" pf=[0 1 1 1] ["2" ⟨name=Bob Bobson⟩ ⟨email=bob@example.com⟩ ⟨born=2024-03-15⟩]`,
		`Execute "" 0`,
		`Sync`,
	)
	e.neverSent("Ides of March", "Alice")
	e.server(
		&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidInt4, oidBytea, oidBytea, oidBytea}}, &pgproto3.NoData{},
		serverError("26000", `prepared statement "\x01pgcloak refused" does not exist`),
		ready('I'),
	).want(
		`ParseComplete`,
		`ErrorResponse ERROR 22007 "pgcloak: public.people.born (date): invalid input syntax for type date: \"the Ides of March\""`,
		`ReadyForQuery I`,
	)

	// The next group runs normally.
	e.client(bind("", "ins", "3", "Carol Cruz", null, null), execute("", 0), syncMsg()).
		want(`Bind "" "ins" pf=[0 1 0 0] ["3" ⟨name=Carol Cruz⟩ NULL NULL]`, `Execute "" 0`, `Sync`)
	e.server(&pgproto3.BindComplete{}, complete("INSERT 0 1"), ready('I')).
		want(`BindComplete`, `CommandComplete "INSERT 0 1"`, `ReadyForQuery I`)
}

// TestUnknownStatement: a Bind of a statement pgcloak never saw prepared
// (made inside server-side code, say) is refused: pgcloak cannot tell
// which of its values to encrypt.
func TestUnknownStatement(t *testing.T) {
	e := newEngine(t)
	e.client(bind("", "madeinplpgsql", "Alice Liddell"), execute("", 0), syncMsg()).
		want(`Bind "" "\x01pgcloak refused" []`, `Execute "" 0`, `Sync`)
	e.neverSent("Alice")
	e.server(serverError("26000", `prepared statement "\x01pgcloak refused" does not exist`), ready('I')).want(
		`ErrorResponse ERROR 26000 "pgcloak: prepared statement \"madeinplpgsql\" is not known to pgcloak (prepared inside server-side code, or never prepared), so pgcloak cannot tell which of its values to encrypt; prepare it through pgcloak"`,
		`ReadyForQuery I`,
	)
}

// TestClose: a closed statement is gone once the server confirms it
// (CloseComplete); a Bind of it is refused afterwards. A closed portal is
// forgotten at once.
func TestClose(t *testing.T) {
	e := newEngine(t)
	e.client(parse("ins", "INSERT INTO people (name) VALUES ($1)"), describe('S', "ins"), bind("p", "ins", "Alice Liddell"), syncMsg()).want(
		`Parse "ins" "INSERT INTO people (name) VALUES ($1)"`,
		`Describe S "ins"`,
		`Bind "p" "ins" pf=[1] [⟨name=Alice Liddell⟩]`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, &pgproto3.NoData{}, &pgproto3.BindComplete{}, ready('T')).
		want(`ParseComplete`, `ParameterDescription [25]`, `NoData`, `BindComplete`, `ReadyForQuery T`)

	e.client(&pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Close{ObjectType: 'S', Name: "ins"}, syncMsg()).
		want(`Close P "p"`, `Close S "ins"`, `Sync`)
	e.server(&pgproto3.CloseComplete{}, &pgproto3.CloseComplete{}, ready('T')).
		want(`CloseComplete`, `CloseComplete`, `ReadyForQuery T`)

	e.client(bind("", "ins", "Bob Bobson"), syncMsg()).want(`Bind "" "\x01pgcloak refused" []`, `Sync`)
	e.neverSent("Bob")
}

// TestCloseFailed: a Close the server does not confirm (the group failed
// before it) leaves the statement in place.
func TestCloseFailed(t *testing.T) {
	e := newEngine(t)
	e.client(parse("ins", "INSERT INTO people (name) VALUES ($1)"), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{oidBytea}}, &pgproto3.NoData{}, ready('I'))
	e.client(&pgproto3.Query{String: "SELECT 1/0"})
	e.server(serverError("22012", "division by zero"), ready('I'))

	e.client(bind("", "nosuch"), &pgproto3.Close{ObjectType: 'S', Name: "ins"}, syncMsg())
	e.server(serverError("26000", `prepared statement "\x01pgcloak refused" does not exist`), ready('I'))
	e.client(bind("", "ins", "Alice Liddell"), syncMsg()).want(`Bind "" "ins" pf=[1] [⟨name=Alice Liddell⟩]`, `Sync`)
}

// TestFlush: Flush passes untouched; a Describe pgcloak wants of a
// statement just parsed goes before it, so the server answers it too.
func TestFlush(t *testing.T) {
	e := newEngine(t)
	e.client(parse("s", "SELECT name FROM people"), &pgproto3.Flush{}).
		want(`Parse "s" "SELECT name FROM people"`, `Describe S "s"`, `Flush`)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{}, rowDescription(col("name"))).
		want(`ParseComplete`)
	e.client(&pgproto3.Flush{}).want(`Flush`)
}

// TestRefusedStatements: statements pgcloak refuses, each with the column
// and the reason, none of them forwarded.
func TestRefusedStatements(t *testing.T) {
	for _, c := range []struct {
		name, sql, secret, err string
	}{
		{"join across search groups", "SELECT p.id FROM people p JOIN accounts a ON a.pin = p.email AND a.id = 1234567", "1234567",
			`ErrorResponse ERROR 0A000 "pgcloak: cannot compare public.accounts.pin: it is encrypted under a different key than public.people.email; columns compare equal only within one search_group"`},
		{"column the catalog does not show", "INSERT INTO people (nosuch, name) VALUES ('x', 'Alice Liddell')", "Alice",
			`ErrorResponse ERROR 42703 "pgcloak: cannot write public.people.nosuch: pgcloak's catalog shows no such column in this protected table (renamed around pgcloak?); write to the columns the table has"`},
		{"order by a randomized column", "SELECT id FROM people WHERE email = 'alice@example.com' ORDER BY name", "alice@",
			`ErrorResponse ERROR 0A000 "pgcloak: …`},
		// A numeric constant is read as the column's type reads it: a
		// date does not take one.
		{"decimal literal into a date", "INSERT INTO people (id, born, name) VALUES (1, 20240315.5, 'Alice Liddell')", "Alice",
			`ErrorResponse ERROR 22007 "pgcloak: public.people.born (date): invalid input syntax for type date: \"20240315.5\""`},
	} {
		t.Run(c.name, func(t *testing.T) {
			newEngine(t).refused(c.sql, c.secret, c.err, 'I')
		})
	}

	// Columns of one search group compare.
	e := newEngine(t)
	q := "SELECT p.id FROM people p JOIN accounts a ON a.email = p.email"
	e.client(&pgproto3.Query{String: q}).want(`Query "` + q + `"`)
}

// TestStandardConformingStringsOff: with standard_conforming_strings off
// (the server reports it), a backslash in a statement on protected tables
// could hide where a literal ends: the statement is refused.
func TestStandardConformingStringsOff(t *testing.T) {
	e := newEngine(t)
	e.server(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "off"}).want(`ParameterStatus standard_conforming_strings=off`)
	e.refused(`INSERT INTO people (name, note) VALUES ('Alice Liddell', 'a\'b')`, "Alice",
		`ErrorResponse ERROR 0A000 "pgcloak: cannot read the string literals of a statement on protected tables: standard_conforming_strings is off …`, 'I')
	e.client(&pgproto3.Query{String: `INSERT INTO people (name) VALUES ('Alice Liddell')`}).
		want(`Query "INSERT INTO people (name) VALUES (⟨name=Alice Liddell⟩)"`)
}

// TestDeclaredTypeConversion: a parameter declared with another type than
// the column's logical type is read in its declared type, then converted
// through its text form as PostgreSQL's assignment does; a binary value of
// a type pgcloak does not know is refused.
func TestDeclaredTypeConversion(t *testing.T) {
	e := newEngine(t)
	b := bind("", "", "")
	b.ParameterFormatCodes = []int16{1}
	b.Parameters[0] = []byte{0, 0, 0, 42}
	e.client(parse("", "INSERT INTO people (name) VALUES ($1)", oidInt4), b, execute("", 0), syncMsg()).want(
		`Parse "" "INSERT INTO people (name) VALUES ($1)" [17]`,
		`Bind "" "" pf=[1] [⟨name=42⟩]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("INSERT 0 1"), ready('I'))

	const point = 600 // a type pgcloak has no codec for
	e.client(parse("", "INSERT INTO people (name) VALUES ($1)", point), bind("", "", "(1,2)"), execute("", 0), syncMsg()).want(
		`Parse "" "INSERT INTO people (name) VALUES ($1)" [17]`,
		`Bind "" "" pf=[1] [⟨name=(1,2)⟩]`,
		`Describe P ""`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, complete("INSERT 0 1"), ready('I'))
	b = bind("", "", "")
	b.ParameterFormatCodes = []int16{1}
	b.Parameters[0] = []byte{0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0}
	e.client(parse("", "INSERT INTO people (name) VALUES ($1)", point), b, execute("", 0), syncMsg()).want(
		`Parse "" "INSERT INTO people (name) VALUES ($1)" [17]`,
		`Bind "" "\x01pgcloak refused" []`,
		`Execute "" 0`,
		`Sync`,
	)
	e.server(&pgproto3.ParseComplete{}, serverError("26000", "prepared statement does not exist"), ready('I')).want(
		`ParseComplete`,
		`ErrorResponse ERROR 42804 "pgcloak: public.people.name: parameter declared with type OID 600, which pgcloak cannot convert to text; declare it as text or leave it untyped"`,
		`ReadyForQuery I`,
	)
}

// TestMalformedMessages: a message pgcloak must read and cannot is a
// protocol violation that ends the session (08P01).
func TestMalformedMessages(t *testing.T) {
	for _, c := range []struct {
		name string
		msg  rawMessage
	}{
		{"Describe", rawMessage("D\x00\x00\x00\x04")},
		{"Close", rawMessage("C\x00\x00\x00\x05S")},
		{"Parse", rawMessage("P\x00\x00\x00\x06s\x00")},
		{"Bind", rawMessage("B\x00\x00\x00\x07\x00\x00\xff")},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t)
			if err := e.clientErr(c.msg); sqlstate(err) != "08P01" {
				t.Fatalf("error %s %v", sqlstate(err), err)
			}
		})
	}
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "SELECT name FROM people"})
	if err := e.serverErr(rawMessage("T\x00\x00\x00\x06\x00")); sqlstate(err) != "08P01" {
		t.Fatalf("error %s %v", sqlstate(err), err)
	}
}
