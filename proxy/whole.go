package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// Messages read whole. A hook sees each message it wants whole; one larger
// than the 32 KiB read buffer is read into a wire.Large, whose buffer grows
// with the bytes received and is charged to limits.message_buffer_budget,
// shared by all sessions. Messages no hook wants are streamed through the
// read buffer whatever their size, and cost nothing against the budget.
//
// A client message the budget cannot hold is read to its end and dropped
// (nothing of it reaches the server), and the hook answers it in its place
// (Hook.ClientRefused): the client gets SQLSTATE 53200, or 54000 for a
// message larger than the whole budget, and the session stays usable, as
// after PostgreSQL's own "out of memory" error. A server message the budget
// cannot hold (a row of a protected table) ends the session with FATAL
// 53200: half a result cannot be skipped.

// refusedHeadLen is how much of a refused message the hook is shown: enough
// for the names at its start (portal and statement of a Bind, statement of
// a Parse).
const refusedHeadLen = 1024

// readWhole reads a client message that does not fit the read buffer (its
// header read, body n bytes) into large for the hook. refused is true when
// the budget could not hold it and the hook has answered in its place.
func (ss *session) readWhole(large *wire.Large, t wire.ClientMsg, n int) (m []byte, refused bool, err error) {
	r, budget := ss.fromClient, &ss.srv.guard.budget
	size := wire.HeaderLen + n
	var head []byte
	left := size
	if int64(size) <= budget.limit.Load() {
		m, err = r.LargeMessage(large, n)
		var ob *wire.OverBudgetError
		if !errors.As(err, &ob) {
			return m, false, err
		}
		head = append([]byte(nil), ob.Head[:min(len(ob.Head), refusedHeadLen)]...)
		left = ob.Left
		large.Release()
	}
	// The rest of the head is still in the reader (a message larger than
	// the whole budget is not read into memory at all).
	if want := min(refusedHeadLen, size) - len(head); want > 0 {
		more, err := r.Peek(want)
		if err != nil {
			return nil, false, err
		}
		head = append(head, more...)
	}
	refusal := budgetError(t.String(), size, budget.limit.Load())
	ss.srv.metrics.errors.WithLabelValues("message_buffer_budget").Inc()
	ss.log.Warn("message refused: limits.message_buffer_budget", zap.Stringer("type", t), zap.Int("bytes", size),
		zap.Stringer("budget", config.ByteSize(budget.limit.Load())), zap.String("sqlstate", refusal.Code))
	if err := r.Skip(left); err != nil {
		return nil, false, err
	}
	if err := ss.hook.ClientRefused(t, head, refusal, ss.toServer); err != nil {
		ss.writeClientFatal(err)
		return nil, false, err
	}
	return nil, true, nil
}

// overBudget returns the error for err when it is a message the budget
// (limit bytes) could not hold, else nil.
func overBudget(err error, limit int64) *pgerr.Error {
	var ob *wire.OverBudgetError
	if !errors.As(err, &ob) {
		return nil
	}
	return budgetError(wire.ServerMsg(ob.Type).String(), ob.Size, limit)
}

// budgetError is what a client is told about a message of size bytes that
// limits.message_buffer_budget (limit) could not hold.
func budgetError(what string, size int, limit int64) *pgerr.Error {
	if int64(size) > limit {
		return &pgerr.Error{Code: pgerrcode.ProgramLimitExceeded,
			Message: fmt.Sprintf("the %s message of %d bytes is larger than limits.message_buffer_budget (%s): pgcloak must hold it whole to look into it, so it was not sent", what, size, config.ByteSize(limit)),
			Hint:    "send the data in smaller statements or with COPY, or raise limits.message_buffer_budget"}
	}
	return &pgerr.Error{Code: pgerrcode.OutOfMemory,
		Message: fmt.Sprintf("out of memory for buffered messages: the %s message of %d bytes does not fit in what other sessions leave of limits.message_buffer_budget (%s), so it was not sent", what, size, config.ByteSize(limit)),
		Hint:    "retry; if this recurs, raise limits.message_buffer_budget"}
}
