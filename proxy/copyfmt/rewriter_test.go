package copyfmt

import (
	"errors"
	"strings"
	"testing"
)

type rwCase struct {
	name  string
	opts  []Option // parsed with ParseOptions (isFrom = direction In)
	dir   Direction
	ncols int    // default 3
	prot  []bool // default all
	in    string
	out   string // expected output (when no error)
	grid  [][]*string
	err   string // expected errString, "" for none
}

func (tc rwCase) run(t *testing.T) {
	t.Helper()
	o, err := ParseOptions(tc.opts, tc.dir == In)
	if err != nil {
		t.Fatal(err)
	}
	ncols := tc.ncols
	if ncols == 0 {
		ncols = 3
	}
	res := runAll(t, o, tc.dir, ncols, tc.prot, []byte(tc.in), 20)
	if res.err != tc.err {
		t.Fatalf("error\n got  %q\n want %q", res.err, tc.err)
	}
	if tc.err != "" {
		return
	}
	if res.out != tc.out {
		t.Errorf("output\n got  %q\n want %q", res.out, tc.out)
	}
	if tc.grid != nil && showGrid(res.grid) != showGrid(tc.grid) {
		t.Errorf("values\n got  %s\n want %s", showGrid(res.grid), showGrid(tc.grid))
	}
}

func opt(name, value string) Option { return Option{Name: name, Kind: ArgString, Value: value} }
func flag(name string) Option       { return Option{Name: name} }
func list(name string, cols ...string) Option {
	return Option{Name: name, Kind: ArgList, List: cols}
}

var csvOpt = opt("format", "csv")
var binOpt = opt("format", "binary")

func row(vs ...*string) []*string { return vs }

func TestTextIn(t *testing.T) {
	cases := []rwCase{
		{name: "plain", in: "a\tb\tc\nd\te\tf\n",
			out:  hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\n" + hx("d") + "\t" + hx("e") + "\t" + hx("f") + "\n",
			grid: [][]*string{row(sp("a"), sp("b"), sp("c")), row(sp("d"), sp("e"), sp("f"))}},
		{name: "escapes", in: `1\t2` + "\t" + `\N` + "\t" + `\\` + "\n",
			out:  hx("1\t2") + "\t" + `\N` + "\t" + hx(`\`) + "\n",
			grid: [][]*string{row(sp("1\t2"), nil, sp(`\`))}},
		{name: "all escapes", in: `\b\f\n\r\t\v\q\\.x` + "\t" + `\101\x41\x4\xg\7\18` + "\t" + `a\` + "\t" + "\n",
			grid: [][]*string{row(sp("\b\f\n\r\t\vq\\.x"), sp("AA\x04xg\a\x018"), sp("a\t"))},
			out:  hx("\b\f\n\r\t\vq\\.x") + "\t" + hx("AA\x04xg\a\x018") + "\t" + hx("a\t") + "\n"},
		{name: "escaped delimiter and newline", in: "a\\\tb\tc\\\nd\te\n",
			grid: [][]*string{row(sp("a\tb"), sp("c\nd"), sp("e"))},
			out:  hx("a\tb") + "\t" + hx("c\nd") + "\t" + hx("e") + "\n"},
		{name: "hex escape eats uppercase delimiter", opts: []Option{opt("delimiter", "A")},
			in: `\x4AbAc` + "\n", grid: [][]*string{row(sp("Jb"), sp("c"), nil)},
			err: `22P04|missing data for column "c"||COPY t, line 1: "\x4AbAc"`},
		{name: "empty and null", in: "\t\\N\t\n",
			out: hx("") + "\t" + `\N` + "\t" + hx("") + "\n", grid: [][]*string{row(sp(""), nil, sp(""))}},
		{name: "null string", opts: []Option{opt("null", "NULL"), opt("delimiter", "|")},
			in:  "NULL|\\N|NULLx\n",
			out: "NULL|" + hx("N") + "|" + hx("NULLx") + "\n", grid: [][]*string{row(nil, sp("N"), sp("NULLx"))}},
		{name: "unprotected untouched", prot: []bool{false, true, false},
			in:  "\\x41\\\\\t\\x41\t\\N\n",
			out: "\\x41\\\\\t" + hx("A") + "\t\\N\n"},
		{name: "crlf", in: "a\tb\tc\r\nd\te\tf\r\n",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\r\n" + hx("d") + "\t" + hx("e") + "\t" + hx("f") + "\r\n"},
		{name: "cr", in: "a\tb\tc\rd\te\tf\r",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\r" + hx("d") + "\t" + hx("e") + "\t" + hx("f") + "\r"},
		{name: "no final newline", in: "a\tb\tc\nd\te\tf",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\n" + hx("d") + "\t" + hx("e") + "\t" + hx("f")},
		{name: "end marker", in: "a\tb\tc\n\\.\nd\te\n",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\n"},
		{name: "end marker crlf", in: "a\tb\tc\r\n\\.\r\ngarbage",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\r\n"},
		{name: "end marker mid line", in: "a\tb\tc\\.\nd\te\n",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c")},
		{name: "end marker first", in: "\\.\n", out: ""},
		{name: "escaped backslash dot", in: "a\tb\t\\\\.\n",
			out: hx("a") + "\t" + hx("b") + "\t" + hx(`\.`) + "\n"},
		{name: "trailing backslash at eof", in: "a\tb\tc\\",
			out: hx("a") + "\t" + hx("b") + "\t" + hx("c") + `\`},
		{name: "header", opts: []Option{flag("header")}, in: "x\ty\tz\na\tb\tc\n",
			out: "x\ty\tz\n" + hx("a") + "\t" + hx("b") + "\t" + hx("c") + "\n"},
		{name: "header only", opts: []Option{flag("header")}, in: "x\ty", out: "x\ty"},
		{name: "empty", in: "", out: ""},
		{name: "null collides with hex", prot: []bool{true, false, false}, opts: []Option{opt("null", `\\x61`)},
			in: "a\tb\tc\n", out: `\134x61` + "\tb\tc\n"},

		{name: "missing", in: "a\tb\n", err: `22P04|missing data for column "c"||COPY t, line 1: "a	b"`},
		{name: "missing line 2", in: "a\tb\tc\n\n", err: `22P04|missing data for column "b"||COPY t, line 2: ""`},
		{name: "extra", in: "a\tb\tc\td\n", err: `22P04|extra data after last expected column||COPY t, line 1: "a	b	c	d"`},
		{name: "literal newline", in: "a\tb\tc\r\nd\te\tf\n",
			err: `22P04|literal newline found in data|Use "\n" to represent newline.|COPY t, line 2`},
		{name: "literal cr", in: "a\tb\tc\nd\re\tf\n",
			err: `22P04|literal carriage return found in data|Use "\r" to represent carriage return.|COPY t, line 2`},
		{name: "literal cr in crlf", in: "a\tb\tc\r\nd\re\tf\r\n",
			err: `22P04|literal carriage return found in data|Use "\r" to represent carriage return.|COPY t, line 2`},
		{name: "marker corrupt", in: "a\tb\tc\n\\.x\n", err: `22P04|end-of-copy marker corrupt||COPY t, line 2`},
		{name: "marker at eof", in: "a\tb\tc\n\\.", err: `22P04|end-of-copy marker corrupt||COPY t, line 2`},
		{name: "marker style", in: "a\tb\tc\n\\.\r\n", err: `22P04|end-of-copy marker does not match previous newline style||COPY t, line 2`},
		{name: "marker style crlf", in: "a\tb\tc\r\n\\.\n", err: `22P04|end-of-copy marker does not match previous newline style||COPY t, line 2`},
		{name: "nul escape", in: "a\\0\tb\tc\n", err: `22021|invalid byte sequence for encoding "UTF8": 0x00||COPY t, line 1: "a\0	b	c"`},
		{name: "bad escape utf8", in: "a\\xe9\tb\tc\n", err: `22021|invalid byte sequence for encoding "UTF8": 0xe9||COPY t, line 1: "a\xe9	b	c"`},
		{name: "raw bad utf8", in: "a\tb\tc\nd\xff\te\tf\n", err: `22021|invalid byte sequence for encoding "UTF8": 0xff||COPY t, line 2`},
		{name: "raw nul", in: "a\x00\tb\tc\n", err: `22021|invalid byte sequence for encoding "UTF8": 0x00||COPY t, line 1`},
		{name: "truncated utf8", in: "a\xe3\x81\tb\tc\n", err: `22021|invalid byte sequence for encoding "UTF8": 0xe3 0x81 0x09||COPY t, line 1`},
		{name: "long line clipped", in: strings.Repeat("é", 60) + "\n",
			err: `22P04|missing data for column "b"||COPY t, line 1: "` + strings.Repeat("é", 50) + `..."`},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

func TestCSVIn(t *testing.T) {
	cases := []rwCase{
		{name: "plain", opts: []Option{csvOpt}, in: "a,b,c\n",
			out: cx("a") + "," + cx("b") + "," + cx("c") + "\n", grid: [][]*string{row(sp("a"), sp("b"), sp("c"))}},
		{name: "quotes", opts: []Option{csvOpt}, in: `a,"b,1","c""d"` + "\n",
			out: cx("a") + "," + cx("b,1") + "," + cx(`c"d`) + "\n", grid: [][]*string{row(sp("a"), sp("b,1"), sp(`c"d`))}},
		{name: "partly quoted", opts: []Option{csvOpt}, in: `x"a,b"y,"",` + "\n",
			grid: [][]*string{row(sp("xa,by"), sp(""), nil)}, out: cx("xa,by") + "," + cx("") + ",\n"},
		{name: "null vs quoted empty", opts: []Option{csvOpt}, in: `,"",x` + "\n",
			out: "," + cx("") + "," + cx("x") + "\n", grid: [][]*string{row(nil, sp(""), sp("x"))}},
		{name: "embedded newline", opts: []Option{csvOpt}, in: "\"a\nb\",\"c\r\nd\",e\nf,g,h\n",
			grid: [][]*string{row(sp("a\nb"), sp("c\r\nd"), sp("e")), row(sp("f"), sp("g"), sp("h"))},
			out:  cx("a\nb") + "," + cx("c\r\nd") + "," + cx("e") + "\n" + cx("f") + "," + cx("g") + "," + cx("h") + "\n"},
		{name: "backslash is data", opts: []Option{csvOpt}, in: `\N,\.,"\"` + "\n",
			grid: [][]*string{row(sp(`\N`), sp(`\.`), sp(`\`))}, out: cx(`\N`) + "," + cx(`\.`) + "," + cx(`\`) + "\n"},
		{name: "end marker", opts: []Option{csvOpt}, in: "a,b,c\n\\.\nx,y,z\n", out: cx("a") + "," + cx("b") + "," + cx("c") + "\n"},
		{name: "quoted marker is data", opts: []Option{csvOpt}, ncols: 1, in: "\"\\.\"\n\\.x\n",
			grid: [][]*string{row(sp(`\.`)), row(sp(`\.x`))}, out: cx(`\.`) + "\n" + cx(`\.x`) + "\n"},
		{name: "header", opts: []Option{csvOpt, flag("header")}, in: "\"x,\ny\",y,z\na,b,c\n",
			out: "\"x,\ny\",y,z\n" + cx("a") + "," + cx("b") + "," + cx("c") + "\n"},
		{name: "options", opts: []Option{csvOpt, opt("delimiter", ";"), opt("quote", "'"), opt("escape", `\`), opt("null", "N")},
			in:   `'a;\'b\\';N;'N'` + "\n",
			grid: [][]*string{row(sp(`a;'b\`), nil, sp("N"))}, out: cx(`a;'b\`) + ";N;" + cx("N") + "\n"},
		{name: "escape outside quotes", opts: []Option{csvOpt, opt("escape", `\`)},
			in: `a\"b,"c\"d",\` + "\n", err: `22P04|missing data for column "c"||COPY t, line 1: "a\"b,"c\"d",\"`},
		{name: "force not null", opts: []Option{csvOpt, list("force_not_null", "a")}, in: ",,\n",
			grid: [][]*string{row(sp(""), nil, nil)}, out: cx("") + ",,\n"},
		{name: "force null", opts: []Option{csvOpt, list("force_null", "b"), opt("null", "NA")}, in: `"NA","NA",NA` + "\n",
			grid: [][]*string{row(sp("NA"), nil, nil)}, out: cx("NA") + `,"NA",NA` + "\n"},
		{name: "hex equals null", opts: []Option{csvOpt, opt("null", `\x61`)}, ncols: 1, in: "a\n",
			out: `"\x61"` + "\n"},
		{name: "delimiter is a hex digit", opts: []Option{csvOpt, opt("delimiter", "a")}, in: "zayaj\n",
			out: `"\x7a"a\x79a"\x6a"` + "\n"},
		{name: "crlf", opts: []Option{csvOpt}, in: "a,b,c\r\n", out: cx("a") + "," + cx("b") + "," + cx("c") + "\r\n"},

		{name: "unterminated", opts: []Option{csvOpt}, in: "a,b,\"c\nd",
			err: `22P04|unterminated CSV quoted field||COPY t, line 1: "a,b,"c` + "\n" + `d"`},
		{name: "unterminated crlf lines", opts: []Option{csvOpt}, in: "a,b,c\r\nd,e,\"f\r\ng\r\nh",
			err: `22P04|unterminated CSV quoted field||COPY t, line 4: "d,e,"f` + "\r\ng\r\nh" + `"`},
		{name: "unquoted cr", opts: []Option{csvOpt}, in: "a,b,c\nd\re,f\n",
			err: `22P04|unquoted carriage return found in data|Use quoted CSV field to represent carriage return.|COPY t, line 2`},
		{name: "unquoted newline", opts: []Option{csvOpt}, in: "a,b,c\r\nd\ne,f\r\n",
			err: `22P04|unquoted newline found in data|Use quoted CSV field to represent newline.|COPY t, line 2`},
		{name: "missing", opts: []Option{csvOpt}, in: "a,b\n", err: `22P04|missing data for column "c"||COPY t, line 1: "a,b"`},
		{name: "extra", opts: []Option{csvOpt}, in: "a,b,c,\n", err: `22P04|extra data after last expected column||COPY t, line 1: "a,b,c,"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

func TestBinaryIn(t *testing.T) {
	hdr := binHeader(nil)
	cases := []rwCase{
		{name: "rows", opts: []Option{binOpt},
			in:   string(cat(hdr, binTuple([]byte("a"), []byte(""), nil), binTuple(nil, nil, []byte("xyz")), binTrailer)),
			out:  string(cat(hdr, binTuple([]byte("a"), []byte(""), nil), binTuple(nil, nil, []byte("xyz")), binTrailer)),
			grid: [][]*string{row(sp("a"), sp(""), nil), row(nil, nil, sp("xyz"))}},
		{name: "extension", opts: []Option{binOpt},
			in:  string(cat(binHeader([]byte("ext!")), binTuple([]byte("a"), []byte("b"), []byte("c")))),
			out: string(cat(binHeader([]byte("ext!")), binTuple([]byte("a"), []byte("b"), []byte("c"))))},
		{name: "no trailer, stray byte", opts: []Option{binOpt},
			in:  string(cat(hdr, binTuple([]byte("a"), []byte("b"), []byte("c")), []byte{7})),
			out: string(cat(hdr, binTuple([]byte("a"), []byte("b"), []byte("c"))))},
		{name: "unprotected", opts: []Option{binOpt}, prot: []bool{false, true, false},
			in:  string(cat(hdr, binTuple([]byte("a"), []byte("b"), []byte("c")), binTrailer)),
			out: string(cat(hdr, binTuple([]byte("a"), []byte("b"), []byte("c")), binTrailer))},
		{name: "empty", opts: []Option{binOpt}, in: "", err: "22P04|COPY file signature not recognized||"},
		{name: "bad signature", opts: []Option{binOpt}, in: "PGCOPY\n\xff\r\n\x01", err: "22P04|COPY file signature not recognized||"},
		{name: "missing flags", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x00",
			err: "22P04|invalid COPY file header (missing flags)||"},
		{name: "oids", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x01\x00\x00\x00\x00\x00\x00",
			err: "22P04|invalid COPY file header (WITH OIDS)||"},
		{name: "critical flags", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x02\x00\x00\x00\x00\x00\x00",
			err: "22P04|unrecognized critical flags in COPY file header||"},
		{name: "missing length", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x00\x00\x00\x00",
			err: "22P04|invalid COPY file header (missing length)||"},
		{name: "negative length", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x00\x00\x00\xff\xff\xff\xff",
			err: "22P04|invalid COPY file header (missing length)||"},
		{name: "short extension", opts: []Option{binOpt}, in: string(binarySignature) + "\x00\x00\x00\x00\x00\x00\x00\x05abc",
			err: "22P04|invalid COPY file header (wrong length)||"},
		{name: "field count", opts: []Option{binOpt}, in: string(cat(hdr, binTuple([]byte("a")))),
			err: "22P04|row field count is 1, expected 3||COPY t, line 1"},
		{name: "short field", opts: []Option{binOpt}, in: string(cat(hdr, binTuple([]byte("a"), []byte("b"), []byte("cdef"))[:15])),
			err: "22P04|unexpected EOF in COPY data||COPY t, line 1, column c"},
		{name: "short length", opts: []Option{binOpt}, in: string(cat(hdr, binTuple([]byte("a"))[:4])),
			err: "22P04|row field count is 1, expected 3||COPY t, line 1"},
		{name: "short length 2", opts: []Option{binOpt}, in: string(cat(hdr, binTuple([]byte("a"), nil, nil)[:9])),
			err: "22P04|unexpected EOF in COPY data||COPY t, line 1, column b"},
		{name: "invalid size", opts: []Option{binOpt}, in: string(cat(hdr, []byte{0, 3, 0xff, 0xff, 0xff, 0xfe})),
			err: "22P04|invalid field size||COPY t, line 1, column a"},
		{name: "data after trailer", opts: []Option{binOpt}, in: string(cat(hdr, binTrailer, []byte("x"))),
			err: "22P04|received copy data after EOF marker||COPY t, line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

func TestOut(t *testing.T) {
	cases := []rwCase{
		{name: "text", dir: Out, in: `\\x616263` + "\t\\N\t" + `\\x` + "\n",
			out: "abc\t\\N\t\n", grid: [][]*string{row(sp("abc"), nil, sp(""))}},
		{name: "text escaping", dir: Out, ncols: 1, in: hx("a\tb\\c\nd\re\b\f\v\x01|") + "\n",
			out: `a\tb\\c\nd\re\b\f\v` + "\x01|\n"},
		{name: "text escaping delimiter", dir: Out, ncols: 1, opts: []Option{opt("delimiter", "|")},
			in: hx("a\tb|") + "\n", out: `a\tb\|` + "\n"},
		{name: "text control delimiter", dir: Out, ncols: 1, opts: []Option{opt("delimiter", "\x01")},
			in: hx("a\x01b\x02") + "\n", out: "a\\\x01b\x02\n"},
		{name: "bytea escape format", dir: Out, ncols: 1, in: `\\000ab\\\\\\001` + "\n",
			grid: [][]*string{row(sp("\x00ab\\\x01"))}, out: "\x00ab\\\\\x01\n"},
		{name: "unprotected", dir: Out, prot: []bool{true, false, false}, in: hx("x") + "\t\\\\x41\t\\N\n",
			out: "x\t\\\\x41\t\\N\n"},
		{name: "header", dir: Out, opts: []Option{flag("header")}, in: "a\tb\tc\n" + hx("1") + "\t" + hx("2") + "\t" + hx("3") + "\n",
			out: "a\tb\tc\n1\t2\t3\n"},
		{name: "csv", dir: Out, opts: []Option{csvOpt}, in: cx("a,b") + `,"` + cx("x") + `",` + "\n",
			out: `"a,b",x,` + "\n", grid: [][]*string{row(sp("a,b"), sp("x"), nil)}},
		{name: "csv quoting", dir: Out, opts: []Option{csvOpt}, in: cx(`q"q`) + "," + cx("") + "," + cx("l\nl") + "\n",
			out: `"q""q","","l` + "\n" + `l"` + "\n"},
		{name: "csv escape", dir: Out, opts: []Option{csvOpt, opt("escape", `\`), opt("null", "N")},
			in: cx(`q"\`) + "," + cx("N") + ",N\n", out: `"q\"\\","N",N` + "\n"},
		{name: "csv single column marker", dir: Out, ncols: 1, opts: []Option{csvOpt}, in: cx(`\.`) + "\n", out: `"\."` + "\n"},
		{name: "binary", dir: Out, opts: []Option{binOpt},
			in:  string(cat(binHeader(nil), binTuple([]byte("a"), nil, []byte("c")), binTrailer)),
			out: string(cat(binHeader(nil), binTuple([]byte("a"), nil, []byte("c")), binTrailer))},
		{name: "bad hex", dir: Out, ncols: 1, in: `\\x6g` + "\n",
			err: `22023|invalid hexadecimal digit: "g"||COPY t, line 1, column a`},
		{name: "odd hex", dir: Out, ncols: 1, in: `\\x616` + "\n",
			err: `22023|invalid hexadecimal data: odd number of digits||COPY t, line 1, column a`},
		{name: "bad escape bytea", dir: Out, ncols: 1, in: `\\9` + "\n",
			err: `22P02|invalid input syntax for type bytea||COPY t, line 1, column a`},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

// TestTransformError: the FieldFunc's error comes back wrapped, with the
// context PostgreSQL gives an input function's error.
func TestTransformError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		opts []Option
		in   string
		ctx  string
	}{
		{nil, "a\tb\\tc\tc\n", `COPY t, line 1, column b: "b	c"`},
		{[]Option{csvOpt}, "x,y,z\na,\"b\nc\",c\n", "COPY t, line 3, column b: \"b\nc\""},
		{[]Option{binOpt}, string(cat(binHeader(nil), binTuple([]byte("a"), []byte("b"), nil))), `COPY t, line 1, column b`},
	} {
		o, err := ParseOptions(tc.opts, true)
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRewriter(Config{Options: o, Table: "t", Columns: cols(3), Protected: []bool{false, true, false},
			Transform: func(dst []byte, col int, v []byte) ([]byte, error) {
				if string(v) == "y" {
					return dst, nil
				}
				return dst, boom
			}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = feed(r, [][]byte{[]byte(tc.in)})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, boom) || e.Context != tc.ctx || e.Column != "b" || e.Code != "" {
			t.Errorf("%q: got %#v", tc.in, err)
		}
		// The Rewriter stays failed.
		if _, err2 := r.Write(nil, []byte("x")); err2 != err {
			t.Errorf("after error: %v", err2)
		}
	}
}

func TestMaxRow(t *testing.T) {
	for _, o := range []Options{DefaultOptions(Text), DefaultOptions(CSV), DefaultOptions(Binary)} {
		r, err := NewRewriter(Config{Options: o, Table: "t", Columns: cols(1), MaxRow: 100})
		if err != nil {
			t.Fatal(err)
		}
		var in []byte
		if o.Format == Binary {
			in = cat(binHeader(nil), binTuple(make([]byte, 200)))
		} else {
			in = []byte(strings.Repeat("x", 200) + "\n")
		}
		var err2 error
		for i := 0; i < len(in) && err2 == nil; i += 10 {
			_, err2 = r.Write(nil, in[i:min(i+10, len(in))])
		}
		var e *Error
		if !errors.As(err2, &e) || e.Code != CodeProgramLimitExceeded || !e.Own {
			t.Errorf("%v: got %v", o.Format, err2)
		}
	}
}

// TestMaxRowBinaryTruncated: a binary field claiming more than MaxRow bytes
// is waited for as PostgreSQL waits: data that ends first is PostgreSQL's
// "unexpected EOF in COPY data" (the mark of a corrupted length word), and a
// claim PostgreSQL could never allocate fails at once, as there.
func TestMaxRowBinaryTruncated(t *testing.T) {
	newR := func() *Rewriter {
		r, err := NewRewriter(Config{Options: DefaultOptions(Binary), Table: "t", Columns: cols(2), MaxRow: 100})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tuple := binTuple([]byte("a"), make([]byte, 300))
	in := cat(binHeader(nil), tuple[:len(tuple)-250]) // 50 of the 300 bytes
	var chunks [][]byte
	for i := 0; i < len(in); i += 7 {
		chunks = append(chunks, in[i:min(i+7, len(in))])
	}
	_, err := feed(newR(), chunks)
	if errString(err) != `22P04|unexpected EOF in COPY data||COPY t, line 1, column b` {
		t.Errorf("truncated: %v", errString(err))
	}
	huge := cat(binHeader(nil), []byte{0, 2, 0, 0, 0, 1, 'a', 0x40, 0, 0, 0})
	r := newR()
	_, err = r.Write(nil, huge)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeProgramLimitExceeded {
		t.Errorf("1 GiB claim: %v", err)
	}
}

func TestZeroColumns(t *testing.T) {
	r, err := NewRewriter(Config{Options: DefaultOptions(Text), Table: "t"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := feed(r, [][]byte{[]byte("\n\n")})
	if err != nil || string(out) != "\n\n" || r.Rows() != 2 {
		t.Fatalf("%q %v %d", out, err, r.Rows())
	}
	r, _ = NewRewriter(Config{Options: DefaultOptions(Text), Table: "t"})
	_, err = feed(r, [][]byte{[]byte("x\n")})
	if errString(err) != `22P04|extra data after last expected column||COPY t, line 1: "x"` {
		t.Fatal(err)
	}
}

func TestForceUnknownColumn(t *testing.T) {
	o, _ := ParseOptions([]Option{csvOpt, list("force_null", "zz")}, true)
	_, err := NewRewriter(Config{Options: o, Table: "t", Columns: cols(2)})
	if errString(err) != `42P10|FORCE_NULL column "zz" not referenced by COPY||` {
		t.Fatal(err)
	}
}

// TestLongRows: a row much longer than a chunk, fed in small chunks, in
// every format and both directions: the output is right and the work
// linear (a quadratic rescan would take minutes here).
func TestLongRows(t *testing.T) {
	big := strings.Repeat("x\\y,\"z\r\n", 1<<17) // 1 MiB of bytes that need escaping
	for _, f := range []Format{Text, CSV, Binary} {
		o := DefaultOptions(f)
		// The client's data: small, big, small.
		var in []byte
		switch f {
		case Text:
			esc := appendTextEscaped(nil, []byte(big), '\t', &textPlainTab)
			in = []byte("a\t" + string(esc) + "\tc\n")
		case CSV:
			r := &Rewriter{o: o, ncols: 3, delim: ',', quote: '"', escape: '"'}
			in = append([]byte("a,"), r.appendCSV(nil, []byte(big), false)...)
			in = append(in, ",c\n"...)
		case Binary:
			in = cat(binHeader(nil), binTuple([]byte("a"), []byte(big), []byte("c")), binTrailer)
		}
		for _, chunk := range []int{1000, 65536} {
			var cs [][]byte
			for rest := in; len(rest) > 0; {
				n := min(len(rest), chunk)
				cs = append(cs, rest[:n])
				rest = rest[n:]
			}
			rIn, cIn := newCapture(t, o, In, 3, []bool{false, true, false})
			out, err := feed(rIn, cs)
			if err != nil {
				t.Fatalf("%v in: %v", f, err)
			}
			if g := cIn.grid(); len(g) != 1 || g[0][1] == nil || *g[0][1] != big {
				t.Fatalf("%v in: value not seen whole", f)
			}
			// And back: the server's bytea out again.
			rOut, cOut := newCapture(t, o, Out, 3, []bool{false, true, false})
			back, err := feed(rOut, [][]byte{out})
			if err != nil {
				t.Fatalf("%v out: %v", f, err)
			}
			if g := cOut.grid(); len(g) != 1 || *g[0][1] != big {
				t.Fatalf("%v out: value differs", f)
			}
			if string(back) != string(in) {
				t.Fatalf("%v: round trip differs", f)
			}
		}
	}
}

var textPlainTab = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '\\'
	}
	return t
}()

// TestNoAllocs: in steady state, Write allocates nothing, whatever the
// format and direction, with rows cut across chunks.
func TestNoAllocs(t *testing.T) {
	for _, f := range []Format{Text, CSV, Binary} {
		stream := benchStream(f)
		cs := chunks64k(stream)
		for _, dir := range []Direction{In, Out} {
			cfg := Config{Options: DefaultOptions(f), Direction: In, Table: "t",
				Columns: cols(5), Protected: benchProt, Transform: benchFieldIn}
			data := cs
			if dir == Out {
				r, _ := NewRewriter(cfg)
				out, err := feed(r, [][]byte{stream})
				if err != nil {
					t.Fatal(err)
				}
				data = chunks64k(out)
				cfg.Direction, cfg.Transform = Out, benchFieldOut
			}
			r, err := NewRewriter(cfg)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 0, 1<<20)
			run := func() {
				if err := r.Reset(cfg); err != nil {
					t.Fatal(err)
				}
				for _, c := range data {
					if out, err = r.Write(out[:0], c); err != nil {
						t.Fatal(err)
					}
				}
				if out, err = r.Close(out[:0]); err != nil {
					t.Fatal(err)
				}
			}
			run() // warm the buffers
			if n := testing.AllocsPerRun(5, run); n != 0 {
				t.Errorf("%v %v: %v allocations per stream of %d rows", f, dir, n, benchRows)
			}
			if cap(r.pend) > 1<<20 {
				t.Errorf("%v %v: pending buffer grew to %d", f, dir, cap(r.pend))
			}
		}
	}
}
