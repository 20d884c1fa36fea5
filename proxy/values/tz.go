package values

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// tzAbbrev is one entry of the timezone_abbreviations set.
type tzAbbrev struct {
	offset int    // seconds east of UTC
	dst    bool   // a daylight-saving abbreviation
	zone   string // dynamic abbreviation: meaning depends on this zone's history
}

// zoneCache holds the zones LoadTimeZone has loaded, by the name asked for.
var zoneCache sync.Map // string → *time.Location

// LoadTimeZone returns the location for a TimeZone setting as PostgreSQL
// reports it in ParameterStatus or accepts it in a timestamp literal: an IANA
// zone name, matched case-insensitively as PostgreSQL does ("Asia/Tokyo",
// "utc", "Etc/GMT+3"), or a POSIX zone without daylight-saving rules
// ("<+05:30>-05:30", which SET TIME ZONE INTERVAL '+05:30' reports, or
// "UTC+3" — POSIX offsets count west). POSIX zones with daylight-saving rules
// are not supported (errPOSIXRules). Zones come from the system tz database, which the
// Debian postgresql package uses too.
func LoadTimeZone(name string) (*time.Location, error) {
	if v, ok := zoneCache.Load(name); ok {
		return v.(*time.Location), nil
	}
	loc, err := loadTimeZone(name)
	if err != nil {
		return nil, err
	}
	zoneCache.Store(name, loc)
	return loc, nil
}

func loadTimeZone(name string) (*time.Location, error) {
	n := strings.TrimSpace(name)
	if n == "" {
		return nil, errors.New("empty time zone name")
	}
	if strings.EqualFold(n, "gmt") || strings.EqualFold(n, "utc") {
		// PostgreSQL parses "GMT" itself; both are plain UTC.
		return time.FixedZone(strings.ToUpper(n), 0), nil
	}
	if n != "Local" && !strings.HasPrefix(n, ":") {
		if canon, ok := zoneIndex()[strings.ToLower(n)]; ok {
			if loc, err := time.LoadLocation(canon); err == nil {
				return loc, nil
			}
		}
		if loc, err := time.LoadLocation(n); err == nil {
			return loc, nil
		}
	}
	return parsePOSIXZone(strings.ToUpper(n))
}

var (
	zoneIndexOnce sync.Once
	zoneIndexMap  map[string]string
)

// zoneIndex maps the lower-cased names of the system tz database's zone
// files to their real names, for case-insensitive lookup.
func zoneIndex() map[string]string {
	zoneIndexOnce.Do(func() {
		zoneIndexMap = map[string]string{}
		dirs := []string{"/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ", "/etc/zoneinfo"}
		if z := os.Getenv("ZONEINFO"); z != "" {
			dirs = append([]string{z}, dirs...)
		}
		for _, dir := range dirs {
			st, err := os.Stat(dir)
			if err != nil || !st.IsDir() {
				continue
			}
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				rel, err := filepath.Rel(dir, p)
				if err != nil || strings.HasSuffix(rel, ".tab") || strings.HasSuffix(rel, ".zi") {
					return nil
				}
				rel = filepath.ToSlash(rel)
				if strings.HasPrefix(rel, "posix/") || strings.HasPrefix(rel, "right/") {
					return nil
				}
				if _, dup := zoneIndexMap[strings.ToLower(rel)]; !dup {
					zoneIndexMap[strings.ToLower(rel)] = rel
				}
				return nil
			})
			break
		}
	})
	return zoneIndexMap
}

// errPOSIXRules is returned for a POSIX zone with daylight-saving rules,
// which PostgreSQL accepts and pgcloak does not evaluate.
var errPOSIXRules = errors.New("POSIX time zones with daylight-saving rules are not supported")

// parsePOSIXZone is PostgreSQL's tzparse (src/timezone/localtime.c) for a
// zone name that is not a tz database file, applied as pg_tzset does to the
// upper-cased name: a standard-time abbreviation (any run of characters
// other than digits, ',', '-' and '+', possibly empty, or a <quoted> one)
// and an offset [+-]hh[:mm[:ss]] west of Greenwich, hh up to 167. Anything
// after that is a daylight-saving part: errPOSIXRules.
func parsePOSIXZone(s string) (*time.Location, error) {
	notRecognized := fmt.Errorf("time zone %q not recognized", s)
	if len(s) > 255 { // TZ_STRLEN_MAX
		return nil, notRecognized
	}
	var abbr string
	i := 0
	if strings.HasPrefix(s, "<") {
		j := strings.IndexByte(s, '>')
		if j < 0 {
			return nil, notRecognized
		}
		abbr, i = s[1:j], j+1
	} else {
		for i < len(s) && !(s[i] >= '0' && s[i] <= '9') && s[i] != ',' && s[i] != '-' && s[i] != '+' {
			i++
		}
		abbr = s[:i]
	}
	if i == len(s) {
		return nil, notRecognized
	}
	west, i, ok := posixOffset(s, i)
	if !ok {
		return nil, notRecognized
	}
	if i < len(s) {
		if posixDSTValid(s, i) {
			return nil, errPOSIXRules
		}
		return nil, notRecognized
	}
	return time.FixedZone(abbr, -west), nil
}

// posixDSTValid reports whether s[i:] is a daylight-saving part tzparse
// accepts: a name, an optional offset, and optional ",start,end" rules.
func posixDSTValid(s string, i int) bool {
	start := i
	if s[i] == '<' {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return false
		}
		start, i = i+1, i+j
		if i == start {
			return false
		}
		i++
	} else {
		for i < len(s) && !(s[i] >= '0' && s[i] <= '9') && s[i] != ',' && s[i] != '-' && s[i] != '+' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && s[i] != ',' && s[i] != ';' {
		var ok bool
		if _, i, ok = posixOffset(s, i); !ok {
			return false
		}
	}
	if i == len(s) {
		return true // PostgreSQL applies the default rules, M3.2.0,M11.1.0
	}
	if s[i] != ',' && s[i] != ';' {
		return false
	}
	i, ok := posixRule(s, i+1)
	if !ok || i >= len(s) || s[i] != ',' {
		return false
	}
	i, ok = posixRule(s, i+1)
	return ok && i == len(s)
}

// posixRule is getrule: Jn, n or Mm.w.d, then an optional /time.
func posixRule(s string, i int) (int, bool) {
	num := func(min, max int) bool {
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			n = n*10 + int(s[i]-'0')
			if n > max {
				return false
			}
			i++
		}
		return n >= min
	}
	switch {
	case i < len(s) && s[i] == 'J':
		i++
		if !num(1, 365) {
			return 0, false
		}
	case i < len(s) && s[i] == 'M':
		i++
		if !num(1, 12) || i >= len(s) || s[i] != '.' {
			return 0, false
		}
		i++
		if !num(1, 5) || i >= len(s) || s[i] != '.' {
			return 0, false
		}
		i++
		if !num(0, 6) {
			return 0, false
		}
	case i < len(s) && s[i] >= '0' && s[i] <= '9':
		if !num(0, 365) {
			return 0, false
		}
	default:
		return 0, false
	}
	if i < len(s) && s[i] == '/' {
		var ok bool
		if _, i, ok = posixOffset(s, i+1); !ok {
			return 0, false
		}
	}
	return i, true
}

// posixOffset is getoffset: [+-]hh[:mm[:ss]].
func posixOffset(s string, i int) (int, int, bool) {
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	secs := 0
	limits := [3]int{24*7 - 1, 59, 60}
	mult := [3]int{3600, 60, 1}
	for part := 0; part < 3; part++ {
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, 0, false
		}
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			n = n*10 + int(s[i]-'0')
			if n > limits[part] {
				return 0, 0, false
			}
			i++
		}
		secs += n * mult[part]
		if part == 2 || i >= len(s) || s[i] != ':' {
			break
		}
		i++
	}
	if neg {
		secs = -secs
	}
	return secs, i, true
}

// zoneOffset returns the offset east of UTC and the abbreviation in effect in
// loc at unix time sec.
func zoneOffset(loc *time.Location, sec int64) (int, string) {
	name, off := time.Unix(sec, 0).In(loc).Zone()
	return off, name
}

// determineOffset returns the offset east of UTC that PostgreSQL's
// DetermineTimeZoneOffset (src/backend/utils/adt/datetime.c) picks for a
// local time in loc; local is the local wall-clock time in seconds since
// 1970-01-01 taken as if it were UTC. Around a transition, a nonexistent time
// (spring forward) is read with the offset before the transition and an
// ambiguous one (fall back) with the offset after it.
func determineOffset(loc *time.Location, local int64) int {
	prev := time.Unix(local-secsPerDay, 0).In(loc)
	_, before := prev.Zone()
	_, end := prev.ZoneBounds()
	if end.IsZero() {
		return before
	}
	boundary := end.Unix()
	_, after := end.In(loc).Zone()
	beforeTime := local - int64(before)
	afterTime := local - int64(after)
	switch {
	case beforeTime < boundary && afterTime < boundary:
		return before
	case beforeTime > boundary && afterTime >= boundary:
		return after
	case beforeTime > afterTime:
		return before
	default:
		return after
	}
}
