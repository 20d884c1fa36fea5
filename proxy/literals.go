package proxy

import (
	"regexp"
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
	num, err := numericType.Canonical(nil, 0, v, ss.cloak.fmt.Load())
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

// Settings that shape how values look but that PostgreSQL does not report
// in ParameterStatus: pgcloak follows them from the startup message and
// from SET/RESET statements it relays.
var (
	unreportedSettings = []string{"extra_float_digits", "bytea_output"}
	setSettingRE       = regexp.MustCompile(`(?i)\b(?:set\s+(?:session\s+|local\s+)?(extra_float_digits|bytea_output)\s*(?:=|to)\s*'?([-+\w]+)'?|reset\s+(extra_float_digits|bytea_output|all))\b`)
)

// trackSettings applies SET/RESET of the unreported settings in sql.
func (ss *session) trackSettings(sql string) {
	if !strings.Contains(strings.ToLower(sql), "extra_float_digits") && !strings.Contains(strings.ToLower(sql), "bytea_output") &&
		!strings.Contains(strings.ToLower(sql), "reset") {
		return
	}
	c := ss.cloak
	for _, m := range setSettingRE.FindAllStringSubmatch(sql, -1) {
		switch {
		case m[1] != "":
			c.setParameter(m[1], m[2])
		case strings.EqualFold(m[3], "all"):
			for _, name := range unreportedSettings {
				c.setParameter(name, c.startupSettings[name])
			}
		case m[3] != "":
			c.setParameter(m[3], c.startupSettings[strings.ToLower(m[3])])
		}
	}
}
