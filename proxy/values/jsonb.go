package values

import (
	"bytes"
	"sort"
	"strconv"
	"unicode/utf8"
)

// jsonb: the input is parsed as PostgreSQL 15's JSON parser does
// (src/common/jsonapi.c) and the canonical form is jsonb's own text output
// (JsonbToCString): object keys sorted by length and then bytes, duplicate
// keys reduced to the last one, numbers as numeric_out prints them ("1E2"
// becomes "100", "1.50" stays "1.50", "-0" is "0"), strings with only the
// escapes jsonb writes, and the spacing `{"a": 1, "b": [1, 2]}`.

// jsonMaxDepth bounds nesting. PostgreSQL's limit is its stack depth
// (max_stack_depth, 2MB by default: somewhat more than 10000 levels); deeper
// documents are refused with the error PostgreSQL gives when it runs out.
const jsonMaxDepth = 10000

type jsonValue struct {
	kind  byte   // '{' object, '[' array, 's' string, 'n' number, 't' true, 'f' false, 'z' null
	text  []byte // string (unescaped) or number (canonical numeric)
	elems []jsonValue
	pairs []jsonPair
}

type jsonPair struct {
	key []byte
	val jsonValue
}

// JSON lexer tokens.
const (
	jtEnd = iota
	jtObjectStart
	jtObjectEnd
	jtArrayStart
	jtArrayEnd
	jtComma
	jtColon
	jtString
	jtNumber
	jtTrue
	jtFalse
	jtNull
)

type jsonParser struct {
	in    []byte
	pos   int
	tok   int
	start int    // start of the current token
	str   []byte // de-escaped string of a jtString token
	depth int
}

func jsonSyntaxError(detail string) *ValueError {
	return &ValueError{Code: CodeInvalidTextRepresentation, Message: "invalid input syntax for type json", Detail: detail}
}

func jsonAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= 0x80
}

// tokenText is the text of the current token, for messages.
func (p *jsonParser) tokenText() string { return string(p.in[p.start:p.pos]) }

func (p *jsonParser) invalidToken() *ValueError {
	return jsonSyntaxError(`Token "` + p.tokenText() + `" is invalid.`)
}

// next is json_lex.
func (p *jsonParser) next() *ValueError {
	in := p.in
	for p.pos < len(in) && (in[p.pos] == ' ' || in[p.pos] == '\t' || in[p.pos] == '\n' || in[p.pos] == '\r') {
		p.pos++
	}
	p.start = p.pos
	if p.pos >= len(in) {
		p.tok = jtEnd
		return nil
	}
	c := in[p.pos]
	switch c {
	case '{':
		p.tok = jtObjectStart
	case '}':
		p.tok = jtObjectEnd
	case '[':
		p.tok = jtArrayStart
	case ']':
		p.tok = jtArrayEnd
	case ',':
		p.tok = jtComma
	case ':':
		p.tok = jtColon
	case '"':
		p.tok = jtString
		return p.lexString()
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		p.tok = jtNumber
		return p.lexNumber()
	default:
		end := p.pos
		for end < len(in) && jsonAlnum(in[end]) {
			end++
		}
		if end == p.pos {
			p.pos++
			return p.invalidToken()
		}
		p.pos = end
		switch string(in[p.start:end]) {
		case "true":
			p.tok = jtTrue
		case "false":
			p.tok = jtFalse
		case "null":
			p.tok = jtNull
		default:
			return p.invalidToken()
		}
		return nil
	}
	p.pos++
	return nil
}

// lexNumber is json_lex_number.
func (p *jsonParser) lexNumber() *ValueError {
	in, s := p.in, p.pos
	bad := false
	if s < len(in) && in[s] == '-' {
		s++
	}
	switch {
	case s < len(in) && in[s] == '0':
		s++
	case s < len(in) && in[s] >= '1' && in[s] <= '9':
		for s < len(in) && isDigit(in[s]) {
			s++
		}
	default:
		bad = true
	}
	if s < len(in) && in[s] == '.' {
		s++
		if s >= len(in) || !isDigit(in[s]) {
			bad = true
		} else {
			for s < len(in) && isDigit(in[s]) {
				s++
			}
		}
	}
	if s < len(in) && (in[s] == 'e' || in[s] == 'E') {
		s++
		if s < len(in) && (in[s] == '+' || in[s] == '-') {
			s++
		}
		if s >= len(in) || !isDigit(in[s]) {
			bad = true
		} else {
			for s < len(in) && isDigit(in[s]) {
				s++
			}
		}
	}
	for s < len(in) && jsonAlnum(in[s]) {
		bad = true
		s++
	}
	p.pos = s
	if bad {
		return p.invalidToken()
	}
	return nil
}

// lexString is json_lex_string with de-escaping.
func (p *jsonParser) lexString() *ValueError {
	in := p.in
	s := p.pos + 1
	p.str = p.str[:0]
	hi := -1 // pending high surrogate
	for {
		if s >= len(in) {
			p.pos = s
			return p.invalidToken()
		}
		c := in[s]
		if c == '"' {
			break
		}
		if c < 0x20 {
			p.pos = s + 1
			return jsonSyntaxError("Character with value 0x" + string([]byte{hexDigits[c>>4], hexDigits[c&15]}) + " must be escaped.")
		}
		if c != '\\' {
			if hi != -1 {
				p.pos = s
				return jsonSyntaxError("Unicode low surrogate must follow a high surrogate.")
			}
			p.str = append(p.str, c)
			s++
			continue
		}
		s++
		if s >= len(in) {
			p.pos = s
			return p.invalidToken()
		}
		e := in[s]
		if e == 'u' {
			ch := 0
			for k := 1; k <= 4; k++ {
				if s+k >= len(in) {
					p.pos = s + k
					return jsonSyntaxError(`"\u" must be followed by four hexadecimal digits.`)
				}
				h, ok := unhex(in[s+k])
				if !ok {
					p.pos = s + k + 1
					return jsonSyntaxError(`"\u" must be followed by four hexadecimal digits.`)
				}
				ch = ch<<4 | int(h)
			}
			s += 5
			switch {
			case ch >= 0xd800 && ch <= 0xdbff:
				if hi != -1 {
					p.pos = s
					return jsonSyntaxError("Unicode high surrogate must not follow a high surrogate.")
				}
				hi = ch
				continue
			case ch >= 0xdc00 && ch <= 0xdfff:
				if hi == -1 {
					p.pos = s
					return jsonSyntaxError("Unicode low surrogate must follow a high surrogate.")
				}
				ch = ((hi&0x3ff)<<10 | (ch & 0x3ff)) + 0x10000
				hi = -1
			}
			if hi != -1 {
				p.pos = s
				return jsonSyntaxError("Unicode low surrogate must follow a high surrogate.")
			}
			if ch == 0 {
				p.pos = s
				return &ValueError{Code: CodeUntranslatableCharacter, Message: "unsupported Unicode escape sequence", Detail: `\u0000 cannot be converted to text.`}
			}
			p.str = utf8.AppendRune(p.str, rune(ch))
			continue
		}
		if hi != -1 {
			p.pos = s
			return jsonSyntaxError("Unicode low surrogate must follow a high surrogate.")
		}
		switch e {
		case '"', '\\', '/':
			p.str = append(p.str, e)
		case 'b':
			p.str = append(p.str, '\b')
		case 'f':
			p.str = append(p.str, '\f')
		case 'n':
			p.str = append(p.str, '\n')
		case 'r':
			p.str = append(p.str, '\r')
		case 't':
			p.str = append(p.str, '\t')
		default:
			_, size := utf8.DecodeRune(in[s:])
			p.pos = s + size
			return jsonSyntaxError(`Escape sequence "\` + string(in[s:s+size]) + `" is invalid.`)
		}
		s++
	}
	if hi != -1 {
		p.pos = s
		return jsonSyntaxError("Unicode low surrogate must follow a high surrogate.")
	}
	p.pos = s + 1
	return nil
}

// parseError is report_parse_error for the current token.
func (p *jsonParser) parseError(expected string) *ValueError {
	if p.tok == jtEnd {
		return jsonSyntaxError("The input string ended unexpectedly.")
	}
	return jsonSyntaxError(expected + `, but found "` + p.tokenText() + `".`)
}

// parseValue is parse_scalar/parse_object/parse_array for the current
// token; on return the token after the value is current.
func (p *jsonParser) parseValue(expected string) (jsonValue, *ValueError) {
	var v jsonValue
	switch p.tok {
	case jtObjectStart:
		return p.parseObject()
	case jtArrayStart:
		return p.parseArray()
	case jtString:
		v = jsonValue{kind: 's', text: append([]byte(nil), p.str...)}
	case jtNumber:
		num, err := base[kindNumeric].numericFromText(nil, p.in[p.start:p.pos])
		if err != nil {
			return v, err.(*ValueError)
		}
		v = jsonValue{kind: 'n', text: num}
	case jtTrue:
		v.kind = 't'
	case jtFalse:
		v.kind = 'f'
	case jtNull:
		v.kind = 'z'
	default:
		return v, p.parseError(expected)
	}
	return v, p.next()
}

func (p *jsonParser) enter() *ValueError {
	p.depth++
	if p.depth > jsonMaxDepth {
		return &ValueError{
			Code:    CodeStackDepthExceeded,
			Message: "stack depth limit exceeded",
			Hint:    "pgcloak accepts jsonb nested at most " + strconv.Itoa(jsonMaxDepth) + " levels deep.",
		}
	}
	return nil
}

func (p *jsonParser) parseObject() (jsonValue, *ValueError) {
	v := jsonValue{kind: '{'}
	if err := p.enter(); err != nil {
		return v, err
	}
	defer func() { p.depth-- }()
	if err := p.next(); err != nil {
		return v, err
	}
	if p.tok == jtObjectEnd {
		return v, p.next()
	}
	expected := `Expected string or "}"`
	for {
		if p.tok != jtString {
			return v, p.parseError(expected)
		}
		key := append([]byte(nil), p.str...)
		if err := p.next(); err != nil {
			return v, err
		}
		if p.tok != jtColon {
			return v, p.parseError(`Expected ":"`)
		}
		if err := p.next(); err != nil {
			return v, err
		}
		val, err := p.parseValue("Expected JSON value")
		if err != nil {
			return v, err
		}
		v.pairs = append(v.pairs, jsonPair{key: key, val: val})
		switch p.tok {
		case jtComma:
			if err := p.next(); err != nil {
				return v, err
			}
			expected = "Expected string"
		case jtObjectEnd:
			normalizeObject(&v)
			return v, p.next()
		default:
			return v, p.parseError(`Expected "," or "}"`)
		}
	}
}

func (p *jsonParser) parseArray() (jsonValue, *ValueError) {
	v := jsonValue{kind: '['}
	if err := p.enter(); err != nil {
		return v, err
	}
	defer func() { p.depth-- }()
	if err := p.next(); err != nil {
		return v, err
	}
	if p.tok == jtArrayEnd {
		return v, p.next()
	}
	for {
		el, err := p.parseValue("Expected JSON value")
		if err != nil {
			return v, err
		}
		v.elems = append(v.elems, el)
		switch p.tok {
		case jtComma:
			if err := p.next(); err != nil {
				return v, err
			}
		case jtArrayEnd:
			return v, p.next()
		default:
			return v, p.parseError(`Expected "," or "]"`)
		}
	}
}

// normalizeObject is uniqueifyJsonbObject: sort keys by length, then bytes;
// of equal keys keep the one written last.
func normalizeObject(v *jsonValue) {
	sort.SliceStable(v.pairs, func(i, j int) bool {
		a, b := v.pairs[i].key, v.pairs[j].key
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return bytes.Compare(a, b) < 0
	})
	out := v.pairs[:0]
	for i, pr := range v.pairs {
		if i+1 < len(v.pairs) && bytes.Equal(pr.key, v.pairs[i+1].key) {
			continue // a later duplicate follows
		}
		out = append(out, pr)
	}
	v.pairs = out
}

func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		switch c {
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}

// appendJSON is JsonbToCString.
func appendJSON(dst []byte, v *jsonValue) []byte {
	switch v.kind {
	case '{':
		dst = append(dst, '{')
		for i := range v.pairs {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			dst = appendJSONString(dst, v.pairs[i].key)
			dst = append(dst, ':', ' ')
			dst = appendJSON(dst, &v.pairs[i].val)
		}
		return append(dst, '}')
	case '[':
		dst = append(dst, '[')
		for i := range v.elems {
			if i > 0 {
				dst = append(dst, ',', ' ')
			}
			dst = appendJSON(dst, &v.elems[i])
		}
		return append(dst, ']')
	case 's':
		return appendJSONString(dst, v.text)
	case 'n':
		return append(dst, v.text...)
	case 't':
		return append(dst, "true"...)
	case 'f':
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

// jsonbFromText parses v and appends its normalized jsonb text.
func jsonbFromText(dst, v []byte) ([]byte, error) {
	p := jsonParser{in: v}
	if err := p.next(); err != nil {
		return dst, err
	}
	val, err := p.parseValue("Expected JSON value")
	if err != nil {
		return dst, err
	}
	if p.tok != jtEnd {
		return dst, p.parseError("Expected end of input")
	}
	return appendJSON(dst, &val), nil
}

// jsonbFromBinary is jsonb_recv: a version byte (1) and the JSON text.
func jsonbFromBinary(dst, v []byte, s *Session) ([]byte, error) {
	if len(v) < 1 {
		return dst, errInsufficientData()
	}
	if v[0] != 1 {
		return dst, newError(CodeInternalError, "unsupported jsonb version number "+strconv.Itoa(int(v[0])))
	}
	text, err := s.clientText(v[1:])
	if err != nil {
		return dst, err
	}
	return jsonbFromText(dst, text)
}
