package values

import (
	"strconv"
	"strings"
)

// SQLSTATE codes of the errors this package returns. Each is PostgreSQL's
// own code for the condition (src/backend/utils/errcodes.txt).
const (
	CodeInvalidTextRepresentation   = "22P02" // invalid_text_representation
	CodeInvalidBinaryRepresentation = "22P03" // invalid_binary_representation
	CodeNumericValueOutOfRange      = "22003" // numeric_value_out_of_range
	CodeStringDataRightTruncation   = "22001" // string_data_right_truncation
	CodeCharacterNotInRepertoire    = "22021" // character_not_in_repertoire
	CodeUntranslatableCharacter     = "22P05" // untranslatable_character
	CodeInvalidParameterValue       = "22023" // invalid_parameter_value
	CodeInvalidDatetimeFormat       = "22007" // invalid_datetime_format
	CodeDatetimeFieldOverflow       = "22008" // datetime_field_overflow (also datetime_value_out_of_range)
	CodeInvalidTimeZoneDisplacement = "22009" // invalid_time_zone_displacement_value
	CodeProtocolViolation           = "08P01" // protocol_violation
	CodeFeatureNotSupported         = "0A000" // feature_not_supported
	CodeStackDepthExceeded          = "54001" // statement_too_complex
	CodeDataCorrupted               = "XX001" // data_corrupted
	CodeInternalError               = "XX000" // internal_error
)

// ValueError is a value that PostgreSQL itself would have rejected (or that
// pgcloak cannot convert). Code, Message, Detail and Hint are the fields of
// the ErrorResponse PostgreSQL would send, worded like PostgreSQL's own
// ("invalid input syntax for type integer: \"abc\""). The caller adds the
// "pgcloak:" prefix and the table.column when it turns the error into an
// ErrorResponse; this package knows neither.
type ValueError struct {
	Code    string // SQLSTATE
	Message string
	Detail  string // optional
	Hint    string // optional
}

// SQLState, ErrorDetail and ErrorHint give the ErrorResponse fields.
func (e *ValueError) SQLState() string    { return e.Code }
func (e *ValueError) ErrorDetail() string { return e.Detail }
func (e *ValueError) ErrorHint() string   { return e.Hint }

func (e *ValueError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	b.WriteString(" (SQLSTATE ")
	b.WriteString(e.Code)
	b.WriteString(")")
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func newError(code, msg string) *ValueError { return &ValueError{Code: code, Message: msg} }

// quoted returns v as PostgreSQL quotes a value in its messages: between
// double quotes, verbatim. v was checked to be valid UTF-8 (or ASCII) before
// any message quotes it.
func quoted(v []byte) string { return `"` + string(v) + `"` }

func syntaxError(typeName string, v []byte) *ValueError {
	return newError(CodeInvalidTextRepresentation, "invalid input syntax for type "+typeName+": "+quoted(v))
}

func outOfRange(typeName string, v []byte) *ValueError {
	return newError(CodeNumericValueOutOfRange, "value "+quoted(v)+" is out of range for type "+typeName)
}

// errInsufficientData is what PostgreSQL answers a binary value that is
// shorter than its type needs (pq_getmsgint: "insufficient data left in
// message").
func errInsufficientData() *ValueError {
	return newError(CodeProtocolViolation, "insufficient data left in message")
}

// errBinaryFormat is PostgreSQL's answer to a binary parameter with bytes
// left over after the type's receive function ("incorrect binary data format
// in bind parameter N"); the caller knows N and may append it.
func errBinaryFormat() *ValueError {
	return newError(CodeInvalidBinaryRepresentation, "incorrect binary data format")
}

func errFormatCode(format int16) *ValueError {
	return newError(CodeInvalidParameterValue, "unsupported format code: "+strconv.Itoa(int(format)))
}

// errCorrupt reports a stored plaintext that is not in the canonical form of
// its type: the value was written under another logical type (a config
// change) or by a bug. It is never silently passed on.
//
// The message never quotes the plaintext: errors end up in logs.
func errCorrupt(t *Type, canonical []byte) *ValueError {
	return &ValueError{
		Code:    CodeDataCorrupted,
		Message: "stored value is not a valid " + t.String() + " plaintext",
		Detail:  "The decrypted value (" + strconv.Itoa(len(canonical)) + " bytes) is not in the canonical form of the column's logical type.",
		Hint:    "Was the column's logical type changed in the configuration after values were written?",
	}
}
