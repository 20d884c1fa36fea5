package values

import (
	"strconv"
	"time"
	"unsafe"
)

// DecodeDateTime: the fields parseDateTime found, read into a date, a time and a zone offset.

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
