package values

import (
	"encoding/binary"
	"strconv"
)

// Canonical forms of date, timestamp and timestamptz are their ISO
// DateStyle text output in UTC, which PostgreSQL's EncodeDateOnly and
// EncodeDateTime write:
//
//	date         2024-03-15   0044-03-15 BC   infinity   -infinity
//	timestamp    2024-03-15 13:04:05.25       (fraction: up to 6 digits, trailing zeros cut)
//	timestamptz  2024-03-15 04:04:05.25+00    (always UTC, always "+00")

var monthNames = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

func (t *Type) typeNameForMessages() string {
	switch t.kind {
	case kindDate:
		return "date"
	case kindTimestamp:
		return "timestamp"
	}
	return "timestamp with time zone"
}

// dateTimeParseError is DateTimeParseError.
func dateTimeParseError(dterr int, v []byte, typeName string) *ValueError {
	switch dterr {
	case dtErrFieldOverflow:
		return newError(CodeDatetimeFieldOverflow, "date/time field value out of range: "+quoted(v))
	case dtErrMDFieldOverflow:
		return &ValueError{Code: CodeDatetimeFieldOverflow, Message: "date/time field value out of range: " + quoted(v), Hint: `Perhaps you need a different "datestyle" setting.`}
	case dtErrTZDispOverflow:
		return newError(CodeInvalidTimeZoneDisplacement, "time zone displacement out of range: "+quoted(v))
	}
	return newError(CodeInvalidDatetimeFormat, "invalid input syntax for type "+typeName+": "+quoted(v))
}

// datetimeFromText is date_in, timestamp_in and timestamptz_in.
func (t *Type) datetimeFromText(dst, v []byte, s *Session) ([]byte, error) {
	buflen := maxDateLen + maxDateFields
	if t.kind == kindDate {
		buflen = maxDateLen + 1
	}
	var w dtWork
	dterr := w.parseDateTime(v, buflen)
	d := dtDecoder{order: s.order}
	if dterr == 0 {
		dterr = d.decodeDateTime(&w, s, t.kind == kindTimestamptz)
	}
	if d.refused != nil {
		return dst, d.refused
	}
	if d.unknownTzErr != nil {
		return dst, d.unknownTzErr
	}
	if dterr != 0 {
		return dst, dateTimeParseError(dterr, v, t.typeNameForMessages())
	}
	tm := &d.tm
	if t.kind == kindDate {
		switch d.dtype {
		case dtkLate:
			return appendDateCanonical(dst, dateNoEnd), nil
		case dtkEarly:
			return appendDateCanonical(dst, dateNoBegin), nil
		case dtkEpoch:
			*tm = pgTm{year: 1970, mon: 1, mday: 1}
		}
		if !isValidJulian(tm.year, tm.mon) {
			return dst, newError(CodeDatetimeFieldOverflow, "date out of range: "+quoted(v))
		}
		days := int64(date2j(tm.year, tm.mon, tm.mday) - postgresEpochJDate)
		if !isValidDate(days) {
			return dst, newError(CodeDatetimeFieldOverflow, "date out of range: "+quoted(v))
		}
		return appendDateCanonical(dst, int32(days)), nil
	}
	var ts int64
	switch d.dtype {
	case dtkLate:
		ts = tsNoEnd
	case dtkEarly:
		ts = tsNoBegin
	case dtkEpoch:
		ts = (unixEpochJDate - postgresEpochJDate) * usecsPerDay
	default:
		var ok bool
		ts, ok = tm2timestamp(tm, d.tz, t.kind == kindTimestamptz)
		if !ok {
			return dst, newError(CodeDatetimeFieldOverflow, "timestamp out of range: "+quoted(v))
		}
	}
	ts, err := t.adjustTimestamp(ts)
	if err != nil {
		return dst, err
	}
	return t.appendTimestampCanonical(dst, ts), nil
}

// tm2timestamp is tm2timestamp; tzWest is applied when withTZ.
func tm2timestamp(tm *pgTm, tzWest int, withTZ bool) (int64, bool) {
	if !isValidJulian(tm.year, tm.mon) {
		return 0, false
	}
	date := int64(date2j(tm.year, tm.mon, tm.mday) - postgresEpochJDate)
	tod := ((int64(tm.hour)*60+int64(tm.min))*60+int64(tm.sec))*usecsPerSec + tm.fsec
	result := date*usecsPerDay + tod
	if (result-tod)/usecsPerDay != date {
		return 0, false
	}
	if (result < 0 && date > 0) || (result > 0 && date < -1) {
		return 0, false
	}
	if withTZ {
		result += int64(tzWest) * usecsPerSec
	}
	if !isValidTimestamp(result) {
		return 0, false
	}
	return result, true
}

// adjustTimestamp is AdjustTimestampForTypmod: round to the precision of
// timestamp(p), half away from zero.
func (t *Type) adjustTimestamp(ts int64) (int64, error) {
	if t.typmod < 0 || t.tsPrec == 6 || ts == tsNoBegin || ts == tsNoEnd {
		return ts, nil
	}
	scale := int64(1)
	for i := t.tsPrec; i < 6; i++ {
		scale *= 10
	}
	offset := scale / 2
	if ts >= 0 {
		ts = (ts + offset) / scale * scale
	} else {
		ts = -((-ts + offset) / scale * scale)
	}
	// PostgreSQL 15 stores 294276-12-31 23:59:59.5 rounded to 294277-01-01
	// 00:00:00 without a range check, a value it then refuses to read back;
	// pgcloak refuses it up front.
	if !isValidTimestamp(ts) {
		return 0, newError(CodeDatetimeFieldOverflow, "timestamp out of range")
	}
	return ts, nil
}

// datetimeFromBinary is date_recv, timestamp_recv and timestamptz_recv:
// days (int32) or microseconds (int64) since 2000-01-01, with the extreme
// values meaning -infinity and infinity.
func (t *Type) datetimeFromBinary(dst, v []byte) ([]byte, error) {
	if t.kind == kindDate {
		if len(v) < 4 {
			return dst, errInsufficientData()
		}
		if len(v) > 4 {
			return dst, errBinaryFormat()
		}
		days := int32(binary.BigEndian.Uint32(v))
		if days != dateNoBegin && days != dateNoEnd && !isValidDate(int64(days)) {
			return dst, newError(CodeDatetimeFieldOverflow, "date out of range")
		}
		return appendDateCanonical(dst, days), nil
	}
	if len(v) < 8 {
		return dst, errInsufficientData()
	}
	if len(v) > 8 {
		return dst, errBinaryFormat()
	}
	ts := int64(binary.BigEndian.Uint64(v))
	if ts != tsNoBegin && ts != tsNoEnd && !isValidTimestamp(ts) {
		return dst, newError(CodeDatetimeFieldOverflow, "timestamp out of range")
	}
	ts, err := t.adjustTimestamp(ts)
	if err != nil {
		return dst, err
	}
	return t.appendTimestampCanonical(dst, ts), nil
}

func appendDateCanonical(dst []byte, days int32) []byte {
	switch days {
	case dateNoBegin:
		return append(dst, "-infinity"...)
	case dateNoEnd:
		return append(dst, "infinity"...)
	}
	y, m, d := j2date(int(days) + postgresEpochJDate)
	dst = appendDateOnly(dst, y, m, d, styleISO, orderMDY)
	if y <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst
}

func (t *Type) appendTimestampCanonical(dst []byte, ts int64) []byte {
	switch ts {
	case tsNoBegin:
		return append(dst, "-infinity"...)
	case tsNoEnd:
		return append(dst, "infinity"...)
	}
	tm := timestamp2tm(ts)
	return appendDateTime(dst, &tm, styleISO, orderMDY, t.kind == kindTimestamptz, 0, "")
}

// timestamp2tm splits microseconds since 2000-01-01 into fields.
func timestamp2tm(ts int64) pgTm {
	date := ts / usecsPerDay
	tod := ts - date*usecsPerDay
	if tod < 0 {
		tod += usecsPerDay
		date--
	}
	var tm pgTm
	tm.year, tm.mon, tm.mday = j2date(int(date) + postgresEpochJDate)
	tm.hour = int(tod / (3600 * usecsPerSec))
	tod -= int64(tm.hour) * 3600 * usecsPerSec
	tm.min = int(tod / (60 * usecsPerSec))
	tod -= int64(tm.min) * 60 * usecsPerSec
	tm.sec = int(tod / usecsPerSec)
	tm.fsec = tod - int64(tm.sec)*usecsPerSec
	return tm
}

func appendPad(dst []byte, v, width int) []byte {
	var buf [24]byte
	b := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(b); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, b...)
}

func displayYear(y int) int {
	if y > 0 {
		return y
	}
	return -(y - 1)
}

// appendDateOnly is EncodeDateOnly without the " BC" suffix.
func appendDateOnly(dst []byte, y, m, d int, style dateStyle, order dateOrder) []byte {
	switch style {
	case styleISO:
		dst = appendPad(dst, displayYear(y), 4)
		dst = append(dst, '-')
		dst = appendPad(dst, m, 2)
		dst = append(dst, '-')
		return appendPad(dst, d, 2)
	case styleSQL, stylePostgres:
		sep := byte('/')
		if style == stylePostgres {
			sep = '-'
		}
		if order == orderDMY {
			dst = appendPad(dst, d, 2)
			dst = append(dst, sep)
			dst = appendPad(dst, m, 2)
		} else {
			dst = appendPad(dst, m, 2)
			dst = append(dst, sep)
			dst = appendPad(dst, d, 2)
		}
		dst = append(dst, sep)
		return appendPad(dst, displayYear(y), 4)
	default: // German
		dst = appendPad(dst, d, 2)
		dst = append(dst, '.')
		dst = appendPad(dst, m, 2)
		dst = append(dst, '.')
		return appendPad(dst, displayYear(y), 4)
	}
}

// appendSeconds is AppendTimestampSeconds: two-digit seconds and, if any,
// up to six fraction digits without trailing zeros.
func appendSeconds(dst []byte, sec int, fsec int64) []byte {
	dst = appendPad(dst, sec, 2)
	if fsec == 0 {
		return dst
	}
	dst = append(dst, '.')
	n := len(dst)
	dst = appendPad(dst, int(fsec), 6)
	end := len(dst)
	for end > n+1 && dst[end-1] == '0' {
		end--
	}
	return dst[:end]
}

// appendTZ is EncodeTimezone (tzWest in seconds west of UTC): +hh,
// +hh:mm or +hh:mm:ss.
func appendTZ(dst []byte, tzWest int) []byte {
	sec := tzWest
	if sec < 0 {
		sec = -sec
	}
	min := sec / 60
	sec -= min * 60
	hour := min / 60
	min -= hour * 60
	if tzWest <= 0 {
		dst = append(dst, '+')
	} else {
		dst = append(dst, '-')
	}
	dst = appendPad(dst, hour, 2)
	if sec != 0 {
		dst = append(dst, ':')
		dst = appendPad(dst, min, 2)
		dst = append(dst, ':')
		return appendPad(dst, sec, 2)
	}
	if min != 0 {
		dst = append(dst, ':')
		dst = appendPad(dst, min, 2)
	}
	return dst
}

func appendZoneName(dst []byte, tzWest int, tzn string) []byte {
	dst = append(dst, ' ')
	if tzn == "" {
		return appendTZ(dst, tzWest)
	}
	if len(tzn) > maxTZLen {
		tzn = tzn[:maxTZLen]
	}
	return append(dst, tzn...)
}

func appendHHMM(dst []byte, tm *pgTm) []byte {
	dst = appendPad(dst, tm.hour, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, tm.min, 2)
	dst = append(dst, ':')
	return appendSeconds(dst, tm.sec, tm.fsec)
}

// appendDateTime is EncodeDateTime.
func appendDateTime(dst []byte, tm *pgTm, style dateStyle, order dateOrder, printTZ bool, tzWest int, tzn string) []byte {
	switch style {
	case styleISO:
		dst = appendDateOnly(dst, tm.year, tm.mon, tm.mday, styleISO, order)
		dst = append(dst, ' ')
		dst = appendHHMM(dst, tm)
		if printTZ {
			dst = appendTZ(dst, tzWest)
		}
	case styleSQL, styleGerman:
		dst = appendDateOnly(dst, tm.year, tm.mon, tm.mday, style, order)
		dst = append(dst, ' ')
		dst = appendHHMM(dst, tm)
		if printTZ {
			dst = appendZoneName(dst, tzWest, tzn)
		}
	default: // Postgres
		wday := (date2j(tm.year, tm.mon, tm.mday) + 1) % 7
		if wday < 0 {
			wday += 7
		}
		dst = append(dst, dayNames[wday]...)
		dst = append(dst, ' ')
		if order == orderDMY {
			dst = appendPad(dst, tm.mday, 2)
			dst = append(dst, ' ')
			dst = append(dst, monthNames[tm.mon-1]...)
		} else {
			dst = append(dst, monthNames[tm.mon-1]...)
			dst = append(dst, ' ')
			dst = appendPad(dst, tm.mday, 2)
		}
		dst = append(dst, ' ')
		dst = appendHHMM(dst, tm)
		dst = append(dst, ' ')
		dst = appendPad(dst, displayYear(tm.year), 4)
		if printTZ {
			dst = appendZoneName(dst, tzWest, tzn)
		}
	}
	if tm.year <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst
}

// parseCanonicalDate reads "YYYY-MM-DD" at the start of c and returns the
// fields and the rest.
func parseCanonicalDate(c []byte) (y, m, d int, rest []byte, ok bool) {
	i := 0
	for i < len(c) && isDigit(c[i]) {
		y = y*10 + int(c[i]-'0')
		i++
		if i > 7 {
			return 0, 0, 0, nil, false
		}
	}
	if i < 4 || len(c) < i+6 || c[i] != '-' || c[i+3] != '-' {
		return 0, 0, 0, nil, false
	}
	m, ok1 := twoDigits(c[i+1:])
	d, ok2 := twoDigits(c[i+4:])
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, 0, 0, nil, false
	}
	return y, m, d, c[i+6:], true
}

func twoDigits(c []byte) (int, bool) {
	if len(c) < 2 || !isDigit(c[0]) || !isDigit(c[1]) {
		return 0, false
	}
	return int(c[0]-'0')*10 + int(c[1]-'0'), true
}

// parseBC strips a trailing " BC" and returns the internal year.
func parseBC(y int, rest []byte) (int, []byte, bool) {
	if len(rest) == 3 && string(rest) == " BC" {
		return -(y - 1), nil, true
	}
	return y, rest, y > 0
}

// parseCanonicalDays parses a canonical date.
func parseCanonicalDays(c []byte) (int32, bool) {
	switch string(c) {
	case "infinity":
		return dateNoEnd, true
	case "-infinity":
		return dateNoBegin, true
	}
	y, m, d, rest, ok := parseCanonicalDate(c)
	if !ok {
		return 0, false
	}
	y, rest, ok = parseBC(y, rest)
	if !ok || len(rest) != 0 || !isValidJulian(y, m) || d > daysInMonth(y, m) {
		return 0, false
	}
	days := int64(date2j(y, m, d) - postgresEpochJDate)
	if !isValidDate(days) {
		return 0, false
	}
	return int32(days), true
}

// parseCanonicalTimestamp parses a canonical timestamp (withTZ: with the
// "+00" suffix) into microseconds since 2000-01-01.
func parseCanonicalTimestamp(c []byte, withTZ bool) (int64, bool) {
	switch string(c) {
	case "infinity":
		return tsNoEnd, true
	case "-infinity":
		return tsNoBegin, true
	}
	y, m, d, rest, ok := parseCanonicalDate(c)
	if !ok || len(rest) < 9 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' {
		return 0, false
	}
	hh, ok1 := twoDigits(rest[1:])
	mm, ok2 := twoDigits(rest[4:])
	ss, ok3 := twoDigits(rest[7:])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 59 {
		return 0, false
	}
	rest = rest[9:]
	var fsec int64
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 7 {
			return 0, false
		}
		for k := 1; k < 7; k++ {
			fsec *= 10
			if k < n {
				fsec += int64(rest[k] - '0')
			}
		}
		rest = rest[n:]
	}
	if withTZ {
		if len(rest) < 3 || string(rest[:3]) != "+00" {
			return 0, false
		}
		rest = rest[3:]
	}
	y, rest, ok = parseBC(y, rest)
	if !ok || len(rest) != 0 || d > daysInMonth(y, m) {
		return 0, false
	}
	if !isValidJulian(y, m) {
		return 0, false
	}
	date := int64(date2j(y, m, d) - postgresEpochJDate)
	ts := date*usecsPerDay + ((int64(hh)*60+int64(mm))*60+int64(ss))*usecsPerSec + fsec
	return ts, isValidTimestamp(ts)
}

func (t *Type) datetimeToText(dst, c []byte, s *Session) ([]byte, error) {
	switch t.kind {
	case kindDate:
		if s.style == styleISO {
			return append(dst, c...), nil
		}
		days, ok := parseCanonicalDays(c)
		if !ok {
			return dst, errCorrupt(t, c)
		}
		if days == dateNoBegin || days == dateNoEnd {
			return append(dst, c...), nil
		}
		y, m, d := j2date(int(days) + postgresEpochJDate)
		dst = appendDateOnly(dst, y, m, d, s.style, s.order)
		if y <= 0 {
			dst = append(dst, " BC"...)
		}
		return dst, nil
	case kindTimestamp:
		if s.style == styleISO {
			return append(dst, c...), nil
		}
		ts, ok := parseCanonicalTimestamp(c, false)
		if !ok {
			return dst, errCorrupt(t, c)
		}
		if ts == tsNoBegin || ts == tsNoEnd {
			return append(dst, c...), nil
		}
		tm := timestamp2tm(ts)
		return appendDateTime(dst, &tm, s.style, s.order, false, 0, ""), nil
	}
	if s.style == styleISO && (s.utc || (s.loc == nil && s.tzErr == nil)) {
		return append(dst, c...), nil // the canonical form is UTC in ISO
	}
	ts, ok := parseCanonicalTimestamp(c, true)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	if ts == tsNoBegin || ts == tsNoEnd {
		return append(dst, c...), nil
	}
	loc, err := s.location()
	if err != nil {
		return dst, err
	}
	unix := floorDiv64(ts, usecsPerSec) + (postgresEpochJDate-unixEpochJDate)*secsPerDay
	off, abbr := zoneOffset(loc, unix)
	if off == 0 && s.style == styleISO {
		return append(dst, c...), nil
	}
	tm := timestamp2tm(ts + int64(off)*usecsPerSec)
	return appendDateTime(dst, &tm, s.style, s.order, true, -off, abbr), nil
}

func floorDiv64(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (t *Type) datetimeToBinary(dst, c []byte) ([]byte, error) {
	if t.kind == kindDate {
		days, ok := parseCanonicalDays(c)
		if !ok {
			return dst, errCorrupt(t, c)
		}
		return binary.BigEndian.AppendUint32(dst, uint32(days)), nil
	}
	ts, ok := parseCanonicalTimestamp(c, t.kind == kindTimestamptz)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	return binary.BigEndian.AppendUint64(dst, uint64(ts)), nil
}
