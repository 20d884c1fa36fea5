package pgerr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

type refusal struct{}

func (refusal) Error() string       { return "cannot compare x" }
func (refusal) SQLState() string    { return pgerrcode.FeatureNotSupported }
func (refusal) ErrorHint() string   { return "use deterministic" }
func (refusal) ErrorDetail() string { return "d" }

func TestFrom(t *testing.T) {
	if From(nil) != nil {
		t.Error("From(nil)")
	}
	e := From(fmt.Errorf("wrapped: %w", refusal{}))
	if e.Code != "0A000" || e.Message != "cannot compare x" || e.Hint != "use deterministic" || e.Detail != "d" || !errors.Is(e, refusal{}) {
		t.Errorf("From(refusal) = %+v", e)
	}
	own := &Error{Code: pgerrcode.DataCorrupted, Message: "m"}
	if From(fmt.Errorf("x: %w", own)) != own {
		t.Error("an *Error in the chain is returned as is")
	}
	if e := From(errors.New("boom")); e.Code != pgerrcode.InternalError || e.Message != "boom" {
		t.Errorf("unknown error: %+v", e)
	}
}

func TestAppend(t *testing.T) {
	b := New(pgerrcode.FeatureNotSupported, "cannot order by t.c").Append([]byte("x"), SeverityError)
	var r pgproto3.ErrorResponse
	if b[0] != 'x' || b[1] != 'E' || r.Decode(b[6:]) != nil {
		t.Fatalf("%q", b)
	}
	if r.Code != "0A000" || r.Message != "pgcloak: cannot order by t.c" || r.Severity != "ERROR" {
		t.Errorf("%+v", r)
	}
	b = (&Error{Code: pgerrcode.InvalidSQLStatementName, Message: `prepared statement "s" does not exist`, Plain: true}).Append(nil, SeverityFatal)
	if r.Decode(b[5:]) != nil || r.Message != `prepared statement "s" does not exist` || r.Severity != "FATAL" {
		t.Errorf("%+v", r)
	}
}
