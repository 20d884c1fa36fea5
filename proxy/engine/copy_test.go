package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/internal/cputime"
	"github.com/pgcloak/pgcloak/proxy/catalog"
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

// withMetrics counts the session's values in m.
func withMetrics(m *Metrics) engineOption { return func(f *fixture) { f.metrics = m } }

// TestCopyFromCounted: the values a COPY FROM encrypts are counted in the
// metrics, by column, as the other encrypted values are, whether or not
// the COPY succeeds: the count of the values encrypted before a rejected
// one stays.
func TestCopyFromCounted(t *testing.T) {
	m := NewMetrics(nil)
	e := newEngine(t, withMetrics(m))
	count := func(col string) float64 {
		return testutil.ToFloat64(m.values.WithLabelValues("public.people."+col, "alice", "encrypted"))
	}
	e.client(&pgproto3.Query{String: "COPY people (id, name, born) FROM STDIN"})
	e.server(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0, 0}})
	e.client(copyData("1\tAlice\t2024-03-15\n2\tBob\t\\N\n"))
	if n, b := count("name"), count("born"); n != 2 || b != 1 {
		t.Fatalf("after the first CopyData: name %v, born %v encrypted; want 2, 1", n, b)
	}
	e.client(copyData("3\tCarol\t2024-03-16\n4\tDan\tyesterday-ish\n")).want(`CopyFail "pgcloak: COPY data rejected"`)
	if n, b := count("name"), count("born"); n != 4 || b != 2 {
		t.Fatalf("after the rejected row: name %v, born %v encrypted; want 4, 2", n, b)
	}
}

// copyEnc adds copy_enc of bench/sql: id and three protected text columns.
func copyEnc(f *fixture) {
	f.cfg.Tables["public.copy_enc"] = map[string]config.Column{
		"full_name": {Type: "text", Key: "pii"}, "email": {Type: "text", Key: "pii"}, "phone": {Type: "text", Key: "pii"}}
	f.tables = append(f.tables, catalog.StaticTable{Schema: "public", Name: "copy_enc", OID: 16600, Columns: []string{"id", "full_name", "email", "phone"}})
}

// copyRows returns the COPY FROM data bench/pgbench loads into copy_enc
// (its copyInput), rows rows in format, and their plaintexts.
func copyRows(format string, rows int) (data []byte, plain [][]byte) {
	if format == "binary" {
		data = append(data, "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
	}
	for i := 1; i <= rows; i++ {
		fields := rowValues(i)
		for _, f := range fields {
			plain = append(plain, []byte(f))
		}
		if format == "text" {
			data = fmt.Appendf(data, "%d\t%s\t%s\t%s\n", i, fields[0], fields[1], fields[2])
			continue
		}
		data = binary.BigEndian.AppendUint16(data, 4)
		data = binary.BigEndian.AppendUint32(data, 4)
		data = binary.BigEndian.AppendUint32(data, uint32(i))
		for _, f := range fields {
			data = binary.BigEndian.AppendUint32(data, uint32(len(f)))
			data = append(data, f...)
		}
	}
	if format == "binary" {
		data = append(data, 0xff, 0xff)
	}
	return data, plain
}

// BenchmarkCopyFrom feeds COPY FROM data of copy_enc (the rows
// bench/pgbench loads: an id and three protected text values) through the
// engine in 64 KiB CopyData messages, as psql and pgx send them, without
// PostgreSQL; the rewritten data goes nowhere. One op is one COPY of
// copyBenchRows rows. cpu-ns/row is the process's CPU time per row; the
// cipher's own cost is measured in the same run, after the COPYs: as many
// Keyring.Encrypt calls (nonce from crypto/rand included) of the same
// plaintexts (seal-ns/value), and x-seal is the CPU per row over three
// seals.
//
//	go test -run '^$' -bench CopyFrom -cpu 1 -count 5 ./proxy/engine/
func BenchmarkCopyFrom(b *testing.B) {
	const copyBenchRows = 20000
	for _, format := range []string{"text", "binary"} {
		b.Run(format, func(b *testing.B) {
			e := newEngine(b, copyEnc, withMetrics(NewMetrics(nil)))
			data, plain := copyRows(format, copyBenchRows)
			var msgs [][]byte
			for len(data) > 0 {
				n := min(len(data), 64<<10)
				msgs = append(msgs, encode(b, &pgproto3.CopyData{Data: data[:n]}))
				data = data[n:]
			}
			done := encode(b, &pgproto3.CopyDone{})
			w := bufio.NewWriterSize(io.Discard, 32<<10)
			copyOnce := func() {
				if err := e.clientSend(&pgproto3.Query{String: "COPY copy_enc FROM STDIN (FORMAT " + format + ")"}); err != nil {
					b.Fatal(err)
				}
				if err := e.serverSend(&pgproto3.CopyInResponse{ColumnFormatCodes: []uint16{0, 0, 0, 0}}); err != nil {
					b.Fatal(err)
				}
				for _, m := range msgs {
					if err := e.hook.ClientMessage(wire.CopyDataIn, m, w); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.hook.ClientMessage(wire.CopyDoneIn, done, w); err != nil {
					b.Fatal(err)
				}
				if err := e.serverSend(complete(fmt.Sprintf("COPY %d", copyBenchRows)), ready('I')); err != nil {
					b.Fatal(err)
				}
				_ = e.toServer.Flush()
				_ = e.toClient.Flush()
				e.up.Reset()
				e.down.Reset()
			}
			copyOnce() // the statement's analysis is cached from now on, as in a session that loads often
			b.ReportAllocs()
			runtime.GC()
			cpu := cputime.Self()
			b.ResetTimer()
			for b.Loop() {
				copyOnce()
			}
			b.StopTimer()
			rows := float64(b.N) * copyBenchRows
			rowCPU := float64(cputime.Self()-cpu) / rows
			b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(rowCPU, "cpu-ns/row")
			col := e.column("copy_enc", "email")
			dst := make([]byte, 0, 256)
			runtime.GC()
			cpu = cputime.Self()
			n := b.N * copyBenchRows * 3
			for j := range n {
				if _, err := col.keyring.Encrypt(dst, plain[j%len(plain)], col.id, col.mode); err != nil {
					b.Fatal(err)
				}
			}
			seal := float64(cputime.Self()-cpu) / float64(n)
			b.ReportMetric(seal, "seal-ns/value")
			b.ReportMetric(rowCPU/(3*seal), "x-seal")
		})
	}
}
