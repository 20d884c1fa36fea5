package copyfmt

import (
	"errors"
	"strconv"
	"unsafe"
)

// Direction says which way a COPY stream flows.
type Direction uint8

const (
	// In is COPY … FROM STDIN: client → server. Protected fields arrive as
	// the logical value and leave as bytea.
	In Direction = iota
	// Out is COPY … TO STDOUT: server → client. Protected fields arrive as
	// bytea and leave as the logical value.
	Out
)

// FieldFunc transforms the value of one protected field; it is not called
// for NULL.
//
// In (FROM): value is the field as PostgreSQL would hand it to the logical
// type's input function: in text and CSV the de-escaped / de-quoted text, in
// binary the client's binary representation of the logical type. The result
// is the raw bytea to store (the ciphertext); the Rewriter encodes it for
// the format.
//
// Out (TO): value is the raw bytea the server sent (decoded from its hex or
// escape text form in text and CSV). The result is the logical value in the
// form the format carries: its text output for text and CSV (the Rewriter
// escapes or quotes it), its binary representation for binary.
//
// col is the field's index in the COPY column list. value is valid only
// during the call and must not be modified. The result must be appended to
// dst, and dst with it returned (append may move it): dst is a buffer the
// Rewriter owns (in binary, the output itself, so the value is written
// once; in text and CSV a scratch buffer it reuses, so that steady state
// allocates nothing). On error the result is ignored.
type FieldFunc func(dst []byte, col int, value []byte) ([]byte, error)

// ErrNull, returned by a FieldFunc of COPY TO, writes the field as NULL
// (pgcloak: a value whose subject was forgotten).
var ErrNull = errors.New("copyfmt: the field is NULL")

// DefaultMaxRow is the default bound on one buffered row (Config.MaxRow).
const DefaultMaxRow = 64 << 20

// Config describes one COPY stream. The Rewriter keeps its slices (Columns,
// Protected, the Options lists): do not change them while it is in use.
type Config struct {
	Options   Options
	Direction Direction
	// Table is the relation name PostgreSQL prints in error contexts
	// ("COPY <Table>, line 3: …"): the bare relname, not schema-qualified.
	Table string
	// Columns are the names of the columns of the COPY column list, in
	// order (all columns of the table when the statement names none). A
	// row has len(Columns) fields.
	Columns []string
	// Protected[i] sends field i through Transform. nil: none is.
	Protected []bool
	Transform FieldFunc
	// MaxRow bounds the bytes of one row (a line with its terminator, or a
	// tuple): a longer row is an error (54000, Error.Own), whether or not it
	// had to be buffered, so that the outcome does not depend on how the
	// stream was cut. It bounds the memory a Rewriter holds (about MaxRow
	// plus 16 KiB). 0 means DefaultMaxRow.
	MaxRow int
	// Row, when set (COPY FROM only), receives field RowField of every data
	// row before its protected fields are transformed.
	Row      RowFunc
	RowField int
	// Encoding of the data: "UTF8" (or "") or "SQL_ASCII". For UTF8, COPY
	// FROM data is checked as PostgreSQL checks it (invalid byte sequences,
	// NUL), so that protected fields — which the server never sees as text
	// — fail the same way. Other encodings are refused unless Converted.
	Encoding string
	// Converted: Encoding is one whose non-ASCII bytes are all ≥ 0x80 and
	// Transform converts (and checks) the protected fields from it; the
	// rest of the data is the server's to check.
	Converted bool
}

type eolType uint8

const (
	eolUnknown eolType = iota
	eolNL
	eolCR
	eolCRNL
)

// status is what step did with the bytes it was given.
type status uint8

const (
	needMore status = iota // the unit (line, tuple, header) is incomplete
	unitDone               // one unit consumed
	finished               // end of data: marker, trailer, or EOF
)

// scanStatus is how a line ended.
type scanStatus uint8

const (
	scanMore   scanStatus = iota // no end yet
	lineDone                     // a line terminator
	lineEOF                      // the end of the data
	lineMarker                   // the end-of-copy marker \.
)

const pieceSize = 16 << 10

type span struct {
	start, end int
	flag       bool // text: holds a backslash; CSV: holds a quote
}

// A Rewriter transforms a COPY data stream row by row. Write takes the
// stream in pieces of any size, cut anywhere (the payloads of CopyData
// messages); every complete row is appended to the output at once, the
// protected fields rewritten through the FieldFunc and everything else —
// other fields, delimiters, quoting, escapes, line ends, header line, binary
// header — copied byte for byte. An incomplete row is kept (copied) until
// the rest arrives; memory is bounded by Config.MaxRow, not by the stream.
//
// The stream is parsed exactly as PostgreSQL 15's COPY FROM parses it
// (copyfromparse.c), with its errors; see the package documentation.
//
// A Rewriter is not safe for concurrent use. After an error every call
// returns the same error.
type Rewriter struct {
	o         Options
	in        bool
	binary    bool
	csv       bool
	utf8      bool // the data is UTF-8
	checkUTF8 bool // verify it (COPY FROM)
	table     string
	columns   []string
	ncols     int
	prot      []bool
	anyProt   bool
	// force flags per column; nil when the option is absent
	forceNull, forceNotNull, forceQuote []bool
	fn                                  FieldFunc
	maxRow                              int
	rowFn                               RowFunc
	rowField                            int

	delim, quote, escape byte
	lescape              byte // the line reader's escape: 0 when equal to quote
	null                 []byte
	hexPlainCSV          bool      // CSV: `\x<hex>` never needs quotes
	fieldSpec            [256]bool // text: delimiter and \; CSV: delimiter and quote
	textPlain            [256]bool // text output: bytes that never need escaping

	// parser state
	eol        eolType
	lineno     int64 // PostgreSQL's cur_lineno
	inUnit     bool  // a line or tuple has been started (lineno counted)
	pos        int   // where scanning resumes, from the start of the unit
	inQuote    bool
	lastWasEsc bool
	header     bool  // the header line is still to come
	done       bool  // end marker or trailer seen
	bstate     uint8 // binary: bsHeader, bsExt, bsTuple
	extLeft    int64
	bfield     int
	need       int // binary: bytes still missing from the unit
	// skip (binary): a field claims more bytes than a row may hold. Like
	// PostgreSQL, wait for them, counting without keeping: if they all
	// arrive the row is too long (54000); if the data ends first it is
	// skipEOF, PostgreSQL's "unexpected EOF in COPY data".
	skip    int
	skipEOF *Error
	vok     int // bytes from the start of the unit known to be valid UTF-8
	err     error
	rows    int64

	pend   []byte // the incomplete unit
	cur    []byte // the buffer being parsed (for the FieldFunc alias check)
	fields []span
	val    []byte // de-escaped / de-quoted value
	raw    []byte // decoded bytea (Out), hex text (In, CSV)
	tmp    []byte // FieldFunc output
	rowVal []byte // RowFunc's de-escaped value
}

const (
	bsHeader uint8 = iota
	bsExt
	bsTuple
)

// NewRewriter returns a Rewriter for the stream c describes.
func NewRewriter(c Config) (*Rewriter, error) {
	r := new(Rewriter)
	if err := r.Reset(c); err != nil {
		return nil, err
	}
	return r, nil
}

// Reset makes r ready for a new stream, keeping its buffers.
func (r *Rewriter) Reset(c Config) error {
	o := c.Options
	ncols := len(c.Columns)
	if c.Protected != nil && len(c.Protected) != ncols {
		return &Error{Code: "XX000", Own: true, Message: "copyfmt: Protected has " +
			strconv.Itoa(len(c.Protected)) + " entries for " + strconv.Itoa(ncols) + " columns"}
	}
	switch c.Encoding {
	case "", "UTF8":
		r.utf8 = true
	case "SQL_ASCII":
		r.utf8 = false
	default:
		if c.Converted {
			r.utf8 = false
			break
		}
		return &Error{Code: CodeFeatureNotSupported, Own: true,
			Message: "cannot copy " + c.Table + " in encoding " + c.Encoding + ": pgcloak does not convert this encoding for protected columns",
			Hint:    "Use ENCODING 'UTF8' (and client_encoding UTF8), or convert the file first."}
	}
	switch o.Format {
	case Text, CSV:
		if o.Delimiter == 0 || o.Delimiter == '\n' || o.Delimiter == '\r' ||
			(o.Format == CSV && (o.Quote == 0 || o.Escape == 0 || o.Quote == o.Delimiter)) {
			return &Error{Code: CodeInvalidParameterValue, Own: true,
				Message: "copyfmt: invalid options (use ParseOptions or DefaultOptions)"}
		}
	case Binary:
	default:
		return &Error{Code: CodeInvalidParameterValue, Own: true, Message: "copyfmt: invalid format"}
	}

	*r = Rewriter{
		pend: r.pend[:0], fields: r.fields[:0], val: r.val[:0], raw: r.raw[:0], tmp: r.tmp[:0], rowVal: r.rowVal[:0],
		prot: r.prot[:0], null: r.null[:0],
		utf8: r.utf8,
	}
	r.o = o
	r.in = c.Direction == In
	r.binary = o.Format == Binary
	r.csv = o.Format == CSV
	r.checkUTF8 = r.utf8 && r.in
	r.table = c.Table
	r.columns = c.Columns
	r.ncols = ncols
	r.fn = c.Transform
	if c.Row != nil && c.Direction == In && c.RowField >= 0 && c.RowField < ncols {
		r.rowFn, r.rowField = c.Row, c.RowField
	}
	r.maxRow = c.MaxRow
	if r.maxRow <= 0 {
		r.maxRow = DefaultMaxRow
	}
	for i := 0; i < ncols; i++ {
		p := c.Protected != nil && c.Protected[i]
		r.prot = append(r.prot, p)
		r.anyProt = r.anyProt || p
	}
	if r.anyProt && r.fn == nil {
		return &Error{Code: "XX000", Own: true, Message: "copyfmt: protected columns without a Transform"}
	}
	var err error
	if r.forceNotNull, err = r.resolve("FORCE_NOT_NULL", o.ForceNotNull); err != nil {
		return err
	}
	if r.forceNull, err = r.resolve("FORCE_NULL", o.ForceNull); err != nil {
		return err
	}
	if r.forceQuote, err = r.resolve("FORCE_QUOTE", o.ForceQuote); err != nil {
		return err
	}
	if o.ForceQuoteAll {
		r.forceQuote = allTrue(ncols)
	}
	if r.binary {
		r.bstate = bsHeader
		return nil
	}
	r.delim = o.Delimiter
	r.null = append(r.null, o.Null...)
	r.header = o.Header
	if r.csv {
		r.quote, r.escape = o.Quote, o.Escape
		if r.escape != r.quote {
			r.lescape = r.escape
		}
		r.fieldSpec[r.delim], r.fieldSpec[r.quote] = true, true
		r.hexPlainCSV = true
		for _, c := range []byte(`0123456789abcdefx\`) {
			if c == r.delim || c == r.quote {
				r.hexPlainCSV = false
			}
		}
	} else {
		r.fieldSpec[r.delim], r.fieldSpec['\\'] = true, true
		for c := range r.textPlain {
			r.textPlain[c] = c >= 0x20 && c != '\\' && c != int(r.delim)
		}
	}
	return nil
}

// resolve maps the column names of a FORCE_* option to flags, with
// PostgreSQL's error for a column the COPY does not name.
func (r *Rewriter) resolve(opt string, names []string) ([]bool, error) {
	if names == nil {
		return nil, nil
	}
	flags := make([]bool, r.ncols)
	for _, n := range names {
		k := -1
		for i, c := range r.columns {
			if c == n {
				k = i
				break
			}
		}
		if k < 0 {
			return nil, &Error{Code: CodeInvalidColumnRef,
				Message: opt + ` column "` + n + `" not referenced by COPY`}
		}
		flags[k] = true
	}
	return flags, nil
}

func allTrue(n int) []bool {
	p := make([]bool, n)
	for i := range p {
		p[i] = true
	}
	return p
}

// Rows returns the number of data rows (lines after the header, binary
// tuples) written so far.
func (r *Rewriter) Rows() int64 { return r.rows }

// Done reports whether the end of the data was seen in the stream itself:
// the text-format end marker \. or the binary trailer. Data after it is
// ignored (text, as PostgreSQL does) or an error (binary).
func (r *Rewriter) Done() bool { return r.done }

// Write feeds the next piece of the stream (one CopyData payload) and
// appends every row it completes to dst. chunk is not retained: an
// incomplete row at its end is copied. dst must not overlap chunk.
//
// On error, the returned slice holds dst plus the rows completed before
// the bad one; the session should abandon the COPY (CopyFail upstream on
// FROM) and report the error.
func (r *Rewriter) Write(dst, chunk []byte) ([]byte, error) {
	if r.err != nil {
		return dst, r.err
	}
	off := 0
	for off < len(chunk) {
		if r.skip > 0 {
			k := min(r.skip, len(chunk)-off)
			r.skip -= k
			off += k
			if r.skip == 0 {
				return r.fail(dst, r.errTooLong())
			}
			continue
		}
		if r.done {
			return r.afterEnd(dst, chunk[off:])
		}
		if len(r.pend) == 0 {
			// Rows wholly inside the chunk are parsed where they lie.
			b := chunk[off:]
			r.cur = b
			out, n, st, err := r.step(dst, b, false)
			if err != nil {
				return r.fail(out, err)
			}
			dst = out
			if r.skip > 0 {
				return dst, nil // all of b belongs to the oversized field
			}
			if st == needMore {
				r.pend = append(r.pend, b...)
				return dst, nil
			}
			off += n
			continue
		}
		// A row is pending: extend it piece by piece until it completes.
		k := min(len(chunk)-off, max(pieceSize, r.need))
		old := len(r.pend)
		r.pend = append(r.pend, chunk[off:off+k]...)
		off += k
		r.cur = r.pend
		out, n, st, err := r.step(dst, r.pend, false)
		if err != nil {
			return r.fail(out, err)
		}
		dst = out
		if r.skip > 0 {
			r.releasePend() // all of it belongs to the oversized field
			continue
		}
		if st == needMore {
			continue
		}
		if n >= old {
			// The rest of pend came from the chunk: go on from there.
			off -= len(r.pend) - n
			r.releasePend()
		} else {
			r.pend = r.pend[:copy(r.pend, r.pend[n:])]
		}
	}
	return dst, nil
}

// Close ends the stream (CopyDone) and appends the last row, if the data
// ended without a line terminator. An incomplete row is an error, as in
// PostgreSQL ("unterminated CSV quoted field", "missing data for column",
// "unexpected EOF in COPY data", …).
func (r *Rewriter) Close(dst []byte) ([]byte, error) {
	if r.err != nil {
		return dst, r.err
	}
	if r.skip > 0 {
		return r.fail(dst, r.skipEOF)
	}
	if !r.done {
		b := r.pend
		for {
			r.cur = b
			out, n, st, err := r.step(dst, b, true)
			if err != nil {
				return r.fail(out, err)
			}
			dst = out
			b = b[n:]
			if st == finished {
				break
			}
			if st == needMore { // cannot happen at the end of the data
				return r.fail(dst, &Error{Code: "XX000", Own: true, Message: "copyfmt: incomplete row at end of data"})
			}
		}
	}
	r.done = true
	r.releasePend()
	return dst, nil
}

func (r *Rewriter) fail(dst []byte, err error) ([]byte, error) {
	r.err = err
	return dst, err
}

func (r *Rewriter) releasePend() {
	if cap(r.pend) > 1<<20 {
		r.pend = nil
	} else {
		r.pend = r.pend[:0]
	}
}

// afterEnd handles data after the end of data: ignored in text and CSV
// (PostgreSQL drains it), an error in binary.
func (r *Rewriter) afterEnd(dst, rest []byte) ([]byte, error) {
	if r.binary && len(rest) > 0 {
		return r.fail(dst, r.errLine(CodeBadCopyFileFormat, "received copy data after EOF marker", ""))
	}
	return dst, nil
}

func (r *Rewriter) step(dst, b []byte, eof bool) ([]byte, int, status, error) {
	if r.binary {
		return r.stepBinary(dst, b, eof)
	}
	return r.stepText(dst, b, eof)
}

// call runs the FieldFunc on field col.
func (r *Rewriter) call(col int, v []byte) ([]byte, error) {
	out, err := r.fn(r.tmp[:0], col, v)
	if err == ErrNull {
		return nil, err
	}
	if err != nil {
		e := r.errColumn("", "", col, v, r.in && !r.binary)
		e.Err = err
		return nil, e
	}
	// Keep the grown buffer for the next call, unless it is not ours.
	if cap(out) > cap(r.tmp) && !overlaps(out, r.cur) && !overlaps(out, r.val) && !overlaps(out, r.raw) {
		r.tmp = out[:0]
	}
	return out, nil
}

// overlaps reports whether the arrays behind a and b share memory.
func overlaps(a, b []byte) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return false
	}
	a0 := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 < b0+uintptr(cap(b)) && b0 < a0+uintptr(cap(a))
}
