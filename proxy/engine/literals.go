package engine

import (
	"strings"

	"github.com/pgcloak/pgcloak/proxy/values"
)

// isDecimalLiteral reports whether text is an unquoted number with a
// fraction or an exponent (1.5, -0.0, 1e3): PostgreSQL types such a constant
// numeric, whatever column it goes to, and converts it from there.
func isDecimalLiteral(text string) bool {
	if text == "" || strings.ContainsAny(text[:1], `'"$EeUuBbXxNn`) {
		return false
	}
	dec := false
	for _, r := range text {
		switch {
		case r >= '0' && r <= '9', r == '+', r == '-':
		case r == '.', r == 'e', r == 'E':
			dec = true
		default:
			return false
		}
	}
	return dec
}

var numericType, _ = values.Lookup("numeric")

// numericLiteral reads a decimal literal as PostgreSQL does (a numeric
// constant, then an assignment cast to the column's type) and returns the
// text the column's type then reads: integers rounded half away from zero,
// everything else numeric's own text (-0.0 is 0.0, 1e3 is 1000).
func (ss *session) numericLiteral(col *column, v []byte) ([]byte, error) {
	num, err := numericType.Canonical(nil, 0, v, &ss.cloak.fmtClient)
	if err != nil {
		return nil, columnValueError(col, err)
	}
	switch col.typ.OID() {
	case values.OIDInt2, values.OIDInt4, values.OIDInt8:
		return roundNumeric(num), nil
	}
	return num, nil
}

// roundNumeric rounds a numeric's text (no exponent) to an integer, half
// away from zero, as numeric-to-integer casts do.
func roundNumeric(n []byte) []byte {
	s := string(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	digits := []byte(intPart)
	if frac != "" && frac[0] >= '5' {
		i := len(digits) - 1
		for ; i >= 0 && digits[i] == '9'; i-- {
			digits[i] = '0'
		}
		if i < 0 {
			digits = append([]byte{'1'}, digits...)
		} else {
			digits[i]++
		}
	}
	out := strings.TrimLeft(string(digits), "0")
	if out == "" {
		return []byte("0")
	}
	if neg {
		out = "-" + out
	}
	return []byte(out)
}
