package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// The SQLSTATEs pgcloak raises are pgerrcode's constants (PostgreSQL's own
// codes for the same conditions).

// errorResponse encodes an ErrorResponse raised by pgcloak. The message is
// prefixed "pgcloak: " so users can tell it from PostgreSQL's own errors.
func errorResponse(dst []byte, severity, code, msg string) []byte {
	e := pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             "pgcloak: " + msg,
	}
	b, err := e.Encode(dst)
	if err != nil {
		// Encode fails only for messages over 1 GiB; ours are short.
		panic(err)
	}
	return b
}

// fatal encodes a FATAL ErrorResponse: the connection ends after it.
func fatal(code, msg string) []byte { return errorResponse(nil, "FATAL", code, msg) }
