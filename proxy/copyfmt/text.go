package copyfmt

import "bytes"

// Text and CSV COPY data: finding lines and fields, and rewriting the protected fields.

// stepText reads one line of text or CSV data from b (which starts at the
// line's first byte) and writes it out.
func (r *Rewriter) stepText(dst, b []byte, eof bool) ([]byte, int, status, error) {
	if !r.inUnit {
		if len(b) == 0 {
			if eof {
				return dst, 0, finished, nil
			}
			return dst, 0, needMore, nil
		}
		r.inUnit = true
		r.lineno++
		r.pos, r.inQuote, r.lastWasEsc = 0, false, false
	}
	// PostgreSQL verifies the encoding of the data before its reader sees
	// it, and fails when the reader reaches (or looks ahead to) the first
	// invalid byte: scan only the valid prefix.
	lim, bad := len(b), false
	if r.checkUTF8 && r.vok < len(b) {
		if k := invalidUTF8(b[r.vok:]); k < 0 {
			r.vok = len(b)
		} else {
			r.vok += k
			lim = r.vok
			// A short tail may be a character cut by the chunk end.
			bad = eof || len(b)-lim >= 4
		}
	}
	var (
		st        scanStatus
		end, next int
		err       error
	)
	if r.csv {
		st, end, next, err = r.scanCSV(b[:lim], eof && lim == len(b))
	} else {
		st, end, next, err = r.scanText(b[:lim], eof && lim == len(b))
	}
	if err != nil {
		return dst, 0, needMore, err
	}
	if st == scanMore {
		if bad {
			return dst, 0, needMore, r.errLine(CodeCharacterNotInRepertoire, encodingMessage(b[lim:]), "")
		}
		if r.pos > r.maxRow {
			return dst, 0, needMore, r.errTooLong()
		}
		return dst, 0, needMore, nil
	}
	if next > r.maxRow {
		return dst, 0, needMore, r.errTooLong()
	}
	r.inUnit, r.pos = false, 0
	r.vok = max(r.vok-next, 0)
	line := b[:end]
	final := st != lineDone
	if st == lineMarker {
		r.done = true
	}
	switch {
	case r.header:
		// Forwarded as it is; with HEADER MATCH the server checks it.
		r.header = false
		dst = append(dst, b[:next]...)
		if final {
			dst = dst[:len(dst)-(next-end)] // not the marker
		}
	case final && len(line) == 0:
		// EOF or \. at the start of a line: no row.
	default:
		var term []byte
		if !final {
			term = b[end:next]
		}
		dst, err = r.row(dst, line, term)
		if err != nil {
			return dst, 0, needMore, err
		}
	}
	if final {
		return dst, next, finished, nil
	}
	return dst, next, unitDone, nil
}

// scanErr is an error found while reading a line.
func (r *Rewriter) scanErr(msg, hint string) error {
	return r.errLine(CodeBadCopyFileFormat, msg, hint)
}

// scanText finds the end of the text-format line that starts at b[0]
// (CopyReadLineText, non-CSV). It returns the end of the line's content
// and the start of the next line.
func (r *Rewriter) scanText(b []byte, eof bool) (scanStatus, int, int, error) {
	i := r.pos
	// Next '\n', and next '\\' and '\r' before it; each found with one
	// SIMD search and reused until passed, so that the scan stays linear.
	nl, bs, cr := -1, -1, -1
	for {
		if nl < i {
			nl = indexIn(b, i, len(b), '\n')
		}
		if bs < i {
			bs = indexIn(b, i, nl, '\\')
		}
		if cr < i {
			cr = indexIn(b, i, nl, '\r')
		}
		i = min(nl, bs, cr)
		if i >= len(b) {
			if !eof {
				r.pos = i
				return scanMore, 0, 0, nil
			}
			return lineEOF, len(b), len(b), nil
		}
		switch b[i] {
		case '\n':
			return r.lf(b, i)
		case '\r':
			return r.cr(b, i, eof)
		}
		// A backslash: it escapes the next byte, or starts the end marker.
		if i+1 >= len(b) {
			if !eof {
				r.pos = i
				return scanMore, 0, 0, nil
			}
			return lineEOF, len(b), len(b), nil // a backslash just before EOF is data
		}
		if b[i+1] == '.' {
			st, next, err := r.marker(b, i, eof)
			if err != nil {
				return 0, 0, 0, err
			}
			if st == scanMore {
				r.pos = i
				return scanMore, 0, 0, nil
			}
			return lineMarker, i, next, nil
		}
		i += 2
	}
}

// indexIn returns the position of the first c in b[i:end], or end.
func indexIn(b []byte, i, end int, c byte) int {
	if k := bytes.IndexByte(b[i:end], c); k >= 0 {
		return i + k
	}
	return end
}

var eolBytes = [2][]byte{{'\r'}, {'\n'}}

// scanCSV finds the end of the CSV line that starts at b[0]
// (CopyReadLineText, CSV): line ends inside quotes are data.
func (r *Rewriter) scanCSV(b []byte, eof bool) (scanStatus, int, int, error) {
	i := r.pos
	nl, q, cr := -1, -1, -1 // as in scanText
	for {
		if i > 0 { // the first byte takes the slow path (\. check)
			if !r.inQuote {
				// Outside quotes only line ends and quotes matter.
				if nl < i {
					nl = indexIn(b, i, len(b), '\n')
				}
				if q < i {
					q = indexIn(b, i, nl, r.quote)
				}
				if cr < i {
					cr = indexIn(b, i, nl, '\r')
				}
				i = min(nl, q, cr)
			} else {
				// Inside quotes: skip to the next quote or escape, counting
				// the physical lines on the way as PostgreSQL does.
				j := indexIn(b, i, len(b), r.quote)
				if r.lescape != 0 {
					j = indexIn(b, i, j, r.lescape)
				}
				if j == len(b) && j > i && b[j-1] == '\r' && !eof {
					j-- // a CR needs the next byte: come back to it
				}
				if j > i {
					eol := eolBytes[0]
					if r.eol == eolNL {
						eol = eolBytes[1]
					}
					r.lineno += int64(bytes.Count(b[i:j], eol))
					r.lastWasEsc = false
					i = j
				}
			}
		}
		if i >= len(b) {
			if !eof {
				r.pos = i
				return scanMore, 0, 0, nil
			}
			return lineEOF, len(b), len(b), nil
		}
		c := b[i]
		// Look ahead before any state changes, so that waiting for more
		// data and coming back here is safe.
		if !eof && (c == '\\' || c == '\r') && i+1 >= len(b) {
			r.pos = i
			return scanMore, 0, 0, nil
		}
		if c == '\\' && i == 0 && len(b) >= 2 && b[1] == '.' {
			// \. alone on a line ends the data. (The marker does not depend
			// on the quote state, so it is checked before that changes.)
			st, next, err := r.marker(b, 0, eof)
			if err != nil {
				return 0, 0, 0, err
			}
			switch st {
			case scanMore:
				return scanMore, 0, 0, nil
			case lineMarker:
				return lineMarker, 0, next, nil
			}
		}
		if r.inQuote && c == r.lescape {
			r.lastWasEsc = !r.lastWasEsc
		}
		if c == r.quote && !r.lastWasEsc {
			r.inQuote = !r.inQuote
		}
		if c != r.lescape {
			r.lastWasEsc = false
		}
		if r.inQuote {
			// PostgreSQL counts the physical lines of a quoted value.
			if r.eol == eolNL && c == '\n' || r.eol != eolNL && c == '\r' {
				r.lineno++
			}
		} else {
			switch c {
			case '\r':
				return r.cr(b, i, eof)
			case '\n':
				return r.lf(b, i)
			}
		}
		i++
	}
}

// cr handles a carriage return at b[i] outside quotes.
func (r *Rewriter) cr(b []byte, i int, eof bool) (scanStatus, int, int, error) {
	switch r.eol {
	case eolUnknown, eolCRNL:
		if i+1 >= len(b) && !eof {
			r.pos = i
			return scanMore, 0, 0, nil
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			r.eol = eolCRNL
			return lineDone, i, i + 2, nil
		}
		if r.eol == eolCRNL {
			return 0, 0, 0, r.crError()
		}
		r.eol = eolCR
	case eolNL:
		return 0, 0, 0, r.crError()
	}
	return lineDone, i, i + 1, nil
}

func (r *Rewriter) crError() error {
	if r.csv {
		return r.scanErr("unquoted carriage return found in data", "Use quoted CSV field to represent carriage return.")
	}
	return r.scanErr("literal carriage return found in data", `Use "\r" to represent carriage return.`)
}

// lf handles a line feed at b[i] outside quotes.
func (r *Rewriter) lf(b []byte, i int) (scanStatus, int, int, error) {
	if r.eol == eolCR || r.eol == eolCRNL {
		if r.csv {
			return 0, 0, 0, r.scanErr("unquoted newline found in data", "Use quoted CSV field to represent newline.")
		}
		return 0, 0, 0, r.scanErr("literal newline found in data", `Use "\n" to represent newline.`)
	}
	r.eol = eolNL
	return lineDone, i, i + 1, nil
}

// marker checks the end-of-copy marker at b[i:] ("\."): it must be
// followed by the line end the data uses. It returns lineMarker and the
// offset after the marker, scanMore, or — in CSV, where "\." can be data —
// lineDone for "not a marker".
func (r *Rewriter) marker(b []byte, i int, eof bool) (scanStatus, int, error) {
	j := i + 2
	if r.eol == eolCRNL {
		if j >= len(b) && !eof {
			return scanMore, 0, nil
		}
		var c2 byte // '\0' at EOF, as PostgreSQL's padded buffer gives
		if j < len(b) {
			c2 = b[j]
		}
		j++
		if c2 == '\n' {
			if !r.csv {
				return 0, 0, r.scanErr("end-of-copy marker does not match previous newline style", "")
			}
			return lineDone, 0, nil
		}
		if c2 != '\r' {
			if !r.csv {
				return 0, 0, r.scanErr("end-of-copy marker corrupt", "")
			}
			return lineDone, 0, nil
		}
	}
	if j >= len(b) && !eof {
		return scanMore, 0, nil
	}
	var c2 byte
	if j < len(b) {
		c2 = b[j]
	}
	j++
	if c2 != '\r' && c2 != '\n' {
		if !r.csv {
			return 0, 0, r.scanErr("end-of-copy marker corrupt", "")
		}
		return lineDone, 0, nil
	}
	if r.eol == eolNL && c2 != '\n' || r.eol == eolCRNL && c2 != '\n' || r.eol == eolCR && c2 != '\r' {
		return 0, 0, r.scanErr("end-of-copy marker does not match previous newline style", "")
	}
	return lineMarker, j, nil
}

// splitText records the fields of a text-format line
// (CopyReadAttributesText): raw extents, and whether they hold escapes.
func (r *Rewriter) splitText(line []byte) error {
	f := r.fields[:0]
	start, esc, i := 0, false, 0
	dl, bs := -1, -1 // next delimiter, next backslash before it (as in scanText)
	for {
		if dl < i {
			dl = indexIn(line, i, len(line), r.delim)
		}
		if bs < i {
			bs = indexIn(line, i, dl, '\\')
		}
		if bs >= dl {
			f = append(f, span{start, dl, esc})
			if dl >= len(line) {
				break
			}
			i = dl + 1
			start, esc = i, false
			continue
		}
		// A backslash and what it escapes.
		i = bs
		if i+1 >= len(line) {
			f = append(f, span{start, i, esc}) // a trailing backslash is dropped
			break
		}
		esc = true
		c := line[i+1]
		i += 2
		switch {
		case isOctal(c):
			if i < len(line) && isOctal(line[i]) {
				i++
				if i < len(line) && isOctal(line[i]) {
					i++
				}
			}
		case c == 'x':
			if i < len(line) && unhex[line[i]] != 0xff {
				i++
				if i < len(line) && unhex[line[i]] != 0xff {
					i++
				}
			}
		}
	}
	r.fields = f
	return nil
}

// splitPlain records the fields of a line without escapes or quotes.
func (r *Rewriter) splitPlain(line []byte) {
	f := r.fields[:0]
	i := 0
	for {
		k := bytes.IndexByte(line[i:], r.delim)
		if k < 0 {
			r.fields = append(f, span{i, len(line), false})
			return
		}
		f = append(f, span{i, i + k, false})
		i += k + 1
	}
}

// splitCSV records the fields of a CSV line (CopyReadAttributesCSV): raw
// extents, and whether they hold a quoted part.
func (r *Rewriter) splitCSV(line []byte) error {
	if bytes.IndexByte(line, r.quote) < 0 {
		r.splitPlain(line)
		return nil
	}
	f := r.fields[:0]
	i := 0
	for {
		start, quoted := i, false
	field:
		for {
			// Not in quote.
			for i < len(line) && !r.fieldSpec[line[i]] {
				i++
			}
			if i >= len(line) {
				r.fields = append(f, span{start, i, quoted})
				return nil
			}
			c := line[i]
			i++
			if c == r.delim {
				f = append(f, span{start, i - 1, quoted})
				break field
			}
			// A quote: in quote until the closing one.
			quoted = true
			for {
				if r.escape == r.quote {
					k := bytes.IndexByte(line[i:], r.quote)
					if k < 0 {
						i = len(line)
					} else {
						i += k
					}
				}
				if i >= len(line) {
					r.fields = f
					return r.errLineText(CodeBadCopyFileFormat, "unterminated CSV quoted field", line)
				}
				c = line[i]
				i++
				if c == r.escape && i < len(line) && (line[i] == r.escape || line[i] == r.quote) {
					i++
					continue
				}
				if c == r.quote {
					break
				}
			}
		}
	}
}

// mayBeNonASCII reports whether the raw text field holds an octal or hex
// escape, the only escapes that can make a byte ≥ 0x80 or a NUL.
func mayBeNonASCII(raw []byte) bool {
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 || k+1 >= len(raw) {
			return false
		}
		if c := raw[k+1]; c == 'x' || isOctal(c) {
			return true
		}
		raw = raw[k+2:]
	}
}

// row writes one data line.
func (r *Rewriter) row(dst, line, term []byte) ([]byte, error) {
	if r.ncols == 0 {
		if len(line) != 0 {
			return dst, r.errLineText(CodeBadCopyFileFormat, "extra data after last expected column", line)
		}
		r.rows++
		return append(dst, term...), nil
	}
	var err error
	if r.csv {
		err = r.splitCSV(line)
	} else {
		err = r.splitText(line)
	}
	if err != nil {
		return dst, err
	}
	nf := len(r.fields)
	if r.checkUTF8 && !r.csv {
		// PostgreSQL checks the encoding of every field whose escapes made
		// bytes ≥ 0x80 or NUL, as it splits the line.
		for _, f := range r.fields {
			if !f.flag || !mayBeNonASCII(line[f.start:f.end]) || bytes.Equal(line[f.start:f.end], r.null) {
				continue
			}
			r.val, _ = deEscapeText(r.val[:0], line[f.start:f.end])
			if k := invalidUTF8(r.val); k >= 0 {
				return dst, r.errLineText(CodeCharacterNotInRepertoire, encodingMessage(r.val[k:]), line)
			}
		}
	}
	if nf > r.ncols {
		return dst, r.errLineText(CodeBadCopyFileFormat, "extra data after last expected column", line)
	}
	start := len(dst)
	last := 0
	if r.anyProt {
		for col := 0; col < nf; col++ {
			if !r.prot[col] {
				continue
			}
			f := r.fields[col]
			dst = append(dst, line[last:f.start]...)
			dst, err = r.textField(dst, col, line, f)
			if err != nil {
				return dst[:start], err
			}
			last = f.end
		}
	}
	if nf < r.ncols {
		return dst[:start], r.errMissing(nf, line)
	}
	dst = append(dst, line[last:]...)
	dst = append(dst, term...)
	r.rows++
	return dst, nil
}

// textField writes protected field col of a text or CSV line.
func (r *Rewriter) textField(dst []byte, col int, line []byte, f span) ([]byte, error) {
	raw := line[f.start:f.end]
	var v []byte
	if r.csv {
		switch {
		case !f.flag && bytes.Equal(raw, r.null):
			if r.forceNotNull == nil || !r.forceNotNull[col] {
				return append(dst, raw...), nil // NULL
			}
			v = r.null // FORCE_NOT_NULL: the NULL string is the value
		case f.flag:
			r.val = unquoteCSV(r.val[:0], raw, r.quote, r.escape)
			v = r.val
			if r.forceNull != nil && r.forceNull[col] && bytes.Equal(v, r.null) {
				return append(dst, raw...), nil // FORCE_NULL: the server makes it NULL
			}
		default:
			v = raw
		}
	} else {
		if bytes.Equal(raw, r.null) {
			return append(dst, raw...), nil // NULL
		}
		v = raw
		if f.flag {
			if !r.in && len(raw) > 3 && raw[0] == '\\' && raw[1] == '\\' && raw[2] == 'x' &&
				bytes.IndexByte(raw[3:], '\\') < 0 {
				v = raw[1:] // the server's "\\x<hex>": de-escaped, it is raw[1:]
			} else {
				r.val, _ = deEscapeText(r.val[:0], raw) // (encoding checked by row)
				v = r.val
			}
		}
	}

	if !r.in {
		var e *Error
		r.raw, e = decodeBytea(r.raw[:0], v)
		if e != nil {
			ce := r.errColumn(e.Code, e.Message, col, v, false)
			return dst, ce
		}
		out, err := r.call(col, r.raw)
		if err != nil {
			return dst, err
		}
		if r.csv {
			return r.appendCSV(dst, out, r.forceQuote != nil && r.forceQuote[col]), nil
		}
		return appendTextEscaped(dst, out, r.delim, &r.textPlain), nil
	}

	out, err := r.call(col, v)
	if err != nil {
		return dst, err
	}
	s := len(dst)
	if r.csv {
		if r.hexPlainCSV {
			dst = append(dst, '\\', 'x')
			dst = appendHex(dst, out)
			if len(dst)-s != len(r.null) || !bytes.Equal(dst[s:], r.null) {
				return dst, nil
			}
			dst = dst[:s]
		}
		r.raw = append(r.raw[:0], '\\', 'x')
		r.raw = appendHex(r.raw, out)
		return r.appendCSV(dst, r.raw, false), nil
	}
	// bytea hex output, its backslash escaped for the text format.
	dst = append(dst, '\\', '\\', 'x')
	dst = appendHex(dst, out)
	if len(dst)-s == len(r.null) && bytes.Equal(dst[s:], r.null) {
		// It spells the NULL string: write the backslash as an octal escape.
		dst = append(dst[:s], `\134x`...)
		dst = appendHex(dst, out)
	}
	return dst, nil
}
