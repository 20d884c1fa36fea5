package values

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Date styles and field orders (DateStyle, src/include/miscadmin.h).
type dateStyle uint8

const (
	styleISO dateStyle = iota
	styleSQL
	stylePostgres
	styleGerman
)

type dateOrder uint8

const (
	orderMDY dateOrder = iota
	orderDMY
	orderYMD
)

// Session is the formatting context PostgreSQL applies to one connection's
// text input and output: DateStyle, TimeZone, client_encoding, bytea_output
// and extra_float_digits. The zero value is PostgreSQL's default setting of
// each (ISO, MDY; UTC; UTF8; hex; 1). A nil *Session means the defaults too.
//
// The relay updates it with Set from the ParameterStatus messages the server
// sends (DateStyle, TimeZone and client_encoding are reported) and from what
// it sees of the two that the server does not report: bytea_output and
// extra_float_digits (startup parameters, SET, RESET).
//
// Canonical and Encode only read a Session, so any number of goroutines may
// use one at the same time; Set writes it. A relay that handles
// ParameterStatus on the server→client goroutine while the client→server
// goroutine converts Bind parameters should treat Sessions as values: copy
// the current one, Set on the copy, publish the copy (an atomic.Pointer),
// and never Set a published Session.
type Session struct {
	style    dateStyle
	order    dateOrder
	loc      *time.Location // nil: UTC
	utc      bool           // loc is UTC under any name: ISO output is the canonical form
	tzName   string         // TimeZone as last set, for messages
	tzErr    error          // TimeZone could not be loaded: timestamptz fails closed
	encoding string         // "" = UTF8; otherwise a client_encoding other than UTF8/SQL_ASCII
	cs       *charset       // the conversion of encoding; nil when pgcloak has none
	escape   bool           // bytea_output = escape
	floatDig int            // extra_float_digits <= 0: %.{15+efd}g; 0 means shortest (efd > 0)
}

var defaultSession Session

func (s *Session) orDefault() *Session {
	if s == nil {
		return &defaultSession
	}
	return s
}

// Transcodes reports whether text reaches the client in another encoding
// than the server's, which Encode converts it to.
func (s *Session) Transcodes() bool { return s != nil && s.encoding != "" }

// Set applies a run-time parameter as the server reported or accepted it.
// Names are matched case-insensitively; parameters that do not change how
// values look are ignored (nil). An invalid value returns an error and,
// for TimeZone, leaves the session unable to convert timestamptz values
// (they fail closed with SQLSTATE 0A000) until a valid zone is set.
func (s *Session) Set(name, value string) error {
	switch strings.ToLower(name) {
	case "datestyle":
		st, ord, err := parseDateStyle(value, s.style, s.order)
		if err != nil {
			return err
		}
		s.style, s.order = st, ord
	case "timezone":
		s.tzName = value
		loc, err := LoadTimeZone(value)
		if err != nil {
			s.loc, s.utc, s.tzErr = nil, false, err
			return err
		}
		s.loc, s.tzErr = loc, nil
		t := time.Unix(0, 0).In(loc)
		_, off := t.Zone()
		_, end := t.ZoneBounds()
		s.utc = off == 0 && end.IsZero()
	case "client_encoding":
		switch normEncoding(value) {
		case "utf8", "unicode", "sqlascii":
			s.encoding, s.cs = "", nil
		default:
			s.encoding = strings.ToUpper(value)
			if s.cs = lookupCharset(value); s.cs != nil {
				s.encoding = s.cs.name
			}
		}
	case "bytea_output":
		switch strings.ToLower(strings.TrimSpace(value)) {
		case "hex":
			s.escape = false
		case "escape":
			s.escape = true
		default:
			return fmt.Errorf("invalid value for parameter \"bytea_output\": %q", value)
		}
	case "extra_float_digits":
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || n < -15 || n > 3 {
			return fmt.Errorf("invalid value for parameter \"extra_float_digits\": %q", value)
		}
		if n > 0 {
			s.floatDig = 0
		} else {
			s.floatDig = 15 + n
		}
	}
	return nil
}

// normEncoding folds an encoding name the way PostgreSQL's clean_encoding_name
// does: lower case, only letters and digits.
func normEncoding(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		}
	}
	return string(b)
}

// parseDateStyle follows check_datestyle (src/backend/commands/variable.c):
// a list of a style (ISO, SQL, Postgres, German) and/or an order (YMD, DMY or
// Euro…, MDY or US or NonEuro…); what is not given is kept. German implies
// DMY unless an order is given.
func parseDateStyle(v string, style dateStyle, order dateOrder) (dateStyle, dateOrder, error) {
	haveStyle, haveOrder := false, false
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		t := strings.ToLower(tok)
		newStyle, isStyle := style, false
		switch {
		case t == "iso":
			newStyle, isStyle = styleISO, true
		case t == "sql":
			newStyle, isStyle = styleSQL, true
		case strings.HasPrefix(t, "postgres"):
			newStyle, isStyle = stylePostgres, true
		case t == "german":
			newStyle, isStyle = styleGerman, true
			if !haveOrder {
				order = orderDMY
			}
		case t == "ymd":
			if haveOrder && order != orderYMD {
				return style, order, fmt.Errorf("conflicting \"datestyle\" specifications: %q", v)
			}
			order, haveOrder = orderYMD, true
		case t == "dmy" || strings.HasPrefix(t, "euro"):
			if haveOrder && order != orderDMY {
				return style, order, fmt.Errorf("conflicting \"datestyle\" specifications: %q", v)
			}
			order, haveOrder = orderDMY, true
		case t == "mdy" || t == "us" || strings.HasPrefix(t, "noneuro"):
			if haveOrder && order != orderMDY {
				return style, order, fmt.Errorf("conflicting \"datestyle\" specifications: %q", v)
			}
			order, haveOrder = orderMDY, true
		case t == "default":
			style, order, haveStyle, haveOrder = styleISO, orderMDY, true, true
		default:
			return style, order, fmt.Errorf("invalid value for parameter \"DateStyle\": %q", v)
		}
		if isStyle {
			if haveStyle && newStyle != style {
				return style, order, fmt.Errorf("conflicting \"datestyle\" specifications: %q", v)
			}
			style, haveStyle = newStyle, true
		}
	}
	return style, order, nil
}

// location returns the session time zone, or an error when TimeZone was set
// to something LoadTimeZone could not load.
func (s *Session) location() (*time.Location, error) {
	if s.tzErr != nil {
		return nil, &ValueError{
			Code:    CodeFeatureNotSupported,
			Message: "time zone " + strconv.Quote(s.tzName) + " is not supported for protected timestamptz columns",
			Detail:  s.tzErr.Error(),
			Hint:    "Set TimeZone to an IANA zone name (for example \"Europe/Berlin\") or a fixed offset.",
		}
	}
	if s.loc == nil {
		return time.UTC, nil
	}
	return s.loc, nil
}

// unsupportedEncoding is the refusal of a non-ASCII value in a client
// encoding pgcloak does not convert.
func (s *Session) unsupportedEncoding() error {
	names := SupportedEncodings()
	sort.Strings(names)
	return &ValueError{
		Code:    CodeFeatureNotSupported,
		Message: "client_encoding " + s.encoding + " is not supported for non-ASCII values of protected columns",
		Hint:    "Use client_encoding UTF8, or one of " + strings.Join(names, ", ") + ".",
	}
}
