package wire

import "encoding/binary"

// BindHeader is what a Bind says besides its parameter values: read without
// copying the values.
type BindHeader struct {
	Portal, Statement string
	// ResultFormats are the result format codes as sent (nil: none, all
	// text).
	ResultFormats []int16
	// ResultsAt is the offset, in the whole message, of the result format
	// code count, so the codes can be replaced (AppendWithResultFormats).
	ResultsAt int
}

// ScanBind reads the names and result formats of a Bind body (the message
// after its header) without copying its parameter values.
func ScanBind(b []byte) (BindHeader, error) {
	bad := Protocol("invalid Bind message")
	var h BindHeader
	i := 0
	next := func() (string, bool) {
		for j := i; j < len(b); j++ {
			if b[j] == 0 {
				s := string(b[i:j])
				i = j + 1
				return s, true
			}
		}
		return "", false
	}
	var ok bool
	if h.Portal, ok = next(); !ok {
		return h, bad
	}
	if h.Statement, ok = next(); !ok {
		return h, bad
	}
	u16 := func() (int, bool) {
		if i+2 > len(b) {
			return 0, false
		}
		v := int(binary.BigEndian.Uint16(b[i:]))
		i += 2
		return v, true
	}
	nf, ok := u16()
	if !ok || i+2*nf > len(b) {
		return h, bad
	}
	i += 2 * nf
	np, ok := u16()
	if !ok {
		return h, bad
	}
	for range np {
		if i+4 > len(b) {
			return h, bad
		}
		l := int(int32(binary.BigEndian.Uint32(b[i:])))
		i += 4
		if l > 0 {
			if i+l > len(b) {
				return h, bad
			}
			i += l
		}
	}
	h.ResultsAt = HeaderLen + i
	nr, ok := u16()
	if !ok || i+2*nr > len(b) {
		return h, bad
	}
	if nr > 0 {
		h.ResultFormats = make([]int16, nr)
		for k := range nr {
			h.ResultFormats[k] = int16(binary.BigEndian.Uint16(b[i+2*k:]))
		}
	}
	return h, nil
}

// AppendWithResultFormats appends to dst the Bind m (header included) with
// its result format codes, which start at offset at of m, replaced by codes.
func AppendWithResultFormats(dst, m []byte, at int, codes []int16) []byte {
	dst = append(dst, m[:at]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(codes)))
	for _, f := range codes {
		dst = binary.BigEndian.AppendUint16(dst, uint16(f))
	}
	binary.BigEndian.PutUint32(dst[1:], uint32(len(dst)-1))
	return dst
}

// FormatCode is the format of column or parameter i under Bind's rules: no
// codes = all text, one = all, else one per column.
func FormatCode(codes []int16, i int) int16 {
	switch {
	case len(codes) == 1:
		return codes[0]
	case i < len(codes):
		return codes[i]
	}
	return 0
}
