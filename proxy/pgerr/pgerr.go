// Package pgerr is the one error type that pgcloak reports to clients: an
// ErrorResponse with a real SQLSTATE (the codes of github.com/jackc/pgerrcode,
// which mirror PostgreSQL's src/backend/utils/errcodes.txt), a message that
// names the table.column and the reason, and optional detail and hint.
//
// The packages that find problems keep their own error types, shaped by what
// they know (sqlplan.Refusal, values.ValueError, copyfmt.Error); each reports
// its SQLSTATE through SQLState. From turns any of them into an *Error at the
// one place where errors meet the wire.
package pgerr

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Error is an error pgcloak answers with an ErrorResponse.
type Error struct {
	// Code is the SQLSTATE (a pgerrcode constant).
	Code string
	// Message is the primary message. Unless Plain, the client sees it
	// prefixed "pgcloak: " so that it can tell pgcloak's errors from
	// PostgreSQL's.
	Message      string
	Detail, Hint string
	// Plain marks a message worded as PostgreSQL words the same condition
	// ("prepared statement \"x\" does not exist"), sent without the prefix.
	Plain bool
	// Err is the cause, for logs and errors.Is/As; never sent.
	Err error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// SQLState returns the error's SQLSTATE.
func (e *Error) SQLState() string { return e.Code }

// New returns an *Error with code and message.
func New(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// SQLStater is implemented by the errors that know their SQLSTATE.
type SQLStater interface {
	error
	SQLState() string
}

// detailer and hinter are implemented by errors that carry a DETAIL or HINT
// (values.ValueError, copyfmt.Error).
type detailer interface{ ErrorDetail() string }
type hinter interface{ ErrorHint() string }

// From returns err as an *Error: itself, or one made from the first error in
// its chain that knows its SQLSTATE, or else an internal error (XX000)
// carrying err's text. A nil err gives nil.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var s SQLStater
	if errors.As(err, &s) {
		out := &Error{Code: s.SQLState(), Message: s.Error(), Err: err}
		if d, ok := s.(detailer); ok {
			out.Detail = d.ErrorDetail()
		}
		if h, ok := s.(hinter); ok {
			out.Hint = h.ErrorHint()
		}
		return out
	}
	return &Error{Code: pgerrcode.InternalError, Message: err.Error(), Err: err}
}

// Severities of an ErrorResponse.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL" // the connection ends after it
)

// Append appends e as an ErrorResponse of the given severity.
func (e *Error) Append(dst []byte, severity string) []byte {
	msg := e.Message
	if !e.Plain {
		msg = "pgcloak: " + msg
	}
	r := pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: e.Code,
		Message: msg, Detail: e.Detail, Hint: e.Hint}
	b, err := r.Encode(dst)
	if err != nil {
		// Encode fails only for messages over 1 GiB; ours are short.
		panic(err)
	}
	return b
}

// Response is err as an ErrorResponse of the given severity (see From).
func Response(dst []byte, severity string, err error) []byte {
	return From(err).Append(dst, severity)
}
