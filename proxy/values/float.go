package values

import (
	"encoding/binary"
	"math"
	"math/big"
	"strconv"
	"unsafe"
)

// float8FromText follows float8in (PostgreSQL 12+ on glibc): optional
// blanks, then what strtod accepts — a decimal number with optional exponent,
// a hexadecimal number ("0x1.8p3"), "inf"/"infinity" or "nan" (optionally
// "nan(chars)") in any case, with an optional sign — then optional blanks.
// A finite number whose magnitude rounds to infinity or to zero is out of
// range (22003); denormals are accepted. The canonical form is the shortest
// text that reads back as the same double, formatted as PostgreSQL 12+
// prints float8 by default: fixed notation for decimal exponents -4..14,
// otherwise d.ddde±XX; "NaN", "Infinity", "-Infinity", "-0".
func float8FromText(dst, v []byte) ([]byte, error) {
	const name = "double precision"
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	start := i
	f, end, ok := scanFloat(v, i)
	if !ok {
		return dst, syntaxError(name, v)
	}
	for j := end; j < len(v); j++ {
		if !isSpace(v[j]) {
			return dst, syntaxError(name, v)
		}
	}
	if f.outOfRange {
		return dst, newError(CodeNumericValueOutOfRange, `"`+string(v[start:end])+`" is out of range for type double precision`)
	}
	return appendFloat8(dst, f.value), nil
}

type scannedFloat struct {
	value      float64
	outOfRange bool
}

// scanFloat reads the longest prefix of v[i:] that glibc's strtod would
// accept and returns its value and end. ok is false when there is none.
func scanFloat(v []byte, i int) (f scannedFloat, end int, ok bool) {
	start := i
	neg := false
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		neg = v[i] == '-'
		i++
	}
	rest := v[i:]
	switch {
	case hasPrefixFold(rest, "infinity"):
		return scannedFloat{value: math.Copysign(math.Inf(1), sign(neg))}, i + 8, true
	case hasPrefixFold(rest, "inf"):
		return scannedFloat{value: math.Copysign(math.Inf(1), sign(neg))}, i + 3, true
	case hasPrefixFold(rest, "nan"):
		end = i + 3
		if end < len(v) && v[end] == '(' {
			j := end + 1
			for j < len(v) && (isDigit(v[j]) || v[j] >= 'a' && v[j] <= 'z' || v[j] >= 'A' && v[j] <= 'Z' || v[j] == '_') {
				j++
			}
			if j < len(v) && v[j] == ')' {
				end = j + 1
			}
		}
		return scannedFloat{value: math.NaN()}, end, true
	}
	if len(rest) >= 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X') {
		if f, end, ok := scanHexFloat(v, start, i+2, neg); ok {
			return f, end, true
		}
		// "0x" without hex digits: strtod reads the "0".
	}
	digits, nonzero := 0, false
	for i < len(v) && isDigit(v[i]) {
		nonzero = nonzero || v[i] != '0'
		digits++
		i++
	}
	if i < len(v) && v[i] == '.' {
		i++
		for i < len(v) && isDigit(v[i]) {
			nonzero = nonzero || v[i] != '0'
			digits++
			i++
		}
	}
	if digits == 0 {
		return f, 0, false
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		j := i + 1
		if j < len(v) && (v[j] == '+' || v[j] == '-') {
			j++
		}
		if j < len(v) && isDigit(v[j]) {
			for j < len(v) && isDigit(v[j]) {
				j++
			}
			i = j
		}
	}
	x, err := strconv.ParseFloat(unsafe.String(&v[start], i-start), 64)
	f.value = x
	f.outOfRange = err != nil || math.IsInf(x, 0) || (x == 0 && nonzero)
	return f, i, true
}

// scanHexFloat reads a hexadecimal float after "0x" (at i).
func scanHexFloat(v []byte, start, i int, neg bool) (scannedFloat, int, bool) {
	var f scannedFloat
	digits, nonzero := 0, false
	for i < len(v) {
		if _, ok := unhex(v[i]); !ok {
			break
		}
		nonzero = nonzero || v[i] != '0'
		digits++
		i++
	}
	if i < len(v) && v[i] == '.' {
		j := i + 1
		for j < len(v) {
			if _, ok := unhex(v[j]); !ok {
				break
			}
			nonzero = nonzero || v[j] != '0'
			digits++
			j++
		}
		if digits > 0 {
			i = j
		}
	}
	if digits == 0 {
		return f, 0, false
	}
	mant := v[start:i]
	exp := "p0"
	if i < len(v) && (v[i] == 'p' || v[i] == 'P') {
		j := i + 1
		if j < len(v) && (v[j] == '+' || v[j] == '-') {
			j++
		}
		if j < len(v) && isDigit(v[j]) {
			for j < len(v) && isDigit(v[j]) {
				j++
			}
			exp = string(v[i:j])
			i = j
		}
	}
	x, err := strconv.ParseFloat(string(mant)+exp, 64)
	f.value = x
	f.outOfRange = err != nil || math.IsInf(x, 0) || (x == 0 && nonzero)
	return f, i, true
}

func sign(neg bool) float64 {
	if neg {
		return -1
	}
	return 1
}

// appendFloat8 writes f as PostgreSQL 12+ does with extra_float_digits > 0
// (float8out_internal → double_to_shortest_decimal_buf, a copy of Ryū):
// the shortest digits that read back as f, in fixed notation for decimal
// exponents -4..14 and as d.ddde±XX otherwise.
func appendFloat8(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	var buf [32]byte
	e := shortestFloat(buf[:0], f)
	// e is [-]d[.ddd]e±XX; split it into sign, digits and exponent.
	neg := e[0] == '-'
	if neg {
		e = e[1:]
	}
	ePos := len(e) - 1
	for e[ePos] != 'e' {
		ePos--
	}
	x, _ := strconv.Atoi(string(e[ePos+1:]))
	if neg {
		dst = append(dst, '-')
	}
	if x < -4 || x >= 15 {
		return append(dst, e...)
	}
	var digs [20]byte
	nd := 0
	for _, c := range e[:ePos] {
		if c != '.' {
			digs[nd] = c
			nd++
		}
	}
	d := digs[:nd]
	if x < 0 {
		dst = append(dst, '0', '.')
		for i := x + 1; i < 0; i++ {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	for i := 0; i <= x; i++ {
		if i < len(d) {
			dst = append(dst, d[i])
		} else {
			dst = append(dst, '0')
		}
	}
	if len(d) > x+1 {
		dst = append(dst, '.')
		dst = append(dst, d[x+1:]...)
	}
	return dst
}

// shortestFloat appends the shortest 'e'-format digits that PostgreSQL's
// Ryū prints for finite f. Go's shortest formatting counts a decimal lying
// exactly halfway to the neighbouring double as reading back to f when f's
// mantissa is even (round-half-even); PostgreSQL's copy of Ryū does not
// accept those bounds, and prints more digits instead. Such halfway
// decimals with at most 17 digits exist only for |f| >= 2^52.
func shortestFloat(dst []byte, f float64) []byte {
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
	if math.Float64bits(f)&1 != 0 || math.Abs(f) < 1<<52 || !onRoundingBound(f, dst[n:]) {
		return dst
	}
	digits := 0
	for _, c := range dst[n:] {
		if c == 'e' {
			break
		}
		if isDigit(c) {
			digits++
		}
	}
	for prec := digits + 1; prec <= 17; prec++ {
		dst = strconv.AppendFloat(dst[:n], f, 'e', prec-1, 64)
		if x, err := strconv.ParseFloat(string(dst[n:]), 64); err == nil && x == f && !onRoundingBound(f, dst[n:]) {
			break
		}
	}
	return dst
}

// onRoundingBound reports whether the decimal s lies exactly halfway
// between f and one of its neighbours.
func onRoundingBound(f float64, s []byte) bool {
	r, ok := new(big.Rat).SetString(string(s))
	if !ok {
		return false
	}
	var exact, mid big.Rat
	exact.SetFloat64(f)
	for _, dir := range [2]float64{math.Inf(1), math.Inf(-1)} {
		next := math.Nextafter(f, dir)
		if math.IsInf(next, 0) {
			continue
		}
		mid.SetFloat64(next)
		mid.Add(&mid, &exact)
		mid.Quo(&mid, big.NewRat(2, 1))
		if mid.Cmp(r) == 0 {
			return true
		}
	}
	return false
}

// decimalExponent returns the exponent of a strconv 'e' format number.
func decimalExponent(e []byte) int {
	i := len(e) - 1
	for e[i] != 'e' {
		i--
	}
	x, _ := strconv.Atoi(string(e[i+1:]))
	return x
}

// appendFloatG writes f as C's printf("%.*g", prec, f) does, the
// float8out format for extra_float_digits <= 0 (prec = 15 + extra_float_digits).
func appendFloatG(dst []byte, f float64, prec int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	if prec < 1 {
		prec = 1
	}
	var buf [40]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', prec-1, 64)
	x := decimalExponent(e)
	if x >= -4 && x < prec {
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'f', prec-1-x, 64)
		return trimFraction(dst, n, len(dst))
	}
	i := len(e) - 1
	for e[i] != 'e' {
		i--
	}
	n := len(dst)
	dst = append(dst, e[:i]...)
	dst = trimFraction(dst, n, len(dst))
	return append(dst, e[i:]...)
}

// trimFraction removes trailing zeros after a decimal point in dst[from:to]
// (which is at the end of dst), and the point itself if nothing remains.
func trimFraction(dst []byte, from, to int) []byte {
	point := -1
	for i := from; i < to; i++ {
		if dst[i] == '.' {
			point = i
			break
		}
	}
	if point < 0 {
		return dst
	}
	for to > point+1 && dst[to-1] == '0' {
		to--
	}
	if to == point+1 {
		to = point
	}
	return dst[:to]
}

// canonicalNaN is the NaN glibc's strtod("NaN") returns and PostgreSQL
// sends. (A NaN's sign and payload are not kept: the canonical form is
// "NaN".)
const canonicalNaN = 0x7ff8000000000000

// float8FromBinary is float8recv: eight bytes, IEEE 754 big-endian.
func float8FromBinary(dst, v []byte) ([]byte, error) {
	if len(v) < 8 {
		return dst, errInsufficientData()
	}
	if len(v) > 8 {
		return dst, errBinaryFormat()
	}
	return appendFloat8(dst, math.Float64frombits(binary.BigEndian.Uint64(v))), nil
}

func parseCanonicalFloat(c []byte) (float64, bool) {
	if len(c) == 0 || len(c) > 32 {
		return 0, false
	}
	x, err := strconv.ParseFloat(unsafe.String(&c[0], len(c)), 64)
	return x, err == nil
}

func float8ToText(dst, c []byte, s *Session, t *Type) ([]byte, error) {
	if s.floatDig == 0 {
		return append(dst, c...), nil
	}
	x, ok := parseCanonicalFloat(c)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	return appendFloatG(dst, x, s.floatDig), nil
}

func float8ToBinary(dst, c []byte, t *Type) ([]byte, error) {
	x, ok := parseCanonicalFloat(c)
	if !ok {
		return dst, errCorrupt(t, c)
	}
	if math.IsNaN(x) {
		return binary.BigEndian.AppendUint64(dst, canonicalNaN), nil
	}
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(x)), nil
}
