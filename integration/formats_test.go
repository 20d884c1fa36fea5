package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestStatementResultFormats runs the message sequences of libpq
// (pgbench -M prepared: Parse + Sync, then Bind + Describe portal + Execute),
// pgx (Parse + Describe statement), pipelined unnamed statements and
// hand-picked result-format codes over protected columns through pgcloak, and the same
// sequences on a plaintext twin directly against PostgreSQL: every message
// the client receives must be the same. pgcloak learns a statement's columns
// before its first Bind (a Describe after a named Parse, the SQL analyzer's
// prediction for unnamed ones) and asks the server for protected columns in
// binary whatever the client asked; the client must not be able to tell.
func TestStatementResultFormats(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{schema: customersSchema + `
CREATE TABLE customers_plain (id int PRIMARY KEY, full_name text, email text, age int4, note text);
INSERT INTO customers_plain VALUES (1, '山田太郎', 'taro@example.jp', 42, 'plain note'), (2, NULL, 'ada@example.org', NULL, NULL);`,
		tables: customersTables})
	c := e.connect()
	for _, q := range []string{
		`INSERT INTO customers VALUES (1, '山田太郎', 'taro@example.jp', 42, 'plain note')`,
		`INSERT INTO customers VALUES (2, NULL, 'ada@example.org', NULL, NULL)`,
	} {
		if _, err := c.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}

	script := func(table string) [][]pgproto3.FrontendMessage {
		sel := fmt.Sprintf("SELECT id, full_name, age, note FROM %s WHERE id <= $1 ORDER BY id", table)
		sub := fmt.Sprintf("SELECT s.n, s.a FROM (SELECT full_name AS n, age AS a, id FROM %s) s WHERE s.id <= $1 ORDER BY s.id", table)
		one := [][]byte{[]byte("2")}
		run := func(stmt string, formats []int16, describe bool) []pgproto3.FrontendMessage {
			m := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: stmt, Parameters: one, ResultFormatCodes: formats}}
			if describe {
				m = append(m, &pgproto3.Describe{ObjectType: 'P'})
			}
			return append(m, &pgproto3.Execute{}, &pgproto3.Sync{})
		}
		return [][]pgproto3.FrontendMessage{
			// libpq's PQprepare, then PQexecPrepared in text and binary.
			{&pgproto3.Parse{Name: "s1", Query: sel}, &pgproto3.Sync{}},
			run("s1", nil, true),
			run("s1", []int16{1}, true),
			run("s1", []int16{0, 1, 0, 1}, true),
			run("s1", []int16{1, 0, 1, 0}, false),
			// A result-format count that fits no column count: PostgreSQL's error.
			run("s1", []int16{1, 0}, true),
			// pgx: Parse and Describe statement together.
			{&pgproto3.Parse{Name: "s2", Query: sel}, &pgproto3.Describe{ObjectType: 'S', Name: "s2"}, &pgproto3.Sync{}},
			run("s2", []int16{1}, false),
			run("s2", nil, false),
			// Parse, Bind and Execute in one pipeline: the Bind is sent before
			// any answer, in the client's own formats.
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s3", Query: sel}}, run("s3", []int16{1, 1, 0, 1}, true)...),
			// A named statement whose Parse fails.
			{&pgproto3.Parse{Name: "s4", Query: sel + " AND nope"}, &pgproto3.Sync{}},
			run("s1", nil, false),
			// Describe of another statement right after a Parse.
			{&pgproto3.Parse{Name: "s5", Query: sel}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}},
			run("s5", []int16{0}, true),
			// Flush instead of Sync after the Parse.
			{&pgproto3.Parse{Name: "s6", Query: sel}, &pgproto3.Flush{}},
			run("s6", nil, true),
			{&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Parse{Name: "s1", Query: sel}, &pgproto3.Sync{}},
			run("s1", []int16{1}, true),
			// Unnamed statements, pipelined as pgbench -M extended, JDBC and
			// node-postgres send them: pgcloak binds from the analyzer's
			// prediction of the columns.
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: sel}}, run("", nil, true)...),
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: sel}}, run("", []int16{1}, true)...),
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: sel}}, run("", []int16{0, 1, 0, 1}, false)...),
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: sub}}, run("", nil, true)...),
			append([]pgproto3.FrontendMessage{&pgproto3.Parse{Query: sub}}, run("", []int16{1, 0}, false)...),
		}
	}
	got := transcript(t, e.dsn(), script("customers"))
	want := transcript(t, e.directDSN(), script("customers_plain"))
	if len(got) != len(want) {
		t.Fatalf("through pgcloak %d messages, directly %d:\npgcloak:\n%s\ndirect:\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("message %d:\n pgcloak %s\n direct  %s", i, got[i], want[i])
		}
	}
}

// transcript sends each batch of messages on one connection to dsn and
// records every message received up to the batch's last ReadyForQuery (or
// the first one after a Flush-only batch's answers), with table OIDs, column
// numbers and error positions left out.
func transcript(t *testing.T, dsn string, batches [][]pgproto3.FrontendMessage) []string {
	t.Helper()
	fe := hijacked(t, dsn)
	var out []string
	for _, batch := range batches {
		for _, m := range batch {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, ok := batch[len(batch)-1].(*pgproto3.Flush); ok {
			// Nothing ends the answers of a Flush: read what a Parse draws.
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, describeMessage(msg))
			continue
		}
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, describeMessage(msg))
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	}
	return out
}

// hijacked connects to dsn with pgconn and hands over the raw protocol
// stream (closed when the test ends), for message sequences no driver sends.
func hijacked(t *testing.T, dsn string) *pgproto3.Frontend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	_ = hc.Conn.SetDeadline(time.Now().Add(queryTimeout))
	return hc.Frontend
}

// describeMessage renders a backend message for comparison.
func describeMessage(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		var b strings.Builder
		b.WriteString("RowDescription")
		for _, f := range m.Fields {
			fmt.Fprintf(&b, " %s:oid=%d,size=%d,mod=%d,fmt=%d", f.Name, f.DataTypeOID, f.DataTypeSize, f.TypeModifier, f.Format)
		}
		return b.String()
	case *pgproto3.DataRow:
		return fmt.Sprintf("DataRow %q", m.Values)
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("ErrorResponse %s %s %s", m.Severity, m.Code, m.Message)
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs)
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	}
	return fmt.Sprintf("%T", msg)
}
