package copyfmt

import (
	"bytes"
	"strconv"
	"strings"
)

// SQLSTATEs of data errors (PostgreSQL's codes for the same conditions).
const (
	CodeBadCopyFileFormat           = "22P04" // bad_copy_file_format
	CodeInvalidTextRepresentation   = "22P02" // invalid_text_representation
	CodeInvalidBinaryRepresentation = "22P03" // invalid_binary_representation
	CodeCharacterNotInRepertoire    = "22021" // character_not_in_repertoire
	CodeProgramLimitExceeded        = "54000" // program_limit_exceeded
)

// Error is malformed COPY data, a bad option, or a failure of the FieldFunc.
//
// For malformed data, Code, Message, Hint and Context are what PostgreSQL 15
// sends for the same input: the ErrorResponse fields C, M, H and W, e.g.
//
//	Code    22P04
//	Message missing data for column "email"
//	Context COPY customers, line 3: "42	Ann"
//
// Own marks the conditions that pgcloak raises and PostgreSQL does not (a
// row over Config.MaxRow): the session prefixes their message "pgcloak: ".
//
// When the FieldFunc fails, Err is its error unchanged, Code and Message are
// empty, Column names the column, and Context is the CONTEXT PostgreSQL
// gives an input function's error there ("COPY t, line 3, column email:
// \"…\""): the session turns Err into its own ErrorResponse and adds the
// context.
type Error struct {
	Code    string
	Message string
	Hint    string
	Context string // "" when PostgreSQL gives none (options, binary header)
	Line    int64  // line (text, CSV) or tuple (binary) number, 1-based; 0 if none
	Column  string // the column concerned, if any
	Own     bool
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Err != nil && e.Message == "" {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(e.Message)
		b.WriteString(" (SQLSTATE ")
		b.WriteString(e.Code)
		b.WriteString(")")
	}
	if e.Context != "" {
		b.WriteString("; CONTEXT: ")
		b.WriteString(e.Context)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxDisplay is MAX_COPY_DATA_DISPLAY: how much of a line or value
// PostgreSQL quotes in an error context.
const maxDisplay = 100

// printout is limit_printout_length: s up to its first NUL (it is a C
// string there), clipped to 100 bytes at a character boundary, "..." added
// when clipped.
func printout(s []byte, utf8 bool) string {
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) <= maxDisplay {
		return string(s)
	}
	n := maxDisplay
	if utf8 {
		// pg_mbcliplen: whole characters only.
		n = 0
		for n < len(s) {
			l := utf8Len(s[n])
			if n+l > maxDisplay {
				break
			}
			n += l
			if n == maxDisplay {
				break
			}
		}
	}
	return string(s[:n]) + "..."
}

// utf8Len is pg_utf_mblen: the length a UTF-8 lead byte announces.
func utf8Len(c byte) int {
	switch {
	case c&0x80 == 0:
		return 1
	case c&0xe0 == 0xc0:
		return 2
	case c&0xf0 == 0xe0:
		return 3
	case c&0xf8 == 0xf0:
		return 4
	}
	return 1
}

func (r *Rewriter) copyContext() string {
	return "COPY " + r.table + ", line " + strconv.FormatInt(r.lineno, 10)
}

// errLine is an error about the line being read (no line text: PostgreSQL
// has not finished reading it).
func (r *Rewriter) errLine(code, msg, hint string) *Error {
	return &Error{Code: code, Message: msg, Hint: hint, Context: r.copyContext(), Line: r.lineno}
}

// errLineText is an error about a line read whole: the context quotes it.
func (r *Rewriter) errLineText(code, msg string, line []byte) *Error {
	return &Error{Code: code, Message: msg, Line: r.lineno,
		Context: r.copyContext() + `: "` + printout(line, r.checkUTF8) + `"`}
}

// errColumn is an error about one field. withValue quotes the value (text
// and CSV input); binary contexts name only the column.
func (r *Rewriter) errColumn(code, msg string, col int, value []byte, withValue bool) *Error {
	ctx := r.copyContext() + ", column " + r.columns[col]
	if withValue {
		ctx += `: "` + printout(value, r.checkUTF8) + `"`
	}
	return &Error{Code: code, Message: msg, Line: r.lineno, Column: r.columns[col], Context: ctx}
}

func (r *Rewriter) errMissing(col int, line []byte) *Error {
	return r.errLineText(CodeBadCopyFileFormat, `missing data for column "`+r.columns[col]+`"`, line)
}

func (r *Rewriter) errTooLong() *Error {
	e := r.errLine(CodeProgramLimitExceeded,
		"COPY row is longer than "+strconv.Itoa(r.maxRow)+" bytes, the limit for tables with protected columns", "")
	e.Own = true
	return e
}

// invalidUTF8 returns the offset of the first byte of s that is not valid
// UTF-8 as PostgreSQL checks it (pg_verify_mbstr: no NUL, no surrogates, no
// overlong forms, nothing above U+10FFFF), or -1.
func invalidUTF8(s []byte) int {
	i := 0
	for i < len(s) {
		// ASCII fast path, 8 bytes at a time.
		for i+8 <= len(s) {
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			// any high bit set, or any zero byte
			if w&0x8080808080808080 != 0 || (w-0x0101010101010101)&^w&0x8080808080808080 != 0 {
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < 0x80 {
			if c == 0 {
				return i
			}
			i++
			continue
		}
		n := utf8Valid(s[i:])
		if n == 0 {
			return i
		}
		i += n
	}
	return -1
}

// utf8Valid returns the length of the valid multibyte character at s[0]
// (pg_utf8_islegal), or 0.
func utf8Valid(s []byte) int {
	c := s[0]
	var n int
	switch {
	case c >= 0xc2 && c <= 0xdf:
		n = 2
	case c >= 0xe0 && c <= 0xef:
		n = 3
	case c >= 0xf0 && c <= 0xf4:
		n = 4
	default:
		return 0
	}
	if len(s) < n {
		return 0
	}
	lo, hi := byte(0x80), byte(0xbf)
	switch c {
	case 0xe0:
		lo = 0xa0
	case 0xed:
		hi = 0x9f
	case 0xf0:
		lo = 0x90
	case 0xf4:
		hi = 0x8f
	}
	if s[1] < lo || s[1] > hi {
		return 0
	}
	for k := 2; k < n; k++ {
		if s[k] < 0x80 || s[k] > 0xbf {
			return 0
		}
	}
	return n
}

// encodingMessage is report_invalid_encoding's message for the character at
// s[0] (s runs to the end of the data at hand).
func encodingMessage(s []byte) string {
	l := utf8Len(s[0])
	l = min(l, len(s), 8)
	var b strings.Builder
	b.WriteString(`invalid byte sequence for encoding "UTF8": `)
	for j := 0; j < l; j++ {
		if j > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("0x")
		b.WriteByte(hexdigits[s[j]>>4])
		b.WriteByte(hexdigits[s[j]&15])
	}
	return b.String()
}
