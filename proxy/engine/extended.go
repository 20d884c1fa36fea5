package engine

// The extended protocol: Parse plans a statement, Bind encrypts its
// protected parameters, Execute plans the rows of its portal.

import (
	"encoding/binary"
	"math"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// execute handles an Execute: the rows of its portal are planned from the
// portal's description, its statement's session-state changes are applied
// in the client's view, and a COPY of a protected table starts its data
// rewriting, as for a simple Query.
func (ss *session) execute(m []byte) error {
	c := ss.cloak
	name := wire.CString(m[wire.HeaderLen:])
	c.mu.Lock()
	po := c.portals[name]
	if po != nil && po.rows != nil {
		if describedDenial(po.rows) != nil {
			c.mu.Unlock()
			return ss.refuseExecute(ss.checkDescribed(po.rows, ""))
		}
	}
	if po != nil && !po.describeRequested && (po.stmt == nil || !po.stmt.describeRequested) && po.stmt.copyPlan == nil {
		// The client never asked what the rows look like, but pgcloak
		// must know to decrypt them: ask, and keep the answer.
		po.describeRequested = true
		c.q.push(pending{kind: pDescribePortal, portal: po, swallow: true, group: c.group})
		c.mu.Unlock()
		if _, err := ss.toServer.Write(wire.AppendDescribe(c.inject(), 'P', name)); err != nil {
			return err
		}
		c.mu.Lock()
	}
	e := pending{kind: pExecute, portal: po, group: c.group}
	var cp *copyState
	if po != nil && po.stmt != nil {
		st := po.stmt
		if len(st.effects) > 0 || len(st.changes) > 0 {
			e.effects, e.changes = [][]sqlplan.Effect{st.effects}, st.changes
		}
		if st.copyPlan != nil {
			var err error
			if cp, err = ss.newCopy(st.copyPlan); err != nil {
				// Refused as through a Query (planCopy): the client gets
				// the error and the session goes on.
				c.mu.Unlock()
				if err = ss.refuse(copyPlanError(err)); err != nil {
					return ss.refuseExecute(err)
				}
				c.mu.Lock()
			}
			e.copy = cp
		}
	}
	c.q.push(e)
	c.mu.Unlock()
	if po != nil && po.stmt != nil {
		ss.applyView(po.stmt.effects)
	}
	if cp != nil && cp.plan.From {
		c.copyIn = cp
	}
	_, err := ss.toServer.Write(m)
	return err
}

// refuseExecute sends PostgreSQL an Execute of a portal that cannot exist
// in place of the client's, so that nothing runs and the server's error
// keeps the pipeline in step; refusal is what the client sees in its place.
func (ss *session) refuseExecute(refusal error) error {
	c := ss.cloak
	c.mu.Lock()
	c.q.push(pending{kind: pExecute, refusal: refusal, group: c.group})
	c.mu.Unlock()
	c.dropCopy = true
	bad := pgproto3.Execute{Portal: refusedStmt}
	b, _ := bad.Encode(c.inject())
	_, err := ss.toServer.Write(b)
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
	_, err := ss.toServer.Write(wire.AppendDescribe(c.inject(), 'S', st.name))
	return err
}

// parse handles a Parse message. The statement it defines replaces the
// one of that name once the server confirms (ParseComplete).
func (ss *session) parse(m []byte) error {
	c := ss.cloak
	msg, err := wire.ScanParse(m[wire.HeaderLen:])
	if err != nil {
		return err
	}
	// The statement keeps its text (to plan it again): the one copy of it.
	msg.Query = strings.Clone(msg.Query)
	st := &statement{name: msg.Name}
	a, err := ss.analyze(msg.Query)
	if err == nil {
		err = ss.checkAccess(a, msg.Query)
	}
	// The rewritten message, built in place from its name on: the query
	// follows, then what comes after it (filled in below).
	var out []byte
	if err == nil {
		head, _ := wire.BeginMessage(nil, byte(wire.Parse))
		head = append(append(head, msg.Name...), 0)
		out, err = ss.rewriteSQL(msg.Query, a, head, 1+2+4*len(msg.ParamOIDs))
	}
	if err == nil && a != nil {
		err = st.plan(a, c.p)
	}
	if err == nil && a != nil && len(a.Statements) == 1 {
		st.effects = a.Statements[0].Effects
		st.changes = ss.statementChanges(0, &a.Statements[0])
		st.qualified, st.sql, st.planKey = qualifiers(&a.Statements[0]), msg.Query, c.view.Key()
	}
	if err != nil {
		if err = ss.refuse(err); err != nil {
			return ss.refuseParse(msg.Name, err)
		}
		st = &statement{name: msg.Name}
		out = nil
	}
	st.text = msg.Query
	changed := out != nil
	// A client may declare the logical type of a protected parameter; the
	// server must see bytea.
	for i, col := range st.params {
		if col != nil && i < len(msg.ParamOIDs) && msg.ParamOIDs[i] != 0 {
			if st.declared == nil {
				st.declared = make([]uint32, len(st.params))
			}
			st.declared[i] = msg.ParamOIDs[i]
			msg.ParamOIDs[i] = byteaOID
			changed = true
		}
	}
	c.mu.Lock()
	c.q.push(pending{kind: pParse, stmt: st, group: c.group, changes: []stmtChange{{name: msg.Name, st: st}}})
	c.mu.Unlock()
	if msg.Name != "" && sqlplan.MayMatter(msg.Query, c.p) && st.copyPlan == nil {
		// A named statement over a protected table: learn its rows before
		// it is bound (unnamed ones are bound right away, in the same
		// pipeline, so the answer would come too late to help).
		c.describeNext = st
	}
	switch {
	case !changed:
		out = m
	case out != nil:
		out = wire.EndMessage(wire.AppendParseTail(out, msg.ParamOIDs), 0)
	default: // only parameter types changed
		var start int
		out, start = wire.BeginMessage(c.inject(), byte(wire.Parse))
		out = append(append(out, msg.Name...), 0)
		out = append(out, msg.Query...)
		out = wire.EndMessage(wire.AppendParseTail(out, msg.ParamOIDs), start)
	}
	_, err = ss.toServer.Write(out)
	return err
}

// plan records what the statement of a Parse does with protected columns:
// which parameters carry protected values, the rows expected, a COPY of a
// protected table to rewrite.
func (st *statement) plan(a *sqlplan.Analysis, p *Protection) error {
	st.params, st.protected = nil, false
	st.params = planParamsOfAnalysis(a, p)
	st.subjects = subjectsOfAnalysis(a)
	for _, col := range st.params {
		st.protected = st.protected || col != nil
	}
	st.predicted = predictRows(a, p)
	for i := range a.Statements {
		if cp := a.Statements[i].Copy; cp != nil {
			if len(a.Statements) > 1 {
				return &sqlplan.Refusal{Code: pgerrcode.FeatureNotSupported, Op: "copy", Column: cp.Schema + "." + cp.Table,
					Reason: "COPY of a protected table must be the only statement of its query"}
			}
			st.copyPlan = cp
		}
	}
	return nil
}

// planInner records what an SQL PREPARE's statement does with protected
// columns.
func (st *statement) planInner(inner *sqlplan.Statement, p *Protection) {
	st.params, st.subjects = planParamsOf(inner, p), inner.ParamSubjects
	st.protected = false
	for _, col := range st.params {
		st.protected = st.protected || col != nil
	}
	if inner.Results != nil {
		st.predicted = predictRows(&sqlplan.Analysis{Statements: []sqlplan.Statement{*inner}}, p)
	}
	st.effects = inner.Effects
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

// planParamsOfAnalysis maps the parameters of a text's statements to the
// protected columns they carry (nil entries: untouched).
func planParamsOfAnalysis(a *sqlplan.Analysis, p *Protection) []*column {
	var params []*column
	for i := range a.Statements {
		params = addParams(params, a.Statements[i].Params, p)
	}
	return params
}

// planParamsOf maps the parameters of one statement.
func planParamsOf(st *sqlplan.Statement, p *Protection) []*column {
	return addParams(nil, st.Params, p)
}

func addParams(params []*column, m map[int]*sqlplan.Column, p *Protection) []*column {
	for n, pc := range m {
		if n < 1 || n > 65535 {
			continue
		}
		for len(params) < n {
			params = append(params, nil)
		}
		params[n-1] = p.byPlan[pc]
	}
	return params
}

// bind handles a Bind message: protected parameters are encrypted and sent
// in binary format (the raw ciphertext bytes).
func (ss *session) bind(m []byte) error {
	c := ss.cloak
	bh, err := wire.ScanBind(m[wire.HeaderLen:])
	if err != nil {
		return err
	}
	portalName, stmtName, resultFormats := bh.Portal, bh.Statement, bh.ResultFormats
	st, err := ss.lookupStatement(stmtName)
	if err != nil {
		return err
	}
	if st == nil || st.refused {
		// A statement pgcloak refused, or one it never saw: it cannot tell
		// which values are protected, so none is sent. PostgreSQL skips
		// this Bind after the refused Parse; a truly unknown name gets
		// PostgreSQL's own error.
		var refusal error
		if st == nil {
			refusal = unknownStatement(stmtName)
		}
		return ss.refuseBind(portalName, refusal)
	}
	if err := ss.checkQualified(st); err != nil {
		if err = ss.refuse(err); err != nil {
			return ss.refuseBind(portalName, err)
		}
	}
	po := &portal{stmt: st, resultFormats: resultFormats}
	c.mu.Lock()
	rows := st.rows
	described := rows
	if rows == nil {
		rows = st.predicted
	}
	po.serverFormats = rows.serverResultFormats(resultFormats)
	c.mu.Unlock()
	if err := ss.checkDescribed(described, st.text); err != nil {
		return ss.refuseBind(portalName, err)
	}
	out := m
	if po.serverFormats != nil && !st.protected {
		out = wire.AppendWithResultFormats(c.inject(), m, bh.ResultsAt, po.serverFormats)
	}
	if st.protected {
		out, err = ss.encryptBind(m, st, po.serverFormats)
		if err != nil {
			if err = ss.refuse(err); err != nil {
				return ss.refuseBind(portalName, err)
			}
			out = m
		}
	}
	c.mu.Lock()
	c.portals[portalName] = po
	c.q.push(pending{kind: pBind, portal: po, group: c.group})
	c.mu.Unlock()
	_, err = ss.toServer.Write(out)
	return err
}

// refuseBind sends PostgreSQL a Bind of the refused statement in place of
// the client's, so no value reaches the server and the server's error keeps
// the pipeline in step; refusal (nil for "let PostgreSQL say it") is what
// the client sees in its place.
func (ss *session) refuseBind(portalName string, refusal error) error {
	c := ss.cloak
	c.mu.Lock()
	delete(c.portals, portalName)
	c.mu.Unlock()
	bad, _ := (&pgproto3.Bind{DestinationPortal: portalName, PreparedStatement: refusedStmt}).Encode(c.inject())
	return ss.sendRefused(pending{kind: pBind, refusal: refusal, group: c.group}, bad)
}

// refuseParse sends PostgreSQL, in place of the Parse of statement name, one
// that is bound to fail: the refusal err reaches the client where the
// server's answer would have been, and Binds to the statement in this group
// do not carry their values to the server (which skips them after the
// failed Parse anyway).
func (ss *session) refuseParse(name string, err error) error {
	c := ss.cloak
	bad, _ := (&pgproto3.Parse{Name: name, Query: refusedSQL}).Encode(c.inject())
	return ss.sendRefused(pending{kind: pParse, refusal: err, group: c.group,
		changes: []stmtChange{{name: name, st: &statement{name: name, refused: true}}}}, bad)
}

// encryptBind rebuilds a Bind with the protected parameters encrypted and,
// unless nil, these result formats. The message is built once at its final
// size, each ciphertext sealed where it goes: a large parameter costs one
// copy, its ciphertext (none before it: text is sealed where it lies in m).
func (ss *session) encryptBind(m []byte, st *statement, resultFormats []int16) ([]byte, error) {
	var msg pgproto3.Bind // its parameters alias m
	if err := msg.Decode(m[wire.HeaderLen:]); err != nil {
		return nil, wire.Protocol("invalid Bind message: " + err.Error())
	}
	n := len(msg.Parameters)
	formats := make([]int16, n)
	for i := range formats {
		formats[i] = wire.FormatCode(msg.ParameterFormatCodes, i)
	}
	if resultFormats == nil {
		resultFormats = msg.ResultFormatCodes
	}
	// The canonical plaintext of each protected parameter, and the size of
	// the message that carries their ciphertexts.
	plains := make([][]byte, n)
	size := wire.HeaderLen + len(msg.DestinationPortal) + 1 + len(msg.PreparedStatement) + 1 + // names
		2 + 2*n + 2 + // parameter formats, parameter count
		2 + 2*len(resultFormats)
	for i, v := range msg.Parameters {
		size += 4 + len(v)
		if i >= len(st.params) || st.params[i] == nil || v == nil {
			continue
		}
		var declared uint32
		if i < len(st.declared) {
			declared = st.declared[i]
		}
		p, err := ss.plainAs(st.params[i], declared, formats[i], v)
		if err != nil {
			return nil, err
		}
		plains[i] = p
		size += st.params[i].sealedSize(len(p)) - len(v)
	}
	out, start := wire.BeginMessage(make([]byte, 0, size), byte(wire.Bind))
	out = append(append(out, msg.DestinationPortal...), 0)
	out = append(append(out, msg.PreparedStatement...), 0)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	for i, f := range formats {
		if plains[i] != nil {
			f = 1 // the ciphertext's bytes
		}
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	for i, v := range msg.Parameters {
		switch {
		case v == nil:
			out = binary.BigEndian.AppendUint32(out, math.MaxUint32) // -1: NULL
		case plains[i] != nil:
			col := st.params[i]
			out = binary.BigEndian.AppendUint32(out, uint32(col.sealedSize(len(plains[i]))))
			subj := paramSubject(st, i, msg.Parameters, formats)
			var err error
			if out, err = ss.sealInPlace(out, plains[i], col, &subj); err != nil {
				return nil, err
			}
		default:
			out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
			out = append(out, v...)
		}
	}
	out = binary.BigEndian.AppendUint16(out, uint16(len(resultFormats)))
	for _, f := range resultFormats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	return wire.EndMessage(out, start), nil
}
