package values

import (
	"math"
	"strconv"
	"unsafe"
)

// Date and time input: a port of the parts of PostgreSQL 15's
// src/backend/utils/adt/datetime.c that date_in, timestamp_in and
// timestamptz_in use (ParseDateTime, DecodeDateTime, DecodeDate,
// DecodeNumber, DecodeNumberField, DecodeTime, DecodeTimezone,
// ValidateDate, DetermineTimeZoneOffset), so that a string is accepted,
// read and rejected as the server would. What is not ported is refused with
// an error, never guessed: see doc.go.
//
// This file holds the constants and ParseDateTime; DecodeDateTime is in
// datetime_decode.go, the single-field readers in datetime_fields.go and the
// calendar arithmetic in datetime_julian.go.

// Calendar and range constants (src/include/datatype/timestamp.h).
const (
	secsPerDay         = 86400
	usecsPerSec        = 1000000
	usecsPerDay        = 86400000000
	postgresEpochJDate = 2451545 // date2j(2000, 1, 1)
	unixEpochJDate     = 2440588 // date2j(1970, 1, 1)
	dateEndJulian      = 2147483494
	minTimestamp       = -211813488000000000 // 4714-11-24 00:00:00 BC
	endTimestamp       = 9223371331200000000 // 294277-01-01 00:00:00
	julianMinYear      = -4713
	julianMinMonth     = 11
	julianMaxYear      = 5874898
	julianMaxMonth     = 6
	maxDateLen         = 128
	maxDateFields      = 25
	maxTZDispHour      = 15
	tokMaxLen          = 10
	maxTZLen           = 10

	dateNoBegin = math.MinInt32
	dateNoEnd   = math.MaxInt32
	tsNoBegin   = math.MinInt64
	tsNoEnd     = math.MaxInt64
)

// Field types from ParseDateTime.
const (
	dtkNumber = iota
	dtkString
	dtkDate
	dtkTime
	dtkTZ
	dtkSpecial
)

// dtype results of DecodeDateTime.
const (
	dtkDateResult = iota
	dtkEpoch
	dtkLate
	dtkEarly
)

// Token types (DTK_M bits), as in src/include/utils/datetime.h.
const (
	tokReserv  = 0
	tokMonth   = 1
	tokYear    = 2
	tokDay     = 3
	tokTZ      = 5
	tokDTZ     = 6
	tokIgnore  = 8
	tokAMPM    = 9
	tokHour    = 10
	tokMinute  = 11
	tokSecond  = 12
	tokMilli   = 13
	tokMicro   = 14
	tokDoy     = 15
	tokDow     = 16
	tokUnits   = 17
	tokADBC    = 18
	tokISOTime = 23
	tokDTZMod  = 28
	tokUnknown = 31
)

func dtkM(t int) int { return 1 << t }

const (
	dtkDateM    = 1<<tokYear | 1<<tokMonth | 1<<tokDay
	dtkAllSecsM = 1<<tokSecond | 1<<tokMilli | 1<<tokMicro
	dtkTimeM    = 1<<tokHour | 1<<tokMinute | dtkAllSecsM
)

// Reserved-word values.
const (
	rsvEarly = iota + 1
	rsvLate
	rsvEpoch
	rsvNow
	rsvToday
	rsvTomorrow
	rsvYesterday
	rsvZulu
	unitTime   // "t"
	unitYear   // "y"
	unitMonth  // "m"
	unitDay    // "d"
	unitHour   // "h"
	unitMinute // "mm"
	unitSecond // "s"
	unitJulian // "j", "jd", "julian"
	unitOther  // dow, doy, isodow, isoyear
	valueAM    = 0
	valuePM    = 1
	valueAD    = 0
	valueBC    = 1
	valueHR24  = 2
	dstModSecs = 3600
)

type dateToken struct{ typ, val int }

// dateTokens is datetktbl of PostgreSQL 15.
var dateTokens = map[string]dateToken{
	"-infinity": {tokReserv, rsvEarly}, "ad": {tokADBC, valueAD}, "allballs": {tokReserv, rsvZulu},
	"am": {tokAMPM, valueAM}, "apr": {tokMonth, 4}, "april": {tokMonth, 4}, "at": {tokIgnore, 0},
	"aug": {tokMonth, 8}, "august": {tokMonth, 8}, "bc": {tokADBC, valueBC}, "d": {tokUnits, unitDay},
	"dec": {tokMonth, 12}, "december": {tokMonth, 12}, "dow": {tokUnits, unitOther}, "doy": {tokUnits, unitOther},
	"dst": {tokDTZMod, dstModSecs}, "epoch": {tokReserv, rsvEpoch}, "feb": {tokMonth, 2}, "february": {tokMonth, 2},
	"fri": {tokDow, 5}, "friday": {tokDow, 5}, "h": {tokUnits, unitHour}, "infinity": {tokReserv, rsvLate},
	"isodow": {tokUnits, unitOther}, "isoyear": {tokUnits, unitOther}, "j": {tokUnits, unitJulian},
	"jan": {tokMonth, 1}, "january": {tokMonth, 1}, "jd": {tokUnits, unitJulian}, "jul": {tokMonth, 7},
	"julian": {tokUnits, unitJulian}, "july": {tokMonth, 7}, "jun": {tokMonth, 6}, "june": {tokMonth, 6},
	"m": {tokUnits, unitMonth}, "mar": {tokMonth, 3}, "march": {tokMonth, 3}, "may": {tokMonth, 5},
	"mm": {tokUnits, unitMinute}, "mon": {tokDow, 1}, "monday": {tokDow, 1}, "nov": {tokMonth, 11},
	"november": {tokMonth, 11}, "now": {tokReserv, rsvNow}, "oct": {tokMonth, 10}, "october": {tokMonth, 10},
	"on": {tokIgnore, 0}, "pm": {tokAMPM, valuePM}, "s": {tokUnits, unitSecond}, "sat": {tokDow, 6},
	"saturday": {tokDow, 6}, "sep": {tokMonth, 9}, "sept": {tokMonth, 9}, "september": {tokMonth, 9},
	"sun": {tokDow, 0}, "sunday": {tokDow, 0}, "t": {tokISOTime, unitTime}, "thu": {tokDow, 4},
	"thur": {tokDow, 4}, "thurs": {tokDow, 4}, "thursday": {tokDow, 4}, "today": {tokReserv, rsvToday},
	"tomorrow": {tokReserv, rsvTomorrow}, "tue": {tokDow, 2}, "tues": {tokDow, 2}, "tuesday": {tokDow, 2},
	"wed": {tokDow, 3}, "wednesday": {tokDow, 3}, "weds": {tokDow, 3}, "y": {tokUnits, unitYear},
	"yesterday": {tokReserv, rsvYesterday},
}

// lookupToken is datebsearch over datetktbl (compares at most TOKMAXLEN
// bytes).
func lookupToken(s []byte) (dateToken, bool) {
	if len(s) > tokMaxLen {
		s = s[:tokMaxLen]
	}
	t, ok := dateTokens[string(s)]
	return t, ok
}

// DTERR codes.
const (
	dtErrBadFormat       = -1
	dtErrFieldOverflow   = -2
	dtErrMDFieldOverflow = -3
	dtErrTZDispOverflow  = -5
)

// pgTm is struct pg_tm plus fsec.
type pgTm struct {
	year, mon, mday, hour, min, sec, yday, wday int
	fsec                                        int64
}

// dtField is one field found by parseDateTime: its type and its lower-cased
// text, work[start:end].
type dtField struct {
	typ, start, end int
}

// dtWork holds parseDateTime's output. PostgreSQL copies the fields into a
// work buffer whose size (date_in MAXDATELEN+1, timestamp_in
// MAXDATELEN+MAXDATEFIELDS) bounds the input; buflen reproduces that.
type dtWork struct {
	buf    [maxDateLen + maxDateFields]byte
	used   int // bytes of buf used, including one NUL per field
	fields [maxDateFields]dtField
	nf     int
}

func (w *dtWork) text(f dtField) []byte { return w.buf[f.start:f.end] }

// parseDateTime is ParseDateTime: split the input into fields.
func (w *dtWork) parseDateTime(v []byte, buflen int) int {
	at := func(i int) byte {
		if i < len(v) {
			return v[i]
		}
		return 0
	}
	cp := 0
	for cp < len(v) {
		if isSpace(v[cp]) {
			cp++
			continue
		}
		if w.nf >= maxDateFields {
			return dtErrBadFormat
		}
		start := w.used
		var typ int
		c := v[cp]
		// put is APPEND_CHAR.
		put := func(c byte) bool {
			if w.used+1 >= buflen {
				return false
			}
			w.buf[w.used] = c
			w.used++
			return true
		}
		switch {
		case isDigit(c):
			if !put(c) {
				return dtErrBadFormat
			}
			cp++
			for isDigit(at(cp)) {
				if !put(v[cp]) {
					return dtErrBadFormat
				}
				cp++
			}
			switch d := at(cp); {
			case d == ':':
				typ = dtkTime
				if !put(d) {
					return dtErrBadFormat
				}
				cp++
				for isDigit(at(cp)) || at(cp) == ':' || at(cp) == '.' {
					if !put(v[cp]) {
						return dtErrBadFormat
					}
					cp++
				}
			case d == '-' || d == '/' || d == '.':
				delim := d
				if !put(d) {
					return dtErrBadFormat
				}
				cp++
				if isDigit(at(cp)) {
					typ = dtkDate
					if delim == '.' {
						typ = dtkNumber
					}
					for isDigit(at(cp)) {
						if !put(v[cp]) {
							return dtErrBadFormat
						}
						cp++
					}
					if at(cp) == delim {
						typ = dtkDate
						if !put(delim) {
							return dtErrBadFormat
						}
						cp++
						for isDigit(at(cp)) || at(cp) == delim {
							if !put(v[cp]) {
								return dtErrBadFormat
							}
							cp++
						}
					}
				} else {
					typ = dtkDate
					for isAlnum(at(cp)) || at(cp) == delim {
						if !put(lower(v[cp])) {
							return dtErrBadFormat
						}
						cp++
					}
				}
			default:
				typ = dtkNumber
			}
		case c == '.':
			if !put(c) {
				return dtErrBadFormat
			}
			cp++
			for isDigit(at(cp)) {
				if !put(v[cp]) {
					return dtErrBadFormat
				}
				cp++
			}
			typ = dtkNumber
		case isAlpha(c):
			typ = dtkString
			for isAlpha(at(cp)) {
				if !put(lower(v[cp])) {
					return dtErrBadFormat
				}
				cp++
			}
			isDate := false
			if d := at(cp); d == '-' || d == '/' || d == '.' {
				isDate = true
			} else if d == '+' || isDigit(d) {
				if _, ok := lookupToken(w.buf[start:w.used]); !ok {
					isDate = true
				}
			}
			if isDate {
				typ = dtkDate
				for {
					if !put(lower(v[cp])) {
						return dtErrBadFormat
					}
					cp++
					d := at(cp)
					if !(d == '+' || d == '-' || d == '/' || d == '_' || d == '.' || d == ':' || isAlnum(d)) {
						break
					}
				}
			}
		case c == '+' || c == '-':
			if !put(c) {
				return dtErrBadFormat
			}
			cp++
			for cp < len(v) && isSpace(v[cp]) {
				cp++
			}
			switch d := at(cp); {
			case isDigit(d):
				typ = dtkTZ
				if !put(d) {
					return dtErrBadFormat
				}
				cp++
				for isDigit(at(cp)) || at(cp) == ':' || at(cp) == '.' || at(cp) == '-' {
					if !put(v[cp]) {
						return dtErrBadFormat
					}
					cp++
				}
			case isAlpha(d):
				typ = dtkSpecial
				for isAlpha(at(cp)) {
					if !put(lower(v[cp])) {
						return dtErrBadFormat
					}
					cp++
				}
			default:
				return dtErrBadFormat
			}
		case c > ' ' && c < 0x7f: // ispunct: other punctuation separates fields
			cp++
			continue
		default:
			return dtErrBadFormat
		}
		w.fields[w.nf] = dtField{typ: typ, start: start, end: w.used}
		w.nf++
		w.used++ // the field's terminating NUL
	}
	return 0
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }

// strtoint parses leading decimal digits of s like strtol into a C int:
// value, rest, and whether it overflowed. No digits: rest == s.
func strtoint(s []byte) (val int, rest []byte, overflow bool) {
	i := 0
	var v int64
	for i < len(s) && isDigit(s[i]) {
		if v <= math.MaxInt32 {
			v = v*10 + int64(s[i]-'0')
		}
		i++
	}
	if v > math.MaxInt32 {
		return math.MaxInt32, s[i:], true
	}
	return int(v), s[i:], false
}

// atoi is glibc's atoi on a digit string: (int) strtol(s), where strtol
// saturates at LONG_MAX and the cast keeps the low 32 bits.
func atoi(s []byte) int {
	var v uint64
	for _, c := range s {
		if !isDigit(c) {
			break
		}
		if v > (math.MaxInt64-uint64(c-'0'))/10 {
			v = math.MaxInt64
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return int(int32(v))
}

// parseFractionalSecond is ParseFractionalSecond: s starts at '.', the rest
// must be digits (possibly none); rounds to microseconds with rint().
func parseFractionalSecond(s []byte) (int64, int) {
	if len(s) == 1 {
		return 0, 0 // just "." is allowed
	}
	for _, c := range s[1:] {
		if !isDigit(c) {
			return 0, dtErrBadFormat
		}
	}
	frac, err := strconv.ParseFloat(unsafe.String(&s[0], len(s)), 64)
	if err != nil {
		return 0, dtErrBadFormat
	}
	return int64(math.RoundToEven(frac * 1000000)), 0
}
