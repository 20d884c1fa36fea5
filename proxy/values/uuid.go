package values

const hexDigits = "0123456789abcdef"

func unhex(c byte) (byte, bool) {
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

// parseUUID follows string_to_uuid: 32 hex digits in either case, an
// optional '-' after any group of four digits, optionally in braces; no
// blanks.
func parseUUID(v []byte) (u [16]byte, ok bool) {
	s := v
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	for i := 0; i < 16; i++ {
		if len(s) < 2 {
			return u, false
		}
		hi, ok1 := unhex(s[0])
		lo, ok2 := unhex(s[1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[i] = hi<<4 | lo
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < 15 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return u, false
		}
		s = s[1:]
	}
	return u, len(s) == 0
}

// appendUUID writes the canonical (and output) form: lower-case hex,
// hyphenated 8-4-4-4-12.
func appendUUID(dst []byte, u *[16]byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

func uuidFromText(dst, v []byte) ([]byte, error) {
	u, ok := parseUUID(v)
	if !ok {
		return dst, syntaxError("uuid", v)
	}
	return appendUUID(dst, &u), nil
}

// uuidFromBinary is uuid_recv: exactly 16 bytes.
func uuidFromBinary(dst, v []byte) ([]byte, error) {
	if len(v) < 16 {
		return dst, errInsufficientData()
	}
	if len(v) > 16 {
		return dst, errBinaryFormat()
	}
	return appendUUID(dst, (*[16]byte)(v)), nil
}

func uuidToBinary(dst, c []byte, t *Type) ([]byte, error) {
	if len(c) != 36 {
		return dst, errCorrupt(t, c)
	}
	u, ok := parseUUID(c)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	return append(dst, u[:]...), nil
}
