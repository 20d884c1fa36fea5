package copyfmt

import (
	"bytes"
	"encoding/binary"
)

const hexdigits = "0123456789abcdef"

// hexPairs[c] is the two hex digits of c, little-endian in a uint16.
var hexPairs = func() (t [256]uint16) {
	for c := range t {
		t[c] = uint16(hexdigits[c>>4]) | uint16(hexdigits[c&15])<<8
	}
	return t
}()

// appendHex appends the lower-case hex digits of src (hex_encode). (A
// table of digit pairs beats both encoding/hex and SWAR arithmetic here.)
func appendHex(dst, src []byte) []byte {
	n := len(dst)
	dst = grow(dst, 2*len(src))
	out := dst[n:]
	i := 0
	for ; i+4 <= len(src); i += 4 {
		w := uint64(hexPairs[src[i]]) | uint64(hexPairs[src[i+1]])<<16 |
			uint64(hexPairs[src[i+2]])<<32 | uint64(hexPairs[src[i+3]])<<48
		binary.LittleEndian.PutUint64(out[2*i:], w)
	}
	for ; i < len(src); i++ {
		binary.LittleEndian.PutUint16(out[2*i:], hexPairs[src[i]])
	}
	return dst
}

// unhex maps a hex digit to its value, anything else to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 16; i++ {
		t[hexdigits[i]] = byte(i)
		t["0123456789ABCDEF"[i]] = byte(i)
	}
	return t
}()

// grow extends dst by n bytes (contents of the new bytes unspecified).
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), 2*cap(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst[:len(dst)+n]
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func hexValue(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// deEscapeText appends the value of a text-format field (its raw bytes, as
// CopyReadAttributesText de-escapes them) to dst. nonASCII reports an
// escape that produced a NUL or a byte ≥ 0x80: PostgreSQL then checks the
// value's encoding.
func deEscapeText(dst, raw []byte) (out []byte, nonASCII bool) {
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			return append(dst, raw...), nonASCII
		}
		dst = append(dst, raw[:k]...)
		raw = raw[k+1:]
		if len(raw) == 0 {
			// A backslash at the very end of the line: dropped.
			return dst, nonASCII
		}
		c := raw[0]
		raw = raw[1:]
		switch c {
		case '0', '1', '2', '3', '4', '5', '6', '7':
			val := int(c - '0')
			if len(raw) > 0 && isOctal(raw[0]) {
				val = val<<3 + int(raw[0]-'0')
				raw = raw[1:]
				if len(raw) > 0 && isOctal(raw[0]) {
					val = val<<3 + int(raw[0]-'0')
					raw = raw[1:]
				}
			}
			c = byte(val & 0o377)
			if c == 0 || c >= 0x80 {
				nonASCII = true
			}
		case 'x':
			if len(raw) > 0 {
				if v, ok := hexValue(raw[0]); ok {
					raw = raw[1:]
					if len(raw) > 0 {
						if v2, ok := hexValue(raw[0]); ok {
							v = v<<4 + v2
							raw = raw[1:]
						}
					}
					c = v
					if c == 0 || c >= 0x80 {
						nonASCII = true
					}
				}
			}
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'v':
			c = '\v'
		}
		dst = append(dst, c)
	}
}

// unquoteCSV appends the value of a CSV field (its raw bytes, as
// CopyReadAttributesCSV reads them) to dst. The field was checked by
// splitCSV: every quoted part is closed.
func unquoteCSV(dst, raw []byte, quote, escape byte) []byte {
	i := 0
	for i < len(raw) {
		// Not in quote.
		k := bytes.IndexByte(raw[i:], quote)
		if k < 0 {
			return append(dst, raw[i:]...)
		}
		dst = append(dst, raw[i:i+k]...)
		i += k + 1
		// In quote.
		for i < len(raw) {
			c := raw[i]
			i++
			if c == escape && i < len(raw) && (raw[i] == escape || raw[i] == quote) {
				dst = append(dst, raw[i])
				i++
				continue
			}
			if c == quote {
				break
			}
			dst = append(dst, c)
		}
	}
	return dst
}

// appendTextEscaped appends v escaped as CopyAttributeOutText does.
// plain[c] is false for the bytes that may need escaping (control
// characters, backslash, the delimiter).
func appendTextEscaped(dst, v []byte, delim byte, plain *[256]bool) []byte {
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if plain[c] {
			continue
		}
		if c < 0x20 {
			var e byte
			switch c {
			case '\b':
				e = 'b'
			case '\f':
				e = 'f'
			case '\n':
				e = 'n'
			case '\r':
				e = 'r'
			case '\t':
				e = 't'
			case '\v':
				e = 'v'
			default:
				if c != delim {
					continue
				}
				e = c
			}
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', e)
			start = i + 1
		} else if c == '\\' || c == delim {
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\')
			start = i
		}
	}
	return append(dst, v[start:]...)
}

// appendCSV appends v as CopyAttributeOutCSV writes a field: quoted when
// force is set, when it equals the NULL string, when it is `\.` in a
// one-column COPY, or when it holds the delimiter, the quote, CR or LF.
func (r *Rewriter) appendCSV(dst, v []byte, force bool) []byte {
	use := force || string(v) == r.o.Null
	if !use {
		if r.ncols == 1 && len(v) == 2 && v[0] == '\\' && v[1] == '.' {
			use = true
		} else {
			for _, c := range v {
				if c == r.delim || c == r.quote || c == '\n' || c == '\r' {
					use = true
					break
				}
			}
		}
	}
	if !use {
		return append(dst, v...)
	}
	dst = append(dst, r.quote)
	start := 0
	for i, c := range v {
		if c == r.quote || c == r.escape {
			dst = append(dst, v[start:i]...)
			dst = append(dst, r.escape)
			start = i
		}
	}
	dst = append(dst, v[start:]...)
	return append(dst, r.quote)
}

// decodeBytea appends the bytes of bytea text output v (byteain: hex format
// "\x…" or the traditional escape format) to dst.
func decodeBytea(dst, v []byte) ([]byte, *Error) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		s := v[2:]
		// Fast path: digit pairs without white space.
		n := len(dst)
		dst = grow(dst, len(s)/2)
		out := dst[n:]
		k := 0
		for len(s) >= 2 && k < len(out) {
			hi, lo := unhex[s[0]], unhex[s[1]]
			if (hi|lo)&0xf0 != 0 {
				break
			}
			out[k] = hi<<4 | lo
			k++
			s = s[2:]
		}
		dst = dst[:n+k]
		for i := 0; i < len(s); {
			c := s[i]
			if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				i++
				continue
			}
			hi, ok := hexValue(c)
			if !ok {
				return dst, &Error{Code: CodeInvalidParameterValue, Message: `invalid hexadecimal digit: "` + string(s[i:min(i+utf8Len(c), len(s))]) + `"`}
			}
			i++
			if i >= len(s) {
				return dst, &Error{Code: CodeInvalidParameterValue, Message: "invalid hexadecimal data: odd number of digits"}
			}
			lo, ok := hexValue(s[i])
			if !ok {
				return dst, &Error{Code: CodeInvalidParameterValue, Message: `invalid hexadecimal digit: "` + string(s[i:min(i+utf8Len(s[i]), len(s))]) + `"`}
			}
			i++
			dst = append(dst, hi<<4|lo)
		}
		return dst, nil
	}
	for i := 0; i < len(v); {
		k := bytes.IndexByte(v[i:], '\\')
		if k < 0 {
			return append(dst, v[i:]...), nil
		}
		dst = append(dst, v[i:i+k]...)
		i += k
		switch {
		case i+3 < len(v) && v[i+1] >= '0' && v[i+1] <= '3' && isOctal(v[i+2]) && isOctal(v[i+3]):
			dst = append(dst, (v[i+1]-'0')<<6|(v[i+2]-'0')<<3|(v[i+3]-'0'))
			i += 4
		case i+1 < len(v) && v[i+1] == '\\':
			dst = append(dst, '\\')
			i += 2
		default:
			return dst, &Error{Code: CodeInvalidTextRepresentation, Message: `invalid input syntax for type bytea`}
		}
	}
	return dst, nil
}
