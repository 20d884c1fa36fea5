package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// refusedSQL replaces a refused statement: it cannot parse, so PostgreSQL
// answers with an error (which pgcloak rewrites) and aborts the transaction
// as it would have for the refused statement. It carries nothing of the
// original.
const refusedSQL = "pgcloak refused this statement"

// refuseQuery sends PostgreSQL, in place of a Query (or FunctionCall), one
// that is bound to fail, so the refusal err reaches the client where the
// server's answer would have been, and COPY data that may follow is dropped.
func (ss *session) refuseQuery(err error) error {
	c := ss.cloak
	return ss.sendRefused(pending{kind: pSimple, refusal: err, group: c.group}, wire.AppendQuery(c.inject(), refusedSQL))
}

// sendRefused queues e, the refusal of a client message, and sends bad,
// the message bound to fail that goes to the server in its place. COPY data
// that follows in the group is dropped; a refused Query ends its group.
func (ss *session) sendRefused(e pending, bad []byte) error {
	c := ss.cloak
	c.mu.Lock()
	c.q.push(e)
	if e.kind == pSimple {
		ss.endGroupLocked(c.q.last())
	}
	c.mu.Unlock()
	c.dropCopy = true
	_, err := ss.toServer.Write(bad)
	return err
}

// refusedStmt is a statement name no client can have prepared (it holds a
// NUL-free control character), so a Bind to it fails.
const refusedStmt = "\x01pgcloak refused"

// clientMessage handles one whole client message m (header included).
func (ss *session) clientMessage(typ byte, m []byte) error {
	c := ss.cloak
	if err := ss.startGroup(); err != nil {
		return err
	}
	body := m[wire.HeaderLen:]
	switch typ {
	case 'Q':
		return ss.query(m)
	case 'P':
		return ss.parse(m)
	case 'B':
		return ss.bind(m)
	case 'D':
		if len(body) < 2 {
			return wire.Protocol("invalid Describe message")
		}
		name := wire.CString(body[1:])
		if next := c.describeNext; next != nil {
			if body[0] == 'S' && name == next.name {
				c.describeNext = nil // the client asks itself
			} else if err := ss.describeParsed(); err != nil {
				return err
			}
		}
		if body[0] == 'S' {
			st, err := ss.lookupStatement(name)
			if err != nil {
				return err
			}
			c.mu.Lock()
			if st != nil {
				st.describeRequested = true
			}
			c.q.push(pending{kind: pDescribeStmt, stmt: st, group: c.group})
			c.mu.Unlock()
		} else {
			c.mu.Lock()
			po := c.portals[name]
			if po != nil {
				po.describeRequested = true
			}
			c.q.push(pending{kind: pDescribePortal, portal: po, group: c.group})
			c.mu.Unlock()
		}
	case 'E':
		return ss.execute(m)
	case 'C':
		if len(body) < 2 {
			return wire.Protocol("invalid Close message")
		}
		name := wire.CString(body[1:])
		c.mu.Lock()
		e := pending{kind: pClose, group: c.group}
		if body[0] == 'S' {
			// The statement is gone once the server says so.
			e.changes = []stmtChange{{name: name}}
		} else {
			delete(c.portals, name)
		}
		c.q.push(e)
		c.mu.Unlock()
	case 'S':
		c.mu.Lock()
		c.q.push(pending{kind: pSync, group: c.group})
		ss.endGroupLocked(c.q.last())
		c.mu.Unlock()
	case 'F':
		// A FunctionCall is answered up to ReadyForQuery, like a Query.
		c.mu.Lock()
		c.q.push(pending{kind: pSimple, group: c.group})
		ss.endGroupLocked(c.q.last())
		c.mu.Unlock()
	}
	_, err := ss.toServer.Write(m)
	return err
}

// inject returns the (emptied) buffer for a message pgcloak writes itself.
func (c *cloak) inject() []byte { return c.injectScratch[:0] }

// analyze runs the SQL analyzer with the client loop's view of the
// settings, through the server-wide cache.
func (ss *session) analyze(sql string) (*sqlplan.Analysis, error) {
	c := ss.cloak
	text, offs, err := utf8Text(sql, &c.fmtClient)
	if !sqlplan.MayMatter(text, c.p) {
		return nil, nil
	}
	if err != nil {
		return nil, err // bytes the client encoding does not define, or an encoding pgcloak does not convert
	}
	if scs, ok := c.view.Get(sqlplan.StandardConformingStrings); ok && scs != "on" && strings.IndexByte(sql, '\\') >= 0 {
		// Without a backslash a text lexes the same either way; with one,
		// pgcloak could misread where a literal ends.
		return nil, &sqlplan.Refusal{Code: pgerrcode.FeatureNotSupported, Op: "read the string literals of",
			Column: "a statement on protected tables",
			Reason: "standard_conforming_strings is off in this session and the text holds a backslash; pgcloak reads literals as with it on. Turn standard_conforming_strings on (SET standard_conforming_strings = on), or pass values as parameters"}
	}
	analyze := func() (*sqlplan.Analysis, error) {
		a, err := sqlplan.Analyze(text, c.p, c.view)
		if offs != nil && err == nil {
			a, err = toClientText(a, offs, &c.fmtClient)
		}
		return a, err
	}
	if len(sql) > planCacheMaxSQL {
		return analyze()
	}
	key := c.view.User + "\x00" + c.view.Key() + "\x01" + sql
	if e, ok := c.p.plans.get(key); ok {
		return e.a, e.err
	}
	a, err := analyze()
	var rf *sqlplan.Refusal
	if errors.As(err, &rf) && rf.Code == sqlplan.CodeUndefinedColumn {
		// A protected table's column the catalog does not show: it may
		// be newer than the catalog read. Read it again, plan again.
		ctx, cancel := context.WithTimeout(context.Background(), unknownRelationRefresh)
		ss.prot.RefreshCatalog(ctx)
		cancel()
		if p := ss.rs.prot.Load(); p != c.p {
			c.p = p
			return ss.analyze(sql)
		}
	}
	c.p.plans.put(key, planEntry{a, err})
	return a, err
}

// refuse decides what happens to a statement the analyzer refused: in shadow
// mode it is logged and let through; otherwise the error is returned.
func (ss *session) refuse(err error) error {
	if ss.cloak.p.shadow && !errors.Is(err, errAccessDenied) {
		ss.log.Warn("shadow mode: letting through a statement pgcloak would refuse", zap.Error(err))
		return nil
	}
	return err
}

// query handles a simple-protocol Query: one group on its own.
func (ss *session) query(m []byte) error {
	c := ss.cloak
	// The text aliases m, valid only during this call: nothing of a large
	// statement is copied but its rewrite. The audit log, which records
	// the text after the call, gets a copy.
	sql := wire.CStringView(m[wire.HeaderLen:])
	var kept string
	if ss.auditing() {
		kept = strings.Clone(sql)
	}
	a, err := ss.analyze(sql)
	if err == nil {
		err = ss.checkAccess(a, kept)
	}
	var out []byte
	if err == nil {
		if out, err = ss.rewriteSQL(sql, a, []byte{byte(wire.Query), 0, 0, 0, 0}, 1); out != nil {
			out = wire.EndMessage(append(out, 0), 0)
		}
	}
	var cp *copyState
	if err == nil && a != nil {
		cp, err = ss.planCopy(a)
	}
	if err != nil {
		if err = ss.refuse(err); err != nil {
			return ss.refuseQuery(err)
		}
		out, cp = nil, nil
	}
	e := pending{kind: pSimple, copy: cp, group: c.group, sql: kept}
	if a != nil {
		e.effects = make([][]sqlplan.Effect, len(a.Statements))
		for i := range a.Statements {
			st := &a.Statements[i]
			e.effects[i] = st.Effects
			e.changes = append(e.changes, ss.statementChanges(i, st)...)
			ss.applyView(st.Effects)
		}
	}
	if cp != nil && cp.plan.From {
		c.copyIn = cp
	}
	c.mu.Lock()
	c.q.push(e)
	ss.endGroupLocked(c.q.last())
	c.mu.Unlock()
	if out == nil {
		_, err = ss.toServer.Write(m)
	} else {
		_, err = ss.toServer.Write(out)
	}
	return err
}

// statementChanges are the prepared-statement changes of statement i (st)
// of a text (SQL PREPARE, DEALLOCATE, DISCARD ALL).
func (ss *session) statementChanges(i int, st *sqlplan.Statement) []stmtChange {
	var out []stmtChange
	for _, e := range st.Effects {
		switch e.Kind {
		case sqlplan.EffectPrepare:
			out = append(out, stmtChange{stmtIndex: i, name: e.Name, st: ss.preparedStatement(e, st)})
		case sqlplan.EffectDeallocate:
			out = append(out, stmtChange{stmtIndex: i, name: e.Name})
		case sqlplan.EffectDeallocateAll:
			out = append(out, stmtChange{stmtIndex: i, all: true})
		}
	}
	return out
}

// preparedStatement is the statement an SQL PREPARE (planned as outer)
// defines.
func (ss *session) preparedStatement(e sqlplan.Effect, outer *sqlplan.Statement) *statement {
	c := ss.cloak
	st := &statement{name: e.Name, sql: e.Text, text: e.Text, planKey: c.view.Key(), qualified: qualifiers(outer)}
	st.planInner(e.Statement, c.p)
	return st
}

// qualifiers are the schemas the analysis qualified relation names with.
func qualifiers(st *sqlplan.Statement) []string {
	var q []string
	for _, e := range st.Edits {
		if e.Column == nil && !e.Backstop && e.Value != "" {
			q = append(q, e.Verbatim+e.Value)
		}
	}
	return q
}

// checkQualified refuses to run a prepared statement whose relation names
// pgcloak qualified (several schemas hold them) once search_path resolves
// them elsewhere: PostgreSQL would plan the statement again for the new
// path, while the statement the server holds names the schemas of the old
// one. Running it would silently write elsewhere than directly.
func (ss *session) checkQualified(st *statement) error {
	c := ss.cloak
	if len(st.qualified) == 0 || st.planKey == c.view.Key() || st.sql == "" {
		return nil
	}
	a, err := ss.analyze(st.sql)
	if err == nil && a != nil && len(a.Statements) == 1 {
		if slices.Equal(qualifiers(&a.Statements[0]), st.qualified) {
			return nil
		}
	}
	return &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
		Message: fmt.Sprintf("prepared statement %q names a relation that several schemas hold (%s), and search_path now resolves it elsewhere than when it was prepared; prepare it again (DEALLOCATE, then PREPARE or Parse) so that pgcloak and PostgreSQL agree which table it writes", st.name, strings.Join(st.qualified, ", "))}
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
			return nil, copyPlanError(err)
		}
		return st, nil
	}
	return nil, nil
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

// rewriteSQL replaces every literal the analysis maps to a protected column
// with its ciphertext as a bytea literal. The rewritten text is appended to
// a new buffer that begins with head and has room for tail more bytes (a
// message's header and what follows the text), so that the message is
// built where it will be sent: one buffer of the final size, whatever the
// size of a literal. It returns nil when nothing changes.
func (ss *session) rewriteSQL(sql string, a *sqlplan.Analysis, head []byte, tail int) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	var reps []replacement
	// Statements that an earlier PREPARE of the same text defines (or an
	// earlier DEALLOCATE removes: nil): the server runs them in order.
	var inText map[string]*sqlplan.Statement
	for i := range a.Statements {
		st := &a.Statements[i]
		if err := ss.checkJoins(st); err != nil {
			return nil, err
		}
		edits := st.Edits
		if st.Execute != nil {
			var err error
			if edits, err = ss.executeEdits(st.Execute, inText); err != nil {
				return nil, err
			}
		}
		for _, e := range st.Effects {
			if inText == nil {
				inText = map[string]*sqlplan.Statement{}
			}
			switch e.Kind {
			case sqlplan.EffectPrepare:
				inText[e.Name] = e.Statement
			case sqlplan.EffectDeallocate:
				inText[e.Name] = nil
			case sqlplan.EffectDeallocateAll:
				clear(inText)
				inText["\x00all"] = nil
			}
		}
		for _, e := range edits {
			r, err := ss.replacementFor(sql, e)
			if err != nil {
				return nil, err
			}
			reps = append(reps, r)
		}
	}
	if reps == nil {
		return nil, nil
	}
	size := len(sql)
	for i := range reps {
		size += reps[i].size() - (reps[i].end - reps[i].start)
	}
	out := make([]byte, 0, len(head)+size+tail)
	out = append(out, head...)
	last := 0
	for i := range reps {
		r := &reps[i]
		out = append(out, sql[last:r.start]...)
		var err error
		if out, err = ss.appendReplacement(out, r); err != nil {
			return nil, err
		}
		last = r.end
	}
	return append(out, sql[last:]...), nil
}

// A replacement is one edit of a rewrite: the text's range [start, end)
// gives way to text or, for a protected literal (col set), to the
// ciphertext of plain as a bytea literal.
type replacement struct {
	start, end int
	text       string
	col        *column
	plain      []byte
	subj       subjectValue
	space      bool // a space after: the next byte would join the literal
}

// byteaLiteral is how a ciphertext is written into SQL, around its hex:
// E'\\x…' reads as the same bytes whether standard_conforming_strings is on
// or off ('\x…' would be read as escapes with it off).
const byteaLiteralOpen, byteaLiteralClose = `E'\\x`, `'::bytea`

// size is the length of what r writes.
func (r *replacement) size() int {
	n := len(r.text)
	if r.col != nil {
		n += len(byteaLiteralOpen) + 2*r.col.sealedSize(len(r.plain)) + len(byteaLiteralClose)
	}
	if r.space {
		n++
	}
	return n
}

// replacementFor reads edit e of sql: for a protected literal, its value
// in the column's canonical form (a view of the literal where the
// canonical form is the value itself: nothing of a large literal is copied
// before it is sealed).
func (ss *session) replacementFor(sql string, e sqlplan.Edit) (replacement, error) {
	r := replacement{start: e.Start, end: e.End}
	switch {
	case e.Backstop:
		// (An empty range.) DDL that creates a protected column through pgcloak gets the
		// column's backstop in the same statement.
		r.text = e.Verbatim + catalog.BackstopConstraintFor(e.Column.Name, e.Column.Subject != "")
	case e.Column == nil:
		// A relation name qualified with the schema planned for.
		r.text = e.Verbatim
	case e.Null:
		// NULL stays NULL; the range may hold a cast (NULL::text) that
		// would not fit bytea.
		r.text, r.space = "NULL", sqlplan.SpaceAfter(sql, e)
	default:
		col := ss.cloak.p.byPlan[e.Column]
		if col == nil {
			return r, fmt.Errorf("internal: unknown column %s", e.Column)
		}
		value := unsafe.Slice(unsafe.StringData(e.Value), len(e.Value)) // only read
		if isDecimalLiteral(sql[e.Start:e.End]) {
			// A numeric constant, as the column's type reads it.
			var err error
			if value, err = ss.numericLiteral(col, value); err != nil {
				return r, err
			}
		}
		plain, err := col.typ.CanonicalView(0, value, &ss.cloak.fmtClient)
		if err != nil {
			return r, columnValueError(col, err)
		}
		r.plain = plain
		r.col, r.subj, r.space = col, literalSubject(e.Subject), sqlplan.SpaceAfter(sql, e)
	}
	return r, nil
}

// appendReplacement appends what r writes to dst, which has room for it.
// A ciphertext is sealed into the second half of the room its hex takes,
// and encoded from there in place: each byte is read before the two hex
// digits written at or before it.
func (ss *session) appendReplacement(dst []byte, r *replacement) ([]byte, error) {
	dst = append(dst, r.text...)
	if r.col != nil {
		dst = append(dst, byteaLiteralOpen...)
		at, n := len(dst), r.col.sealedSize(len(r.plain))
		sealed, err := ss.sealInPlace(dst[:at+n], r.plain, r.col, &r.subj)
		if err != nil {
			return nil, err
		}
		dst = sealed[:at]
		for _, b := range sealed[at+n:] {
			dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
		}
		dst = append(dst, byteaLiteralClose...)
	}
	if r.space {
		dst = append(dst, ' ')
	}
	return dst, nil
}

const hexDigits = "0123456789abcdef"

// sealInPlace appends the ciphertext of plain for col to dst, which has room
// for it (col.sealedSize), and counts the value: a message built at its
// final size gets each ciphertext where it goes.
func (ss *session) sealInPlace(dst, plain []byte, col *column, subj *subjectValue) ([]byte, error) {
	n := col.sealedSize(len(plain))
	sealed, err := ss.seal(dst, plain, col, subj)
	if err != nil {
		return nil, err
	}
	if len(sealed) != len(dst)+n || cap(dst) < len(dst)+n {
		return nil, fmt.Errorf("internal: %s sealed %d bytes, expected %d in place", col, len(sealed)-len(dst), n)
	}
	ss.countEncrypted(col)
	return sealed, nil
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
// columns of the statement it runs: one an earlier statement of the same
// text prepares, or one the session has (prepared by SQL or by Parse: the
// server keeps them in one namespace). A statement pgcloak does not know is
// refused rather than sent with its arguments in plaintext.
func (ss *session) executeEdits(ex *sqlplan.Execute, inText map[string]*sqlplan.Statement) ([]sqlplan.Edit, error) {
	var params []*column
	var subjects map[int]sqlplan.SubjectRef
	prep, inTextFound := inText[ex.Name]
	_, allGone := inText["\x00all"]
	switch {
	case inTextFound && prep != nil:
		params, subjects = planParamsOf(prep, ss.cloak.p), prep.ParamSubjects
	case inTextFound || allGone:
		return nil, unknownStatement(ex.Name)
	default:
		st, err := ss.lookupStatement(ex.Name)
		if err != nil {
			return nil, err
		}
		if st == nil || st.refused {
			return nil, unknownStatement(ex.Name)
		}
		if err := ss.checkQualified(st); err != nil {
			return nil, err
		}
		params, subjects = st.params, st.subjects
	}
	var edits []sqlplan.Edit
	for i, col := range params {
		if col == nil {
			continue
		}
		n := i + 1
		if n > len(ex.Args) {
			continue
		}
		arg := ex.Args[n-1]
		if !arg.Literal {
			return nil, &sqlplan.Refusal{Code: pgerrcode.FeatureNotSupported, Column: col.String(),
				Reason: fmt.Sprintf("EXECUTE %s argument %d is computed by the server; pass a literal", ex.Name, n)}
		}
		subj, err := executeSubject(subjects, n, ex.Args)
		if err != nil {
			return nil, err
		}
		edits = append(edits, sqlplan.Edit{Start: arg.Start, End: arg.End, Column: col.plan, Value: arg.Value, Null: arg.Null, Subject: subj})
	}
	slices.SortFunc(edits, func(a, b sqlplan.Edit) int { return a.Start - b.Start })
	return edits, nil
}

// unknownStatement refuses a prepared statement pgcloak does not know: it
// cannot tell which of its values are protected.
func unknownStatement(name string) error {
	return &pgerr.Error{Code: pgerrcode.InvalidSQLStatementName,
		Message: fmt.Sprintf("prepared statement %q is not known to pgcloak (prepared inside server-side code, or never prepared), so pgcloak cannot tell which of its values to encrypt; prepare it through pgcloak", name)}
}

// appendEncryptedWith appends to dst the ciphertext of a client value for
// col (format 0 text, 1 binary, read with the value formats f); subj is its
// row's subject (for a subject-keyed column). The caller counts it
// (countEncrypted).
func (ss *session) appendEncryptedWith(dst []byte, col *column, format int16, v []byte, f *values.Session, subj *subjectValue) ([]byte, error) {
	c := ss.cloak
	plain, err := col.typ.Canonical(c.clientPlain[:0], format, v, f)
	if err != nil {
		return nil, columnValueError(col, err)
	}
	c.clientPlain = plain
	return ss.seal(dst, plain, col, subj)
}

// plainAs is the canonical plaintext of a parameter of col the client
// declared with type OID declared (0: none): the value is read in that type
// first, then converted to the column's logical type through its text form,
// as PostgreSQL's assignment does. The result may alias v
// (values.CanonicalView).
func (ss *session) plainAs(col *column, declared uint32, format int16, v []byte) ([]byte, error) {
	f := &ss.cloak.fmtClient
	if declared != 0 && declared != col.typ.OID() {
		dt, ok := values.ByOID(declared)
		switch {
		case ok:
			text, err := dt.Canonical(nil, format, v, f)
			if err != nil {
				return nil, columnValueError(col, err)
			}
			v, format = text, 0
		case format != 0:
			return nil, &pgerr.Error{Code: pgerrcode.DatatypeMismatch, Message: fmt.Sprintf("%s: parameter declared with type OID %d, which pgcloak cannot convert to %s; declare it as %s or leave it untyped", col, declared, col.typ, col.typ)}
		}
		// An unknown declared type sent as text is read as the column's.
	}
	plain, err := col.typ.CanonicalView(format, v, f)
	if err != nil {
		return nil, columnValueError(col, err)
	}
	return plain, nil
}
