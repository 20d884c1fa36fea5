package values

import (
	"encoding/binary"
	"strconv"
)

// intBits returns the width of an integer kind and its SQL name.
func (t *Type) intBits() (int, string) {
	switch t.kind {
	case kindInt2:
		return 16, "smallint"
	case kindInt4:
		return 32, "integer"
	}
	return 64, "bigint"
}

// intFromText follows pg_strtoint16/32/64 of PostgreSQL 15: optional blanks,
// an optional sign, decimal digits, optional blanks. Overflow is reported as
// soon as it happens (22003), before any trailing junk (22P02).
// The canonical form is the decimal value without '+' or leading zeros.
func (t *Type) intFromText(dst, v []byte) ([]byte, error) {
	bits, name := t.intBits()
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	neg := false
	if i < len(v) && (v[i] == '-' || v[i] == '+') {
		neg = v[i] == '-'
		i++
	}
	if i >= len(v) || !isDigit(v[i]) {
		return dst, syntaxError(name, v)
	}
	// Accumulate negatively, like PostgreSQL, so the minimum value fits.
	min := int64(-1) << (bits - 1)
	var acc int64
	for ; i < len(v) && isDigit(v[i]); i++ {
		d := int64(v[i] - '0')
		if acc < min/10 {
			return dst, outOfRange(name, v)
		}
		acc *= 10
		if acc < min+d {
			return dst, outOfRange(name, v)
		}
		acc -= d
	}
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	if i != len(v) {
		return dst, syntaxError(name, v)
	}
	if !neg {
		if acc == min {
			return dst, outOfRange(name, v)
		}
		acc = -acc
	}
	return strconv.AppendInt(dst, acc, 10), nil
}

// intFromBinary reads a big-endian two's-complement integer of the type's
// width (int2recv, int4recv, int8recv).
func (t *Type) intFromBinary(dst, v []byte) ([]byte, error) {
	bits, _ := t.intBits()
	size := bits / 8
	if len(v) < size {
		return dst, errInsufficientData()
	}
	if len(v) > size {
		return dst, errBinaryFormat()
	}
	var x int64
	switch size {
	case 2:
		x = int64(int16(binary.BigEndian.Uint16(v)))
	case 4:
		x = int64(int32(binary.BigEndian.Uint32(v)))
	default:
		x = int64(binary.BigEndian.Uint64(v))
	}
	return strconv.AppendInt(dst, x, 10), nil
}

func (t *Type) intToBinary(dst, c []byte) ([]byte, error) {
	bits, _ := t.intBits()
	x, ok := parseCanonicalInt(c, bits)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	switch bits {
	case 16:
		return binary.BigEndian.AppendUint16(dst, uint16(x)), nil
	case 32:
		return binary.BigEndian.AppendUint32(dst, uint32(x)), nil
	}
	return binary.BigEndian.AppendUint64(dst, uint64(x)), nil
}

// parseCanonicalInt parses a canonical integer: '-'? digits, within bits.
func parseCanonicalInt(c []byte, bits int) (int64, bool) {
	neg := len(c) > 0 && c[0] == '-'
	if neg {
		c = c[1:]
	}
	if len(c) == 0 || len(c) > 19 {
		return 0, false
	}
	var u uint64
	for _, ch := range c {
		if !isDigit(ch) {
			return 0, false
		}
		u = u*10 + uint64(ch-'0')
	}
	limit := uint64(1) << (bits - 1)
	if neg {
		if u > limit {
			return 0, false
		}
		return -int64(u-1) - 1, true
	}
	if u >= limit {
		return 0, false
	}
	return int64(u), true
}
