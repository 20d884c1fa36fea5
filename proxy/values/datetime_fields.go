package values

import (
	"math"
	"strconv"
	"unsafe"
)

// DecodeDate, DecodeNumber, DecodeNumberField, DecodeTime, DecodeTimezone and ValidateDate: the readers of single fields.

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
