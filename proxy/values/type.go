package values

import (
	"fmt"
	"strconv"
	"strings"
)

// kind is the logical type family; Type adds the modifier.
type kind uint8

const (
	kindText kind = iota
	kindVarchar
	kindBpchar
	kindInt2
	kindInt4
	kindInt8
	kindNumeric
	kindFloat8
	kindBool
	kindDate
	kindTimestamp
	kindTimestamptz
	kindUUID
	kindJSONB
	kindBytea
	numKinds
)

// OIDs of the logical types (src/include/catalog/pg_type.dat).
const (
	OIDBool        uint32 = 16
	OIDBytea       uint32 = 17
	OIDInt8        uint32 = 20
	OIDInt2        uint32 = 21
	OIDInt4        uint32 = 23
	OIDText        uint32 = 25
	OIDFloat8      uint32 = 701
	OIDBpchar      uint32 = 1042
	OIDVarchar     uint32 = 1043
	OIDDate        uint32 = 1082
	OIDTimestamp   uint32 = 1114
	OIDTimestamptz uint32 = 1184
	OIDNumeric     uint32 = 1700
	OIDUUID        uint32 = 2950
	OIDJSONB       uint32 = 3802
)

// typeInfo is what pg_type says about each kind.
var typeInfo = [numKinds]struct {
	typname string // pg_type.typname
	display string // format_type() without a modifier; used in messages
	oid     uint32
	typlen  int16
}{
	kindText:        {"text", "text", OIDText, -1},
	kindVarchar:     {"varchar", "character varying", OIDVarchar, -1},
	kindBpchar:      {"bpchar", "bpchar", OIDBpchar, -1},
	kindInt2:        {"int2", "smallint", OIDInt2, 2},
	kindInt4:        {"int4", "integer", OIDInt4, 4},
	kindInt8:        {"int8", "bigint", OIDInt8, 8},
	kindNumeric:     {"numeric", "numeric", OIDNumeric, -1},
	kindFloat8:      {"float8", "double precision", OIDFloat8, 8},
	kindBool:        {"bool", "boolean", OIDBool, 1},
	kindDate:        {"date", "date", OIDDate, 4},
	kindTimestamp:   {"timestamp", "timestamp without time zone", OIDTimestamp, 8},
	kindTimestamptz: {"timestamptz", "timestamp with time zone", OIDTimestamptz, 8},
	kindUUID:        {"uuid", "uuid", OIDUUID, 16},
	kindJSONB:       {"jsonb", "jsonb", OIDJSONB, -1},
	kindBytea:       {"bytea", "bytea", OIDBytea, -1},
}

// Type is the logical type of a protected column: what the application sees
// in RowDescription and ParameterDescription, and how its values are
// validated and converted. A Type is immutable and safe for concurrent use;
// Lookup and ByOID return shared values, never modify them.
type Type struct {
	kind   kind
	typmod int32  // pg_attribute.atttypmod; -1 without a modifier
	name   string // format_type(oid, typmod), e.g. "character varying(64)"

	// Decoded modifier; meaningful only when typmod >= 0.
	length    int // varchar, bpchar: maximum length in characters
	precision int // numeric
	scale     int // numeric (may be negative or exceed precision, as in PostgreSQL 15+)
	tsPrec    int // timestamp, timestamptz: fractional digits 0..6
}

// OID is the logical type's pg_type OID, for RowDescription.DataTypeOID and
// ParameterDescription.
func (t *Type) OID() uint32 { return typeInfo[t.kind].oid }

// Len is pg_type.typlen, for RowDescription.DataTypeSize: the fixed size in
// bytes, or -1 for variable-length types.
func (t *Type) Len() int16 { return typeInfo[t.kind].typlen }

// Typmod is the type modifier for RowDescription.TypeModifier, encoded like
// pg_attribute.atttypmod: -1 without a modifier; varchar(n) and bpchar(n)
// n+4; numeric(p,s) ((p<<16)|(s&0x7ff))+4; timestamp(p) and timestamptz(p) p.
func (t *Type) Typmod() int32 { return t.typmod }

// Name is pg_type.typname of the logical type ("int4", "varchar", …).
func (t *Type) Name() string { return typeInfo[t.kind].typname }

// String is the type as PostgreSQL's format_type() prints it, modifier
// included ("integer", "character varying(64)", "numeric(12,2)"). Error
// messages use it, as PostgreSQL does.
func (t *Type) String() string { return t.name }

// base holds the unmodified types, indexed by kind.
var base [numKinds]*Type

func init() {
	for k := kind(0); k < numKinds; k++ {
		base[k] = &Type{kind: k, typmod: -1, name: typeInfo[k].display}
	}
}

// ByOID returns the logical type with the given OID and no modifier, or
// false if the OID is not one of the supported logical types. The session
// uses it for parameters that a client declared with a type other than the
// column's: canonicalize with the declared type, then feed the canonical text
// (format 0) to the column's type.
func ByOID(oid uint32) (*Type, bool) {
	for _, t := range base {
		if t.OID() == oid {
			return t, true
		}
	}
	return nil, false
}

// typeNames maps the spellings Lookup accepts (lower case, single spaces) to
// a kind. "char" and "character" without a length mean char(1), as in SQL;
// "bpchar" without a length is blank-padded char of any length.
var typeNames = map[string]kind{
	"text":                        kindText,
	"varchar":                     kindVarchar,
	"character varying":           kindVarchar,
	"char varying":                kindVarchar,
	"bpchar":                      kindBpchar,
	"char":                        kindBpchar,
	"character":                   kindBpchar,
	"int2":                        kindInt2,
	"smallint":                    kindInt2,
	"int4":                        kindInt4,
	"integer":                     kindInt4,
	"int":                         kindInt4,
	"int8":                        kindInt8,
	"bigint":                      kindInt8,
	"numeric":                     kindNumeric,
	"decimal":                     kindNumeric,
	"dec":                         kindNumeric,
	"float8":                      kindFloat8,
	"double precision":            kindFloat8,
	"float":                       kindFloat8,
	"bool":                        kindBool,
	"boolean":                     kindBool,
	"date":                        kindDate,
	"timestamp":                   kindTimestamp,
	"timestamp without time zone": kindTimestamp,
	"timestamptz":                 kindTimestamptz,
	"timestamp with time zone":    kindTimestamptz,
	"uuid":                        kindUUID,
	"jsonb":                       kindJSONB,
	"bytea":                       kindBytea,
}

// Supported lists the logical type names Lookup accepts, for messages and
// documentation.
const Supported = "text, varchar(n), bpchar/char(n), int2, int4, int8, numeric(p,s), float8, bool, date, timestamp(p), timestamptz(p), uuid, jsonb, bytea"

// maxCharLength is PostgreSQL's MaxAttrSize limit on varchar(n)/char(n).
const maxCharLength = 10485760

// Lookup parses a logical type as written in the configuration: a type name
// in any of PostgreSQL's spellings (case-insensitive: "varchar", "character
// varying", "int"/"integer"/"int4", "double precision", "timestamp with time
// zone" …) with an optional modifier: varchar(n), char(n)/bpchar(n),
// numeric(p) and numeric(p,s), timestamp(p) and timestamptz(p). Modifiers are
// validated as PostgreSQL validates them in CREATE TABLE.
func Lookup(spec string) (*Type, error) {
	s := strings.ToLower(strings.TrimSpace(spec))
	var args []int
	if i := strings.IndexByte(s, '('); i >= 0 {
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return nil, fmt.Errorf("type %q: missing \")\"", spec)
		}
		j += i
		for _, a := range strings.Split(s[i+1:j], ",") {
			n, err := strconv.Atoi(strings.TrimSpace(a))
			if err != nil {
				return nil, fmt.Errorf("type %q: type modifiers must be simple integer constants", spec)
			}
			args = append(args, n)
		}
		s = s[:i] + " " + s[j+1:]
	}
	s = strings.Join(strings.Fields(s), " ")
	k, ok := typeNames[s]
	if !ok {
		return nil, fmt.Errorf("type %q is not supported for protected columns (supported: %s)", spec, Supported)
	}
	if s == "float" && len(args) == 1 {
		// float(p): 1..24 is real (not supported), 25..53 double precision.
		switch p := args[0]; {
		case p < 1:
			return nil, fmt.Errorf("type %q: precision for type float must be at least 1 bit", spec)
		case p > 53:
			return nil, fmt.Errorf("type %q: precision for type float must be less than 54 bits", spec)
		case p <= 24:
			return nil, fmt.Errorf("type %q is real, which is not supported for protected columns (supported: %s)", spec, Supported)
		}
		return base[kindFloat8], nil
	}
	if args == nil {
		if k == kindBpchar && s != "bpchar" {
			args = []int{1} // SQL: char means char(1)
		} else {
			return base[k], nil
		}
	}
	t := &Type{kind: k}
	switch k {
	case kindVarchar, kindBpchar:
		short := "varchar"
		if k == kindBpchar {
			short = "char"
		}
		if len(args) != 1 {
			return nil, fmt.Errorf("type %q: invalid type modifier", spec)
		}
		n := args[0]
		if n < 1 {
			return nil, fmt.Errorf("type %q: length for type %s must be at least 1", spec, short)
		}
		if n > maxCharLength {
			return nil, fmt.Errorf("type %q: length for type %s cannot exceed %d", spec, short, maxCharLength)
		}
		t.length = n
		t.typmod = int32(n) + 4
		if k == kindVarchar {
			t.name = "character varying(" + strconv.Itoa(n) + ")"
		} else {
			t.name = "character(" + strconv.Itoa(n) + ")"
		}
	case kindNumeric:
		if len(args) < 1 || len(args) > 2 {
			return nil, fmt.Errorf("type %q: invalid NUMERIC type modifier", spec)
		}
		p, sc := args[0], 0
		if len(args) == 2 {
			sc = args[1]
		}
		if p < 1 || p > numericMaxPrecision {
			return nil, fmt.Errorf("type %q: NUMERIC precision %d must be between 1 and %d", spec, p, numericMaxPrecision)
		}
		if sc < numericMinScale || sc > numericMaxScale {
			return nil, fmt.Errorf("type %q: NUMERIC scale %d must be between %d and %d", spec, sc, numericMinScale, numericMaxScale)
		}
		t.precision, t.scale = p, sc
		t.typmod = int32(p<<16|(sc&0x7ff)) + 4
		t.name = "numeric(" + strconv.Itoa(p) + "," + strconv.Itoa(sc) + ")"
	case kindTimestamp, kindTimestamptz:
		if len(args) != 1 {
			return nil, fmt.Errorf("type %q: invalid type modifier", spec)
		}
		p := args[0]
		if p < 0 {
			return nil, fmt.Errorf("type %q: TIMESTAMP(%d) precision must not be negative", spec, p)
		}
		if p > 6 {
			p = 6 // PostgreSQL reduces it with a warning
		}
		t.tsPrec = p
		t.typmod = int32(p)
		zone := " without time zone"
		if k == kindTimestamptz {
			zone = " with time zone"
		}
		t.name = "timestamp(" + strconv.Itoa(p) + ")" + zone
	default:
		return nil, fmt.Errorf("type %q: type %s does not accept a modifier", spec, typeInfo[k].display)
	}
	return t, nil
}

// textual reports whether the type's binary form carries text (and so
// travels in the client encoding).
func (t *Type) textual() bool {
	switch t.kind {
	case kindText, kindVarchar, kindBpchar, kindJSONB:
		return true
	}
	return false
}
