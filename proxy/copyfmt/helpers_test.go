package copyfmt

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// capture is a FieldFunc that records every value it is given, by row and
// column, and returns it unchanged (In: the value becomes the bytea; Out:
// the bytea becomes the value).
type capture struct {
	r     *Rewriter
	ncols int
	rows  [][]*string
	calls int
}

func (c *capture) fn(dst []byte, col int, v []byte) ([]byte, error) {
	c.calls++
	row := int(c.r.Rows())
	for len(c.rows) <= row {
		c.rows = append(c.rows, make([]*string, c.ncols))
	}
	s := string(v)
	c.rows[row][col] = &s
	return append(dst, v...), nil
}

// grid returns the captured values of the rows written, nil for a field
// the FieldFunc did not see (NULL).
func (c *capture) grid() [][]*string {
	n := int(c.r.Rows())
	g := make([][]*string, n)
	for i := range g {
		if i < len(c.rows) {
			g[i] = c.rows[i]
		} else {
			g[i] = make([]*string, c.ncols)
		}
	}
	return g
}

func cols(n int) []string {
	c := make([]string, n)
	for i := range c {
		c[i] = string(rune('a' + i))
	}
	return c
}

// newCapture makes a Rewriter over table t with ncols columns a, b, c, …;
// prot nil protects all.
func newCapture(t testing.TB, o Options, dir Direction, ncols int, prot []bool) (*Rewriter, *capture) {
	t.Helper()
	if prot == nil {
		prot = allTrue(ncols)
	}
	c := &capture{ncols: ncols}
	r, err := NewRewriter(Config{Options: o, Direction: dir, Table: "t", Columns: cols(ncols), Protected: prot, Transform: c.fn})
	if err != nil {
		t.Fatal(err)
	}
	c.r = r
	return r, c
}

// feed writes chunks and closes.
func feed(r *Rewriter, chunks [][]byte) ([]byte, error) {
	var out []byte
	var err error
	for _, c := range chunks {
		if out, err = r.Write(out, c); err != nil {
			return out, err
		}
	}
	return r.Close(out)
}

// chunkings returns ways to cut in: whole, every two-piece cut (for short
// inputs), byte by byte, and random cuts.
func chunkings(in []byte, rng *rand.Rand, nrandom int) [][][]byte {
	var out [][][]byte
	out = append(out, [][]byte{in})
	if len(in) <= 400 {
		for i := 0; i <= len(in); i++ {
			out = append(out, [][]byte{in[:i], in[i:]})
		}
		bb := make([][]byte, len(in))
		for i := range in {
			bb[i] = in[i : i+1]
		}
		out = append(out, bb)
	}
	for k := 0; k < nrandom; k++ {
		var cs [][]byte
		rest := in
		maxc := 1 + rng.IntN(64)
		if rng.IntN(3) == 0 {
			maxc = 1 + rng.IntN(4096)
		}
		for len(rest) > 0 {
			n := min(len(rest), rng.IntN(maxc+1))
			cs = append(cs, rest[:n])
			rest = rest[n:]
		}
		out = append(out, cs)
	}
	return out
}

// result is what a run produced, for comparing runs.
type result struct {
	out  string
	err  string
	grid [][]*string
}

func (a result) String() string {
	return fmt.Sprintf("out=%q err=%q grid=%s", a.out, a.err, showGrid(a.grid))
}

func showGrid(g [][]*string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, row := range g {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("[")
		for j, v := range row {
			if j > 0 {
				b.WriteString(",")
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				fmt.Fprintf(&b, "%q", *v)
			}
		}
		b.WriteString("]")
	}
	b.WriteString("]")
	return b.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%s|%s|%s|%s", e.Code, e.Message, e.Hint, e.Context)
	}
	return err.Error()
}

// runAll runs the input under every chunking and fails unless all agree;
// it returns the result of the whole-input run.
func runAll(t *testing.T, o Options, dir Direction, ncols int, prot []bool, in []byte, nrandom int) result {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(in)), 7))
	var first result
	for k, cs := range chunkings(in, rng, nrandom) {
		r, c := newCapture(t, o, dir, ncols, prot)
		out, err := feed(r, cs)
		res := result{out: string(out), err: errString(err)}
		if err == nil {
			res.grid = c.grid()
		}
		if k == 0 {
			first = res
			continue
		}
		if res.out != first.out && err == nil || res.err != first.err || showGrid(res.grid) != showGrid(first.grid) {
			t.Fatalf("chunking %d (%d pieces) differs:\n got  %v\n want %v\n pieces %q", k, len(cs), res, first, cs)
		}
	}
	return first
}

// hx is the text-format COPY spelling of bytea s (`\\x` + hex).
func hx(s string) string { return `\\x` + hex.EncodeToString([]byte(s)) }

// cx is the CSV spelling of bytea s.
func cx(s string) string { return `\x` + hex.EncodeToString([]byte(s)) }

// sp makes a *string.
func sp(s string) *string { return &s }

// binary COPY builders.

func binHeader(ext []byte) []byte {
	b := append([]byte{}, binarySignature...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ext)))
	return append(b, ext...)
}

// binTuple encodes a tuple; nil is NULL.
func binTuple(fields ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		if f == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

var binTrailer = []byte{0xff, 0xff}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
