package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// This file holds a session's view of the extended query protocol when
// protected columns are configured: prepared statements, portals and the
// FIFO of requests whose responses are still to come.
//
// The client loop pushes one pending entry for every message that PostgreSQL
// answers (Parse, Bind, Describe, Execute, Close, Sync, Query, FunctionCall)
// before it forwards the message; the server loop pops entries as the answers
// arrive. PostgreSQL answers strictly in order, so the head of the queue
// always says what the next response belongs to: which statement a
// ParameterDescription or RowDescription describes, which portal's rows a
// DataRow carries, and which ErrorResponse answers a message pgcloak refused.
//
// Refusals keep PostgreSQL's own state machine in charge: a refused message
// is replaced by one that is bound to fail (a Parse of text that does not
// parse, a Bind to a statement that cannot exist), and the ErrorResponse it
// draws is rewritten into pgcloak's error on the way back. PostgreSQL thus
// aborts the transaction, skips to Sync and reports the transaction status
// exactly as if the original statement had failed there, and the refused SQL
// or value never reaches it.

// pendingKind is the kind of request awaiting its response.
type pendingKind uint8

const (
	pParse pendingKind = iota + 1
	pBind
	pDescribeStmt
	pDescribePortal
	pExecute
	pClose
	pSync
	pSimple // Query or FunctionCall: answered up to ReadyForQuery
)

// pending is one request awaiting its response.
type pending struct {
	kind   pendingKind
	stmt   *statement
	portal *portal
	// refusal, when set, replaces the ErrorResponse this request draws.
	refusal error
	// swallow marks a Describe that pgcloak injected: its answer is not
	// forwarded to the client.
	swallow bool
	// copy is the COPY of a protected table that a Query runs.
	copy *copyState
}

// statement is a prepared statement as pgcloak tracks it.
type statement struct {
	name string
	// params maps parameter index (0-based) to the protected column its
	// value is stored into or compared with; nil entries are untouched.
	params []*column
	// declared holds the type OIDs the client gave in Parse (0: none), so
	// ParameterDescription can echo them as PostgreSQL does, and Bind
	// values are read in the type they were sent in.
	declared  []uint32
	protected bool // some param is protected
	// rows describes the result columns once a Describe answered; its
	// formats are all text (a statement has no result formats yet).
	rows *rowPlan
	// predicted is what the SQL analyzer expects rows to be, for binding
	// before a Describe has answered; rows, once known, wins.
	predicted *rowPlan
	// describeRequested: the client asked to Describe this statement, so
	// rows will be known before any of its portals' rows arrive.
	describeRequested bool
	// refused: pgcloak replaced its Parse with one bound to fail.
	refused bool
}

// portal is a bound statement.
type portal struct {
	stmt          *statement
	resultFormats []int16
	// serverFormats are the result formats pgcloak bound the portal with
	// instead of resultFormats (nil: the client's own).
	serverFormats []int16
	rows          *rowPlan
	// describeRequested: a Describe of the portal was sent (by the client or
	// injected by pgcloak).
	describeRequested bool
}

// queue is the FIFO of pending requests. The client loop pushes and the
// server loop pops; mu also guards the statement and portal tables, which
// both loops read.
type queue struct {
	items []pending
	head  int
}

func (q *queue) push(p pending) { q.items = append(q.items, p) }

func (q *queue) peek() *pending {
	if q.head == len(q.items) {
		return nil
	}
	return &q.items[q.head]
}

func (q *queue) pop() pending {
	if q.head == len(q.items) {
		return pending{}
	}
	p := q.items[q.head]
	q.items[q.head] = pending{}
	q.head++
	if q.head == len(q.items) {
		// Empty: reuse the backing array from the start.
		q.items, q.head = q.items[:0], 0
	}
	return p
}

// cloak is the per-session state of the encryption layer.
type cloak struct {
	p *Protection

	mu      sync.Mutex
	q       queue
	stmts   map[string]*statement
	portals map[string]*portal

	// sqlStmts are statements prepared with SQL-level PREPARE, by name; only
	// the client loop touches them.
	sqlStmts map[string]*sqlplan.Statement
	// searchPath is the session's search_path as tracked from startup
	// options and SET; only the client loop touches it. startupPath is
	// what RESET returns to; pathKey prefixes plan-cache keys.
	searchPath, startupPath []string
	pathKey                 string

	// fmt holds the session settings that shape text values (DateStyle,
	// TimeZone, …), updated from ParameterStatus (server loop) and from
	// SET of unreported settings (client loop), read by both; fmtMu
	// serializes the writers.
	fmt   atomic.Pointer[values.Session]
	fmtMu sync.Mutex
	// nonStandardStrings is set while the server reports
	// standard_conforming_strings off (a role or database default, startup
	// options, a function calling set_config): backslashes in plain string
	// literals are escapes then, and pgcloak's SQL parser reads them as
	// with the setting on. Server loop writes, client loop reads.
	nonStandardStrings atomic.Bool
	// startupSettings are the unreported settings as the startup message
	// set them ("" = server default), which RESET returns to.
	startupSettings map[string]string

	// dropCopy: a Query was refused; COPY data that follows it is dropped
	// until the next other message. Client loop only.
	dropCopy bool
	// copyIn is the COPY FROM whose data the client is sending (client
	// loop); copyOut the COPY TO whose data the server is sending (server
	// loop).
	copyIn, copyOut *copyState

	// describeNext is a named statement just parsed whose rows pgcloak
	// wants to know: unless the client's next message describes it, pgcloak
	// does (describeParsed). Client loop only.
	describeNext *statement

	// Server-loop state: the row plan for DataRows now arriving; ddlSeen:
	// a schema change completed, so the catalog is read again once the
	// transaction is over.
	cur     *rowPlan
	ddlSeen bool

	// Scratch buffers of the client loop.
	clientScratch []byte // large client messages
	injectScratch []byte // messages pgcloak writes itself
	clientPlain   []byte // canonical plaintext being encrypted

	// Scratch buffers of the server loop.
	serverScratch []byte // large server messages
	rowScratch    []byte // rebuilt DataRows
	hexScratch    []byte // decoded bytea text
	serverPlain   []byte // decrypted plaintext
}

// defaultSettings are PostgreSQL's defaults of the unreported settings.
var defaultSettings = map[string]string{"extra_float_digits": "1", "bytea_output": "hex"}

func newCloak(p *Protection, searchPath []string, settings map[string]string) *cloak {
	c := &cloak{
		startupSettings: settings,
		p:               p,
		stmts:           make(map[string]*statement),
		portals:         make(map[string]*portal),
		sqlStmts:        make(map[string]*sqlplan.Statement),
		startupPath:     searchPath,
	}
	c.setSearchPath(searchPath)
	c.fmt.Store(&values.Session{})
	for name, v := range settings {
		c.setParameter(name, v)
	}
	return c
}

// setParameter applies a ParameterStatus to the session's value formatting.
// The Session is replaced, never changed in place: the client loop may be
// using the current one.
func (c *cloak) setParameter(name, value string) {
	c.fmtMu.Lock()
	defer c.fmtMu.Unlock()
	if value == "" {
		value = defaultSettings[name]
	}
	next := *c.fmt.Load()
	if err := next.Set(name, value); err != nil {
		return // values fail closed on an unusable setting (e.g. TimeZone)
	}
	c.fmt.Store(&next)
}

func (c *cloak) setSearchPath(path []string) {
	c.searchPath = path
	c.pathKey = pathKey(path)
}
