package values

import (
	"encoding/binary"
	"unicode/utf8"
)

// Canonical converts a value a client sent (a Bind parameter or a literal
// the SQL layer cut out of a query) to the canonical plaintext of the type,
// appending it to dst. format is the Bind format code: 0 text, 1 binary.
//
// The value is validated as PostgreSQL validates it when it stores the value
// into a column of the logical type (input function, then the type modifier
// with assignment semantics), so a value PostgreSQL would refuse is refused
// here with the same SQLSTATE and a message worded like PostgreSQL's, as a
// *ValueError. Text input is read in the session's DateStyle (field order)
// and, for timestamptz without an explicit zone, TimeZone.
//
// v is only read, never retained. On success the canonical form is appended
// to dst and the extended slice returned, never nil (an empty value is not
// NULL); on error dst is returned unchanged (same length). Canonical allocates only on the error path and for jsonb,
// numeric with a modifier and values longer than a few kilobytes that need
// re-checking (none of the common cases).
func (t *Type) Canonical(dst []byte, format int16, v []byte, s *Session) ([]byte, error) {
	s = s.orDefault()
	n := len(dst)
	var err error
	switch format {
	case 0:
		if v, err = s.clientText(v); err != nil {
			return dst, err
		}
		dst, err = t.fromText(dst, v, s)
	case 1:
		dst, err = t.fromBinary(dst, v, s)
	default:
		return dst, errFormatCode(format)
	}
	if err != nil {
		return dst[:n], err
	}
	return nonNil(dst), nil
}

// CanonicalView is Canonical without the copy where a value is its own
// canonical form: text and varchar without a length limit (text or binary
// format, in UTF-8 or once converted from the client encoding) and bytea in
// binary format. The result may then alias v: a large value (a 100 MB
// literal) is validated and sealed where it lies. Other values are
// Canonical's, in a new slice.
func (t *Type) CanonicalView(format int16, v []byte, s *Session) ([]byte, error) {
	switch {
	case (t.kind == kindText || t.kind == kindVarchar) && t.typmod < 0 && (format == 0 || format == 1):
		u, err := s.orDefault().clientText(v)
		if err != nil {
			return nil, err
		}
		return nonNil(u), nil
	case t.kind == kindBytea && format == 1:
		return nonNil(v), nil
	}
	return t.Canonical(nil, format, v, s)
}

// emptyValue is returned for an empty value appended to a nil dst, so that
// an empty value is never confused with NULL (a nil slice in pgproto3).
var emptyValue = []byte{}

func nonNil(b []byte) []byte {
	if b == nil {
		return emptyValue[:0:0]
	}
	return b
}

// Encode appends to dst the bytes PostgreSQL would have sent this session
// for the value in a DataRow, in the requested format (0 text, 1 binary):
// text in the session's DateStyle, TimeZone, bytea_output and
// extra_float_digits; binary as the type's send function writes it.
//
// canonical must be a value Canonical produced for a type of the same kind;
// a value that does not parse as one fails with SQLSTATE XX001, never with a
// guess. canonical is only read. The result is never nil on success. For the text format of text, varchar,
// bpchar, int2/4/8, numeric, uuid, bool, jsonb, float8 (default
// extra_float_digits) and date/timestamp (ISO DateStyle) the canonical form
// is already the wire form and Encode is a single append; nothing allocates
// on any path except errors (see the benchmarks in bench_test.go).
func (t *Type) Encode(dst []byte, canonical []byte, format int16, s *Session) ([]byte, error) {
	s = s.orDefault()
	n := len(dst)
	var err error
	switch format {
	case 0:
		dst, err = t.toText(dst, canonical, s)
		if err == nil && s.encoding != "" {
			dst, err = s.clientBytes(dst, n)
		}
	case 1:
		dst, err = t.toBinary(dst, canonical, s)
		if err == nil && s.encoding != "" && t.textual() {
			// Text types travel in the client encoding in binary too.
			dst, err = s.clientBytes(dst, n)
		}
	default:
		return dst, errFormatCode(format)
	}
	if err != nil {
		return dst[:n], err
	}
	return nonNil(dst), nil
}

func (t *Type) fromText(dst, v []byte, s *Session) ([]byte, error) {
	switch t.kind {
	case kindText, kindVarchar, kindBpchar:
		return t.charFromText(dst, v)
	case kindInt2, kindInt4, kindInt8:
		return t.intFromText(dst, v)
	case kindNumeric:
		return t.numericFromText(dst, v)
	case kindFloat8:
		return float8FromText(dst, v)
	case kindBool:
		return boolFromText(dst, v)
	case kindDate, kindTimestamp, kindTimestamptz:
		return t.datetimeFromText(dst, v, s)
	case kindUUID:
		return uuidFromText(dst, v)
	case kindJSONB:
		return jsonbFromText(dst, v)
	case kindBytea:
		return byteaFromText(dst, v)
	}
	panic("values: unknown kind")
}

func (t *Type) fromBinary(dst, v []byte, s *Session) ([]byte, error) {
	switch t.kind {
	case kindText, kindVarchar, kindBpchar:
		v, err := s.clientText(v)
		if err != nil {
			return dst, err
		}
		return t.charFromText(dst, v)
	case kindInt2, kindInt4, kindInt8:
		return t.intFromBinary(dst, v)
	case kindNumeric:
		return t.numericFromBinary(dst, v)
	case kindFloat8:
		return float8FromBinary(dst, v)
	case kindBool:
		return boolFromBinary(dst, v)
	case kindDate, kindTimestamp, kindTimestamptz:
		return t.datetimeFromBinary(dst, v)
	case kindUUID:
		return uuidFromBinary(dst, v)
	case kindJSONB:
		return jsonbFromBinary(dst, v, s)
	case kindBytea:
		return append(dst, v...), nil
	}
	panic("values: unknown kind")
}

// Verbatim reports whether Encode appends a canonical value of t unchanged
// in format, for a session that does not transcode (Session.Transcodes): a
// reader can then put the plaintext straight where the value goes.
func (t *Type) Verbatim(format int16) bool {
	switch format {
	case 0:
		switch t.kind {
		case kindText, kindVarchar, kindBpchar, kindInt2, kindInt4, kindInt8, kindNumeric, kindBool, kindUUID, kindJSONB:
			return true
		}
	case 1:
		switch t.kind {
		case kindText, kindVarchar, kindBpchar, kindBytea:
			return true
		}
	}
	return false
}

func (t *Type) toText(dst, c []byte, s *Session) ([]byte, error) {
	if t.Verbatim(0) {
		return append(dst, c...), nil
	}
	switch t.kind {
	case kindFloat8:
		return float8ToText(dst, c, s, t)
	case kindDate, kindTimestamp, kindTimestamptz:
		return t.datetimeToText(dst, c, s)
	case kindBytea:
		return byteaToText(dst, c, s), nil
	}
	panic("values: unknown kind")
}

func (t *Type) toBinary(dst, c []byte, s *Session) ([]byte, error) {
	if t.Verbatim(1) {
		return append(dst, c...), nil
	}
	switch t.kind {
	case kindInt2, kindInt4, kindInt8:
		return t.intToBinary(dst, c)
	case kindNumeric:
		return t.numericToBinary(dst, c)
	case kindFloat8:
		return float8ToBinary(dst, c, t)
	case kindBool:
		return boolToBinary(dst, c, t)
	case kindDate, kindTimestamp, kindTimestamptz:
		return t.datetimeToBinary(dst, c)
	case kindUUID:
		return uuidToBinary(dst, c, t)
	case kindJSONB:
		return append(append(dst, 1), c...), nil
	}
	panic("values: unknown kind")
}

// clientText returns text the client sent, as UTF-8, checked as
// PostgreSQL's pg_client_to_server checks it before any input function
// runs: converted from the client encoding (see charset.go), valid UTF-8,
// no NUL.
func (s *Session) clientText(v []byte) ([]byte, error) {
	if s.encoding != "" && !isASCII(v) {
		if s.cs == nil {
			return nil, s.unsupportedEncoding()
		}
		u, err := s.cs.toUTF8(nil, v)
		if err != nil {
			return nil, err
		}
		v = u
	}
	return v, checkText(v)
}

// clientBytes converts dst[n:], text appended in UTF-8, to the client
// encoding, as PostgreSQL's pg_server_to_client does for what it sends.
func (s *Session) clientBytes(dst []byte, n int) ([]byte, error) {
	if isASCII(dst[n:]) {
		return dst, nil
	}
	if s.cs == nil {
		return dst[:n], s.unsupportedEncoding()
	}
	out, err := s.cs.fromUTF8(dst[n:])
	if err != nil {
		return dst[:n], err
	}
	return append(dst[:n], out...), nil
}

// isASCII reports whether v holds only ASCII bytes: text that reads the
// same in every client encoding PostgreSQL has.
func isASCII(v []byte) bool {
	for _, c := range v {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkText checks UTF-8 text as pg_verify_mbstr does: valid UTF-8 and no
// NUL.
func checkText(v []byte) error {
	for i := 0; i < len(v); {
		// Eight ASCII bytes at a time while none is NUL or non-ASCII.
		if i+8 <= len(v) {
			w := binary.LittleEndian.Uint64(v[i:])
			if w&0x8080808080808080 == 0 && (w-0x0101010101010101)&^w&0x8080808080808080 == 0 {
				i += 8
				continue
			}
		}
		c := v[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return invalidByteSequence(v[i:])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && size <= 1 {
			return invalidByteSequence(v[i:])
		}
		i += size
	}
	return nil
}

// invalidByteSequence is report_invalid_encoding for UTF8: the bytes of the
// offending character as pg_utf_mblen counts them.
func invalidByteSequence(rest []byte) *ValueError {
	c := rest[0]
	l := 1
	switch {
	case c&0xe0 == 0xc0:
		l = 2
	case c&0xf0 == 0xe0:
		l = 3
	case c&0xf8 == 0xf0:
		l = 4
	}
	if l > len(rest) {
		l = len(rest)
	}
	const hexdig = "0123456789abcdef"
	b := make([]byte, 0, 5*l)
	for j := 0; j < l; j++ {
		if j > 0 {
			b = append(b, ' ')
		}
		b = append(b, '0', 'x', hexdig[rest[j]>>4], hexdig[rest[j]&15])
	}
	return newError(CodeCharacterNotInRepertoire, `invalid byte sequence for encoding "UTF8": `+string(b))
}

// isSpace is C isspace() in the C locale, which PostgreSQL's input
// functions use to skip blanks.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case
// (pg_strncasecmp(s, prefix, len(prefix)) == 0).
func hasPrefixFold(s []byte, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(s[i]) != lower(prefix[i]) {
			return false
		}
	}
	return true
}

// trimSpace drops C-locale white space at both ends.
func trimSpace(v []byte) []byte {
	for len(v) > 0 && isSpace(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isSpace(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	return v
}
