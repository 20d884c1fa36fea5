package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// msg builds a message of type t with body.
func msg(t byte, body string) []byte {
	b := []byte{t, 0, 0, 0, 0}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

func encode(t *testing.T, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScanBind reads Binds as pgproto3 encodes them and as annotated bytes.
func TestScanBind(t *testing.T) {
	tests := []struct {
		name string
		bind pgproto3.Bind
	}{
		{"unnamed, no params", pgproto3.Bind{}},
		{"named with values and formats", pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1",
			ParameterFormatCodes: []int16{1, 0}, Parameters: [][]byte{{1, 2}, nil}, ResultFormatCodes: []int16{0, 1, 1}}},
		{"one result format", pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("x")}, ResultFormatCodes: []int16{1}}},
	}
	for _, tt := range tests {
		m := encode(t, &tt.bind)
		h, err := ScanBind(m[HeaderLen:])
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := tt.bind.ResultFormatCodes
		if len(want) == 0 {
			want = nil
		}
		if h.Portal != tt.bind.DestinationPortal || h.Statement != tt.bind.PreparedStatement || !reflect.DeepEqual(h.ResultFormats, want) {
			t.Errorf("%s: got %+v", tt.name, h)
		}
		// Replacing the result formats gives the Bind with the new ones.
		out := AppendWithResultFormats(nil, m, h.ResultsAt, []int16{1, 0})
		var back pgproto3.Bind
		if err := back.Decode(out[HeaderLen:]); err != nil {
			t.Fatalf("%s: re-encoded Bind does not decode: %v", tt.name, err)
		}
		if !reflect.DeepEqual(back.ResultFormatCodes, []int16{1, 0}) || back.PreparedStatement != tt.bind.PreparedStatement {
			t.Errorf("%s: re-encoded %+v", tt.name, back)
		}
	}
	// Annotated: portal "" , statement "s", 1 format code (binary), 1 param of
	// 2 bytes, 0 result codes — then truncations of it are refused.
	raw := []byte("\x00s\x00" + "\x00\x01\x00\x01" + "\x00\x01\x00\x00\x00\x02hi" + "\x00\x00")
	h, err := ScanBind(raw)
	if err != nil || h.Statement != "s" || h.ResultFormats != nil || h.ResultsAt != HeaderLen+len(raw)-2 {
		t.Fatalf("annotated Bind: %+v, %v", h, err)
	}
	for i := range raw {
		if _, err := ScanBind(raw[:i]); err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
}

// TestRow walks DataRows with NULLs and empty values and rebuilds them.
func TestRow(t *testing.T) {
	dr := pgproto3.DataRow{Values: [][]byte{[]byte("a"), nil, {}, []byte("\x00\xff")}}
	m := encode(t, &dr)
	r, n, err := ReadRow(m)
	if err != nil || n != 4 {
		t.Fatalf("ReadRow: %d, %v", n, err)
	}
	out := BeginRow(nil, n)
	for i := range n {
		v, null, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if null != (dr.Values[i] == nil) || !bytes.Equal(v, dr.Values[i]) {
			t.Errorf("field %d: %q null=%v", i, v, null)
		}
		if null {
			out = AppendNull(out)
		} else {
			out = AppendValue(out, v)
		}
	}
	if _, _, err := r.Next(); err == nil {
		t.Error("a fifth value was read")
	}
	if out = FinishRow(out, 0); !bytes.Equal(out, m) {
		t.Errorf("rebuilt row %x, want %x", out, m)
	}
	if _, _, err := ReadRow(m[:6]); err == nil {
		t.Error("short DataRow accepted")
	}
	r, _, _ = ReadRow(m[:len(m)-1])
	for range 4 {
		if _, _, err = r.Next(); err != nil {
			break
		}
	}
	if err == nil {
		t.Error("truncated value accepted")
	}
}

// TestAppend checks the messages pgcloak writes itself against pgproto3.
func TestAppend(t *testing.T) {
	if got, want := AppendQuery([]byte("x"), "SELECT 1"), append([]byte("x"), encode(t, &pgproto3.Query{String: "SELECT 1"})...); !bytes.Equal(got, want) {
		t.Errorf("AppendQuery = %q, want %q", got, want)
	}
	if got, want := AppendDescribe(nil, 'S', "s1"), encode(t, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}); !bytes.Equal(got, want) {
		t.Errorf("AppendDescribe = %q, want %q", got, want)
	}
	if CString([]byte("ab\x00cd")) != "ab" || CString([]byte("ab")) != "ab" {
		t.Error("CString")
	}
}

// TestMsgNames checks codes print as the protocol names them, per direction.
func TestMsgNames(t *testing.T) {
	if Describe.String() != "Describe" || DataRow.String() != "DataRow" || Sync.String() != "Sync" || ParameterStatus.String() != "ParameterStatus" {
		t.Error("names")
	}
	if ClientMsg('?').String() != `client message '?'` {
		t.Error(ClientMsg('?').String())
	}
}

// FuzzScanBind: never panics; what it accepts, pgproto3 accepts too.
func FuzzScanBind(f *testing.F) {
	f.Add([]byte("\x00s\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x02hi\x00\x00"))
	f.Add([]byte("p\x00s\x00\x00\x00\x00\x00\x00\x02\x00\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ScanBind(b)
		if err != nil {
			return
		}
		if h.ResultsAt < HeaderLen || h.ResultsAt > HeaderLen+len(b) {
			t.Fatalf("ResultsAt %d out of range", h.ResultsAt)
		}
		var pb pgproto3.Bind
		if pb.Decode(b) == nil && (pb.PreparedStatement != h.Statement || pb.DestinationPortal != h.Portal) {
			t.Fatalf("pgproto3 reads %q/%q, ScanBind %q/%q", pb.DestinationPortal, pb.PreparedStatement, h.Portal, h.Statement)
		}
	})
}

// FuzzReadRow: never panics and never returns a value outside the message.
func FuzzReadRow(f *testing.F) {
	f.Add(msg('D', "\x00\x02\x00\x00\x00\x01x\xff\xff\xff\xff"))
	f.Add(msg('D', "\x00\x01\x7f\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, m []byte) {
		r, n, err := ReadRow(m)
		if err != nil {
			return
		}
		total := 0
		for range n {
			v, _, err := r.Next()
			if err != nil {
				return
			}
			total += len(v)
			if total > len(m) {
				t.Fatal("values longer than the message")
			}
		}
	})
}

// FuzzReader feeds arbitrary bytes to the framing code: it must never
// panic, and whatever it forwards must be a prefix of its input.
func FuzzReader(f *testing.F) {
	f.Add(msg('Q', "SELECT 1\x00"))
	f.Add(append(msg('D', "\x00\x01\x00\x00\x00\x01x"), msg('Z', "I")...))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{'Q', 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 16)
		fr := NewReader(bytes.NewReader(in), w, 32)
		for {
			_, n, err := fr.Header(1 << 16)
			if err != nil {
				break
			}
			if err := fr.Forward(w, n); err != nil {
				break
			}
		}
		w.Flush()
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("forwarded bytes are not a prefix of the input")
		}
	})
}
