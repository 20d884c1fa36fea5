package values

// boolFromText follows boolin/parse_bool_with_len: blanks around the value
// are ignored; any prefix of "true", "false", "yes", "no", at least two
// letters of "on"/"off", "1" and "0", in any case. Canonical: "t" or "f".
func boolFromText(dst, v []byte) ([]byte, error) {
	s := trimSpace(v)
	if b, ok := parseBool(s); ok {
		if b {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	}
	return dst, syntaxError("boolean", v)
}

func parseBool(s []byte) (value, ok bool) {
	if len(s) == 0 {
		return false, false
	}
	prefixOf := func(word string, min int) bool {
		return len(s) >= min && len(s) <= len(word) && hasPrefixFold([]byte(word), string(s))
	}
	switch lower(s[0]) {
	case 't':
		return true, prefixOf("true", 1)
	case 'f':
		return false, prefixOf("false", 1)
	case 'y':
		return true, prefixOf("yes", 1)
	case 'n':
		return false, prefixOf("no", 1)
	case 'o':
		if prefixOf("on", 2) {
			return true, true
		}
		return false, prefixOf("off", 2)
	case '1':
		return true, len(s) == 1
	case '0':
		return false, len(s) == 1
	}
	return false, false
}

// boolFromBinary is boolrecv: one byte, any non-zero value is true.
func boolFromBinary(dst, v []byte) ([]byte, error) {
	if len(v) < 1 {
		return dst, newError(CodeProtocolViolation, "no data left in message") // pq_getmsgbyte
	}
	if len(v) > 1 {
		return dst, errBinaryFormat()
	}
	if v[0] != 0 {
		return append(dst, 't'), nil
	}
	return append(dst, 'f'), nil
}

func boolToBinary(dst, c []byte, t *Type) ([]byte, error) {
	if len(c) == 1 {
		switch c[0] {
		case 't':
			return append(dst, 1), nil
		case 'f':
			return append(dst, 0), nil
		}
	}
	return dst, errCorrupt(t, c)
}
