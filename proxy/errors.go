package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes pgcloak raises itself. Each is PostgreSQL's own code for the
// same condition (src/backend/utils/errcodes.txt).
const (
	codeProtocolViolation    = "08P01"
	codeConnectionFailure    = "08006"
	codeCannotConnect        = "08001" // sqlclient_unable_to_establish_sqlconnection
	codeTooManyConnections   = "53300"
	codeCannotConnectNow     = "57P03"
	codeFeatureNotSupported  = "0A000"
	codeInvalidAuthorization = "28000"
	codeAdminShutdown        = "57P01"
	codeProgramLimitExceeded = "54000"
)

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
