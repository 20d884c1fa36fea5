package engine

import (
	"sync"

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
	// copy is the COPY of a protected table that a Query or Execute runs.
	copy *copyState

	// group is the client group (messages up to a Sync, or a Query) the
	// request belongs to.
	group uint64
	// changes are the prepared statements the request defines or removes
	// once the server confirms it.
	changes []stmtChange
	// effects are the session-state changes of each statement of a Query
	// (or of an executed portal's statement), applied at its
	// CommandComplete; next is the statement whose answer comes next.
	effects [][]sqlplan.Effect
	next    int
	// settingsGroup: this Sync or Query closes a group that changes
	// settings (see cloak.settingsInflight).
	settingsGroup bool
	// sql is a Query's text, for audit records.
	sql string
}

// statement is a prepared statement as pgcloak tracks it.
type statement struct {
	name string
	// text is the statement's SQL as the client sent it, for audit records.
	text string
	// params maps parameter index (0-based) to the protected column its
	// value is stored into or compared with; nil entries are untouched.
	params []*column
	// declared holds the type OIDs the client gave in Parse (0: none), so
	// ParameterDescription can echo them as PostgreSQL does, and Bind
	// values are read in the type they were sent in.
	declared []uint32
	// subjects says, for a parameter ($n) stored into a subject-keyed
	// column, where its row's subject comes from.
	subjects  map[int]sqlplan.SubjectRef
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
	// qualified are the schemas pgcloak qualified relation names with
	// (names several schemas hold), sql the client's text and planKey the
	// search_path it was planned under: see checkQualified.
	qualified []string
	sql       string
	planKey   string
	// effects are the session-state changes the statement makes each time
	// it runs (a prepared SET, PREPARE, BEGIN …); changes the prepared
	// statements it defines or removes.
	effects []sqlplan.Effect
	changes []stmtChange
	// copyPlan is the COPY of a protected table the statement runs
	// (through Parse/Bind/Execute).
	copyPlan *sqlplan.Copy
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

// last is the entry pushed last.
func (q *queue) last() *pending { return &q.items[len(q.items)-1] }

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
//
// mu guards the request queue, the committed session state (settings,
// stmts, fmtCommitted, version, settingsInflight) and the portals; the
// fields marked "client loop" or "server loop" belong to that loop alone.
type cloak struct {
	// p is the protection statements are planned with (client loop).
	p *Protection

	mu      sync.Mutex
	q       queue
	portals map[string]*portal
	// answered is signalled (under mu) each time the server has answered
	// a group (ReadyForQuery), and when the session ends (closed).
	answered sync.Cond
	// answers counts the signals of answered, so that a waiter that let go
	// of mu (to flush) sees an answer that came meanwhile instead of
	// waiting for one that has already been given.
	answers uint64
	closed  bool

	// The committed session state, as the server confirmed it (see
	// follow.go): settings with their transaction levels, the prepared
	// statements by name (protocol Parse and SQL PREPARE share the
	// namespace), and the value formats the settings give (the server
	// loop, which writes it, encodes rows with it). version is
	// bumped at every change; settingsInflight counts the groups with
	// settings changes that are not answered yet.
	settings         *sqlplan.Settings
	stmts            map[string]*statement
	fmtCommitted     values.Session
	version          uint64
	settingsInflight int

	// The client loop's view: committed state plus the changes of the group
	// being sent (view, fmtClient; viewVersion is the version they were
	// taken at). group counts the groups the client has closed; groupOpen
	// and groupSettings describe the one being sent.
	view          *sqlplan.Settings
	fmtClient     values.Session
	viewVersion   uint64
	group         uint64
	groupOpen     bool
	groupSettings bool

	// dropCopy: a request of the group being sent was refused; COPY data
	// is dropped until the next group. Client loop only.
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
	injectScratch []byte // messages pgcloak writes itself
	clientPlain   []byte // canonical plaintext being encrypted

	// Scratch buffers of the server loop.
	rowScratch []byte     // rebuilt DataRows
	scratch    rowScratch // decoded bytea text, decrypted plaintext

	// rows decrypts the rows of wide results on several cores (server
	// loop only; see pipeline.go).
	rows rowPipeline
}

// scratchKeep is the largest scratch buffer kept from one message to the
// next: one huge value must not stay in memory for the rest of a session.
const scratchKeep = 1 << 20

// trim drops a scratch buffer larger than scratchKeep. It stores nothing
// otherwise: the server loop calls it for every message.
func trim(b *[]byte) {
	if cap(*b) > scratchKeep {
		*b = nil
	}
}

// trimClient drops the client loop's large scratch buffers.
func (c *cloak) trimClient() {
	trim(&c.clientPlain)
}

// trimServer drops the server loop's large scratch buffers.
func (c *cloak) trimServer() {
	trim(&c.rowScratch)
	trim(&c.scratch.hex)
	trim(&c.scratch.plain)
	trim(&c.scratch.mask)
}

// newCloak returns the state of a new session of user with protection p.
func newCloak(p *Protection, user string) *cloak {
	c := &cloak{
		p:        p,
		stmts:    make(map[string]*statement),
		portals:  make(map[string]*portal),
		settings: sqlplan.NewSettings(nil),
	}
	c.answered.L = &c.mu
	c.settings.User = user
	c.view = c.settings.Clone()
	return c
}
