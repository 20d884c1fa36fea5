package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/proxy/wire"
)

// COPY of a protected table, on both protocols: the client's data is
// rewritten on the way in (COPY FROM), the server's on the way out (COPY
// TO).

func copyData(s string) *pgproto3.CopyData { return &pgproto3.CopyData{Data: []byte(s)} }

// TestCopyFromText: protected fields of COPY FROM data reach the server as
// bytea ciphertext; the others, NULLs and the framing stay as they were.
func TestCopyFromText(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (id, name, born) FROM STDIN"}).want(`Query "COPY people (id, name, born) FROM STDIN"`)
	e.server(&pgproto3.CopyInResponse{OverallFormat: 0, ColumnFormatCodes: []uint16{0, 0, 0}}).
		want(`CopyInResponse &{OverallFormat:0 ColumnFormatCodes:[0 0 0]}`)
	// A line may arrive in pieces.
	e.client(copyData("1\tAlice Lid"), copyData("dell\t2024-03-15\n2\t\\N\t\\N\n")).
		want(`CopyData "1\t⟨name=Alice Liddell⟩\t⟨born=2024-03-15⟩\n2\t\\N\t\\N\n"`)
	e.client(&pgproto3.CopyDone{}).want(`CopyDone`)
	e.server(complete("COPY 2"), ready('I')).want(`CommandComplete "COPY 2"`, `ReadyForQuery I`)

	// CSV, with a header line.
	e.client(&pgproto3.Query{String: "COPY people (name, email) FROM STDIN (FORMAT csv, HEADER true)"})
	e.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0}})
	e.client(copyData("name,email\n\"Liddell, Alice\",alice@example.com\n"), &pgproto3.CopyDone{}).
		want(`CopyData "name,email\n⟨name=Liddell, Alice⟩,⟨email=alice@example.com⟩\n"`, `CopyDone`)
}

// TestCopyFromRejected: data pgcloak cannot take (a value invalid for the
// column's type) fails the COPY with CopyFail, so the server stores none of
// it; the rest of the client's data is dropped, and the client gets
// pgcloak's error in place of the server's answer to the CopyFail.
func TestCopyFromRejected(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (id, born) FROM STDIN"})
	e.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0}})
	e.client(copyData("1\t2024-03-15\n")).want(`CopyData "1\t⟨born=2024-03-15⟩\n"`)
	e.client(copyData("2\tyesterday-ish\n")).want(`CopyFail "pgcloak: COPY data rejected"`)
	e.client(copyData("3\t2024-03-16\n"), &pgproto3.CopyDone{}).nothing()
	e.neverSent("yesterday")
	e.server(serverError("57014", "COPY from stdin failed: pgcloak: COPY data rejected"), ready('I')).want(
		`ErrorResponse ERROR 22007 "pgcloak: public.people.born (date): invalid input syntax for type date: \"yesterday-ish\"" detail="COPY people, line 2, column born: \"yesterday-ish\""`,
		`ReadyForQuery I`,
	)
	// The session goes on.
	e.client(&pgproto3.Query{String: "SELECT 1"}).want(`Query "SELECT 1"`)
}

// TestCopyFromClientFails: the client's own CopyFail is forwarded.
func TestCopyFromClientFails(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (name) FROM STDIN"})
	e.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0}})
	e.client(copyData("Alice Liddell\n"), &pgproto3.CopyFail{Message: "changed my mind"}).
		want(`CopyData "⟨name=Alice Liddell⟩\n"`, `CopyFail "changed my mind"`)
	e.server(serverError("57014", "COPY from stdin failed: changed my mind"), ready('I')).
		want(`ErrorResponse ERROR 57014 "COPY from stdin failed: changed my mind"`, `ReadyForQuery I`)
}

// TestCopyFromClientGone: a client that goes away in the middle of a COPY
// FROM makes pgcloak fail it, so the server stores none of it.
func TestCopyFromClientGone(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (name) FROM STDIN"})
	e.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0}})
	e.client(copyData("Alice Liddell\n"))
	e.hook.ClientGone(e.toServer)
	e.upstream().want(`CopyFail "pgcloak: client connection lost during COPY"`)
}

// TestCopyToText: COPY TO data from the server reaches the client with the
// protected fields decrypted, in the COPY's format.
func TestCopyToText(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (id, name, born) TO STDOUT"}).want(`Query "COPY people (id, name, born) TO STDOUT"`)
	line := "1\t\\" + byteaText(e.ciphertext("name", "Alice Liddell")) + "\t\\" + byteaText(e.ciphertext("born", "2024-03-15")) + "\n"
	e.server(&pgproto3.CopyOutResponse{ColumnFormatCodes: []uint16{0, 0, 0}}, copyData(line), copyData("2\t\\N\t\\N\n"), &pgproto3.CopyDone{}, complete("COPY 2"), ready('I')).want(
		`CopyOutResponse &{OverallFormat:0 ColumnFormatCodes:[0 0 0]}`,
		`CopyData "1\tAlice Liddell\t2024-03-15\n"`,
		`CopyData "2\t\\N\t\\N\n"`,
		`CopyDone`,
		`CommandComplete "COPY 2"`,
		`ReadyForQuery I`,
	)

	// A value that does not decrypt ends the session rather than reach the
	// client.
	e.client(&pgproto3.Query{String: "COPY people (name) TO STDOUT"})
	e.server(&pgproto3.CopyOutResponse{ColumnFormatCodes: []uint16{0}})
	err := e.serverErr(copyData("\\" + byteaText(e.ciphertext("born", "2024-03-15")) + "\n"))
	if code := sqlstate(err); code != "XX001" {
		t.Fatalf("error %v (%s)", err, code)
	}
}

// TestCopyExtended: COPY through Parse/Bind/Execute is rewritten as
// through a Query.
func TestCopyExtended(t *testing.T) {
	e := newEngine(t)
	e.client(parse("", "COPY people (id, name) FROM STDIN"), bind("", ""), execute("", 0)).want(
		`Parse "" "COPY people (id, name) FROM STDIN"`,
		`Bind "" "" []`,
		`Execute "" 0`,
	)
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0}}).
		want(`ParseComplete`, `BindComplete`, `CopyInResponse &{OverallFormat:0 ColumnFormatCodes:[0 0]}`)
	e.client(copyData("7\tGrace Hopper\n"), &pgproto3.CopyDone{}, syncMsg()).
		want(`CopyData "7\t⟨name=Grace Hopper⟩\n"`, `CopyDone`, `Sync`)
	e.server(complete("COPY 1"), ready('I')).want(`CommandComplete "COPY 1"`, `ReadyForQuery I`)

	e.client(parse("", "COPY people (name) TO STDOUT"), bind("", ""), execute("", 0), syncMsg())
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CopyOutResponse{ColumnFormatCodes: []uint16{0}},
		copyData("\\"+byteaText(e.ciphertext("name", "Grace Hopper"))+"\n"), &pgproto3.CopyDone{}, complete("COPY 1"), ready('I'),
	).want(`ParseComplete`, `BindComplete`, `CopyOutResponse &{OverallFormat:0 ColumnFormatCodes:[0]}`, `CopyData "Grace Hopper\n"`, `CopyDone`, `CommandComplete "COPY 1"`, `ReadyForQuery I`)
}

// binaryCopy is COPY binary data: the header, tuples, the trailer.
func binaryCopy(tuples ...[][]byte) []byte {
	b := append([]byte("PGCOPY\n\377\r\n\x00"), 0, 0, 0, 0, 0, 0, 0, 0)
	for _, tu := range tuples {
		b = binary.BigEndian.AppendUint16(b, uint16(len(tu)))
		for _, f := range tu {
			if f == nil {
				b = wire.AppendNull(b)
			} else {
				b = wire.AppendValue(b, f)
			}
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

// binaryTuples renders the tuples of binary COPY data held by the CopyData
// messages of f, one line per tuple.
func (f flow) binaryTuples() []string {
	f.e.t.Helper()
	var data []byte
	for raw := f.raw; len(raw) > 0; {
		n := 1 + int(binary.BigEndian.Uint32(raw[1:]))
		if raw[0] == 'd' {
			data = append(data, raw[wire.HeaderLen:n]...)
		}
		raw = raw[n:]
	}
	if !bytes.HasPrefix(data, []byte("PGCOPY\n\377\r\n\x00")) {
		f.e.t.Fatalf("no binary COPY header: %q", data)
	}
	data = data[19:]
	var out []string
	for len(data) >= 2 {
		n := int(int16(binary.BigEndian.Uint16(data)))
		data = data[2:]
		if n < 0 {
			break
		}
		var fields []string
		for range n {
			l := int(int32(binary.BigEndian.Uint32(data)))
			data = data[4:]
			if l < 0 {
				fields = append(fields, "NULL")
				continue
			}
			fields = append(fields, f.e.value(data[:l], false))
			data = data[l:]
		}
		out = append(out, strings.Join(fields, " "))
	}
	return out
}

// TestCopyBinary: binary COPY both ways: the client's binary values of the
// logical type become ciphertext, and back.
func TestCopyBinary(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (id, name, born) FROM STDIN (FORMAT binary)"})
	e.server(&pgproto3.CopyInResponse{OverallFormat: 1, ColumnFormatCodes: []uint16{1, 1, 1}})
	data := binaryCopy(
		[][]byte{{0, 0, 0, 1}, []byte("Alice Liddell"), binaryDate(2024, 3, 15)},
		[][]byte{{0, 0, 0, 2}, nil, nil},
	)
	f := e.client(copyData(string(data[:10])), copyData(string(data[10:])), &pgproto3.CopyDone{})
	got := f.binaryTuples()
	want := []string{`0x00000001 ⟨name=Alice Liddell⟩ ⟨born=2024-03-15⟩`, `0x00000002 NULL NULL`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tuples sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.server(complete("COPY 2"), ready('I'))

	e.client(&pgproto3.Query{String: "COPY people (id, name, born) TO STDOUT (FORMAT binary)"})
	out := binaryCopy([][]byte{{0, 0, 0, 1}, e.ciphertext("name", "Alice Liddell"), e.ciphertext("born", "2024-03-15")})
	f = e.server(&pgproto3.CopyOutResponse{OverallFormat: 1, ColumnFormatCodes: []uint16{1, 1, 1}}, copyData(string(out)), &pgproto3.CopyDone{})
	f.lines = f.lines[1:] // the CopyOutResponse
	got = f.binaryTuples()
	if want := `0x00000001 0x416c696365204c696464656c6c 0x` + hex.EncodeToString(binaryDate(2024, 3, 15)); len(got) != 1 || got[0] != want {
		t.Fatalf("tuples delivered %q, want %q", got, want)
	}
}

// TestCopyAfterRefusal: COPY data that follows a refused request (clients
// such as pgx send it without waiting for CopyInResponse) is dropped: the
// server, which skips to the next Sync, must not receive it.
func TestCopyAfterRefusal(t *testing.T) {
	e := newEngine(t)
	e.client(&pgproto3.Query{String: "COPY people (name) FROM STDIN; SELECT 1"}).want(`Query "pgcloak refused this statement"`)
	e.client(copyData("Alice Liddell\n"), &pgproto3.CopyDone{}).nothing()
	e.neverSent("Alice")
	e.server(serverError("42601", "syntax error"), ready('I')).
		want(`ErrorResponse ERROR 0A000 "pgcloak: cannot copy public.people: COPY of a protected table must be the only statement of its query"`, `ReadyForQuery I`)

	// Outside a COPY of a protected table, COPY data is not looked at.
	e.client(&pgproto3.Query{String: "COPY other FROM STDIN"})
	e.client(copyData("x\n")).want(`CopyData "x\n"`)
}

// TestCopyExtendedRefused: a COPY whose options pgcloak cannot rewrite is
// refused through the extended protocol as through a Query: the client
// gets the error, the session goes on, and the COPY never starts.
func TestCopyExtendedRefused(t *testing.T) {
	e := newEngine(t)
	e.refused("COPY people (name) FROM STDIN (FORMAT xml)", "xml", `ErrorResponse ERROR 22023 "COPY format \"xml\" not recognized"`, 'I')

	e.client(parse("", "COPY people (name) FROM STDIN (FORMAT xml)"), bind("", ""), execute("", 0), copyData("Alice Liddell\n"), syncMsg()).want(
		`Parse "" "COPY people (name) FROM STDIN (FORMAT xml)"`,
		`Bind "" "" []`,
		`Execute "\x01pgcloak refused" 0`,
		`Sync`,
	)
	e.neverSent("Alice")
	e.server(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, serverError("34000", `portal "\x01pgcloak refused" does not exist`), ready('I')).
		want(`ParseComplete`, `BindComplete`, `ErrorResponse ERROR 22023 "COPY format \"xml\" not recognized"`, `ReadyForQuery I`)
	e.client(&pgproto3.Query{String: "SELECT 1"}).want(`Query "SELECT 1"`)
}
