package integration

// A client session for the fail-closed probes: the raw protocol stream of a
// pgconn connection through pgcloak, so that a probe can send any message
// sequence (pipelines, COPY over the extended protocol, FunctionCall) and
// see every message that comes back (each ErrorResponse with its severity,
// each value, ReadyForQuery's transaction status).

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// fcRoundTripTimeout bounds one exchange: a pgcloak that swallows a message
// and leaves the client waiting is a finding, not a hung test.
const fcRoundTripTimeout = 20 * time.Second

// fcErr is an ErrorResponse a probe received.
type fcErr struct {
	step     string // what the probe was doing
	severity string
	code     string
	message  string
	detail   string
	// expected: the probe's own scenario makes this step fail on the
	// server (a duplicate PREPARE, say); it does not decide the outcome.
	expected bool
}

func (e *fcErr) String() string {
	s := fmt.Sprintf("%s %s %q", e.severity, e.code, e.message)
	if e.detail != "" {
		s += fmt.Sprintf(" (detail %q)", fcShorten(e.detail, 120))
	}
	return s
}

// fcResult is what one exchange brought back.
type fcResult struct {
	what string
	errs []*fcErr
	tags []string
	// rows holds every DataRow value (and COPY TO data) as received.
	rows [][][]byte
	// formats are the result formats of the last RowDescription.
	formats []int16
}

// err returns the first error of the exchange, or nil.
func (r *fcResult) err() *fcErr {
	if len(r.errs) > 0 {
		return r.errs[0]
	}
	return nil
}

// fcConn is one client session through pgcloak.
type fcConn struct {
	label string
	nc    net.Conn
	fe    *pgproto3.Frontend
	// dead says why the session is over ("" while it serves).
	dead string
	// fatal is the FATAL error that ended it, if one did.
	fatal *fcErr
	// tx is the transaction status of the last ReadyForQuery.
	tx byte
	// pending counts the ReadyForQuery messages still owed for what was
	// sent (one per Query, Sync and FunctionCall).
	pending int
	// copyData: the messages sent since the last read include COPY data, so
	// a CopyInResponse needs no answer.
	copyData bool
	// ciphertext lists the values that carried pgcloak ciphertext.
	ciphertext []string
	results    []*fcResult
}

// fcDial opens a session through pgcloak at dsn and takes over its stream.
func fcDial(ctx context.Context, label, dsn string) (*fcConn, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	return &fcConn{label: label, nc: hc.Conn, fe: hc.Frontend, tx: hc.TxStatus}, nil
}

// fcDialOrdered opens a session through pgcloak at addr with a startup
// packet whose parameters are in the order given (pgconn sends them in Go
// map order), and takes over its stream. The user must be trusted.
func fcDialOrdered(ctx context.Context, label, addr, user, db string, params [][2]string) (*fcConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	body := binary.BigEndian.AppendUint32(nil, pgproto3.ProtocolVersionNumber)
	for _, kv := range append([][2]string{{"user", user}, {"database", db}}, params...) {
		body = append(append(append(append(body, kv[0]...), 0), kv[1]...), 0)
	}
	body = append(body, 0)
	packet := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := nc.Write(append(packet, body...)); err != nil {
		nc.Close()
		return nil, err
	}
	c := &fcConn{label: label, nc: nc, fe: pgproto3.NewFrontend(nc, nc)}
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			nc.Close()
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			nc.Close()
			return nil, &pgconn.PgError{Severity: m.Severity, Code: m.Code, Message: m.Message, Detail: m.Detail}
		case *pgproto3.ReadyForQuery:
			c.tx = m.TxStatus
			_ = nc.SetDeadline(time.Time{})
			return c, nil
		}
	}
}

// close ends the session.
func (c *fcConn) close() {
	if c.nc == nil {
		return // never connected
	}
	if c.dead == "" {
		c.fe.Send(&pgproto3.Terminate{})
		_ = c.fe.Flush()
		c.dead = "closed by the probe"
	}
	c.nc.Close()
}

// send queues messages without reading the answers (a pipeline).
func (c *fcConn) send(msgs ...pgproto3.FrontendMessage) {
	if c.dead != "" {
		return
	}
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Query, *pgproto3.Sync, *pgproto3.FunctionCall:
			c.pending++
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			c.copyData = true
		}
		c.fe.Send(m)
	}
}

// roundTrip sends msgs and reads until every ReadyForQuery owed has come.
func (c *fcConn) roundTrip(what string, msgs ...pgproto3.FrontendMessage) *fcResult {
	r := &fcResult{what: what}
	c.results = append(c.results, r)
	if c.dead != "" {
		r.errs = append(r.errs, &fcErr{step: what, severity: "CLIENT", message: "not sent: session gone (" + c.dead + ")"})
		return r
	}
	c.send(msgs...)
	_ = c.nc.SetDeadline(time.Now().Add(fcRoundTripTimeout))
	if err := c.fe.Flush(); err != nil {
		c.dead = "write: " + err.Error()
		r.errs = append(r.errs, &fcErr{step: what, severity: "CLIENT", message: c.dead})
		return r
	}
	for c.pending > 0 {
		msg, err := c.fe.Receive()
		if err != nil {
			c.dead = fmt.Sprintf("read while %d ReadyForQuery owed: %v", c.pending, err)
			r.errs = append(r.errs, &fcErr{step: what, severity: "CLIENT", message: c.dead})
			c.nc.Close()
			return r
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			e := &fcErr{step: what, severity: m.Severity, code: m.Code, message: m.Message, detail: m.Detail}
			r.errs = append(r.errs, e)
			if m.Severity == "FATAL" || m.Severity == "PANIC" {
				c.fatal = e
				c.dead = "FATAL " + m.Code + " " + m.Message
				c.nc.Close()
				return r
			}
		case *pgproto3.RowDescription:
			r.formats = r.formats[:0]
			for _, f := range m.Fields {
				r.formats = append(r.formats, f.Format)
			}
		case *pgproto3.DataRow:
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
					if fcHasCiphertext(v) {
						c.ciphertext = append(c.ciphertext, fmt.Sprintf("%s: column %d: %s", what, i+1, fcQuote(v)))
					}
				}
			}
			r.rows = append(r.rows, row)
		case *pgproto3.CopyData:
			v := append([]byte{}, m.Data...)
			if fcHasCiphertext(v) {
				c.ciphertext = append(c.ciphertext, fmt.Sprintf("%s: COPY data: %s", what, fcQuote(v)))
			}
			r.rows = append(r.rows, [][]byte{v})
		case *pgproto3.CopyInResponse:
			if !c.copyData {
				// The probe sent no data: end the COPY rather than hang.
				c.fe.Send(&pgproto3.CopyFail{Message: "probe sent no COPY data"})
				_ = c.fe.Flush()
			}
		case *pgproto3.CommandComplete:
			r.tags = append(r.tags, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			c.pending--
			c.tx = m.TxStatus
		}
	}
	c.copyData = false
	return r
}

// query sends one simple Query.
func (c *fcConn) query(sql string) *fcResult {
	return c.roundTrip("Query "+fcShorten(sql, 200), &pgproto3.Query{String: sql})
}

// fcText makes text-format parameters from strings.
func fcText(vals ...string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out
}

// ext runs sql with the unnamed statement: Parse, Bind (text parameters,
// text results), Describe portal, Execute, Sync in one round trip, as pgx
// and most drivers do.
func (c *fcConn) ext(sql string, params ...string) *fcResult {
	return c.roundTrip("Extended "+fcShorten(sql, 200),
		&pgproto3.Parse{Query: sql},
		&pgproto3.Bind{Parameters: fcText(params...)},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{})
}

// usable reports why the session cannot run a statement now, or "": a
// failed or open transaction is rolled back first, as an application does
// after an error.
func (c *fcConn) usable() string {
	if c.dead != "" {
		return c.dead
	}
	if c.tx == 'E' || c.tx == 'T' {
		if r := c.query("ROLLBACK"); r.err() != nil {
			return "ROLLBACK: " + r.err().String()
		}
	}
	r := c.query("SELECT 1")
	if e := r.err(); e != nil {
		return "SELECT 1: " + e.String()
	}
	if len(r.rows) != 1 || string(r.rows[0][0]) != "1" {
		return fmt.Sprintf("SELECT 1 returned %d rows", len(r.rows))
	}
	return ""
}

// fcShorten cuts s for a message.
func fcShorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Message constructors for probes that build their own sequences.

func fcParse(name, sql string, oids ...uint32) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: sql, ParameterOIDs: oids}
}

func fcBind(stmt string, params ...string) *pgproto3.Bind {
	return &pgproto3.Bind{PreparedStatement: stmt, Parameters: fcText(params...)}
}

func fcExecute() *pgproto3.Execute { return &pgproto3.Execute{} }

func fcSync() *pgproto3.Sync { return &pgproto3.Sync{} }

func fcDescribeS(name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: 'S', Name: name}
}

func fcDescribeP() *pgproto3.Describe { return &pgproto3.Describe{ObjectType: 'P'} }

func fcCloseS(name string) *pgproto3.Close { return &pgproto3.Close{ObjectType: 'S', Name: name} }

func fcCopyData(s string) *pgproto3.CopyData { return &pgproto3.CopyData{Data: []byte(s)} }

func fcCopyDone() *pgproto3.CopyDone { return &pgproto3.CopyDone{} }
