package engine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
)

// Rows that fail closed: a value that does not decrypt, or pgcloak
// ciphertext in a column pgcloak cannot attribute, ends the session with
// an error rather than reach the client as data.

// selectRows starts a Query whose rows the test sends.
func (e *engineTest) selectRows(fields ...field) {
	e.t.Helper()
	e.client(&pgproto3.Query{String: "SELECT name, born, avatar FROM people"})
	e.server(rowDescription(fields...))
}

// TestDecryptFailsClosed: a value that does not decrypt ends the session,
// whether the server sends it as bytea text (hex) or raw in binary, as
// pgcloak asks for protected columns (decrypted straight into the row).
func TestDecryptFailsClosed(t *testing.T) {
	for _, c := range []struct {
		name string
		// value is the stored value; text, when set, its text form (one
		// that is no bytea: there is no binary variant).
		value func(e *engineTest) []byte
		text  string
		code  string
		msg   string
	}{
		{"plaintext", func(*engineTest) []byte { return []byte("Alice") }, "", "XX001",
			"cannot decrypt public.people.name: value is not pgcloak ciphertext (written around pgcloak?)"},
		{"another column's value", func(e *engineTest) []byte { return e.ciphertext("born", "2024-03-15") }, "", "XX001",
			"cannot decrypt public.people.name: ciphertext does not authenticate (tampered, or copied from another column)"},
		{"tampered", func(e *engineTest) []byte {
			ct := e.ciphertext("name", "Alice Liddell")
			ct[len(ct)-1] ^= 1
			return ct
		}, "", "XX001", "cannot decrypt public.people.name: ciphertext does not authenticate (tampered, or copied from another column)"},
		{"unknown key version", func(e *engineTest) []byte {
			kr := crypto.NewKeyring("pii")
			if err := kr.Add(2, make([]byte, crypto.DEKSize)); err != nil {
				t.Fatal(err)
			}
			col := e.column("people", "name")
			ct, err := kr.Encrypt(nil, []byte("Alice Liddell"), col.id, col.mode)
			if err != nil {
				t.Fatal(err)
			}
			return ct
		}, "", "58000", "cannot use key for public.people.name: …"},
		{"not hex", nil, `\xZZ`, "XX001", "cannot decrypt public.people.name: …"},
	} {
		for _, format := range []int16{0, 1} {
			if c.value == nil && format == 1 {
				continue
			}
			t.Run(fmt.Sprintf("%s/format %d", c.name, format), func(t *testing.T) {
				e := newEngine(t)
				var v []byte
				switch {
				case c.value == nil:
					v = []byte(c.text)
				case format == 0:
					v = []byte(byteaText(c.value(e)))
				default:
					v = c.value(e)
				}
				e.selectRows(colOf(peopleOID, "people", "name", format))
				err := e.serverErr(&pgproto3.DataRow{Values: [][]byte{v}})
				msg, prefix := strings.CutSuffix(c.msg, "…")
				if sqlstate(err) != c.code || err.Error() != msg && !(prefix && strings.HasPrefix(err.Error(), msg)) {
					t.Fatalf("error %s %q, want %s %q", sqlstate(err), err, c.code, c.msg)
				}
			})
		}
	}
}

// TestUnattributedCiphertext: a bytea column pgcloak does not know as
// protected (an unprotected column, an expression) is passed on unless it
// holds pgcloak ciphertext: then its value would be a silent wrong answer.
func TestUnattributedCiphertext(t *testing.T) {
	expr := field{Name: []byte("expr"), DataTypeOID: oidBytea, DataTypeSize: -1, TypeModifier: -1}
	for _, c := range []struct {
		name  string
		value func(e *engineTest) string
	}{
		{"hex", func(e *engineTest) string { return byteaText(e.ciphertext("name", "Alice Liddell")) }},
		{"escape", func(e *engineTest) string { return byteaEscape(e.ciphertext("name", "Alice Liddell")) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t)
			e.selectRows(col("avatar"), expr)
			e.server(dataRow(`\x89504e47`, null)).want(`DataRow "\\x89504e47" NULL`)
			err := e.serverErr(dataRow(`\x89504e47`, c.value(e)))
			if sqlstate(err) != "0A000" || !strings.HasPrefix(err.Error(), "result column 2 holds pgcloak ciphertext that pgcloak cannot attribute") {
				t.Fatalf("error %s %q", sqlstate(err), err)
			}
		})
	}
}

// TestRowsDoNotMatchDescription: a DataRow that does not match its
// RowDescription is a protocol error.
func TestRowsDoNotMatchDescription(t *testing.T) {
	e := newEngine(t)
	e.selectRows(col("name"), col("born"))
	if err := e.serverErr(dataRow(byteaText(e.ciphertext("name", "Alice Liddell")))); sqlstate(err) != "08P01" {
		t.Fatalf("error %s %q", sqlstate(err), err)
	}
	e = newEngine(t)
	e.selectRows(col("avatar"))
	if err := e.serverErr(&pgproto3.DataRow{Values: [][]byte{nil, nil}}); sqlstate(err) != "08P01" {
		t.Fatalf("error %s %q", sqlstate(err), err)
	}
}

// TestUnreadableRows: pgcloak bound a result column in binary, expecting a
// protected column, and the server describes an unprotected one: its
// binary values cannot be turned into the text the client asked for, so
// the rows are refused.
func TestUnreadableRows(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", "SELECT name FROM people"), bind("", ""), execute("", 0), syncMsg()).
		want(`Parse "" "SELECT name FROM people"`, `Bind "" "" [] rf=[1]`, `Describe P ""`, `Execute "" 0`, `Sync`)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rowDescription(field{Name: []byte("name"), DataTypeOID: oidText, Format: 1}))
	err := e.serverErr(&pgproto3.DataRow{Values: [][]byte{[]byte("Alice")}})
	if sqlstate(err) != "XX000" {
		t.Fatalf("error %s %q", sqlstate(err), err)
	}
}

// migrating marks people.name as being encrypted in place.
func migrating(f *fixture) {
	r := f.cfg.Tables["public.people"]["name"]
	r.State = config.StateMigrating
	f.cfg.Tables["public.people"]["name"] = r
}

// TestMigratingColumn: a column being encrypted in place still holds
// plaintext in some rows: both are read.
func TestMigratingColumn(t *testing.T) {
	e := newEngine(t, migrating)
	e.selectRows(col("name"))
	e.server(dataRow(`\x416c696365`), dataRow(byteaText(e.ciphertext("name", "Alice Liddell")))).
		want(`DataRow "Alice"`, `DataRow "Alice Liddell"`)
	// In binary, as pgcloak asks for protected columns.
	e = newEngine(t, migrating)
	e.selectRows(colBin("name"))
	e.server(dataRow("Alice"), &pgproto3.DataRow{Values: [][]byte{e.ciphertext("name", "Alice Liddell")}}).
		want(`DataRow "Alice"`, `DataRow "Alice Liddell"`)
}

// TestErrorDetailDecrypted: the values PostgreSQL quotes in an error's
// DETAIL (the key of a unique violation, the failing row of a check
// violation) reach the client as the application wrote them; a value
// PostgreSQL cut short cannot be decrypted and is said to be so.
func TestErrorDetailDecrypted(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", "INSERT INTO people (id, email) VALUES ($1, $2)"), bind("", "", "1", "alice@example.com"), execute("", 0), syncMsg())
	dup := serverError("23505", `duplicate key value violates unique constraint "people_email_key"`)
	dup.Detail = `Key (email)=(` + byteaText(e.ciphertext("email", "alice@example.com")) + `) already exists.`
	dup.SchemaName, dup.TableName = "public", "people"
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{}, dup, ready('I')).want(
		`ParseComplete`, `BindComplete`,
		`ErrorResponse ERROR 23505 "duplicate key value violates unique constraint \"people_email_key\"" detail="Key (email)=(alice@example.com) already exists."`,
		`ReadyForQuery I`,
	)

	long := strings.Repeat("Bob Bobson ", 10)
	e.client(&pgproto3.Query{String: "UPDATE people SET name = '" + long + "', note = 'x'"})
	check := serverError("23514", `new row for relation "people" violates check constraint "people_note_check"`)
	check.Detail = `Failing row contains (1, ` + byteaText(e.ciphertext("name", long))[:2+128] + `..., null, null, x).`
	e.server(check, ready('I')).want(
		`ErrorResponse ERROR 23514 "new row for relation \"people\" violates check constraint \"people_note_check\"" detail="Failing row contains (1, (pgcloak ciphertext, cut short), null, null, x)."`,
		`ReadyForQuery I`,
	)
}

// TestErrorDetailWithheld: a role that may not read a column in plaintext
// does not read it in an error's DETAIL either: an UPDATE's failing row
// shows values the client never wrote.
func TestErrorDetailWithheld(t *testing.T) {
	e := newEngine(t, func(f *fixture) {
		f.access = &config.Access{Roles: map[string]config.AccessRule{"alice": {Read: "masked", Mask: "token", Write: true}}}
	})
	e.client(&pgproto3.Query{String: "UPDATE people SET note = 'x' WHERE id = 1"})
	check := serverError("23514", `new row for relation "people" violates check constraint "people_note_check"`)
	check.Detail = `Failing row contains (1, null, ` + byteaText(e.ciphertext("email", "alice@example.com")) + `, null, x).`
	check.SchemaName, check.TableName = "public", "people"
	e.server(check, ready('I')).want(
		`ErrorResponse ERROR 23514 "new row for relation \"people\" violates check constraint \"people_note_check\"" detail="Failing row contains (1, null, (protected value), null, x)."`,
		`ReadyForQuery I`,
	)
}
