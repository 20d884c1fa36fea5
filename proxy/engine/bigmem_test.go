package engine

import (
	"bufio"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Large values: what the engine allocates for a statement or a Bind
// carrying one. The bound is issue 15's "at most about one copy per
// message": the rewritten message itself (a literal's ciphertext doubles as
// hex), nothing for a message forwarded as it came.

// runWriter is the server side of a large message: it counts the bytes and
// the longest run of plaintext filler it sees, keeping nothing.
type runWriter struct {
	n, run, longest int
}

func (w *runWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == 'x' {
			w.run++
			w.longest = max(w.longest, w.run)
		} else {
			w.run = 0
		}
	}
	w.n += len(p)
	return len(p), nil
}

// TestLargeValueCopies: a message with a 16 MB value costs at most the
// copies it must (one rewritten message), whatever the path.
func TestLargeValueCopies(t *testing.T) {
	const size = 16 << 20
	big := strings.Repeat("x", size)
	for _, tc := range []struct {
		name      string
		msg       pgproto3.FrontendMessage
		copies    float64 // allowed allocation, in sizes of the message
		encrypted bool
	}{
		{"Query into a protected column", &pgproto3.Query{String: "INSERT INTO people (id, name) VALUES (1, '" + big + "')"}, 2, true},
		{"Query into a plain column of a protected table", &pgproto3.Query{String: "INSERT INTO people (id, note) VALUES (1, $$" + big + "$$)"}, 0, false},
		{"Query on no protected table", &pgproto3.Query{String: "SELECT '" + big + "'"}, 0, false},
		// The statement keeps its text, to plan it again (one copy).
		{"Parse with a protected literal", &pgproto3.Parse{Name: "big", Query: "INSERT INTO people (id, name) VALUES ($1, '" + big + "')"}, 3, true},
		{"Bind of a protected parameter", &pgproto3.Bind{PreparedStatement: "name", Parameters: [][]byte{[]byte("1"), []byte(big)}}, 1, true},
		{"Bind of a plain parameter", &pgproto3.Bind{PreparedStatement: "note", Parameters: [][]byte{[]byte("1"), []byte(big)}}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t)
			e.client(parse("name", "INSERT INTO people (id, name) VALUES ($1, $2)"), parse("note", "INSERT INTO people (id, note) VALUES ($1, $2)"))
			m := encode(t, tc.msg)
			var w runWriter
			bw := bufio.NewWriter(&w)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if err := e.hook.ClientMessage(wire.ClientMsg(m[0]), m, bw); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			allocated := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(m))
			t.Logf("allocated %.2f× the %d-byte message", allocated, len(m))
			if allocated > tc.copies+0.05 {
				t.Errorf("allocated %.2f× the message, want at most %.0f×", allocated, tc.copies)
			}
			switch {
			case tc.encrypted && w.longest >= 64:
				t.Errorf("the server received a run of %d bytes of the plaintext", w.longest)
			case !tc.encrypted && (w.n < len(m) || w.longest < size):
				t.Errorf("the server received %d bytes, the value's longest run %d: want the message as sent", w.n, w.longest)
			}
		})
	}
}

// TestLargeLiteralRewrite: long literals, set aside while the text is
// analysed (sqlplan/elide.go) and encrypted where they lie, reach the
// server as the ciphertext of the literal's value: ” read as one quote, a
// dollar-quoted body as it is, the rest of the text byte for byte.
func TestLargeLiteralRewrite(t *testing.T) {
	e := newEngine(t)
	long := strings.Repeat("ab", 50<<10)
	e.client(&pgproto3.Query{String: "INSERT INTO people (id, name, email, note) VALUES (1, 'O''Brien " + long + "', $q$it's " + long + "$q$, 'plain " + long + "')"}).
		want(`Query "INSERT INTO people (id, name, email, note) VALUES (1, ⟨name=O'Brien ` + long + `⟩, ⟨email=it's ` + long + `⟩, 'plain ` + long + `')"`)
	e.client(&pgproto3.Query{String: "UPDATE people SET name = '" + long + "' WHERE email = 'a@example.com'"}).
		want(`Query "UPDATE people SET name = ⟨name=` + long + `⟩ WHERE email = ⟨email=a@example.com⟩"`)
}
