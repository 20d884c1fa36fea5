package wire

import "encoding/binary"

// Row walks the values of a DataRow without copying them.
//
// Values returned by Next alias the message and are valid as long as it is.
type Row struct {
	body []byte
	off  int
	left int
}

// ReadRow starts walking the DataRow m (header included) and returns its
// field count.
func ReadRow(m []byte) (Row, int, error) {
	if len(m) < HeaderLen+2 {
		return Row{}, 0, Protocol("invalid DataRow from server")
	}
	body := m[HeaderLen:]
	n := int(binary.BigEndian.Uint16(body))
	return Row{body: body, off: 2, left: n}, n, nil
}

// Next returns the next value; null reports SQL NULL (value is nil then).
func (r *Row) Next() (value []byte, null bool, err error) {
	if r.left == 0 || r.off+4 > len(r.body) {
		return nil, false, Protocol("invalid DataRow from server")
	}
	r.left--
	l := int(int32(binary.BigEndian.Uint32(r.body[r.off:])))
	r.off += 4
	if l < 0 {
		return nil, true, nil
	}
	if r.off+l > len(r.body) {
		return nil, false, Protocol("invalid DataRow from server")
	}
	v := r.body[r.off : r.off+l]
	r.off += l
	return v, false, nil
}

// BeginRow appends the header of a DataRow with n fields to dst; values
// follow with AppendValue/AppendNull, and FinishRow sets the length.
func BeginRow(dst []byte, n int) []byte {
	return append(dst, 'D', 0, 0, 0, 0, byte(n>>8), byte(n))
}

// AppendValue appends one non-NULL value of a DataRow.
func AppendValue(dst, v []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// AppendNull appends one NULL value of a DataRow.
func AppendNull(dst []byte) []byte { return append(dst, 0xff, 0xff, 0xff, 0xff) }

// FinishRow sets the length of the DataRow that BeginRow started at start
// of dst.
func FinishRow(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}
