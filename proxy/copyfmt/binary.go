package copyfmt

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// Binary COPY data: the signature and header, tuples, and the protected fields in them.

// stepBinary reads one unit of binary COPY data: the header, part of the
// header extension, or a tuple.
func (r *Rewriter) stepBinary(dst, b []byte, eof bool) ([]byte, int, status, error) {
	switch r.bstate {
	case bsHeader:
		n := min(len(b), len(binarySignature))
		if !bytes.Equal(b[:n], binarySignature[:n]) || eof && n < len(binarySignature) {
			return dst, 0, needMore, headerError("COPY file signature not recognized")
		}
		if len(b) < 19 {
			if !eof {
				r.need = 19 - len(b)
				return dst, 0, needMore, nil
			}
			if len(b) < 15 {
				return dst, 0, needMore, headerError("invalid COPY file header (missing flags)")
			}
			return dst, 0, needMore, headerError("invalid COPY file header (missing length)")
		}
		flags := int32(binary.BigEndian.Uint32(b[11:]))
		if flags&(1<<16) != 0 {
			return dst, 0, needMore, headerError("invalid COPY file header (WITH OIDS)")
		}
		flags &^= 1 << 16
		if flags>>16 != 0 {
			return dst, 0, needMore, headerError("unrecognized critical flags in COPY file header")
		}
		ext := int32(binary.BigEndian.Uint32(b[15:]))
		if ext < 0 {
			return dst, 0, needMore, headerError("invalid COPY file header (missing length)")
		}
		r.need = 0
		r.extLeft = int64(ext)
		r.bstate = bsExt
		return append(dst, b[:19]...), 19, unitDone, nil
	case bsExt:
		if r.extLeft == 0 {
			r.bstate = bsTuple
			return dst, 0, unitDone, nil
		}
		if len(b) == 0 {
			if eof {
				return dst, 0, needMore, headerError("invalid COPY file header (wrong length)")
			}
			return dst, 0, needMore, nil
		}
		k := int(min(int64(len(b)), r.extLeft))
		r.extLeft -= int64(k)
		return append(dst, b[:k]...), k, unitDone, nil
	}
	return r.tuple(dst, b, eof)
}

var binarySignature = []byte("PGCOPY\n\377\r\n\x00")

func headerError(msg string) *Error { return &Error{Code: CodeBadCopyFileFormat, Message: msg} }

// tuple reads one binary tuple (or the trailer) from b.
func (r *Rewriter) tuple(dst, b []byte, eof bool) ([]byte, int, status, error) {
	if !r.inUnit {
		if len(b) < 2 {
			if eof {
				return dst, len(b), finished, nil // PostgreSQL takes a short count as EOF
			}
			r.need = 2 - len(b)
			return dst, 0, needMore, nil
		}
		r.lineno++
		cnt := int16(binary.BigEndian.Uint16(b))
		if cnt == -1 {
			if len(b) > 2 {
				return dst, 0, needMore, r.errLine(CodeBadCopyFileFormat, "received copy data after EOF marker", "")
			}
			r.done = true
			return append(dst, b[:2]...), 2, finished, nil
		}
		if int(cnt) != r.ncols {
			return dst, 0, needMore, r.errLine(CodeBadCopyFileFormat,
				"row field count is "+strconv.Itoa(int(cnt))+", expected "+strconv.Itoa(r.ncols), "")
		}
		r.inUnit, r.pos, r.bfield = true, 2, 0
	}
	for r.bfield < r.ncols {
		if r.pos+4 > len(b) {
			if eof {
				return dst, 0, needMore, r.errColumn(CodeBadCopyFileFormat, "unexpected EOF in COPY data", r.bfield, nil, false)
			}
			r.need = r.pos + 4 - len(b)
			return dst, 0, needMore, nil
		}
		sz := int32(binary.BigEndian.Uint32(b[r.pos:]))
		if sz == -1 {
			r.pos += 4
			r.bfield++
			continue
		}
		if sz < 0 {
			return dst, 0, needMore, r.errColumn(CodeBadCopyFileFormat, "invalid field size", r.bfield, nil, false)
		}
		end := r.pos + 4 + int(sz)
		if end > r.maxRow && end > len(b) && sz < maxAllocSize {
			eofErr := r.errColumn(CodeBadCopyFileFormat, "unexpected EOF in COPY data", r.bfield, nil, false)
			if eof {
				return dst, 0, needMore, eofErr
			}
			r.skip, r.skipEOF = end-len(b), eofErr
			return dst, 0, needMore, nil
		}
		if end > r.maxRow {
			return dst, 0, needMore, r.errTooLong()
		}
		if end > len(b) {
			if eof {
				return dst, 0, needMore, r.errColumn(CodeBadCopyFileFormat, "unexpected EOF in COPY data", r.bfield, nil, false)
			}
			r.need = end - len(b)
			return dst, 0, needMore, nil
		}
		r.pos = end
		r.bfield++
	}
	n := r.pos
	r.inUnit, r.pos, r.need = false, 0, 0
	out, err := r.binaryRow(dst, b[:n])
	if err != nil {
		return out, 0, needMore, err
	}
	return out, n, unitDone, nil
}

// maxAllocSize is PostgreSQL's MaxAllocSize: a binary field claiming this
// many bytes fails at once ("out of memory", 54000) instead of being read.
const maxAllocSize = 0x3fffffff

// binaryRow writes one complete tuple.
func (r *Rewriter) binaryRow(dst, t []byte) ([]byte, error) {
	if !r.anyProt {
		r.rows++
		return append(dst, t...), nil
	}
	if r.rowFn != nil {
		if err := r.binaryRowField(t); err != nil {
			return dst, err
		}
	}
	start := len(dst)
	p, last := 2, 0
	for col := 0; col < r.ncols; col++ {
		sz := int32(binary.BigEndian.Uint32(t[p:]))
		if sz < 0 {
			p += 4
			continue
		}
		end := p + 4 + int(sz)
		if r.prot[col] {
			dst = append(dst, t[last:p]...)
			// The transform appends the value straight after its length.
			v := t[p+4 : end]
			out, err := r.fn(append(dst, 0, 0, 0, 0), col, v)
			if err == ErrNull {
				dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // a NULL field
				last, p = end, end
				continue
			}
			if err != nil {
				e := r.errColumn("", "", col, v, false)
				e.Err = err
				return dst[:start], e
			}
			n := len(out) - len(dst) - 4
			if n > 1<<30 {
				return dst[:start], r.errColumn(CodeProgramLimitExceeded, "field value too long", col, nil, false)
			}
			binary.BigEndian.PutUint32(out[len(dst):], uint32(n))
			dst = out
			last = end
		}
		p = end
	}
	r.rows++
	return append(dst, t[last:]...), nil
}
