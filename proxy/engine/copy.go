package engine

import (
	"encoding/binary"
	"errors"

	"github.com/pgcloak/pgcloak/proxy/copyfmt"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// copyState is a COPY of a protected table in progress. For COPY FROM the
// client loop owns it; for COPY TO, the server loop.
type copyState struct {
	plan *sqlplan.Copy
	cfg  copyfmt.Config
	rw   *copyfmt.Rewriter
	cols []*column
	// err, set by the client loop under cloak.mu, replaces the ErrorResponse
	// PostgreSQL gives for the CopyFail that pgcloak sent.
	err error
	// failed: CopyFail was sent; the rest of the client's data is dropped.
	failed bool
	out    []byte
	// fmt shapes the values: the session's, with the COPY's ENCODING
	// option (text and CSV) as the client encoding.
	fmt values.Session
	// fields are what the session may see of the columns of a COPY TO
	// (access.go), by index in cols.
	fields []fieldPlan
	// subj is the subject of the row being copied in, for subject-keyed
	// columns (see copySubject).
	subj subjectValue
	// encrypted counts the values of COPY FROM encrypted per column since
	// the metrics last got them (countCopied), into ctrs (nil: none).
	encrypted []int64
	ctrs      []*colCounters
}

// newCopy prepares the rewriter for a planned COPY.
func (ss *session) newCopy(cp *sqlplan.Copy) (*copyState, error) {
	opts := make([]copyfmt.Option, len(cp.Options))
	for i, o := range cp.Options {
		opts[i] = copyfmt.Option{Name: o.Name, Kind: copyfmt.ArgKind(o.Kind), Value: o.Value, List: o.List}
	}
	o, err := copyfmt.ParseOptions(opts, cp.From)
	if err != nil {
		return nil, err
	}
	st := &copyState{plan: cp, cols: make([]*column, len(cp.Columns)), fmt: ss.cloak.fmtClient}
	if !cp.From {
		st.fmt = ss.cloak.fmtCommitted
	}
	if o.Encoding != "" && o.Format != copyfmt.Binary {
		_ = st.fmt.Set("client_encoding", o.Encoding)
	}
	protected := make([]bool, len(cp.Columns))
	for i, pc := range cp.Protected {
		if pc != nil {
			st.cols[i] = ss.cloak.p.byPlan[pc]
			protected[i] = st.cols[i] != nil
		}
	}
	dir := copyfmt.Out
	if !cp.From {
		st.fields = ss.copyFields(st.cols)
	}
	fn := ss.copyDecrypt(st)
	if cp.From {
		dir, fn = copyfmt.In, ss.copyEncrypt(st, valueFormat(o))
		st.encrypted, st.ctrs = make([]int64, len(st.cols)), make([]*colCounters, len(st.cols))
		for i, col := range st.cols {
			if col != nil && ss.guard.Metrics != nil {
				st.ctrs[i] = ss.access(col).ctr
			}
		}
	}
	// The data's encoding: the COPY's ENCODING option, else the session's
	// client_encoding.
	enc := o.Encoding
	if enc == "" {
		if ce, ok := ss.cloak.view.Get(sqlplan.ClientEncoding); ok {
			enc = copyfmt.EncodingName(ce)
		}
	}
	if o.Format == copyfmt.Binary {
		enc = ""
	}
	st.cfg = copyfmt.Config{Options: o, Direction: dir, Table: cp.Table, Columns: cp.Columns, Protected: protected, Transform: fn, Encoding: enc,
		Converted: values.Converts(enc)}
	if cp.From {
		if err := st.copySubject(); err != nil {
			return nil, err
		}
	}
	if st.rw, err = copyfmt.NewRewriter(st.cfg); err != nil {
		return nil, err
	}
	return st, nil
}

// copyPlanError is the error the client gets for a COPY that newCopy
// refused (its options).
func copyPlanError(err error) error {
	var ce *copyfmt.Error
	if errors.As(err, &ce) {
		return &pgerr.Error{Code: ce.Code, Message: ce.Message, Hint: ce.Hint, Plain: !ce.Own}
	}
	return err
}

// valueFormat is the format of field values in a COPY of this format.
func valueFormat(o copyfmt.Options) int16 {
	if o.Format == copyfmt.Binary {
		return 1
	}
	return 0
}

// copyEncrypt is the field transform of COPY FROM: the client's value of the
// logical type, in format, becomes its ciphertext.
func (ss *session) copyEncrypt(st *copyState, format int16) copyfmt.FieldFunc {
	return func(dst []byte, i int, v []byte) ([]byte, error) {
		out, err := ss.appendEncryptedWith(dst, st.cols[i], format, v, &st.fmt, &st.subj)
		if err != nil {
			return dst, err
		}
		st.encrypted[i]++
		return out, nil
	}
}

// countCopied adds the values encrypted so far to the metrics: once per
// CopyData message rather than once per value.
func (st *copyState) countCopied() {
	for i, n := range st.encrypted {
		if n > 0 {
			if st.ctrs[i] != nil {
				st.ctrs[i].encrypted.Add(float64(n))
			}
			st.encrypted[i] = 0
		}
	}
}

// copyDecrypt is the field transform of COPY TO: ciphertext becomes the
// logical value in the COPY's format.
func (ss *session) copyDecrypt(st *copyState) copyfmt.FieldFunc {
	return func(dst []byte, i int, v []byte) ([]byte, error) {
		return ss.copyOutput(dst, st, i, v)
	}
}

// copyData handles a client message of a COPY FROM in progress ('d', 'c',
// 'f'; m is the whole message).
func (ss *session) copyData(typ byte, m []byte) error {
	c := ss.cloak
	st := c.copyIn
	if st.failed {
		if typ != 'd' {
			c.copyIn = nil
		}
		return nil
	}
	var err error
	switch typ {
	case 'd':
		st.out, err = st.rw.Write(st.out[:0], m[wire.HeaderLen:])
	case 'c':
		st.out, err = st.rw.Close(st.out[:0])
	case 'f':
		c.copyIn = nil
		_, werr := ss.toServer.Write(m)
		return werr
	}
	st.countCopied()
	if err == nil && len(st.out) > 0 {
		err = ss.writeCopyData(st.out)
	}
	if err != nil {
		return ss.failCopy(st, err)
	}
	if typ == 'c' {
		c.copyIn = nil
		_, err = ss.toServer.Write(m)
	}
	if cap(st.out) > 1<<20 {
		st.out = nil
	}
	return err
}

// writeCopyData sends data to the server as CopyData messages.
func (ss *session) writeCopyData(data []byte) error {
	const max = 1 << 20
	for len(data) > 0 {
		n := min(len(data), max)
		var hdr [wire.HeaderLen]byte
		hdr[0] = 'd'
		binary.BigEndian.PutUint32(hdr[1:], uint32(n+4))
		if _, err := ss.toServer.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := ss.toServer.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// failCopy ends a COPY FROM whose data pgcloak cannot take: CopyFail makes
// PostgreSQL abort it (nothing is stored), and its error is replaced by
// pgcloak's, which carries PostgreSQL's SQLSTATE for the same mistake.
func (ss *session) failCopy(st *copyState, err error) error {
	var werr error
	if !errors.Is(err, errConnLost) {
		werr = ss.writeCopyFail("pgcloak: COPY data rejected")
	}
	ss.cloak.mu.Lock()
	st.err = copyError(st, err)
	ss.cloak.mu.Unlock()
	st.failed = true
	return werr
}

// errConnLost marks a client gone mid-COPY.
var errConnLost = errors.New("client connection lost during COPY")

func (ss *session) writeCopyFail(msg string) error {
	m := append([]byte{'f', 0, 0, 0, 0}, msg...)
	m = append(m, 0)
	binary.BigEndian.PutUint32(m[1:], uint32(len(m)-1))
	_, err := ss.toServer.Write(m)
	return err
}

// copyError turns a rewriter error into the error the client gets.
func copyError(st *copyState, err error) error {
	var ce *copyfmt.Error
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Code == "" && ce.Err != nil {
		// The transform failed: a value invalid for the column's type, or
		// a key problem. Keep its code, add PostgreSQL's context.
		var cl *pgerr.Error
		if errors.As(ce.Err, &cl) {
			out := *cl
			out.Detail = joinContext(out.Detail, ce.Context)
			return &out
		}
		return ce.Err
	}
	return &pgerr.Error{Code: ce.Code, Message: ce.Message, Hint: ce.Hint, Detail: ce.Context, Plain: !ce.Own}
}

func joinContext(detail, ctx string) string {
	if detail == "" {
		return ctx
	}
	if ctx == "" {
		return detail
	}
	return detail + "; " + ctx
}

// copyOutData handles a server message of a COPY TO in progress.
func (ss *session) copyOutData(typ byte, m []byte) error {
	st := ss.cloak.copyOut
	var err error
	if typ == 'd' {
		st.out, err = st.rw.Write(st.out[:0], m[wire.HeaderLen:])
	} else {
		st.out, err = st.rw.Close(st.out[:0])
		ss.cloak.copyOut = nil
	}
	if err != nil {
		return copyError(st, err)
	}
	for data := st.out; len(data) > 0; {
		n := min(len(data), 1<<20)
		var hdr [wire.HeaderLen]byte
		hdr[0] = 'd'
		binary.BigEndian.PutUint32(hdr[1:], uint32(n+4))
		if _, err := ss.toClient.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := ss.toClient.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	if cap(st.out) > 1<<20 {
		st.out = nil
	}
	if typ == 'c' {
		_, err = ss.toClient.Write(m)
	}
	return err
}
