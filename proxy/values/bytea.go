package values

import (
	"unicode/utf8"
)

// byteaFromText follows byteain: "\x" followed by hex digit pairs (blanks
// allowed between pairs), or the traditional escape format in which a
// backslash starts "\\" or a three-digit octal escape "\ooo" (first digit
// 0-3). The canonical form is the raw bytes.
func byteaFromText(dst, v []byte) ([]byte, error) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		s := v[2:]
		for i := 0; i < len(s); {
			c := s[i]
			if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				i++
				continue
			}
			hi, ok := unhex(c)
			if !ok {
				return dst, badHexDigit(s[i:])
			}
			i++
			if i >= len(s) {
				return dst, newError(CodeInvalidParameterValue, "invalid hexadecimal data: odd number of digits")
			}
			lo, ok := unhex(s[i])
			if !ok {
				return dst, badHexDigit(s[i:])
			}
			i++
			dst = append(dst, hi<<4|lo)
		}
		return dst, nil
	}
	for i := 0; i < len(v); {
		switch {
		case v[i] != '\\':
			dst = append(dst, v[i])
			i++
		case i+3 < len(v) && v[i+1] >= '0' && v[i+1] <= '3' && v[i+2] >= '0' && v[i+2] <= '7' && v[i+3] >= '0' && v[i+3] <= '7':
			dst = append(dst, (v[i+1]-'0')<<6|(v[i+2]-'0')<<3|(v[i+3]-'0'))
			i += 4
		case i+1 < len(v) && v[i+1] == '\\':
			dst = append(dst, '\\')
			i += 2
		default:
			return dst, newError(CodeInvalidTextRepresentation, "invalid input syntax for type bytea")
		}
	}
	return dst, nil
}

func badHexDigit(s []byte) *ValueError {
	_, size := utf8.DecodeRune(s)
	return newError(CodeInvalidParameterValue, `invalid hexadecimal digit: "`+string(s[:size])+`"`)
}

// byteaToText is byteaout: "\x" and lower-case hex, or with
// bytea_output = escape the printable ASCII bytes as they are, "\\" for a
// backslash and "\ooo" for the rest.
func byteaToText(dst, c []byte, s *Session) []byte {
	if !s.escape {
		dst = append(dst, '\\', 'x')
		for _, b := range c {
			dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
		}
		return dst
	}
	for _, b := range c {
		switch {
		case b == '\\':
			dst = append(dst, '\\', '\\')
		case b < 0x20 || b > 0x7e:
			dst = append(dst, '\\', '0'+b>>6, '0'+(b>>3)&7, '0'+b&7)
		default:
			dst = append(dst, b)
		}
	}
	return dst
}
