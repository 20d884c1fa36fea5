package engine

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// The engine reports every problem as a *pgerr.Error (or an error that
// pgerr.From turns into one: sqlplan.Refusal, values.ValueError,
// copyfmt.Error). Errors about a protected column name it and the reason.

// columnValueError is a client value that is not valid for the column's
// logical type; it keeps PostgreSQL's SQLSTATE for the same mistake.
func columnValueError(col *column, err error) error {
	e := &pgerr.Error{Code: pgerrcode.InvalidTextRepresentation, Err: err}
	var ve *values.ValueError
	msg := err.Error()
	if errors.As(err, &ve) {
		e.Code, msg, e.Detail, e.Hint = ve.Code, ve.Message, ve.Detail, ve.Hint
	}
	e.Message = fmt.Sprintf("%s (%s): %s", col, col.typ, msg)
	return e
}

// columnDataError is stored data that cannot be decrypted.
func columnDataError(col *column, err error) error {
	return &pgerr.Error{Code: pgerrcode.DataCorrupted, Err: err, Message: fmt.Sprintf("cannot decrypt %s: %v", col, err)}
}

// keyError is a failure of the key layer for col: a missing key version, a
// KMS that cannot be reached, or ciphertext that fails authentication.
func keyError(col *column, err error) error {
	var uk *crypto.UnknownKeyVersionError
	switch {
	case errors.As(err, &uk):
		return &pgerr.Error{Code: pgerrcode.SystemError, Err: err, Message: fmt.Sprintf("cannot use key for %s: %v", col, err)}
	case errors.Is(err, crypto.ErrAuthFailed):
		return &pgerr.Error{Code: pgerrcode.DataCorrupted, Err: err,
			Message: fmt.Sprintf("cannot decrypt %s: ciphertext does not authenticate (tampered, or copied from another column)", col)}
	}
	return &pgerr.Error{Code: pgerrcode.SystemError, Err: err, Message: fmt.Sprintf("encryption failed for %s: %v", col, err)}
}

// errorMessage encodes err as an ERROR ErrorResponse.
func errorMessage(err error) []byte { return pgerr.Response(nil, pgerr.SeverityError, err) }
