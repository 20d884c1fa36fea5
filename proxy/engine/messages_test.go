package engine

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Protocol messages and values as the tests write them, short.

// byteaText is the text output of a bytea (bytea_output = hex).
func byteaText(b []byte) string { return `\x` + hex.EncodeToString(b) }

// byteaEscape is the text output of a bytea with bytea_output = escape.
func byteaEscape(b []byte) string {
	var out strings.Builder
	for _, c := range b {
		switch {
		case c == '\\':
			out.WriteString(`\\`)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&out, `\%03o`, c)
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// encode is msg as it travels, header included.
func encode(t testing.TB, msg interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ready(status byte) *pgproto3.ReadyForQuery { return &pgproto3.ReadyForQuery{TxStatus: status} }

func complete(tag string) *pgproto3.CommandComplete {
	return &pgproto3.CommandComplete{CommandTag: []byte(tag)}
}

// serverError is an ErrorResponse of PostgreSQL's.
func serverError(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

// dataRow is a DataRow of text values (see texts).
func dataRow(vals ...string) *pgproto3.DataRow { return &pgproto3.DataRow{Values: texts(vals)} }

// texts are values as they travel: "\x00NULL" (null) is NULL.
func texts(vals []string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if v != null {
			out[i] = []byte(v)
		}
	}
	return out
}

const null = "\x00NULL"

// field describes a result column: a column of a fixture table (as the
// server describes it: protected ones as bytea) or an expression.
type field = pgproto3.FieldDescription

// col describes column name of people in text format.
func col(name string) field { return colOf(peopleOID, "people", name, 0) }

// colBin describes column name of people in binary format.
func colBin(name string) field { return colOf(peopleOID, "people", name, 1) }

func colOf(oid uint32, table, name string, format int16) field {
	for _, t := range fixtureTables {
		if t.Name != table {
			continue
		}
		for i, c := range t.Columns {
			if c == name {
				typ := physicalTypes[name]
				size := int16(-1)
				if typ == oidInt4 {
					size = 4
				}
				return field{Name: []byte(name), TableOID: oid, TableAttributeNumber: uint16(i + 1), DataTypeOID: typ, DataTypeSize: size, TypeModifier: -1, Format: format}
			}
		}
	}
	panic("no column " + table + "." + name)
}

// text describes an expression column of type text.
func text(name string) field {
	return field{Name: []byte(name), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1}
}

func rowDescription(fields ...field) *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: fields}
}

// rawMessage is a message as bytes, header included: for messages
// pgproto3 would not encode (malformed ones).
type rawMessage []byte

func (m rawMessage) Encode(dst []byte) ([]byte, error) { return append(dst, m...), nil }
func (m rawMessage) Decode([]byte) error               { return nil }
func (rawMessage) Frontend()                           {}
func (rawMessage) Backend()                            {}

func parse(name, sql string, oids ...uint32) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: sql, ParameterOIDs: oids}
}

// bind binds statement stmt to portal with text parameters (see texts).
func bind(portal, stmt string, params ...string) *pgproto3.Bind {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt, Parameters: texts(params)}
}

func execute(portal string, maxRows uint32) *pgproto3.Execute {
	return &pgproto3.Execute{Portal: portal, MaxRows: maxRows}
}

func describe(kind byte, name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: kind, Name: name}
}

func syncMsg() *pgproto3.Sync { return &pgproto3.Sync{} }
