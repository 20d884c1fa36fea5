package values

// Calendar arithmetic: leap years, month lengths, Julian day numbers and the valid date and timestamp ranges.

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
