package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Rendering for the harness: each message on one line, protected values as ⟨column=plaintext⟩.

// protectedValue matches a rendered protected value: ⟨column=plaintext⟩.
var protectedValue = regexp.MustCompile(`⟨([a-z.]+)=([^⟩]*)⟩`)

// byteaInText matches bytea hex text inside SQL (E'\\x…'::bytea, as pgcloak
// writes literals) and COPY data (\\x… in text, \x… in CSV).
var byteaInText = regexp.MustCompile(`E'\\\\x([0-9a-f]+)'::bytea|\\\\x([0-9a-f]+)|\\x([0-9a-f]+)`)

func renderAll(e *engineTest, raw []byte, fromClient bool) []string {
	var out []string
	for len(raw) > 0 {
		if len(raw) < wire.HeaderLen {
			e.t.Fatalf("half a message: %q", raw)
		}
		n := wire.HeaderLen - 4 + int(binary.BigEndian.Uint32(raw[1:]))
		if n > len(raw) {
			e.t.Fatalf("half a message: %q", raw)
		}
		out = append(out, render(e, raw[:n], fromClient))
		raw = raw[n:]
	}
	return out
}

// render writes one message (header included) on one line: its name and
// its fields. Values are quoted (strconv.Quote) when they are text, 0x… hex
// otherwise, NULL, or ⟨column=plaintext⟩ when they are pgcloak ciphertext of
// a fixture column (in text, bytea hex is recognised inside the text).
func render(e *engineTest, m []byte, fromClient bool) string {
	body := bytes.Clone(m[wire.HeaderLen:])
	var msg interface{ Decode([]byte) error }
	if fromClient {
		switch m[0] {
		case 'Q':
			return "Query " + e.quote(wire.CString(body))
		case 'P':
			var p pgproto3.Parse
			e.decode(&p, body)
			s := fmt.Sprintf("Parse %s %s", name(p.Name), e.quote(p.Query))
			if len(p.ParameterOIDs) > 0 {
				s += fmt.Sprint(" ", p.ParameterOIDs)
			}
			return s
		case 'B':
			var b pgproto3.Bind
			e.decode(&b, body)
			s := fmt.Sprintf("Bind %s %s", name(b.DestinationPortal), name(b.PreparedStatement))
			if len(b.ParameterFormatCodes) > 0 {
				s += fmt.Sprint(" pf=", b.ParameterFormatCodes)
			}
			s += " ["
			for i, v := range b.Parameters {
				if i > 0 {
					s += " "
				}
				s += e.value(v, wire.FormatCode(b.ParameterFormatCodes, i) == 0)
			}
			s += "]"
			if len(b.ResultFormatCodes) > 0 {
				s += fmt.Sprint(" rf=", b.ResultFormatCodes)
			}
			return s
		case 'D':
			return fmt.Sprintf("Describe %c %s", body[0], name(wire.CString(body[1:])))
		case 'C':
			return fmt.Sprintf("Close %c %s", body[0], name(wire.CString(body[1:])))
		case 'E':
			var x pgproto3.Execute
			e.decode(&x, body)
			return fmt.Sprintf("Execute %s %d", name(x.Portal), x.MaxRows)
		case 'S':
			return "Sync"
		case 'H':
			return "Flush"
		case 'X':
			return "Terminate"
		case 'd':
			return "CopyData " + e.value(body, true)
		case 'c':
			return "CopyDone"
		case 'f':
			return "CopyFail " + strconv.Quote(wire.CString(body))
		case 'F':
			return "FunctionCall"
		}
		e.t.Fatalf("unexpected client message %q", m)
	}
	switch m[0] {
	case '1':
		return "ParseComplete"
	case '2':
		return "BindComplete"
	case '3':
		return "CloseComplete"
	case 'n':
		return "NoData"
	case 's':
		return "PortalSuspended"
	case 'I':
		return "EmptyQueryResponse"
	case 'V':
		var r pgproto3.FunctionCallResponse
		e.decode(&r, body)
		return "FunctionCallResponse " + e.value(r.Result, false)
	case 'c':
		return "CopyDone"
	case 'd':
		return "CopyData " + e.value(body, true)
	case 'Z':
		return fmt.Sprintf("ReadyForQuery %c", body[0])
	case 'C':
		return "CommandComplete " + strconv.Quote(wire.CString(body))
	case 'S':
		var p pgproto3.ParameterStatus
		e.decode(&p, body)
		return fmt.Sprintf("ParameterStatus %s=%s", p.Name, p.Value)
	case 'E', 'N':
		var r pgproto3.ErrorResponse
		e.decode(&r, body)
		kind := "ErrorResponse"
		if m[0] == 'N' {
			kind = "NoticeResponse"
		}
		s := fmt.Sprintf("%s %s %s %s", kind, r.Severity, r.Code, strconv.Quote(r.Message))
		if r.Detail != "" {
			s += " detail=" + strconv.Quote(r.Detail)
		}
		return s
	case 'T':
		var r pgproto3.RowDescription
		e.decode(&r, body)
		s := "RowDescription"
		for _, f := range r.Fields {
			s += fmt.Sprintf(" %s:%d", f.Name, f.DataTypeOID)
			if f.Format != 0 {
				s += ":bin"
			}
		}
		return s
	case 't':
		var p pgproto3.ParameterDescription
		e.decode(&p, body)
		return fmt.Sprint("ParameterDescription ", p.ParameterOIDs)
	case 'D':
		var r pgproto3.DataRow
		e.decode(&r, body)
		s := "DataRow"
		for _, v := range r.Values {
			s += " " + e.value(v, true)
		}
		return s
	case 'G', 'H':
		msg = &pgproto3.CopyInResponse{}
		if m[0] == 'H' {
			msg = &pgproto3.CopyOutResponse{}
		}
		e.decode(msg, body)
		kind := map[byte]string{'G': "CopyInResponse", 'H': "CopyOutResponse"}[m[0]]
		return fmt.Sprintf("%s %+v", kind, msg)
	}
	e.t.Fatalf("unexpected server message %q", m)
	return ""
}

func (e *engineTest) decode(msg interface{ Decode([]byte) error }, body []byte) {
	e.t.Helper()
	if err := msg.Decode(body); err != nil {
		e.t.Fatalf("%T: %v", msg, err)
	}
}

// name renders a statement or portal name ("" is the unnamed one).
func name(s string) string { return strconv.Quote(s) }

// value renders one value (nil: NULL). Text is quoted, with bytea hex
// inside it that holds pgcloak ciphertext rendered as ⟨column=plaintext⟩.
func (e *engineTest) value(v []byte, textual bool) string {
	switch {
	case v == nil:
		return "NULL"
	case crypto.HasHeader(v):
		return e.decrypt(v)
	case textual && utf8.Valid(v) && printable(v):
		return e.quote(string(v))
	}
	return "0x" + hex.EncodeToString(v)
}

func printable(v []byte) bool {
	for _, c := range string(v) {
		if c < ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// quote quotes text, with the ciphertext inside it rendered.
func (e *engineTest) quote(s string) string {
	s = byteaInText.ReplaceAllStringFunc(s, func(m string) string {
		sub := byteaInText.FindStringSubmatch(m)
		h := sub[1] + sub[2] + sub[3]
		raw, err := hex.DecodeString(h)
		if err != nil || !crypto.HasHeader(raw) {
			return m
		}
		return e.decrypt(raw)
	})
	return strconv.Quote(s)
}

// decrypt renders ciphertext as ⟨column=plaintext⟩, trying every fixture
// column: the associated data lets only the right one open it. Columns of
// public tables are named by their column name alone, the others with
// schema and table.
func (e *engineTest) decrypt(ct []byte) string {
	for _, c := range e.rules {
		if plain, err := c.keyring.Decrypt(nil, ct, c.id); err == nil {
			label := c.rule.Name
			if c.rule.Schema != "public" {
				label = c.rule.Schema + "." + c.rule.Table + "." + c.rule.Name
			}
			return "⟨" + label + "=" + string(plain) + "⟩"
		}
	}
	return "⟨undecryptable⟩"
}
