package values

import (
	"strconv"
	"unicode/utf8"
)

// charFromText canonicalizes text, varchar and bpchar. v is valid UTF-8.
//
// The canonical form is the string itself. With a length modifier the
// assignment rules of varchar(n) and bpchar(n) apply (src/backend/utils/adt/
// varchar.c): a longer value is an error (22001) unless everything past
// the n-th character is spaces, which are cut off; bpchar(n) is then padded
// with spaces to n characters, as PostgreSQL stores and returns it.
func (t *Type) charFromText(dst, v []byte) ([]byte, error) {
	if t.typmod < 0 {
		return append(dst, v...), nil
	}
	n := t.length
	if len(v) <= n { // at most n bytes is at most n characters
		dst = append(dst, v...)
		if t.kind == kindBpchar {
			dst = appendSpaces(dst, n-utf8.RuneCount(v))
		}
		return dst, nil
	}
	chars := utf8.RuneCount(v)
	if chars > n {
		clip := charClip(v, n)
		for _, c := range v[clip:] {
			if c != ' ' {
				what := "character varying("
				if t.kind == kindBpchar {
					what = "character("
				}
				return dst, newError(CodeStringDataRightTruncation, "value too long for type "+what+strconv.Itoa(n)+")")
			}
		}
		v, chars = v[:clip], n
	}
	dst = append(dst, v...)
	if t.kind == kindBpchar {
		dst = appendSpaces(dst, n-chars)
	}
	return dst, nil
}

// charClip is pg_mbcharcliplen: the byte length of the first n characters.
func charClip(v []byte, n int) int {
	i := 0
	for ; n > 0 && i < len(v); n-- {
		_, size := utf8.DecodeRune(v[i:])
		i += size
	}
	return i
}

func appendSpaces(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, ' ')
	}
	return dst
}
