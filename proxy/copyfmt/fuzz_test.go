package copyfmt

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// fuzzOptions are the option sets FuzzRewriter picks from.
var fuzzOptions = [][]Option{
	nil,
	{opt("delimiter", "|"), opt("null", "NULL")},
	{opt("delimiter", "A"), flag("header")},
	{csvOpt},
	{csvOpt, flag("header"), list("force_not_null", "a"), list("force_null", "b")},
	{csvOpt, opt("delimiter", ";"), opt("quote", "'"), opt("escape", `\`), opt("null", "N")},
	{csvOpt, opt("delimiter", "a"), opt("quote", "b"), opt("escape", "0")},
	{binOpt},
}

// FuzzRewriter: the Rewriter never panics, and its output and error do not
// depend on how the stream is cut into chunks.
func FuzzRewriter(f *testing.F) {
	for _, s := range fromCorpus {
		f.Add([]byte(s), uint8(0), uint64(1))
		f.Add([]byte(s), uint8(3), uint64(2))
	}
	f.Add(cat(binHeader([]byte("x")), binTuple([]byte("a"), nil, []byte("c")), binTrailer), uint8(7), uint64(3))
	f.Add(cat(binHeader(nil), binTuple([]byte("a"), nil, []byte("c"))), uint8(7+16), uint64(4))
	f.Add([]byte(hx("abc")+"\t\\N\t"+hx("")+"\n"), uint8(16), uint64(5))
	f.Add([]byte(cx("a,b")+`,"`+cx("x")+`",`+"\n"), uint8(3+16), uint64(6))
	f.Fuzz(func(t *testing.T, data []byte, sel uint8, cut uint64) {
		set := fuzzOptions[int(sel&7)]
		dir := In
		if sel&16 != 0 {
			dir = Out
		}
		o, err := ParseOptions(set, dir == In)
		if err != nil {
			// force_not_null / force_null are FROM-only.
			o, err = ParseOptions(set[:1], dir == In)
			if err != nil {
				return
			}
		}
		prot := []bool{sel&32 == 0, true, sel&64 == 0}
		transform := func(dst []byte, col int, v []byte) ([]byte, error) {
			if dir == Out && o.Format != Binary {
				// Logical text with characters that need escaping.
				dst = append(dst, '\\', '"', '\n')
			}
			return append(dst, v...), nil
		}
		run := func(chunks [][]byte) ([]byte, string) {
			r, err := NewRewriter(Config{Options: o, Direction: dir, Table: "t", Columns: cols(3),
				Protected: prot, Transform: transform, MaxRow: 1 << 12})
			if err != nil {
				t.Fatal(err)
			}
			var out []byte
			for _, c := range chunks {
				if out, err = r.Write(out, c); err != nil {
					return out, errString(err)
				}
			}
			out, err = r.Close(out)
			return out, errString(err)
		}
		wantOut, wantErr := run([][]byte{data})
		rng := rand.New(rand.NewPCG(cut, 0))
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), rng.IntN(8))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		gotOut, gotErr := run(chunks)
		if gotErr != wantErr {
			t.Fatalf("error depends on chunking:\n whole %q\n cut   %q\n chunks %q", wantErr, gotErr, chunks)
		}
		if wantErr == "" && !bytes.Equal(gotOut, wantOut) {
			t.Fatalf("output depends on chunking:\n whole %q\n cut   %q\n chunks %q", wantOut, gotOut, chunks)
		}
	})
}
