package admin

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy"
)

// Console implements proxy.Console. Its fields are set before the server
// starts and not changed after.
type Console struct {
	// Server is the relay whose sessions the console shows and controls.
	Server *proxy.Server
	// Reload re-reads the configuration file and applies it (RELOAD). Nil:
	// RELOAD is refused.
	Reload func() error
	// Rules and Keys describe the protection in force; nil: none.
	Rules func() []RuleInfo
	Keys  func() []KeyInfo
	// Metrics is what SHOW STATS reads (the registry /metrics serves).
	Metrics prometheus.Gatherer
	// Version is pgcloak's version.
	Version string
	// Log receives a line per command that changes something.
	Log *zap.Logger
	// PauseWait bounds how long PAUSE waits for transactions to end
	// (default 30s).
	PauseWait time.Duration
}

// RuleInfo is one protected column as SHOW RULES shows it.
type RuleInfo struct {
	Table, Column, Type, Mode, Key, State string
	// Catalog is how the live catalog matches the rule: "ok", or the
	// problem and its fix.
	Catalog string
	// Backstop is the CHECK backstop: "ok", "not valid", "missing" or
	// "differs".
	Backstop string
}

// KeyInfo is one keyring as SHOW KEYS shows it.
type KeyInfo struct {
	Name, KEK string
	Active    uint32
	Versions  []uint32
	// Refreshed is when the keys were last read from pgcloak.keys (zero:
	// unknown).
	Refreshed time.Time
}

var _ proxy.Console = (*Console)(nil)

// maxQueryLen bounds a console message.
const maxQueryLen = 1 << 20

// Serve implements proxy.Console.
func (c *Console) Serve(conn net.Conn, in io.Reader, info proxy.SessionInfo) {
	log := c.log().With(zap.String("user", info.User), zap.String("client", info.ClientAddr))
	be := pgproto3.NewBackend(in, conn)
	be.SetMaxBodyLen(maxQueryLen)
	s := &consoleSession{c: c, be: be, user: info.User, log: log}
	for {
		msg, err := be.Receive()
		if err != nil {
			var tooLong *pgproto3.ExceededMaxBodyLenErr
			if errors.As(err, &tooLong) {
				s.error(pgerrcode.ProgramLimitExceeded, "console messages are limited to 1MB")
				_ = be.Flush()
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.query(m.String)
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		case *pgproto3.Sync:
			s.extendedFailed = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Flush:
		default:
			// Parse, Bind, Describe, Execute, Close, FunctionCall …:
			// one error, then skip to Sync as PostgreSQL does.
			if !s.extendedFailed {
				s.extendedFailed = true
				s.error(pgerrcode.FeatureNotSupported, "the admin console answers simple queries only (psql, or a driver's simple protocol mode)")
			}
		}
		if err := be.Flush(); err != nil {
			return
		}
	}
}

func (c *Console) log() *zap.Logger {
	if c.Log == nil {
		return zap.NewNop()
	}
	return c.Log
}

// consoleSession is one console connection.
type consoleSession struct {
	c              *Console
	be             *pgproto3.Backend
	user           string
	log            *zap.Logger
	extendedFailed bool // an extended-protocol message was refused; skip to Sync
}

// error sends an ErrorResponse raised by the console.
func (s *consoleSession) error(code, msg string) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: "pgcloak: " + msg})
}

// notice sends a NoticeResponse.
func (s *consoleSession) notice(severity, msg string) {
	s.be.Send(&pgproto3.NoticeResponse{Severity: severity, SeverityUnlocalized: severity, Code: "01000", Message: "pgcloak: " + msg})
}

// table sends a result: RowDescription (every column text), DataRows and
// CommandComplete with tag.
func (s *consoleSession) table(tag string, columns []string, rows [][]string) {
	rd := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(columns))}
	for i, name := range columns {
		rd.Fields[i] = pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	s.be.Send(rd)
	for _, row := range rows {
		values := make([][]byte, len(row))
		for i, v := range row {
			values[i] = []byte(v)
		}
		s.be.Send(&pgproto3.DataRow{Values: values})
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// done sends CommandComplete with tag.
func (s *consoleSession) done(tag string) {
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}
