package copyfmt

import (
	"strings"
)

// Format is a COPY data format.
type Format uint8

const (
	Text   Format = iota // FORMAT text (the default)
	CSV                  // FORMAT csv
	Binary               // FORMAT binary
)

func (f Format) String() string {
	switch f {
	case Text:
		return "text"
	case CSV:
		return "csv"
	case Binary:
		return "binary"
	}
	return "invalid"
}

// ArgKind is the kind of argument an Option carries, as the parser gives it
// (the node type of DefElem.arg in pg_query).
type ArgKind uint8

const (
	ArgNone   ArgKind = iota // no argument: HEADER, FREEZE written alone
	ArgString                // a String or Boolean node (TRUE/FALSE/ON/OFF arrive as strings)
	ArgNumber                // an Integer or Float node; Value holds its text ("1", "0", "1.5")
	ArgList                  // a parenthesised list of names: List
	ArgStar                  // * (FORCE_QUOTE *)
)

// Option is one option of a COPY statement: DefElem.defname and its
// argument. The session converts pg_query's CopyStmt.Options to these, so
// that this package does not depend on the parser. The old syntax (`WITH
// CSV HEADER`, `BINARY`, `DELIMITER AS ','`, `FORCE NOT NULL a`) reaches
// here as the same DefElems the grammar makes of it ("format"="csv",
// "header"=true, "force_not_null"=(a), …).
type Option struct {
	Name  string // lower-case option name: format, delimiter, null, header, …
	Kind  ArgKind
	Value string   // ArgString, ArgNumber
	List  []string // ArgList
}

// Options are the format options of one COPY statement, with PostgreSQL's
// defaults filled in.
type Options struct {
	Format    Format
	Delimiter byte   // default '\t' (text), ',' (CSV); unused in binary
	Null      string // default `\N` (text), "" (CSV); unused in binary
	Quote     byte   // CSV only; default '"'
	Escape    byte   // CSV only; default: Quote

	// Header: the first line is a header (text and CSV; PostgreSQL 15
	// accepts HEADER in text format too). It passes through unchanged.
	Header bool
	// HeaderMatch: HEADER MATCH (COPY FROM only). The server checks the
	// names; this package forwards the line unchanged.
	HeaderMatch bool

	ForceQuote    []string // FORCE_QUOTE (a, b): COPY TO, CSV
	ForceQuoteAll bool     // FORCE_QUOTE *
	ForceNotNull  []string // FORCE_NOT_NULL (a, b): COPY FROM, CSV
	ForceNull     []string // FORCE_NULL (a, b): COPY FROM, CSV

	Freeze bool
	// Encoding is the ENCODING option as PostgreSQL names the encoding
	// ("UTF8", "LATIN1", "SQL_ASCII", …), or "" when absent (the data is
	// then in the client_encoding). The session decides what it supports;
	// Config.Encoding takes the effective encoding.
	Encoding string
}

// DefaultOptions returns PostgreSQL's defaults for format f.
func DefaultOptions(f Format) Options {
	o := Options{Format: f}
	switch f {
	case Text:
		o.Delimiter, o.Null = '\t', `\N`
	case CSV:
		o.Delimiter, o.Null, o.Quote, o.Escape = ',', "", '"', '"'
	}
	return o
}

// SQLSTATEs of option errors (PostgreSQL's own, from ProcessCopyOptions).
const (
	CodeSyntaxError           = "42601" // syntax_error
	CodeInvalidParameterValue = "22023" // invalid_parameter_value
	CodeFeatureNotSupported   = "0A000" // feature_not_supported
	CodeInvalidColumnRef      = "42P10" // invalid_column_reference
)

func optError(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// ParseOptions reads the options of a COPY statement exactly as PostgreSQL
// 15's ProcessCopyOptions does, with the same errors (SQLSTATE and message),
// and fills in the defaults. isFrom is true for COPY … FROM.
//
// The server checks the same options when the session forwards the
// statement, so an error here means PostgreSQL would refuse the statement
// too. Options PostgreSQL 15 does not know (DEFAULT, ON_ERROR,
// LOG_VERBOSITY of later releases, OIDS) are "not recognized" here; that is
// deliberate: a DEFAULT marker in a protected column, for one, cannot be
// honoured without storing a server-side default as if it were ciphertext.
func ParseOptions(opts []Option, isFrom bool) (Options, error) {
	var (
		o                                            Options
		formatSet, freezeSet, headerSet              bool
		delim, null, quote, escape                   *string
		forceQuoteSet, forceNotNullSet, forceNullSet bool
		encodingSet                                  bool
	)
	conflicting := func() (Options, error) {
		return Options{}, optError(CodeSyntaxError, "conflicting or redundant options")
	}
	for i := range opts {
		d := &opts[i]
		switch d.Name {
		case "format":
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			if formatSet {
				return conflicting()
			}
			formatSet = true
			switch s {
			case "text":
				o.Format = Text
			case "csv":
				o.Format = CSV
			case "binary":
				o.Format = Binary
			default:
				return Options{}, optError(CodeInvalidParameterValue, `COPY format "`+s+`" not recognized`)
			}
		case "freeze":
			if freezeSet {
				return conflicting()
			}
			freezeSet = true
			b, err := d.boolean()
			if err != nil {
				return Options{}, err
			}
			o.Freeze = b
		case "delimiter":
			if delim != nil {
				return conflicting()
			}
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			delim = &s
		case "null":
			if null != nil {
				return conflicting()
			}
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			null = &s
		case "header":
			if headerSet {
				return conflicting()
			}
			headerSet = true
			h, m, err := d.header(isFrom)
			if err != nil {
				return Options{}, err
			}
			o.Header, o.HeaderMatch = h, m
		case "quote":
			if quote != nil {
				return conflicting()
			}
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			quote = &s
		case "escape":
			if escape != nil {
				return conflicting()
			}
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			escape = &s
		case "force_quote":
			if forceQuoteSet {
				return conflicting()
			}
			forceQuoteSet = true
			switch d.Kind {
			case ArgStar:
				o.ForceQuoteAll = true
			case ArgList:
				o.ForceQuote = d.List
			default:
				return Options{}, listError(d.Name)
			}
		case "force_not_null":
			if forceNotNullSet {
				return conflicting()
			}
			forceNotNullSet = true
			if d.Kind != ArgList {
				return Options{}, listError(d.Name)
			}
			o.ForceNotNull = d.List
		case "force_null":
			if forceNullSet {
				return conflicting()
			}
			forceNullSet = true
			if d.Kind != ArgList {
				return Options{}, listError(d.Name)
			}
			o.ForceNull = d.List
		case "encoding":
			if encodingSet {
				return conflicting()
			}
			encodingSet = true
			s, err := d.str()
			if err != nil {
				return Options{}, err
			}
			enc := EncodingName(s)
			if enc == "" {
				return Options{}, optError(CodeInvalidParameterValue,
					`argument to option "`+d.Name+`" must be a valid encoding name`)
			}
			o.Encoding = enc
		default:
			return Options{}, optError(CodeSyntaxError, `option "`+d.Name+`" not recognized`)
		}
	}

	binary, csv := o.Format == Binary, o.Format == CSV
	if binary && delim != nil {
		return Options{}, optError(CodeSyntaxError, "cannot specify DELIMITER in BINARY mode")
	}
	if binary && null != nil {
		return Options{}, optError(CodeSyntaxError, "cannot specify NULL in BINARY mode")
	}
	d := "\t"
	if csv {
		d = ","
	}
	if delim != nil {
		d = *delim
	}
	n := `\N`
	if csv {
		n = ""
	}
	if null != nil {
		n = *null
	}
	var q, e string
	if csv {
		q = `"`
		if quote != nil {
			q = *quote
		}
		e = q
		if escape != nil {
			e = *escape
		}
	}
	// C strings: the checks below use strlen/strchr, which stop at a NUL.
	d, n, q, e = cstr(d), cstr(n), cstr(q), cstr(e)
	if len(d) != 1 {
		return Options{}, optError(CodeFeatureNotSupported, "COPY delimiter must be a single one-byte character")
	}
	if d[0] == '\r' || d[0] == '\n' {
		return Options{}, optError(CodeInvalidParameterValue, "COPY delimiter cannot be newline or carriage return")
	}
	if strings.ContainsAny(n, "\r\n") {
		return Options{}, optError(CodeInvalidParameterValue, "COPY null representation cannot use newline or carriage return")
	}
	if !csv && strings.IndexByte(`\.abcdefghijklmnopqrstuvwxyz0123456789`, d[0]) >= 0 {
		return Options{}, optError(CodeInvalidParameterValue, `COPY delimiter cannot be "`+d+`"`)
	}
	if binary && o.Header {
		return Options{}, optError(CodeFeatureNotSupported, "cannot specify HEADER in BINARY mode")
	}
	if !csv && quote != nil {
		return Options{}, optError(CodeFeatureNotSupported, "COPY quote available only in CSV mode")
	}
	if csv && len(q) != 1 {
		return Options{}, optError(CodeFeatureNotSupported, "COPY quote must be a single one-byte character")
	}
	if csv && d[0] == q[0] {
		return Options{}, optError(CodeInvalidParameterValue, "COPY delimiter and quote must be different")
	}
	if !csv && escape != nil {
		return Options{}, optError(CodeFeatureNotSupported, "COPY escape available only in CSV mode")
	}
	if csv && len(e) != 1 {
		return Options{}, optError(CodeFeatureNotSupported, "COPY escape must be a single one-byte character")
	}
	if !csv && (o.ForceQuote != nil || o.ForceQuoteAll) {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force quote available only in CSV mode")
	}
	if (o.ForceQuote != nil || o.ForceQuoteAll) && isFrom {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force quote only available using COPY TO")
	}
	if !csv && o.ForceNotNull != nil {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force not null available only in CSV mode")
	}
	if o.ForceNotNull != nil && !isFrom {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force not null only available using COPY FROM")
	}
	if !csv && o.ForceNull != nil {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force null available only in CSV mode")
	}
	if o.ForceNull != nil && !isFrom {
		return Options{}, optError(CodeFeatureNotSupported, "COPY force null only available using COPY FROM")
	}
	if strings.IndexByte(n, d[0]) >= 0 {
		return Options{}, optError(CodeFeatureNotSupported, "COPY delimiter must not appear in the NULL specification")
	}
	if csv && strings.IndexByte(n, q[0]) >= 0 {
		return Options{}, optError(CodeFeatureNotSupported, "CSV quote character must not appear in the NULL specification")
	}
	if !binary {
		o.Delimiter, o.Null = d[0], n
	}
	if csv {
		o.Quote, o.Escape = q[0], e[0]
	}
	return o, nil
}

func cstr(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

func listError(name string) *Error {
	return optError(CodeInvalidParameterValue, `argument to option "`+name+`" must be a list of column names`)
}

// str is defGetString.
func (d *Option) str() (string, error) {
	switch d.Kind {
	case ArgNone:
		return "", optError(CodeSyntaxError, d.Name+" requires a parameter")
	case ArgList:
		return strings.Join(d.List, "."), nil // NameListToString
	case ArgStar:
		return "*", nil
	}
	return d.Value, nil
}

// boolean is defGetBoolean.
func (d *Option) boolean() (bool, error) {
	switch d.Kind {
	case ArgNone:
		return true, nil
	case ArgNumber:
		switch d.Value {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
	default:
		s, _ := d.str()
		switch strings.ToLower(s) {
		case "true", "on":
			return true, nil
		case "false", "off":
			return false, nil
		}
	}
	return false, optError(CodeSyntaxError, d.Name+" requires a Boolean value")
}

// header is defGetCopyHeaderChoice: (header, match).
func (d *Option) header(isFrom bool) (bool, bool, error) {
	switch d.Kind {
	case ArgNone:
		return true, false, nil
	case ArgNumber:
		switch d.Value {
		case "0":
			return false, false, nil
		case "1":
			return true, false, nil
		}
	default:
		s, _ := d.str()
		switch strings.ToLower(s) {
		case "true", "on":
			return true, false, nil
		case "false", "off":
			return false, false, nil
		case "match":
			if !isFrom {
				return false, false, optError(CodeFeatureNotSupported,
					`cannot use "`+s+`" with HEADER in COPY TO`)
			}
			return true, true, nil
		}
	}
	return false, false, optError(CodeSyntaxError, d.Name+` requires a Boolean value or "match"`)
}

// EncodingName returns PostgreSQL's name for the encoding s names
// (pg_char_to_encoding: case and punctuation are ignored, aliases such as
// "unicode", "latin1", "win1252" are known), or "" if s names none.
func EncodingName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		}
	}
	return encodingAliases[b.String()]
}

// encodingAliases is pg_encname_tbl (src/common/encnames.c, PostgreSQL 15):
// cleaned alias → encoding name.
var encodingAliases = map[string]string{
	"abc": "WIN1258", "alt": "WIN866", "big5": "BIG5", "euccn": "EUC_CN",
	"eucjis2004": "EUC_JIS_2004", "eucjp": "EUC_JP", "euckr": "EUC_KR", "euctw": "EUC_TW",
	"gb18030": "GB18030", "gbk": "GBK", "iso88591": "LATIN1", "iso885910": "LATIN6",
	"iso885913": "LATIN7", "iso885914": "LATIN8", "iso885915": "LATIN9", "iso885916": "LATIN10",
	"iso88592": "LATIN2", "iso88593": "LATIN3", "iso88594": "LATIN4", "iso88595": "ISO_8859_5",
	"iso88596": "ISO_8859_6", "iso88597": "ISO_8859_7", "iso88598": "ISO_8859_8", "iso88599": "LATIN5",
	"johab": "JOHAB", "koi8": "KOI8R", "koi8r": "KOI8R", "koi8u": "KOI8U",
	"latin1": "LATIN1", "latin10": "LATIN10", "latin2": "LATIN2", "latin3": "LATIN3",
	"latin4": "LATIN4", "latin5": "LATIN5", "latin6": "LATIN6", "latin7": "LATIN7",
	"latin8": "LATIN8", "latin9": "LATIN9", "mskanji": "SJIS", "muleinternal": "MULE_INTERNAL",
	"shiftjis": "SJIS", "shiftjis2004": "SHIFT_JIS_2004", "sjis": "SJIS", "sqlascii": "SQL_ASCII",
	"tcvn": "WIN1258", "tcvn5712": "WIN1258", "uhc": "UHC", "unicode": "UTF8", "utf8": "UTF8",
	"vscii": "WIN1258", "win": "WIN1251", "win1250": "WIN1250", "win1251": "WIN1251",
	"win1252": "WIN1252", "win1253": "WIN1253", "win1254": "WIN1254", "win1255": "WIN1255",
	"win1256": "WIN1256", "win1257": "WIN1257", "win1258": "WIN1258", "win866": "WIN866",
	"win874": "WIN874", "win932": "SJIS", "win936": "GBK", "win949": "UHC", "win950": "BIG5",
	"windows1250": "WIN1250", "windows1251": "WIN1251", "windows1252": "WIN1252",
	"windows1253": "WIN1253", "windows1254": "WIN1254", "windows1255": "WIN1255",
	"windows1256": "WIN1256", "windows1257": "WIN1257", "windows1258": "WIN1258",
	"windows866": "WIN866", "windows874": "WIN874", "windows932": "SJIS", "windows936": "GBK",
	"windows949": "UHC", "windows950": "BIG5",
}
