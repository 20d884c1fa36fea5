package values

import (
	"math"
	"strconv"
	"time"
	"unsafe"
)

// Date and time input: a port of the parts of PostgreSQL 15's
// src/backend/utils/adt/datetime.c that date_in, timestamp_in and
// timestamptz_in use (ParseDateTime, DecodeDateTime, DecodeDate,
// DecodeNumber, DecodeNumberField, DecodeTime, DecodeTimezone,
// ValidateDate, DetermineTimeZoneOffset), so that a string is accepted,
// read and rejected as the server would. What is not ported is refused with
// an error, never guessed: see doc.go.

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

// dtDecoder holds DecodeDateTime's state.
type dtDecoder struct {
	tm           pgTm
	fmask        int
	dtype        int
	tz           int // seconds west of UTC, as PostgreSQL's *tzp
	haveTextMon  bool
	is2digits    bool
	isJulian     bool
	bc           bool
	mer          int
	namedTz      *time.Location // a zone named in the input, applied once the date is known
	order        dateOrder
	refused      *ValueError // a value pgcloak refuses (not a PostgreSQL error)
	rulesZone    *ValueError // namedTz is a POSIX zone with rules: refuse if it is used
	unknownTzErr *ValueError
}

// decodeDateTime is DecodeDateTime (with tzp != NULL). It returns 0, 1
// (time only) or a DTERR code; d.refused/d.unknownTzErr carry errors that
// PostgreSQL raises directly.
func (d *dtDecoder) decodeDateTime(w *dtWork, s *Session, needZone bool) int {
	d.dtype = dtkDateResult
	d.mer = valueHR24
	ptype := 0
	fields := w.fields[:w.nf]
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		fs := w.text(f)
		tmask := 0
		switch f.typ {
		case dtkDate:
			if ptype == unitJulian {
				// Integral Julian day with a time zone attached.
				val, rest, overflow := strtoint(fs)
				if overflow {
					return dtErrFieldOverflow
				}
				d.tm.year, d.tm.mon, d.tm.mday = j2date(val)
				d.isJulian = true
				tz, e := decodeTimezone(rest)
				if e != 0 {
					return e
				}
				d.tz = tz
				tmask = dtkDateM | dtkTimeM | dtkM(tokTZ)
				ptype = 0
				break
			}
			if ptype != 0 || d.fmask&(dtkM(tokMonth)|dtkM(tokDay)) == dtkM(tokMonth)|dtkM(tokDay) {
				if isDigit(fs[0]) || ptype != 0 {
					if ptype != 0 {
						if ptype != unitTime {
							return dtErrBadFormat
						}
						ptype = 0
					}
					if d.fmask&dtkTimeM == dtkTimeM {
						return dtErrBadFormat
					}
					dash := indexByte(fs, '-')
					if dash < 0 {
						return dtErrBadFormat
					}
					tz, e := decodeTimezone(fs[dash:])
					if e != 0 {
						return e
					}
					d.tz = tz
					var r int
					tmask, r = d.decodeNumberField(fs[:dash], d.fmask)
					if r < 0 {
						return r
					}
					tmask |= dtkM(tokTZ)
				} else {
					loc, err := LoadTimeZone(string(fs))
					if err == errPOSIXRules {
						// PostgreSQL accepts it; refuse once the rest is valid.
						d.rulesZone, loc, err = refusedZone(fs), time.UTC, nil
					}
					if err != nil {
						d.unknownTzErr = newError(CodeInvalidParameterValue, `time zone "`+string(fs)+`" not recognized`)
						return dtErrBadFormat
					}
					d.namedTz = loc
					tmask = dtkM(tokTZ)
				}
			} else {
				var e int
				tmask, e = d.decodeDate(fs, d.fmask)
				if e != 0 {
					return e
				}
			}
		case dtkTime:
			if ptype != 0 {
				if ptype != unitTime {
					return dtErrBadFormat
				}
				ptype = 0
			}
			var e int
			tmask, e = d.decodeTime(fs)
			if e != 0 {
				return e
			}
			if timeOverflows(d.tm.hour, d.tm.min, d.tm.sec, d.tm.fsec) {
				return dtErrFieldOverflow
			}
		case dtkTZ:
			tz, e := decodeTimezone(fs)
			if e != 0 {
				return e
			}
			d.tz = tz
			tmask = dtkM(tokTZ)
		case dtkNumber:
			if ptype != 0 {
				// The previous field labelled this one (y2001m02d04,
				// J2451545, T040506).
				val, rest, overflow := strtoint(fs)
				if overflow {
					return dtErrFieldOverflow
				}
				if len(rest) > 0 {
					if rest[0] != '.' {
						return dtErrBadFormat
					}
					if ptype != unitJulian && ptype != unitTime && ptype != unitSecond {
						return dtErrBadFormat
					}
				}
				switch ptype {
				case unitYear:
					d.tm.year, tmask = val, dtkM(tokYear)
				case unitMonth:
					if d.fmask&dtkM(tokMonth) != 0 && d.fmask&dtkM(tokHour) != 0 {
						d.tm.min, tmask = val, dtkM(tokMinute)
					} else {
						d.tm.mon, tmask = val, dtkM(tokMonth)
					}
				case unitDay:
					d.tm.mday, tmask = val, dtkM(tokDay)
				case unitHour:
					d.tm.hour, tmask = val, dtkM(tokHour)
				case unitMinute:
					d.tm.min, tmask = val, dtkM(tokMinute)
				case unitSecond:
					d.tm.sec, tmask = val, dtkM(tokSecond)
					if len(rest) > 0 {
						fsec, e := parseFractionalSecond(rest)
						if e != 0 {
							return e
						}
						d.tm.fsec = fsec
						tmask = dtkAllSecsM
					}
				case unitJulian:
					if val < 0 {
						return dtErrFieldOverflow
					}
					tmask = dtkDateM
					d.tm.year, d.tm.mon, d.tm.mday = j2date(val)
					d.isJulian = true
					if len(rest) > 0 {
						frac := 0.0
						if len(rest) > 1 {
							if !allDigits(rest[1:]) {
								return dtErrBadFormat
							}
							var err error
							if frac, err = strconv.ParseFloat(unsafe.String(&rest[0], len(rest)), 64); err != nil {
								return dtErrBadFormat
							}
						}
						us := int64(frac * usecsPerDay) // dt2time(Timestamp) truncates
						d.tm.hour = int(us / (3600 * usecsPerSec))
						us -= int64(d.tm.hour) * 3600 * usecsPerSec
						d.tm.min = int(us / (60 * usecsPerSec))
						us -= int64(d.tm.min) * 60 * usecsPerSec
						d.tm.sec = int(us / usecsPerSec)
						d.tm.fsec = us - int64(d.tm.sec)*usecsPerSec
						tmask |= dtkTimeM
					}
				case unitTime:
					var r int
					tmask, r = d.decodeNumberField(fs, d.fmask|dtkDateM)
					if r < 0 {
						return r
					}
					if tmask != dtkTimeM {
						return dtErrBadFormat
					}
				default:
					return dtErrBadFormat
				}
				ptype = 0
				d.dtype = dtkDateResult
				break
			}
			flen := len(fs)
			dot := indexByte(fs, '.')
			switch {
			case dot >= 0 && d.fmask&dtkDateM == 0:
				var e int
				tmask, e = d.decodeDate(fs, d.fmask)
				if e != 0 {
					return e
				}
			case dot >= 0 && dot > 2:
				var r int
				tmask, r = d.decodeNumberField(fs, d.fmask)
				if r < 0 {
					return r
				}
			case flen >= 6 && (d.fmask&dtkDateM == 0 || d.fmask&dtkTimeM == 0):
				var r int
				tmask, r = d.decodeNumberField(fs, d.fmask)
				if r < 0 {
					return r
				}
			default:
				var e int
				tmask, e = d.decodeNumber(fs, d.haveTextMon, d.fmask)
				if e != 0 {
					return e
				}
			}
		case dtkString, dtkSpecial:
			typ, val, isAbbrev := tokUnknown, 0, false
			if a, ok := lookupAbbrev(fs); ok {
				isAbbrev = true
				typ, val = tokTZ, -a.offset
				if a.dst {
					typ = tokDTZ
				}
				if a.zone != "" {
					// A dynamic abbreviation: its offset depends on the
					// zone's history, which pgcloak does not evaluate.
					// Only timestamptz needs it.
					typ, val = tokTZ, 0
					if needZone {
						d.refused = &ValueError{
							Code:    CodeFeatureNotSupported,
							Message: `time zone abbreviation "` + string(fs) + `" is not supported for protected columns`,
							Hint:    "Use a numeric offset such as +03 or a full time zone name such as Europe/Moscow.",
						}
						return dtErrBadFormat
					}
				}
			}
			if !isAbbrev {
				if t, ok := lookupToken(fs); ok {
					typ, val = t.typ, t.val
				}
			}
			if typ == tokIgnore {
				continue
			}
			tmask = dtkM(typ)
			switch typ {
			case tokReserv:
				switch val {
				case rsvNow, rsvToday, rsvTomorrow, rsvYesterday:
					d.refused = &ValueError{
						Code:    CodeFeatureNotSupported,
						Message: `date/time value "` + string(fs) + `" depends on the server's clock and cannot be stored in a protected column`,
						Hint:    "Send the date or time itself.",
					}
					return dtErrBadFormat
				case rsvZulu:
					tmask = dtkTimeM | dtkM(tokTZ)
					d.dtype = dtkDateResult
					d.tm.hour, d.tm.min, d.tm.sec = 0, 0, 0
					d.tz = 0
				case rsvEpoch:
					d.dtype = dtkEpoch
				case rsvLate:
					d.dtype = dtkLate
				case rsvEarly:
					d.dtype = dtkEarly
				}
			case tokMonth:
				if d.fmask&dtkM(tokMonth) != 0 && !d.haveTextMon && d.fmask&dtkM(tokDay) == 0 && d.tm.mon >= 1 && d.tm.mon <= 31 {
					d.tm.mday = d.tm.mon
					tmask = dtkM(tokDay)
				}
				d.haveTextMon = true
				d.tm.mon = val
			case tokDTZMod:
				tmask |= dtkM(tokDTZ)
				d.tz -= val
			case tokDTZ:
				tmask |= dtkM(tokTZ)
				d.tz = val
			case tokTZ:
				d.tz = val
			case tokAMPM:
				d.mer = val
			case tokADBC:
				d.bc = val == valueBC
			case tokDow:
				d.tm.wday = val
			case tokUnits:
				tmask = 0
				ptype = val
			case tokISOTime:
				tmask = 0
				if d.fmask&dtkDateM != dtkDateM {
					return dtErrBadFormat
				}
				if i >= len(fields)-1 || (fields[i+1].typ != dtkNumber && fields[i+1].typ != dtkTime && fields[i+1].typ != dtkDate) {
					return dtErrBadFormat
				}
				ptype = val
			case tokUnknown:
				loc, err := LoadTimeZone(string(fs))
				if err == errPOSIXRules {
					d.rulesZone, loc, err = refusedZone(fs), time.UTC, nil
				}
				if err != nil {
					return dtErrBadFormat
				}
				d.namedTz = loc
				tmask = dtkM(tokTZ)
			default:
				return dtErrBadFormat
			}
		default:
			return dtErrBadFormat
		}
		if tmask&d.fmask != 0 {
			return dtErrBadFormat
		}
		d.fmask |= tmask
	}

	if e := d.validateDate(); e != 0 {
		return e
	}
	if d.mer != valueHR24 && d.tm.hour > 12 {
		return dtErrFieldOverflow
	}
	if d.mer == valueAM && d.tm.hour == 12 {
		d.tm.hour = 0
	} else if d.mer == valuePM && d.tm.hour != 12 {
		d.tm.hour += 12
	}
	if d.dtype == dtkDateResult {
		if d.fmask&dtkDateM != dtkDateM {
			if d.fmask&dtkTimeM == dtkTimeM {
				return 1
			}
			return dtErrBadFormat
		}
		if d.namedTz != nil {
			if d.fmask&dtkM(tokDTZMod) != 0 {
				return dtErrBadFormat
			}
			if d.rulesZone != nil && needZone {
				d.refused = d.rulesZone
				return dtErrBadFormat
			}
			d.tz = -d.zoneOffset(d.namedTz)
		}
		if d.fmask&dtkM(tokTZ) == 0 {
			if d.fmask&dtkM(tokDTZMod) != 0 {
				return dtErrBadFormat
			}
			if needZone {
				loc, err := s.location()
				if err != nil {
					d.refused = err.(*ValueError)
					return dtErrBadFormat
				}
				d.tz = -d.zoneOffset(loc)
			}
		}
	}
	return 0
}

// zoneOffset is DetermineTimeZoneOffset for d.tm in loc: the offset east
// of UTC; a date outside the Julian range is taken as UTC.
func (d *dtDecoder) zoneOffset(loc *time.Location) int {
	if !isValidJulian(d.tm.year, d.tm.mon) {
		return 0
	}
	days := int64(date2j(d.tm.year, d.tm.mon, d.tm.mday) - unixEpochJDate)
	local := days*secsPerDay + int64((d.tm.hour*60+d.tm.min)*60+d.tm.sec)
	return determineOffset(loc, local)
}

func allDigits(s []byte) bool {
	for _, c := range s {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func refusedZone(name []byte) *ValueError {
	return &ValueError{
		Code:    CodeFeatureNotSupported,
		Message: `time zone "` + string(name) + `" is not supported for protected columns`,
		Detail:  errPOSIXRules.Error() + ".",
		Hint:    "Use a numeric offset or a time zone name from the tz database.",
	}
}

func indexByte(s []byte, c byte) int {
	for i, b := range s {
		if b == c {
			return i
		}
	}
	return -1
}

func lookupAbbrev(s []byte) (tzAbbrev, bool) {
	if len(s) > tokMaxLen {
		return tzAbbrev{}, false
	}
	a, ok := tzAbbrevs[string(s)]
	return a, ok
}

// timeOverflows is time_overflows.
func timeOverflows(hour, min, sec int, fsec int64) bool {
	if hour < 0 || hour > 24 || min < 0 || min >= 60 || sec < 0 || sec > 60 || fsec < 0 || fsec > usecsPerSec {
		return true
	}
	return ((int64(hour)*60+int64(min))*60+int64(sec))*usecsPerSec+fsec > usecsPerDay
}

// decodeDate is DecodeDate.
func (d *dtDecoder) decodeDate(str []byte, fmask int) (int, int) {
	tmask := 0
	var fields [maxDateFields][]byte
	nf := 0
	for len(str) > 0 && nf < maxDateFields {
		for len(str) > 0 && !isAlpha(str[0]) && !isDigit(str[0]) {
			str = str[1:]
		}
		if len(str) == 0 {
			return 0, dtErrBadFormat
		}
		i := 0
		if isDigit(str[0]) {
			for i < len(str) && isDigit(str[i]) {
				i++
			}
		} else {
			for i < len(str) && isAlpha(str[i]) {
				i++
			}
		}
		fields[nf] = str[:i]
		nf++
		if i < len(str) {
			i++ // the separator
		}
		str = str[i:]
	}
	haveTextMonth := false
	for i := 0; i < nf; i++ {
		if !isAlpha(fields[i][0]) {
			continue
		}
		t, ok := lookupToken(fields[i])
		if ok && t.typ == tokIgnore {
			continue
		}
		if !ok || t.typ != tokMonth {
			return 0, dtErrBadFormat
		}
		d.tm.mon = t.val
		haveTextMonth = true
		if fmask&dtkM(tokMonth) != 0 {
			return 0, dtErrBadFormat
		}
		fmask |= dtkM(tokMonth)
		tmask |= dtkM(tokMonth)
		fields[i] = nil
	}
	for i := 0; i < nf; i++ {
		if fields[i] == nil {
			continue
		}
		if len(fields[i]) == 0 {
			return 0, dtErrBadFormat
		}
		dmask, e := d.decodeNumber(fields[i], haveTextMonth, fmask)
		if e != 0 {
			return 0, e
		}
		if fmask&dmask != 0 {
			return 0, dtErrBadFormat
		}
		fmask |= dmask
		tmask |= dmask
	}
	if fmask&^(dtkM(tokDoy)|dtkM(tokTZ)) != dtkDateM {
		return 0, dtErrBadFormat
	}
	return tmask, 0
}

// decodeNumber is DecodeNumber.
func (d *dtDecoder) decodeNumber(str []byte, haveTextMonth bool, fmask int) (int, int) {
	flen := len(str)
	val, rest, overflow := strtoint(str)
	if overflow {
		return 0, dtErrFieldOverflow
	}
	if len(rest) == len(str) {
		return 0, dtErrBadFormat
	}
	if len(rest) > 0 && rest[0] == '.' {
		if len(str)-len(rest) > 2 {
			tmask, r := d.decodeNumberField(str, fmask|dtkDateM)
			if r < 0 {
				return 0, r
			}
			return tmask, 0
		}
		fsec, e := parseFractionalSecond(rest)
		if e != 0 {
			return 0, e
		}
		d.tm.fsec = fsec
	} else if len(rest) > 0 {
		return 0, dtErrBadFormat
	}
	if flen == 3 && fmask&dtkDateM == dtkM(tokYear) && val >= 1 && val <= 366 {
		d.tm.yday = val
		return dtkM(tokDoy) | dtkM(tokMonth) | dtkM(tokDay), 0
	}
	tmask := 0
	switch fmask & dtkDateM {
	case 0:
		switch {
		case flen >= 3 || d.order == orderYMD:
			tmask, d.tm.year = dtkM(tokYear), val
		case d.order == orderDMY:
			tmask, d.tm.mday = dtkM(tokDay), val
		default:
			tmask, d.tm.mon = dtkM(tokMonth), val
		}
	case dtkM(tokYear):
		tmask, d.tm.mon = dtkM(tokMonth), val
	case dtkM(tokMonth):
		if haveTextMonth {
			if flen >= 3 || d.order == orderYMD {
				tmask, d.tm.year = dtkM(tokYear), val
			} else {
				tmask, d.tm.mday = dtkM(tokDay), val
			}
		} else {
			tmask, d.tm.mday = dtkM(tokDay), val
		}
	case dtkM(tokYear) | dtkM(tokMonth):
		if haveTextMonth && flen >= 3 && d.is2digits {
			tmask = dtkM(tokDay)
			d.tm.mday = d.tm.year
			d.tm.year = val
			d.is2digits = false
		} else {
			tmask, d.tm.mday = dtkM(tokDay), val
		}
	case dtkM(tokDay):
		tmask, d.tm.mon = dtkM(tokMonth), val
	case dtkM(tokMonth) | dtkM(tokDay):
		tmask, d.tm.year = dtkM(tokYear), val
	case dtkDateM:
		tm, r := d.decodeNumberField(str, fmask)
		if r < 0 {
			return 0, r
		}
		return tm, 0
	default:
		return 0, dtErrBadFormat
	}
	if tmask == dtkM(tokYear) {
		d.is2digits = flen <= 2
	}
	return tmask, 0
}

// decodeNumberField is DecodeNumberField: a run-together date (yyyymmdd,
// yymmdd, or more year digits) or time (hhmmss, hhmm) with an optional
// fraction. It returns the mask and a DTK code (>= 0) or DTERR.
func (d *dtDecoder) decodeNumberField(str []byte, fmask int) (int, int) {
	if dot := indexByte(str, '.'); dot >= 0 {
		if dot == len(str)-1 {
			d.tm.fsec = 0
		} else {
			frac, err := strconv.ParseFloat(unsafe.String(&str[dot], len(str)-dot), 64)
			if err != nil {
				return 0, dtErrBadFormat
			}
			d.tm.fsec = int64(math.RoundToEven(frac * 1000000))
		}
		str = str[:dot]
	} else if fmask&dtkDateM != dtkDateM {
		if n := len(str); n >= 6 {
			d.tm.mday = atoi(str[n-2:])
			d.tm.mon = atoi(str[n-4 : n-2])
			d.tm.year = atoi(str[:n-4])
			if n-4 == 2 {
				d.is2digits = true
			}
			return dtkDateM, dtkDate
		}
	}
	if fmask&dtkTimeM != dtkTimeM {
		switch len(str) {
		case 6:
			d.tm.sec = atoi(str[4:])
			d.tm.min = atoi(str[2:4])
			d.tm.hour = atoi(str[:2])
			return dtkTimeM, dtkTime
		case 4:
			d.tm.sec = 0
			d.tm.min = atoi(str[2:])
			d.tm.hour = atoi(str[:2])
			return dtkTimeM, dtkTime
		}
	}
	return 0, dtErrBadFormat
}

// decodeTime is DecodeTime/DecodeTimeCommon: hh:mm, hh:mm:ss[.fff],
// or mm:ss.fff.
func (d *dtDecoder) decodeTime(str []byte) (int, int) {
	hour, cp, overflow := strtoint(str)
	if overflow {
		return 0, dtErrFieldOverflow
	}
	if len(cp) == 0 || cp[0] != ':' {
		return 0, dtErrBadFormat
	}
	min, cp, overflow := strtoint(cp[1:])
	if overflow {
		return 0, dtErrFieldOverflow
	}
	sec := 0
	var fsec int64
	switch {
	case len(cp) == 0:
	case cp[0] == '.':
		f, e := parseFractionalSecond(cp)
		if e != 0 {
			return 0, e
		}
		fsec = f
		sec, min, hour = min, hour, 0
	case cp[0] == ':':
		sec, cp, overflow = strtoint(cp[1:])
		if overflow {
			return 0, dtErrFieldOverflow
		}
		if len(cp) > 0 {
			if cp[0] != '.' {
				return 0, dtErrBadFormat
			}
			f, e := parseFractionalSecond(cp)
			if e != 0 {
				return 0, e
			}
			fsec = f
		}
	default:
		return 0, dtErrBadFormat
	}
	if hour < 0 || min < 0 || min > 59 || sec < 0 || sec > 60 || fsec < 0 || fsec > usecsPerSec {
		return 0, dtErrFieldOverflow
	}
	d.tm.hour, d.tm.min, d.tm.sec, d.tm.fsec = hour, min, sec, fsec
	return dtkTimeM, 0
}

// decodeTimezone is DecodeTimezone: +hh, +hhmm, +hh:mm, +hh:mm:ss.
// It returns the offset in seconds west of UTC.
func decodeTimezone(str []byte) (int, int) {
	if len(str) == 0 || (str[0] != '+' && str[0] != '-') {
		return 0, dtErrBadFormat
	}
	hr, cp, overflow := strtoint(str[1:])
	if overflow {
		return 0, dtErrTZDispOverflow
	}
	min, sec := 0, 0
	if len(cp) > 0 && cp[0] == ':' {
		min, cp, overflow = strtoint(cp[1:])
		if overflow {
			return 0, dtErrTZDispOverflow
		}
		if len(cp) > 0 && cp[0] == ':' {
			sec, cp, overflow = strtoint(cp[1:])
			if overflow {
				return 0, dtErrTZDispOverflow
			}
		}
	} else if len(cp) == 0 && len(str) > 3 {
		min = hr % 100
		hr /= 100
	}
	if hr < 0 || hr > maxTZDispHour || min < 0 || min >= 60 || sec < 0 || sec >= 60 {
		return 0, dtErrTZDispOverflow
	}
	tz := (hr*60+min)*60 + sec
	if str[0] == '-' {
		tz = -tz
	}
	if len(cp) > 0 {
		return -tz, dtErrBadFormat
	}
	return -tz, 0
}

// validateDate is ValidateDate: BC years, two-digit years (1970-2069), day
// of year, month and day ranges.
func (d *dtDecoder) validateDate() int {
	tm := &d.tm
	if d.fmask&dtkM(tokYear) != 0 {
		switch {
		case d.isJulian:
			// tm.year is right and must not be touched
		case d.bc:
			if tm.year <= 0 {
				return dtErrFieldOverflow
			}
			tm.year = -(tm.year - 1)
		case d.is2digits:
			if tm.year < 0 {
				return dtErrFieldOverflow
			}
			if tm.year < 70 {
				tm.year += 2000
			} else if tm.year < 100 {
				tm.year += 1900
			}
		default:
			if tm.year <= 0 {
				return dtErrFieldOverflow
			}
		}
	}
	if d.fmask&dtkM(tokDoy) != 0 {
		tm.year, tm.mon, tm.mday = j2date(date2j(tm.year, 1, 1) + tm.yday - 1)
	}
	if d.fmask&dtkM(tokMonth) != 0 && (tm.mon < 1 || tm.mon > 12) {
		return dtErrMDFieldOverflow
	}
	if d.fmask&dtkM(tokDay) != 0 && (tm.mday < 1 || tm.mday > 31) {
		return dtErrMDFieldOverflow
	}
	if d.fmask&dtkDateM == dtkDateM && tm.mday > daysInMonth(tm.year, tm.mon) {
		return dtErrFieldOverflow
	}
	return 0
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysInMonth(y, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// date2j is PostgreSQL's date2j: the Julian day number of a proleptic
// Gregorian date (year 0 = 1 BC).
func date2j(y, m, d int) int {
	if m > 2 {
		m++
		y += 4800
	} else {
		m += 13
		y += 4799
	}
	century := y / 100
	julian := y*365 - 32167
	julian += y/4 - century + century/4
	julian += 7834*m/256 + d
	return julian
}

// j2date converts a Julian day number to year, month, day; unlike
// PostgreSQL's j2date it is exact for negative day numbers too (Howard
// Hinnant's civil_from_days), which local times just before 4714 BC need.
func j2date(jd int) (y, m, d int) {
	z := int64(jd) - 1721120 // days since 0000-03-01
	era := z
	if era < 0 {
		era -= 146096
	}
	era /= 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

// isValidJulian is IS_VALID_JULIAN.
func isValidJulian(y, m int) bool {
	return (y > julianMinYear || (y == julianMinYear && m >= julianMinMonth)) &&
		(y < julianMaxYear || (y == julianMaxYear && m < julianMaxMonth))
}

func isValidDate(days int64) bool {
	return -postgresEpochJDate <= days && days < dateEndJulian-postgresEpochJDate
}

func isValidTimestamp(ts int64) bool { return minTimestamp <= ts && ts < endTimestamp }
