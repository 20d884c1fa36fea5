package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// SQLSTATEs of the encryption layer (PostgreSQL's codes for the condition).
const (
	codeDataCorrupted = "XX001" // data_corrupted: ciphertext fails to decrypt
	codeSystemError   = "58000" // system_error: a key cannot be had (KMS down)
)

// cloakError is an error pgcloak raises about a protected column. Its
// message names the column and the reason.
type cloakError struct {
	code         string
	msg          string
	detail, hint string
	err          error
	// plain: the message is PostgreSQL's wording, without "pgcloak: ".
	plain bool
}

func (e *cloakError) Error() string { return e.msg }
func (e *cloakError) Unwrap() error { return e.err }

// columnValueError is a client value that is not valid for the column's
// logical type; it keeps PostgreSQL's SQLSTATE for the same mistake.
func columnValueError(col *column, err error) error {
	ce := &cloakError{code: "22P02", err: err}
	var ve *values.ValueError
	msg := err.Error()
	if errors.As(err, &ve) {
		ce.code, msg, ce.detail, ce.hint = ve.Code, ve.Message, ve.Detail, ve.Hint
	}
	ce.msg = fmt.Sprintf("%s (%s): %s", col, col.typ, msg)
	return ce
}

// columnDataError is stored data that cannot be decrypted.
func columnDataError(col *column, err error) error {
	return &cloakError{code: codeDataCorrupted, err: err,
		msg: fmt.Sprintf("cannot decrypt %s: %v", col, err)}
}

// keyError is a failure of the key layer for col: a missing key version, a
// KMS that cannot be reached, or ciphertext that fails authentication.
func keyError(col *column, err error) error {
	var uk *crypto.UnknownKeyVersionError
	switch {
	case errors.As(err, &uk):
		return &cloakError{code: codeSystemError, err: err,
			msg: fmt.Sprintf("cannot use key for %s: %v", col, err)}
	case errors.Is(err, crypto.ErrAuthFailed):
		return &cloakError{code: codeDataCorrupted, err: err,
			msg: fmt.Sprintf("cannot decrypt %s: ciphertext does not authenticate (tampered, or copied from another column)", col)}
	}
	return &cloakError{code: codeSystemError, err: err,
		msg: fmt.Sprintf("encryption failed for %s: %v", col, err)}
}

// sqlState returns the SQLSTATE and message of an error pgcloak raises.
func sqlState(err error) (code, msg string) {
	var ce *cloakError
	var rf *sqlplan.Refusal
	switch {
	case errors.As(err, &ce):
		return ce.code, ce.msg
	case errors.As(err, &rf):
		return rf.Code, rf.Error()
	}
	return codeFeatureNotSupported, err.Error()
}

// errorMessage encodes err as an ERROR ErrorResponse.
func errorMessage(err error) []byte {
	var ce *cloakError
	if errors.As(err, &ce) {
		msg := ce.msg
		if !ce.plain {
			msg = "pgcloak: " + msg
		}
		e := pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: ce.code,
			Message: msg, Detail: ce.detail, Hint: ce.hint}
		b, _ := e.Encode(nil)
		return b
	}
	code, msg := sqlState(err)
	return errorResponse(nil, "ERROR", code, msg)
}

// writeClientError sends a FATAL error from the server loop; the session
// ends after it (the result stream cannot continue consistently).
func (ss *session) writeClientError(err error) {
	code, msg := sqlState(err)
	_, _ = ss.toClient.Write(errorResponse(nil, "FATAL", code, msg))
	_ = ss.toClient.Flush()
}
