package copyfmt

import (
	"bytes"
	"encoding/binary"
)

// RowFunc receives, for every data row of a COPY FROM, the value of field
// Config.RowField as PostgreSQL would hand it to the type's input function
// (null for a NULL), before the row's protected fields go through the
// Transform: the transform of a field can then depend on another field of
// its row (pgcloak encrypts a subject-keyed value under its row's subject).
// value is valid only during the call. An error fails the row like a
// Transform error.
type RowFunc func(value []byte, null bool) error

// textRowField hands field r.rowField of a split text or CSV line to the
// RowFunc (the NULL rules are textField's).
func (r *Rewriter) textRowField(line []byte) error {
	col := r.rowField
	f := r.fields[col]
	raw := line[f.start:f.end]
	v, null := raw, false
	switch {
	case r.csv && !f.flag && bytes.Equal(raw, r.null):
		null = r.forceNotNull == nil || !r.forceNotNull[col]
	case r.csv && f.flag:
		r.rowVal = unquoteCSV(r.rowVal[:0], raw, r.quote, r.escape)
		v = r.rowVal
		null = r.forceNull != nil && r.forceNull[col] && bytes.Equal(v, r.null)
	case !r.csv && bytes.Equal(raw, r.null):
		null = true
	case !r.csv && f.flag:
		r.rowVal, _ = deEscapeText(r.rowVal[:0], raw)
		v = r.rowVal
	}
	return r.callRow(col, v, null)
}

// binaryRowField hands field r.rowField of a complete binary tuple t to
// the RowFunc.
func (r *Rewriter) binaryRowField(t []byte) error {
	p := 2
	for col := 0; col < r.ncols; col++ {
		sz := int32(binary.BigEndian.Uint32(t[p:]))
		if col == r.rowField {
			if sz < 0 {
				return r.callRow(col, nil, true)
			}
			return r.callRow(col, t[p+4:p+4+int(sz)], false)
		}
		p += 4
		if sz > 0 {
			p += int(sz)
		}
	}
	return nil
}

func (r *Rewriter) callRow(col int, v []byte, null bool) error {
	if err := r.rowFn(v, null); err != nil {
		e := r.errColumn("", "", col, v, !null && !r.binary)
		e.Err = err
		return e
	}
	return nil
}
