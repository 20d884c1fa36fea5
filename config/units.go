package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// byteUnits are PostgreSQL's memory units (as in postgresql.conf, kB is 1024
// bytes), largest first so String picks the largest exact one.
var byteUnits = []struct {
	name string
	size ByteSize
}{
	{"TB", 1 << 40},
	{"GB", 1 << 30},
	{"MB", 1 << 20},
	{"kB", 1 << 10},
	{"B", 1},
}

// byteUnitAliases maps every accepted unit, lower-cased, to its size: the
// PostgreSQL names and the IEC binary names, which mean the same here.
var byteUnitAliases = map[string]ByteSize{
	"": 1, "b": 1,
	"kb": 1 << 10, "kib": 1 << 10,
	"mb": 1 << 20, "mib": 1 << 20,
	"gb": 1 << 30, "gib": 1 << 30,
	"tb": 1 << 40, "tib": 1 << 40,
}

var sizeSyntax = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

const sizeHint = "write a number of bytes, optionally with a unit: kB, MB, GB, TB (1024-based, as in PostgreSQL) or KiB, MiB, GiB, TiB"

// ParseByteSize parses "65536", "64kB", "512MB", "1 GB" or "1GiB". Units are
// case-insensitive and 1024-based.
func ParseByteSize(s string) (ByteSize, error) {
	m := sizeSyntax.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q; %s", s, sizeHint)
	}
	unit, ok := byteUnitAliases[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q in size %q; %s", m[2], s, sizeHint)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("size %q is too large; %s", s, sizeHint)
	}
	return ByteSize(n) * unit, nil
}

// String writes b with the largest unit that divides it exactly, e.g. "1GB",
// "64kB", "1000B", in a form ParseByteSize reads back.
func (b ByteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return "0B"
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with String.
func (b ByteSize) MarshalText() ([]byte, error) {
	return []byte(b.String()), nil
}

// pgDurationUnits are PostgreSQL's time units for settings (guc.c), which are
// case-sensitive there too.
var pgDurationUnits = map[string]time.Duration{
	"us":  time.Microsecond,
	"ms":  time.Millisecond,
	"s":   time.Second,
	"min": time.Minute,
	"h":   time.Hour,
	"d":   24 * time.Hour,
}

var pgDurationSyntax = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*$`)

// ParseDuration parses Go durations ("10s", "1m30s", "500ms") and PostgreSQL
// ones ("10 s", "2min", "1d"). A bare number is refused: its unit would be a guess.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	const hint = "write e.g. 10s, 1m30s, 500ms or 2min"
	m := pgDurationSyntax.FindStringSubmatch(s)
	if m == nil {
		if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return 0, fmt.Errorf("duration %q has no unit; %s", s, hint)
		}
		return 0, fmt.Errorf("invalid duration %q; %s", s, hint)
	}
	unit, ok := pgDurationUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q in duration %q; use us, ms, s, min, h or d (or Go's ns, us, ms, s, m, h)", m[2], s)
	}
	f, _ := strconv.ParseFloat(m[1], 64) // the syntax guarantees a number
	if d := f * float64(unit); d < math.MaxInt64 {
		return time.Duration(math.Round(d)), nil
	}
	return 0, fmt.Errorf("duration %q is too long; %s", s, hint)
}
