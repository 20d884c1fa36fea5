package values

import (
	"encoding/binary"
	"strconv"
)

// Limits of PostgreSQL's numeric (src/backend/utils/adt/numeric.c).
const (
	numericMaxPrecision = 1000
	numericMinScale     = -1000
	numericMaxScale     = 1000
	numericMaxDscale    = 0x3FFF // NUMERIC_DSCALE_MAX
	numericMaxWeight    = 32767  // NUMERIC_WEIGHT_MAX, in base-10000 digits
	nbase               = 10000

	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPinf = 0xD000
	numericNinf = 0xF000
)

// decimal is a finite numeric value: digits × 10^(weight-len(digits)+1),
// printed with dscale digits after the point.
type decimal struct {
	neg     bool
	digits  []byte // '0'..'9', first one non-zero; empty means zero
	weight  int    // decimal exponent of digits[0]
	dscale  int
	special byte // 0 finite, 'N' NaN, 'I' +Infinity, 'i' -Infinity
}

func (d *decimal) digitAt(p int) byte {
	if i := d.weight - p; i >= 0 && i < len(d.digits) {
		return d.digits[i]
	}
	return '0'
}

// appendDecimal writes d as numeric_out does: the integer part without
// leading zeros ("0" if none), then exactly dscale fraction digits; no sign
// for zero.
func appendDecimal(dst []byte, d *decimal) []byte {
	switch d.special {
	case 'N':
		return append(dst, "NaN"...)
	case 'I':
		return append(dst, "Infinity"...)
	case 'i':
		return append(dst, "-Infinity"...)
	}
	if d.neg && len(d.digits) > 0 {
		dst = append(dst, '-')
	}
	if d.weight < 0 || len(d.digits) == 0 {
		dst = append(dst, '0')
	} else {
		for p := d.weight; p >= 0; p-- {
			dst = append(dst, d.digitAt(p))
		}
	}
	if d.dscale > 0 {
		dst = append(dst, '.')
		for p := -1; p >= -d.dscale; p-- {
			dst = append(dst, d.digitAt(p))
		}
	}
	return dst
}

func errNumericOverflow() *ValueError {
	return newError(CodeNumericValueOutOfRange, "value overflows numeric format")
}

// numericFromText follows numeric_in and set_var_from_str of PostgreSQL 15:
// blanks; "NaN", "Infinity", "inf" with optional sign, any case; or a sign,
// digits with at most one decimal point, an optional exponent (strtol
// syntax, so blanks may follow the 'e'); blanks. The scale is the number of
// fraction digits written minus the exponent, at least 0, so "1.50" stays
// "1.50" and "1.5e3" is "1500". With a modifier the value is rounded (half
// away from zero) to the scale and must fit the precision (22003).
//
// Canonical form: numeric_out's text ("-12.50", "0.001", "NaN",
// "Infinity", "-Infinity").
func (t *Type) numericFromText(dst, v []byte) ([]byte, error) {
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	rest := v[i:]
	var special byte
	n := 0
	switch {
	case hasPrefixFold(rest, "NaN"):
		special, n = 'N', 3
	case hasPrefixFold(rest, "Infinity"):
		special, n = 'I', 8
	case hasPrefixFold(rest, "+Infinity"):
		special, n = 'I', 9
	case hasPrefixFold(rest, "-Infinity"):
		special, n = 'i', 9
	case hasPrefixFold(rest, "inf"):
		special, n = 'I', 3
	case hasPrefixFold(rest, "+inf"):
		special, n = 'I', 4
	case hasPrefixFold(rest, "-inf"):
		special, n = 'i', 4
	}
	if special != 0 {
		for _, c := range rest[n:] {
			if !isSpace(c) {
				return dst, syntaxError("numeric", v)
			}
		}
		d := decimal{special: special}
		if err := t.applyNumericTypmod(&d); err != nil {
			return dst, err
		}
		return appendDecimal(dst, &d), nil
	}
	var stack [40]byte
	d, end, err := scanNumeric(stack[:0], v, i)
	if err != nil {
		return dst, err
	}
	for _, c := range v[end:] {
		if !isSpace(c) {
			return dst, syntaxError("numeric", v)
		}
	}
	// A Bind parameter goes through numeric_in without the modifier, and
	// the modifier is applied by the assignment cast: limits first.
	if err := checkNumericLimits(&d); err != nil {
		return dst, err
	}
	if err := t.applyNumericTypmod(&d); err != nil {
		return dst, err
	}
	return appendDecimal(dst, &d), nil
}

// scanNumeric is set_var_from_str: it reads a finite number starting at
// v[i], keeping its digits in buf, and returns it and where it ends.
func scanNumeric(buf []byte, v []byte, i int) (decimal, int, error) {
	d := decimal{digits: buf}
	if i < len(v) && (v[i] == '+' || v[i] == '-') {
		d.neg = v[i] == '-'
		i++
	}
	haveDP := false
	if i < len(v) && v[i] == '.' {
		haveDP = true
		i++
	}
	if i >= len(v) || !isDigit(v[i]) {
		return d, 0, syntaxError("numeric", v)
	}
	dweight := -1 // decimal weight of the first digit written
	dscale := 0
	seen := false // a non-zero digit has been kept
	pos := 0      // index of the current digit among all written digits
	firstPos := 0
	for i < len(v) {
		c := v[i]
		if isDigit(c) {
			if !haveDP {
				dweight++
			} else {
				dscale++
			}
			if c != '0' && !seen {
				seen, firstPos = true, pos
			}
			if seen {
				d.digits = append(d.digits, c)
			}
			pos++
			i++
		} else if c == '.' {
			if haveDP {
				return d, 0, syntaxError("numeric", v)
			}
			haveDP = true
			i++
		} else {
			break
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		// strtol: blanks, sign, digits.
		j := i + 1
		for j < len(v) && isSpace(v[j]) {
			j++
		}
		eneg := false
		if j < len(v) && (v[j] == '+' || v[j] == '-') {
			eneg = v[j] == '-'
			j++
		}
		if j >= len(v) || !isDigit(v[j]) {
			return d, 0, syntaxError("numeric", v)
		}
		const limit = 1<<31/2 - 1 // INT_MAX / 2
		exp := 0
		for ; j < len(v) && isDigit(v[j]); j++ {
			if exp < limit {
				exp = exp*10 + int(v[j]-'0')
			}
		}
		if exp >= limit {
			return d, 0, errNumericOverflow()
		}
		if eneg {
			exp = -exp
		}
		dweight += exp
		dscale -= exp
		if dscale < 0 {
			dscale = 0
		}
		i = j
	}
	d.dscale = dscale
	if seen {
		d.weight = dweight - firstPos
		d.trimTrailingZeros()
	} else {
		d.neg = false
	}
	return d, i, nil
}

func (d *decimal) trimTrailingZeros() {
	n := len(d.digits)
	for n > 0 && d.digits[n-1] == '0' {
		n--
	}
	d.digits = d.digits[:n]
}

// applyNumericTypmod is apply_typmod and apply_typmod_special: round to the
// scale, then check that the integer digits fit precision - scale.
func (t *Type) applyNumericTypmod(d *decimal) error {
	if t.typmod < 0 || d.special == 'N' {
		return nil
	}
	p, s := t.precision, t.scale
	if d.special != 0 {
		return &ValueError{
			Code:    CodeNumericValueOutOfRange,
			Message: "numeric field overflow",
			Detail:  "A field with precision " + strconv.Itoa(p) + ", scale " + strconv.Itoa(s) + " cannot hold an infinite value.",
		}
	}
	d.round(s)
	if max := p - s; len(d.digits) > 0 && d.weight+1 > max {
		bound := "1"
		if max != 0 {
			bound = "10^" + strconv.Itoa(max)
		}
		return &ValueError{
			Code:    CodeNumericValueOutOfRange,
			Message: "numeric field overflow",
			Detail:  "A field with precision " + strconv.Itoa(p) + ", scale " + strconv.Itoa(s) + " must round to an absolute value less than " + bound + ".",
		}
	}
	return nil
}

// round is round_var: round half away from zero to scale fraction digits
// (a negative scale rounds to tens, hundreds …) and set dscale.
func (d *decimal) round(scale int) {
	d.dscale = max(scale, 0)
	keep := d.weight + scale + 1 // digits at positions >= -scale
	if keep >= len(d.digits) {
		return
	}
	if keep < 0 {
		d.digits, d.neg = d.digits[:0], false
		return
	}
	up := d.digits[keep] >= '5'
	d.digits = d.digits[:keep]
	if up {
		j := keep - 1
		for j >= 0 && d.digits[j] == '9' {
			j--
		}
		if j < 0 {
			// All nines (or nothing kept): the result is 10^(weight+1).
			d.digits = d.digits[:1] // there was at least the digit at keep
			d.digits[0] = '1'
			d.weight++
			return
		}
		d.digits[j]++
		d.digits = d.digits[:j+1]
	}
	d.trimTrailingZeros()
	if len(d.digits) == 0 {
		d.neg = false
	}
}

// checkNumericLimits is make_result's overflow check: the weight in base
// 10000 digits and the display scale must fit their int16 fields.
func checkNumericLimits(d *decimal) error {
	if d.dscale > numericMaxDscale {
		return errNumericOverflow()
	}
	if len(d.digits) > 0 && floorDiv(d.weight, 4) > numericMaxWeight {
		return errNumericOverflow()
	}
	return nil
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// numericFromBinary is numeric_recv: ndigits, weight, sign and dscale as
// int16, then ndigits base-10000 digits. Digits beyond dscale are cut off
// (not rounded), as PostgreSQL does.
func (t *Type) numericFromBinary(dst, v []byte) ([]byte, error) {
	if len(v) < 8 {
		return dst, errInsufficientData()
	}
	ndigits := int(binary.BigEndian.Uint16(v))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	dscale := int(binary.BigEndian.Uint16(v[6:]))
	switch sign {
	case numericPos, numericNeg, numericNaN, numericPinf, numericNinf:
	default:
		return dst, newError(CodeInvalidBinaryRepresentation, `invalid sign in external "numeric" value`)
	}
	if dscale&numericMaxDscale != dscale {
		return dst, newError(CodeInvalidBinaryRepresentation, `invalid scale in external "numeric" value`)
	}
	body := v[8:]
	for k := 0; k < ndigits; k++ {
		if len(body) < 2*(k+1) {
			return dst, errInsufficientData()
		}
		if binary.BigEndian.Uint16(body[2*k:]) >= nbase {
			return dst, newError(CodeInvalidBinaryRepresentation, `invalid digit in external "numeric" value`)
		}
	}
	if len(body) != 2*ndigits {
		return dst, errBinaryFormat()
	}
	var stack [40]byte
	d := decimal{digits: stack[:0], dscale: dscale}
	switch sign {
	case numericNaN:
		d.special = 'N'
	case numericPinf:
		d.special = 'I'
	case numericNinf:
		d.special = 'i'
	default:
		d.neg = sign == numericNeg
		// Decimal position of the first digit of the first group.
		p := 4*weight + 3
		for k := 0; k < ndigits; k++ {
			g := binary.BigEndian.Uint16(body[2*k:])
			for _, c := range [4]byte{byte('0' + g/1000), byte('0' + g/100%10), byte('0' + g/10%10), byte('0' + g%10)} {
				if p < -dscale {
					break // trunc_var
				}
				if len(d.digits) == 0 {
					if c != '0' {
						d.weight = p
						d.digits = append(d.digits, c)
					}
				} else {
					d.digits = append(d.digits, c)
				}
				p--
			}
		}
		d.trimTrailingZeros()
		if len(d.digits) == 0 {
			d.neg = false
		}
	}
	if d.special == 0 {
		if err := checkNumericLimits(&d); err != nil {
			return dst, err
		}
	}
	if err := t.applyNumericTypmod(&d); err != nil {
		return dst, err
	}
	return appendDecimal(dst, &d), nil
}

// numericToBinary is numeric_send of a canonical value: the value in
// base-10000 digits with leading and trailing zero digits stripped, the
// weight of the first, and dscale; zero is ndigits 0, weight 0.
func (t *Type) numericToBinary(dst, c []byte) ([]byte, error) {
	var sign uint16
	switch string(c) {
	case "NaN":
		sign = numericNaN
	case "Infinity":
		sign = numericPinf
	case "-Infinity":
		sign = numericNinf
	}
	if sign != 0 {
		dst = binary.BigEndian.AppendUint32(dst, 0) // ndigits, weight
		dst = binary.BigEndian.AppendUint16(dst, sign)
		// numeric_send takes dscale from the special value's header with the
		// short-format mask, which yields 32 for the infinities.
		return binary.BigEndian.AppendUint16(dst, (sign&0x1F80)>>7), nil
	}
	body := c
	if len(body) > 0 && body[0] == '-' {
		sign = numericNeg
		body = body[1:]
	}
	intp, frac := body, []byte(nil)
	for i, ch := range body {
		if ch == '.' {
			intp, frac = body[:i], body[i+1:]
			break
		}
	}
	if !validCanonicalNumeric(intp, frac) {
		return dst, errCorrupt(t, c)
	}
	gi := (len(intp) + 3) / 4
	total := gi + (len(frac)+3)/4
	first, last := 0, total-1
	for first < total && nbaseGroup(intp, frac, gi, first) == 0 {
		first++
	}
	if first == total {
		dst = binary.BigEndian.AppendUint64(dst, uint64(len(frac))) // 0, 0, positive, dscale
		return dst, nil
	}
	for nbaseGroup(intp, frac, gi, last) == 0 {
		last--
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(last-first+1))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(gi-1-first)))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(frac)))
	for g := first; g <= last; g++ {
		dst = binary.BigEndian.AppendUint16(dst, nbaseGroup(intp, frac, gi, g))
	}
	return dst, nil
}

func validCanonicalNumeric(intp, frac []byte) bool {
	if len(intp) == 0 || len(intp) > 4*(numericMaxWeight+1) || len(frac) > numericMaxDscale {
		return false
	}
	if len(intp) > 1 && intp[0] == '0' {
		return false
	}
	for _, ch := range intp {
		if !isDigit(ch) {
			return false
		}
	}
	for _, ch := range frac {
		if !isDigit(ch) {
			return false
		}
	}
	return true
}

// nbaseGroup returns base-10000 digit g of the number intp.frac, where the
// integer part has gi groups (aligned at the decimal point).
func nbaseGroup(intp, frac []byte, gi, g int) uint16 {
	var v uint16
	if g < gi {
		// Integer group g covers intp[end-4:end], end counted from the right.
		end := len(intp) - 4*(gi-1-g)
		for i := end - 4; i < end; i++ {
			v *= 10
			if i >= 0 {
				v += uint16(intp[i] - '0')
			}
		}
		return v
	}
	start := 4 * (g - gi)
	for i := start; i < start+4; i++ {
		v *= 10
		if i < len(frac) {
			v += uint16(frac[i] - '0')
		}
	}
	return v
}
