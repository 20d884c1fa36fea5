package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/copyfmt"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// refusedSQL replaces a refused statement: it cannot parse, so PostgreSQL
// answers with an error (which pgcloak rewrites) and aborts the transaction
// as it would have for the refused statement. It carries nothing of the
// original.
const refusedSQL = "pgcloak refused this statement"

// refusedStmt is a statement name no client can have prepared (it holds a
// NUL-free control character), so a Bind to it fails.
const refusedStmt = "\x01pgcloak refused"

// clientLoopCloaked relays client messages to the server, applying the
// encryption layer to the messages that can carry protected values.
func (ss *session) clientLoopCloaked() error {
	r := ss.fromClient
	c := ss.cloak
	for {
		typ, n, err := r.header(ss.srv.maxBody)
		if err != nil {
			ss.reportClientError(err)
			ss.abandonCopy()
			return err
		}
		if c.describeNext != nil && typ != 'D' {
			if err := ss.describeParsed(); err != nil {
				return err
			}
		}
		switch typ {
		case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'F':
		case 'X':
			if err := r.forward(ss.toServer, n); err != nil {
				return err
			}
			_ = ss.toServer.Flush()
			return nil
		case 'd', 'c', 'f':
			if c.copyIn != nil {
				m, err := ss.readClientMessage(n)
				if err != nil {
					ss.abandonCopy()
					return err
				}
				if err := ss.copyData(typ, m); err != nil {
					return err
				}
				continue
			}
			if c.dropCopy {
				// COPY data behind a refused Query (pgx sends it without
				// waiting for CopyInResponse): it must not reach the server.
				if err := r.discard(n); err != nil {
					return err
				}
				continue
			}
			if err := r.forward(ss.toServer, n); err != nil {
				return err
			}
			continue
		default:
			// Flush, password messages: nothing to track or transform.
			if err := r.forward(ss.toServer, n); err != nil {
				return err
			}
			continue
		}
		c.dropCopy = false
		ss.busy.Store(true)
		// A catalog refresh may have made a new protection: statements
		// are planned against the newest (the client loop owns c.p).
		if p := ss.srv.protection.Load(); p != nil {
			c.p = p
		}
		var m []byte
		if r.fits(n) {
			m, err = r.message(n)
		} else {
			m, err = r.largeMessage(c.clientScratch[:0], n)
			c.clientScratch = m
		}
		if err != nil {
			return err
		}
		if err := ss.clientMessage(typ, m); err != nil {
			return err
		}
		if cap(c.clientScratch) > 1<<20 {
			c.clientScratch = nil // do not keep a huge message's buffer
		}
	}
}

// clientMessage handles one whole client message m (header included).
func (ss *session) clientMessage(typ byte, m []byte) error {
	c := ss.cloak
	body := m[headerLen:]
	switch typ {
	case 'Q':
		return ss.query(m)
	case 'P':
		return ss.parse(m)
	case 'B':
		return ss.bind(m)
	case 'D':
		if len(body) < 2 {
			return &protocolError{"invalid Describe message"}
		}
		name := cstring(body[1:])
		if next := c.describeNext; next != nil {
			if body[0] == 'S' && name == next.name {
				c.describeNext = nil // the client asks itself
			} else if err := ss.describeParsed(); err != nil {
				return err
			}
		}
		c.mu.Lock()
		if body[0] == 'S' {
			c.mu.Unlock()
			st := c.statement(name)
			c.mu.Lock()
			if st != nil {
				st.describeRequested = true
			}
			c.q.push(pending{kind: pDescribeStmt, stmt: st})
		} else {
			po := c.portals[name]
			if po != nil {
				po.describeRequested = true
			}
			c.q.push(pending{kind: pDescribePortal, portal: po})
		}
		c.mu.Unlock()
	case 'E':
		name := cstring(body)
		c.mu.Lock()
		po := c.portals[name]
		if po != nil && !po.describeRequested && (po.stmt == nil || !po.stmt.describeRequested) {
			// The client never asked what the rows look like, but pgcloak
			// must know to decrypt them: ask, and keep the answer.
			po.describeRequested = true
			c.q.push(pending{kind: pDescribePortal, portal: po, swallow: true})
			c.mu.Unlock()
			if _, err := ss.toServer.Write(describeMessage(c.inject(), 'P', name)); err != nil {
				return err
			}
			c.mu.Lock()
		}
		c.q.push(pending{kind: pExecute, portal: po})
		c.mu.Unlock()
	case 'C':
		if len(body) < 2 {
			return &protocolError{"invalid Close message"}
		}
		name := cstring(body[1:])
		c.mu.Lock()
		if body[0] == 'S' {
			delete(c.stmts, name)
		} else {
			delete(c.portals, name)
		}
		c.q.push(pending{kind: pClose})
		c.mu.Unlock()
	case 'S':
		c.mu.Lock()
		c.q.push(pending{kind: pSync})
		c.mu.Unlock()
	case 'F':
		c.mu.Lock()
		c.q.push(pending{kind: pSimple})
		c.mu.Unlock()
	}
	_, err := ss.toServer.Write(m)
	return err
}

// describeParsed sends the Describe of the statement just parsed that the
// client did not ask for, and keeps the answer to itself: knowing a named
// statement's result columns before its first Bind lets pgcloak ask the
// server for protected columns in binary (see rowPlan.serverResultFormats).
func (ss *session) describeParsed() error {
	c := ss.cloak
	st := c.describeNext
	c.describeNext = nil
	c.mu.Lock()
	st.describeRequested = true
	c.q.push(pending{kind: pDescribeStmt, stmt: st, swallow: true})
	c.mu.Unlock()
	_, err := ss.toServer.Write(describeMessage(c.inject(), 'S', st.name))
	return err
}

// inject returns the (emptied) buffer for a message pgcloak writes itself.
func (c *cloak) inject() []byte { return c.injectScratch[:0] }

func describeMessage(dst []byte, kind byte, name string) []byte {
	dst = append(dst, 'D', 0, 0, 0, 0, kind)
	dst = append(dst, name...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[1:], uint32(len(dst)-1))
	return dst
}

// cstring returns the NUL-terminated string at the start of b.
func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// analyze runs the SQL analyzer with the session's search_path, through the
// server-wide cache.
func (ss *session) analyze(sql string) (*sqlplan.Analysis, error) {
	c := ss.cloak
	if !sqlplan.MayMatter(sql, c.p) {
		return nil, nil
	}
	if c.nonStandardStrings.Load() && strings.IndexByte(sql, '\\') >= 0 {
		// Without a backslash a text lexes the same either way; with one,
		// pgcloak could misread where a literal ends.
		return nil, &sqlplan.Refusal{Code: sqlplan.CodeFeatureNotSupported, Op: "read the string literals of",
			Column: "a statement on protected tables",
			Reason: "standard_conforming_strings is off in this session and the text holds a backslash; pgcloak reads literals as with it on. Turn standard_conforming_strings on (SET standard_conforming_strings = on), or pass values as parameters"}
	}
	if len(sql) > planCacheMaxSQL {
		return sqlplan.Analyze(sql, c.p, c.searchPath)
	}
	key := c.pathKey + sql
	if e, ok := c.p.plans.get(key); ok {
		return e.a, e.err
	}
	a, err := sqlplan.Analyze(sql, c.p, c.searchPath)
	c.p.plans.put(key, planEntry{a, err})
	return a, err
}

// refuse decides what happens to a statement the analyzer refused: in shadow
// mode it is logged and let through; otherwise the error is returned.
func (ss *session) refuse(err error) error {
	if ss.cloak.p.shadow {
		ss.log.Warn("shadow mode: letting through a statement pgcloak would refuse", zap.Error(err))
		return nil
	}
	return err
}

// query handles a simple-protocol Query.
func (ss *session) query(m []byte) error {
	c := ss.cloak
	sql := cstring(m[headerLen:])
	ss.trackSettings(sql)
	a, err := ss.analyze(sql)
	var out []byte
	if err == nil {
		out, err = ss.rewriteSQL(sql, a)
	}
	if err != nil {
		if err = ss.refuse(err); err != nil {
			c.mu.Lock()
			c.q.push(pending{kind: pSimple, refusal: err})
			c.mu.Unlock()
			c.dropCopy = true
			_, werr := ss.toServer.Write(queryMessage(c.inject(), refusedSQL))
			return werr
		}
		out = nil
	}
	if a != nil {
		ss.track(a)
	}
	var cp *copyState
	if a != nil {
		if cp, err = ss.planCopy(a); err != nil {
			c.mu.Lock()
			c.q.push(pending{kind: pSimple, refusal: err})
			c.mu.Unlock()
			c.dropCopy = true
			_, werr := ss.toServer.Write(queryMessage(c.inject(), refusedSQL))
			return werr
		}
	}
	if cp != nil && cp.plan.From {
		c.copyIn = cp
	}
	c.mu.Lock()
	c.q.push(pending{kind: pSimple, copy: cp})
	c.mu.Unlock()
	if out == nil {
		_, err = ss.toServer.Write(m)
	} else {
		_, err = ss.toServer.Write(queryMessage(nil, string(out)))
	}
	return err
}

// planCopy prepares the COPY of a protected table that a Query runs, if any.
func (ss *session) planCopy(a *sqlplan.Analysis) (*copyState, error) {
	for i := range a.Statements {
		cp := a.Statements[i].Copy
		if cp == nil {
			continue
		}
		if len(a.Statements) > 1 {
			return nil, &sqlplan.Refusal{Code: "0A000", Op: "copy", Column: cp.Schema + "." + cp.Table,
				Reason: "COPY of a protected table must be the only statement of its query"}
		}
		st, err := ss.newCopy(cp)
		if err != nil {
			var ce *copyfmt.Error
			if errors.As(err, &ce) {
				return nil, &cloakError{code: ce.Code, msg: ce.Message, hint: ce.Hint, plain: true}
			}
			return nil, err
		}
		return st, nil
	}
	return nil, nil
}

// readClientMessage reads the whole client message whose header was read.
func (ss *session) readClientMessage(n int) ([]byte, error) {
	r, c := ss.fromClient, ss.cloak
	if r.fits(n) {
		return r.message(n)
	}
	m, err := r.largeMessage(c.clientScratch[:0], n)
	c.clientScratch = m
	return m, err
}

// abandonCopy aborts a COPY FROM whose client went away, so the server
// stores none of it.
func (ss *session) abandonCopy() {
	if st := ss.cloak.copyIn; st != nil && !st.failed {
		_ = ss.writeCopyFail("pgcloak: client connection lost during COPY")
		_ = ss.toServer.Flush()
	}
	ss.cloak.copyIn = nil
}

// track follows the session state a statement changes: search_path and
// SQL-level prepared statements.
func (ss *session) track(a *sqlplan.Analysis) {
	c := ss.cloak
	for i := range a.Statements {
		st := &a.Statements[i]
		// DISCARD ALL both resets search_path and deallocates.
		if st.SearchPath != nil {
			c.setSearchPath(expandSearchPath(st.SearchPath, false, ss.user))
		} else if st.ResetSearchPath {
			c.setSearchPath(c.startupPath)
		}
		if st.Prepare != nil {
			c.sqlStmts[st.Prepare.Name] = st.Prepare.Statement
		}
		if d := st.Deallocate; d != nil {
			if d.All {
				clear(c.sqlStmts)
			} else {
				delete(c.sqlStmts, d.Name)
			}
		}
	}
}

func queryMessage(dst []byte, sql string) []byte {
	dst = append(dst, 'Q', 0, 0, 0, 0)
	dst = append(dst, sql...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[1:], uint32(len(dst)-1))
	return dst
}

// rewriteSQL replaces every literal the analysis maps to a protected column
// with its ciphertext as a bytea literal. It returns nil when nothing changes.
func (ss *session) rewriteSQL(sql string, a *sqlplan.Analysis) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	var out []byte
	last := 0
	for i := range a.Statements {
		st := &a.Statements[i]
		if err := ss.checkJoins(st); err != nil {
			return nil, err
		}
		edits := st.Edits
		if st.Execute != nil {
			var err error
			if edits, err = ss.executeEdits(st.Execute); err != nil {
				return nil, err
			}
		}
		for _, e := range edits {
			if e.Backstop {
				// DDL that creates a protected column through pgcloak
				// gets the column's backstop in the same statement.
				out = growSQL(out, sql)
				out = append(out, sql[last:e.Start]...)
				out = append(out, e.Verbatim...)
				out = append(out, catalog.BackstopConstraint(e.Column.Name)...)
				last = e.End
				continue
			}
			if e.Null {
				// NULL stays NULL; the range may hold a cast (NULL::text)
				// that would not fit bytea.
				out = growSQL(out, sql)
				out = append(out, sql[last:e.Start]...)
				out = append(out, "NULL"...)
				if sqlplan.SpaceAfter(sql, e) {
					out = append(out, ' ')
				}
				last = e.End
				continue
			}
			col := ss.cloak.p.byPlan[e.Column]
			if col == nil {
				return nil, fmt.Errorf("internal: unknown column %s", e.Column)
			}
			value := []byte(e.Value)
			if isDecimalLiteral(sql[e.Start:e.End]) {
				var err error
				if value, err = ss.numericLiteral(col, value); err != nil {
					return nil, err
				}
			}
			ct, err := ss.encrypt(col, 0, value)
			if err != nil {
				return nil, err
			}
			out = growSQL(out, sql)
			out = append(out, sql[last:e.Start]...)
			// E'\\x…': the same bytes whether standard_conforming_strings
			// is on or off ('\x…' would be read as escapes with it off).
			out = append(out, `E'\\x`...)
			out = hex.AppendEncode(out, ct)
			out = append(out, `'::bytea`...)
			if sqlplan.SpaceAfter(sql, e) {
				out = append(out, ' ')
			}
			last = e.End
		}
	}
	if out == nil {
		return nil, nil
	}
	return append(out, sql[last:]...), nil
}

// checkJoins refuses comparisons between two deterministic columns unless
// they share a search group (and so encrypt equal values equally).
func (ss *session) checkJoins(st *sqlplan.Statement) error {
	for _, pair := range st.Joins {
		a, b := ss.cloak.p.byPlan[pair[0]], ss.cloak.p.byPlan[pair[1]]
		if a == nil || b == nil || a.group == "" || a.group != b.group {
			return &sqlplan.Refusal{Code: "0A000", Op: "compare", Column: pair[0].String(),
				Reason: fmt.Sprintf("it is encrypted under a different key than %s; columns compare equal only within one search_group", pair[1])}
		}
	}
	return nil
}

// executeEdits maps the arguments of an SQL-level EXECUTE to the protected
// columns of the statement it runs.
func (ss *session) executeEdits(ex *sqlplan.Execute) ([]sqlplan.Edit, error) {
	st := ss.cloak.sqlStmts[ex.Name]
	if st == nil {
		return nil, nil // unknown here: PostgreSQL reports it
	}
	var edits []sqlplan.Edit
	for n, col := range st.Params {
		if n < 1 || n > len(ex.Args) {
			continue
		}
		arg := ex.Args[n-1]
		if !arg.Literal {
			return nil, &sqlplan.Refusal{Code: "0A000", Column: col.String(),
				Reason: fmt.Sprintf("EXECUTE %s argument %d is computed by the server; pass a literal", ex.Name, n)}
		}
		edits = append(edits, sqlplan.Edit{Start: arg.Start, End: arg.End, Column: col, Value: arg.Value, Null: arg.Null})
	}
	slices.SortFunc(edits, func(a, b sqlplan.Edit) int { return a.Start - b.Start })
	return edits, nil
}

// growSQL returns out, allocated for a rewrite of sql if still nil.
func growSQL(out []byte, sql string) []byte {
	if out == nil {
		out = make([]byte, 0, len(sql)+256)
	}
	return out
}

// encrypt turns a client value (format 0 text, 1 binary) for col into its
// ciphertext.
func (ss *session) encrypt(col *column, format int16, v []byte) ([]byte, error) {
	return ss.appendEncrypted(nil, col, format, v)
}

// appendEncrypted is encrypt appending the value to dst.
func (ss *session) appendEncrypted(dst []byte, col *column, format int16, v []byte) ([]byte, error) {
	c := ss.cloak
	plain, err := col.typ.Canonical(c.clientPlain[:0], format, v, c.fmt.Load())
	if err != nil {
		return nil, columnValueError(col, err)
	}
	c.clientPlain = plain
	out, err := col.keyring.Encrypt(dst, plain, col.id, col.mode)
	if err != nil {
		return nil, keyError(col, err)
	}
	return out, nil
}

// encryptAs is encrypt for a parameter the client declared with type OID
// declared (0: none): the value is read in that type first, then converted
// to the column's logical type through its text form, as PostgreSQL's
// assignment does.
func (ss *session) encryptAs(col *column, declared uint32, format int16, v []byte) ([]byte, error) {
	if declared == 0 || declared == col.typ.OID() {
		return ss.encrypt(col, format, v)
	}
	dt, ok := values.ByOID(declared)
	if !ok {
		if format == 0 {
			return ss.encrypt(col, 0, v) // unknown declared type sent as text: read it as the column's
		}
		return nil, &cloakError{code: "42804", msg: fmt.Sprintf("%s: parameter declared with type OID %d, which pgcloak cannot convert to %s; declare it as %s or leave it untyped", col, declared, col.typ, col.typ)}
	}
	c := ss.cloak
	text, err := dt.Canonical(nil, format, v, c.fmt.Load())
	if err != nil {
		return nil, columnValueError(col, err)
	}
	return ss.encrypt(col, 0, text)
}

// parse handles a Parse message.
func (ss *session) parse(m []byte) error {
	c := ss.cloak
	var msg pgproto3.Parse
	if err := msg.Decode(m[headerLen:]); err != nil {
		return &protocolError{"invalid Parse message: " + err.Error()}
	}
	ss.trackSettings(msg.Query)
	st := &statement{name: msg.Name}
	a, err := ss.analyze(msg.Query)
	var sql []byte
	if err == nil {
		sql, err = ss.rewriteSQL(msg.Query, a)
	}
	if err == nil && a != nil {
		err = refuseExtendedCopy(a)
	}
	if err == nil && a != nil {
		err = st.planParams(a, c.p)
		st.predicted = predictRows(a, c.p)
	}
	if err != nil {
		if err = ss.refuse(err); err != nil {
			c.mu.Lock()
			// Binds to it must not carry their values to the server.
			c.stmts[msg.Name] = &statement{name: msg.Name, refused: true}
			c.q.push(pending{kind: pParse, refusal: err})
			c.mu.Unlock()
			bad := pgproto3.Parse{Name: msg.Name, Query: refusedSQL}
			out, _ := bad.Encode(c.inject())
			_, werr := ss.toServer.Write(out)
			return werr
		}
		st = &statement{name: msg.Name}
		sql = nil
	}
	changed := sql != nil
	if changed {
		msg.Query = string(sql)
	}
	// A client may declare the logical type of a protected parameter; the
	// server must see bytea.
	for i, col := range st.params {
		if col != nil && i < len(msg.ParameterOIDs) && msg.ParameterOIDs[i] != 0 {
			if st.declared == nil {
				st.declared = make([]uint32, len(st.params))
			}
			st.declared[i] = msg.ParameterOIDs[i]
			msg.ParameterOIDs[i] = byteaOID
			changed = true
		}
	}
	c.mu.Lock()
	c.stmts[msg.Name] = st
	c.q.push(pending{kind: pParse, stmt: st})
	c.mu.Unlock()
	if msg.Name != "" && sqlplan.MayMatter(msg.Query, c.p) {
		// A named statement over a protected table: learn its rows before
		// it is bound (unnamed ones are bound right away, in the same
		// pipeline, so the answer would come too late to help).
		c.describeNext = st
	}
	if !changed {
		_, err = ss.toServer.Write(m)
		return err
	}
	out, err := msg.Encode(c.inject())
	if err != nil {
		return err
	}
	_, err = ss.toServer.Write(out)
	return err
}

// statement returns the prepared statement called name: one prepared with
// Parse, or else one prepared with SQL PREPARE (the same namespace on the
// server). Client loop only.
func (c *cloak) statement(name string) *statement {
	c.mu.Lock()
	st := c.stmts[name]
	c.mu.Unlock()
	if st != nil {
		return st
	}
	sq := c.sqlStmts[name]
	if sq == nil {
		return nil
	}
	st = &statement{name: name}
	for n, pc := range sq.Params {
		if n < 1 || n > 65535 {
			continue
		}
		for len(st.params) < n {
			st.params = append(st.params, nil)
		}
		st.params[n-1] = c.p.byPlan[pc]
		st.protected = true
	}
	c.mu.Lock()
	c.stmts[name] = st
	c.mu.Unlock()
	return st
}

// predictRows is the row plan the analyzer expects for a one-statement
// text, or nil.
func predictRows(a *sqlplan.Analysis, p *Protection) *rowPlan {
	if len(a.Statements) != 1 || a.Statements[0].Results == nil {
		return nil
	}
	rp := &rowPlan{fields: make([]fieldPlan, len(a.Statements[0].Results))}
	for i, pc := range a.Statements[0].Results {
		if pc != nil {
			rp.fields[i].col = p.byPlan[pc]
			rp.protected = rp.protected || rp.fields[i].col != nil
		}
	}
	return rp
}

// planParams records which parameters carry protected values.
func (st *statement) planParams(a *sqlplan.Analysis, p *Protection) error {
	for i := range a.Statements {
		for n, pc := range a.Statements[i].Params {
			if n < 1 || n > 65535 {
				continue
			}
			for len(st.params) < n {
				st.params = append(st.params, nil)
			}
			st.params[n-1] = p.byPlan[pc]
			st.protected = true
		}
	}
	return nil
}

// bind handles a Bind message: protected parameters are encrypted and sent
// in binary format (the raw ciphertext bytes).
func (ss *session) bind(m []byte) error {
	c := ss.cloak
	portalName, stmtName, resultFormats, resultsAt, err := scanBind(m[headerLen:])
	if err != nil {
		return err
	}
	st := c.statement(stmtName)
	if st == nil || st.refused {
		// A statement pgcloak refused, or one it never saw: it cannot tell
		// which values are protected, so none is sent. PostgreSQL skips
		// this Bind after the refused Parse; a truly unknown name gets
		// PostgreSQL's own error.
		var refusal error
		if st == nil {
			refusal = &cloakError{code: "26000", msg: fmt.Sprintf("prepared statement %q does not exist", stmtName), plain: true}
		}
		c.mu.Lock()
		delete(c.portals, portalName)
		c.q.push(pending{kind: pBind, refusal: refusal})
		c.mu.Unlock()
		bad := pgproto3.Bind{DestinationPortal: portalName, PreparedStatement: refusedStmt}
		b, _ := bad.Encode(c.inject())
		_, werr := ss.toServer.Write(b)
		return werr
	}
	po := &portal{stmt: st, resultFormats: resultFormats}
	c.mu.Lock()
	rows := st.rows
	if rows == nil {
		rows = st.predicted
	}
	po.serverFormats = rows.serverResultFormats(resultFormats)
	c.mu.Unlock()
	out := m
	if po.serverFormats != nil && !st.protected {
		out = withResultFormats(c.inject(), m, resultsAt, po.serverFormats)
	}
	if st.protected {
		out, err = ss.encryptBind(m, st, po.serverFormats)
		if err != nil {
			if err = ss.refuse(err); err != nil {
				c.mu.Lock()
				delete(c.portals, portalName)
				c.q.push(pending{kind: pBind, refusal: err})
				c.mu.Unlock()
				bad := pgproto3.Bind{DestinationPortal: portalName, PreparedStatement: refusedStmt}
				b, _ := bad.Encode(c.inject())
				_, werr := ss.toServer.Write(b)
				return werr
			}
			out = m
		}
	}
	c.mu.Lock()
	c.portals[portalName] = po
	c.q.push(pending{kind: pBind, portal: po})
	c.mu.Unlock()
	_, err = ss.toServer.Write(out)
	return err
}

// withResultFormats appends to dst the Bind m with its result format codes,
// which start at offset at of m, replaced by codes.
func withResultFormats(dst, m []byte, at int, codes []int16) []byte {
	dst = append(dst, m[:at]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(codes)))
	for _, f := range codes {
		dst = binary.BigEndian.AppendUint16(dst, uint16(f))
	}
	binary.BigEndian.PutUint32(dst[1:], uint32(len(dst)-1))
	return dst
}

// encryptBind rebuilds a Bind with the protected parameters encrypted and,
// unless nil, these result formats.
func (ss *session) encryptBind(m []byte, st *statement, resultFormats []int16) ([]byte, error) {
	var msg pgproto3.Bind
	if err := msg.Decode(m[headerLen:]); err != nil {
		return nil, &protocolError{"invalid Bind message: " + err.Error()}
	}
	n := len(msg.Parameters)
	formats := make([]int16, n)
	for i := range formats {
		switch len(msg.ParameterFormatCodes) {
		case 0:
		case 1:
			formats[i] = msg.ParameterFormatCodes[0]
		default:
			if i < len(msg.ParameterFormatCodes) {
				formats[i] = msg.ParameterFormatCodes[i]
			}
		}
	}
	for i, v := range msg.Parameters {
		if i >= len(st.params) || st.params[i] == nil || v == nil {
			continue
		}
		var declared uint32
		if i < len(st.declared) {
			declared = st.declared[i]
		}
		ct, err := ss.encryptAs(st.params[i], declared, formats[i], v)
		if err != nil {
			return nil, err
		}
		msg.Parameters[i] = ct
		formats[i] = 1
	}
	msg.ParameterFormatCodes = formats
	if resultFormats != nil {
		msg.ResultFormatCodes = resultFormats
	}
	return msg.Encode(nil)
}

// scanBind reads the names and result formats of a Bind body without
// copying its parameter values. resultsAt is the offset, in the whole
// message, of the result format codes.
func scanBind(b []byte) (portal, stmt string, resultFormats []int16, resultsAt int, err error) {
	bad := &protocolError{"invalid Bind message"}
	i := 0
	next := func() (string, bool) {
		for j := i; j < len(b); j++ {
			if b[j] == 0 {
				s := string(b[i:j])
				i = j + 1
				return s, true
			}
		}
		return "", false
	}
	var ok bool
	if portal, ok = next(); !ok {
		return "", "", nil, 0, bad
	}
	if stmt, ok = next(); !ok {
		return "", "", nil, 0, bad
	}
	u16 := func() (int, bool) {
		if i+2 > len(b) {
			return 0, false
		}
		v := int(binary.BigEndian.Uint16(b[i:]))
		i += 2
		return v, true
	}
	nf, ok := u16()
	if !ok || i+2*nf > len(b) {
		return "", "", nil, 0, bad
	}
	i += 2 * nf
	np, ok := u16()
	if !ok {
		return "", "", nil, 0, bad
	}
	for range np {
		if i+4 > len(b) {
			return "", "", nil, 0, bad
		}
		l := int(int32(binary.BigEndian.Uint32(b[i:])))
		i += 4
		if l > 0 {
			if i+l > len(b) {
				return "", "", nil, 0, bad
			}
			i += l
		}
	}
	resultsAt = headerLen + i
	nr, ok := u16()
	if !ok || i+2*nr > len(b) {
		return "", "", nil, 0, bad
	}
	if nr > 0 {
		resultFormats = make([]int16, nr)
		for k := range nr {
			resultFormats[k] = int16(binary.BigEndian.Uint16(b[i+2*k:]))
		}
	}
	return portal, stmt, resultFormats, resultsAt, nil
}

// refuseExtendedCopy refuses a Parse of a COPY whose data pgcloak would have
// to rewrite: it rewrites COPY data only after a simple Query (planCopy), so
// through Parse/Bind/Execute a COPY FROM would store the client's plaintext
// and a COPY TO would hand ciphertext to the client.
func refuseExtendedCopy(a *sqlplan.Analysis) error {
	for i := range a.Statements {
		if cp := a.Statements[i].Copy; cp != nil {
			return &sqlplan.Refusal{Code: sqlplan.CodeFeatureNotSupported, Op: "copy", Column: cp.Schema + "." + cp.Table,
				Reason: "pgcloak rewrites COPY data of protected columns only for COPY sent as a simple Query (as psql \\copy, pgx CopyFrom/CopyTo, PgJDBC CopyManager, psycopg copy send it), not through Parse/Bind/Execute"}
		}
	}
	return nil
}
