package engine

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// rowPlan says how to turn the columns of a result into what the client
// expects: for each field, the protected column behind it (nil: untouched)
// and the format the values travel in.
type rowPlan struct {
	fields    []fieldPlan
	protected bool
	// unreadable: pgcloak bound a column in binary that the client asked
	// for in text, expecting a protected column, and it is not one. It
	// cannot turn arbitrary binary values into text, so the rows are
	// refused (protected is set too, so they reach decryptRow).
	unreadable bool
	// scan: some field is an unattributed bytea column (fieldPlan.scan).
	scan bool
}

type fieldPlan struct {
	col *column
	// acc is what the session may do with col (access.go).
	acc *colAccess
	// scan: an unprotected bytea column whose values are checked for
	// pgcloak ciphertext, which must never reach the client as data.
	scan bool
	// format is what the client asked for; srvFormat what the server
	// sends. They differ for protected columns of portals pgcloak bound
	// with binary results (see statement.resultFormats).
	format, srvFormat int16
	// verbatim: the common case, whose values are decrypted straight into
	// the rebuilt row: the session reads the plaintext, the server sends
	// raw ciphertext under a keyring key (not a subject's), and the type's
	// form in the client's format is its canonical plaintext
	// (values.Type.Verbatim), as long as the session does not transcode.
	// Set by check.
	verbatim bool
}

// withFormats returns the plan for a portal whose client asked for the
// result formats client and whose server was asked for server (nil: the
// same as client).
func (rp *rowPlan) withFormats(client, server []int16) *rowPlan {
	if rp == nil || !rp.protected && !rp.scan && server == nil {
		return rp
	}
	if server == nil {
		server = client
	}
	out := &rowPlan{fields: make([]fieldPlan, len(rp.fields)), protected: rp.protected, scan: rp.scan}
	for i, f := range rp.fields {
		f.format = wire.FormatCode(client, i)
		f.srvFormat = wire.FormatCode(server, i)
		out.fields[i] = f
	}
	out.check()
	return out
}

// check marks a plan unreadable when an unprotected field travels in
// another format than the client's, and marks the verbatim fields.
func (rp *rowPlan) check() {
	for i := range rp.fields {
		f := &rp.fields[i]
		if f.col == nil && f.format != f.srvFormat {
			rp.unreadable, rp.protected = true, true
		}
		f.verbatim = f.acc != nil && f.acc.Read == access.Plaintext && f.srvFormat == 1 &&
			f.col.rule.Subject == "" && f.col.typ.Verbatim(f.format)
	}
}

// serverResultFormats returns the result formats to bind a portal of a
// statement with rows rp under, given the client's: protected columns in
// binary, so the server sends raw ciphertext (no bytea hex to produce and
// parse, half the bytes), the others as the client asked. It returns nil
// (keep the client's) when nothing would change or the client's codes do
// not fit the columns (PostgreSQL then reports that itself).
func (rp *rowPlan) serverResultFormats(client []int16) []int16 {
	if rp == nil || !rp.protected || len(client) > 1 && len(client) != len(rp.fields) {
		return nil
	}
	out := make([]int16, len(rp.fields))
	changed := false
	for i, f := range rp.fields {
		out[i] = wire.FormatCode(client, i)
		if f.col != nil && out[i] != 1 {
			out[i] = 1
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return out
}

// currentRows is the row plan of the request whose rows are arriving.
func (c *cloak) currentRows() *rowPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	head := c.q.peek()
	if head == nil || head.kind != pExecute || head.portal == nil {
		return nil
	}
	return c.portalRows(head.portal)
}

// portalRows is the row plan of a portal: its own Describe, or its
// statement's with the portal's result formats.
func (c *cloak) portalRows(po *portal) *rowPlan {
	if po.rows == nil && po.stmt != nil && po.stmt.rows != nil {
		po.rows = po.stmt.rows.withFormats(po.resultFormats, po.serverFormats)
	}
	return po.rows
}

// serverMessage handles a server message that answers a pending request. It
// returns what to send the client (nil: nothing).
func (ss *session) serverMessage(typ byte, m []byte) ([]byte, error) {
	c := ss.cloak
	switch typ {
	case 'S':
		ss.parameterStatus(m)
		return m, nil
	case 'T':
		return ss.rowDescription(m)
	case 't':
		return ss.parameterDescription(m)
	case 'n':
		c.mu.Lock()
		p := c.q.pop()
		c.mu.Unlock()
		if p.swallow {
			return nil, nil
		}
		return m, nil
	case '1', '2', '3':
		// ParseComplete, BindComplete, CloseComplete: a Parse's statement
		// or a Close's removal is now the server's.
		c.mu.Lock()
		if head := c.q.peek(); head != nil {
			for _, ch := range head.changes {
				c.commitChangeLocked(ch)
			}
		}
		c.q.pop()
		c.mu.Unlock()
		return m, nil
	case 'C', 'I', 's':
		if typ == 'C' && isDDLTag(m[wire.HeaderLen:]) {
			c.ddlSeen = true
		}
		if typ == 'C' {
			ss.endResult(m[wire.HeaderLen:], false)
		} else {
			ss.endResult(nil, false)
		}
		c.cur = nil
		c.mu.Lock()
		if head := c.q.peek(); head != nil {
			switch head.kind {
			case pExecute:
				// The portal's statement ran (or stopped at its row
				// limit: PortalSuspended changes nothing).
				if typ == 'C' && len(head.effects) > 0 {
					ss.applyCommittedLocked(head, 0, head.effects[0])
				}
				c.q.pop()
			case pSimple:
				// One statement of the Query completed.
				if typ == 'C' {
					var eff []sqlplan.Effect
					if head.next < len(head.effects) {
						eff = head.effects[head.next]
					}
					ss.applyCommittedLocked(head, head.next, eff)
				}
				head.next++
			}
		}
		c.mu.Unlock()
		return m, nil
	case 'E':
		ss.endResult(nil, true)
		c.cur = nil
		c.mu.Lock()
		defer c.mu.Unlock()
		// The statement failed: the server aborts the innermost
		// transaction level, and skips the rest of the group.
		c.failedLocked()
		head := c.q.peek()
		if head == nil {
			return ss.readableError(m), nil
		}
		out := m
		c.copyOut = nil
		if head.refusal != nil {
			out = errorMessage(head.refusal)
		} else if head.copy != nil && head.copy.err != nil {
			out = errorMessage(head.copy.err)
		} else {
			out = ss.readableError(m)
		}
		if head.kind == pSimple {
			head.next = len(head.effects) + 1 // the rest of the Query is skipped
			return out, nil                   // the Query goes on to ReadyForQuery
		}
		// Extended protocol: PostgreSQL skips everything up to Sync.
		for h := c.q.peek(); h != nil && h.kind != pSync; h = c.q.peek() {
			c.q.pop()
		}
		return out, nil
	case 'Z':
		c.cur = nil
		if c.ddlSeen && len(m) > wire.HeaderLen && m[wire.HeaderLen] == 'I' {
			// The schema changed and the change is committed (or rolled
			// back): read the catalog again before the client, which waits
			// for this ReadyForQuery, sends its next statement.
			c.ddlSeen = false
			ctx, cancel := context.WithTimeout(context.Background(), unknownRelationRefresh)
			ss.prot.RefreshCatalog(ctx)
			cancel()
		}
		status := byte('I')
		if len(m) > wire.HeaderLen {
			status = m[wire.HeaderLen]
		}
		c.mu.Lock()
		// Pop through the Sync or Query this answers; anything before it
		// was answered already or skipped.
		var answered pending
		for h := c.q.peek(); h != nil; h = c.q.peek() {
			answered = c.q.pop()
			if answered.kind == pSync || answered.kind == pSimple {
				break
			}
		}
		ss.readyLocked(status, &answered)
		c.mu.Unlock()
		return m, nil
	}
	return m, nil
}

// rowDescription plans and rewrites a RowDescription: protected fields get
// their logical type.
func (ss *session) rowDescription(m []byte) ([]byte, error) {
	c := ss.cloak
	var rd pgproto3.RowDescription
	if err := rd.Decode(m[wire.HeaderLen:]); err != nil {
		return nil, wire.Protocol("invalid RowDescription from server")
	}
	c.mu.Lock()
	head := c.q.peek()
	// The client's formats of a described portal: the server reports the
	// ones pgcloak bound it with.
	var clientFormats []int16
	describesPortal := head != nil && head.kind == pDescribePortal && head.portal != nil
	if describesPortal {
		clientFormats = head.portal.resultFormats
	}
	rowsNow := head != nil && head.kind == pSimple // the rows follow: Query, FETCH
	var sql string
	if rowsNow {
		sql = head.sql
	}
	c.mu.Unlock()
	plan := &rowPlan{fields: make([]fieldPlan, len(rd.Fields))}
	p := ss.rs.prot.Load()
	refreshed := false
	for i := range rd.Fields {
		f := &rd.Fields[i]
		col := p.lookup(f.TableOID, f.TableAttributeNumber)
		if col == nil && f.DataTypeOID == byteaOID && f.TableOID != 0 && !refreshed && !p.knownUnprotected(f.TableOID) {
			// A relation the catalog did not show when it was last read
			// (created, or created again, since): read it again before
			// deciding that this bytea column is not protected.
			ctx, cancel := context.WithTimeout(context.Background(), unknownRelationRefresh)
			ss.prot.RefreshCatalog(ctx)
			cancel()
			refreshed = true
			p = ss.rs.prot.Load()
			col = p.lookup(f.TableOID, f.TableAttributeNumber)
			if col == nil {
				p.markUnprotected(f.TableOID)
			}
		}
		fp := fieldPlan{col: col, format: f.Format, srvFormat: f.Format}
		if col == nil && f.DataTypeOID == byteaOID {
			fp.scan, plan.scan = true, true
		}
		if describesPortal {
			fp.format = wire.FormatCode(clientFormats, i)
		}
		if col != nil {
			fp.acc = ss.access(col)
		}
		plan.fields[i] = fp
		f.Format = fp.format
		if col != nil {
			plan.protected = true
			typ := fp.acc.typ // the type the session sees: logical, masked, or bytea
			f.DataTypeOID = typ.OID()
			f.DataTypeSize = typ.Len()
			f.TypeModifier = typ.Typmod()
		}
	}
	plan.check()
	if rowsNow {
		if err := ss.deniedRows(plan, sql); err != nil {
			return nil, err
		}
	}
	out := m
	if plan.protected {
		var err error
		if out, err = rd.Encode(nil); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	head = c.q.peek()
	swallow := false
	if head != nil {
		switch head.kind {
		case pDescribeStmt:
			if head.stmt != nil {
				head.stmt.rows = plan
			}
			swallow = head.swallow
			c.q.pop()
		case pDescribePortal:
			if head.portal != nil {
				head.portal.rows = plan
			}
			swallow = head.swallow
			c.q.pop()
		case pSimple:
			// Simple Query, or FETCH: the rows follow right away.
			c.cur = plan
		}
	}
	c.mu.Unlock()
	if swallow {
		return nil, nil
	}
	return out, nil
}

// parameterDescription reports protected parameters with their logical type.
func (ss *session) parameterDescription(m []byte) ([]byte, error) {
	c := ss.cloak
	c.mu.Lock()
	head := c.q.peek()
	var st *statement
	swallow := false
	if head != nil && head.kind == pDescribeStmt {
		st, swallow = head.stmt, head.swallow
	}
	c.mu.Unlock()
	if swallow {
		return nil, nil // a Describe pgcloak injected to learn the rows
	}
	if st == nil || !st.protected {
		return m, nil
	}
	var pd pgproto3.ParameterDescription
	if err := pd.Decode(m[wire.HeaderLen:]); err != nil {
		return nil, wire.Protocol("invalid ParameterDescription from server")
	}
	for i, col := range st.params {
		if col == nil || i >= len(pd.ParameterOIDs) {
			continue
		}
		if i < len(st.declared) && st.declared[i] != 0 {
			pd.ParameterOIDs[i] = st.declared[i] // PostgreSQL echoes declared types
		} else {
			pd.ParameterOIDs[i] = col.typ.OID()
		}
	}
	return pd.Encode(nil)
}

// parameterStatus follows the settings the server reports.
func (ss *session) parameterStatus(m []byte) {
	var ps pgproto3.ParameterStatus
	if ps.Decode(m[wire.HeaderLen:]) != nil {
		return
	}
	ss.observeParameter(ps.Name, ps.Value)
}

// decryptRow rebuilds a DataRow with protected values decrypted and encoded
// in the format the client asked for, in the server loop's buffers.
func (ss *session) decryptRow(plan *rowPlan, m []byte) ([]byte, error) {
	c := ss.cloak
	out, err := ss.appendDecryptedRow(c.rowScratch[:0], &c.scratch, plan, m)
	if err != nil {
		return nil, err
	}
	if cap(out) <= 1<<20 {
		c.rowScratch = out
	}
	return out, nil
}

// appendDecryptedRow appends DataRow m rebuilt with protected values
// decrypted and encoded in the format the client asked for; on error it
// returns nil (dst's bytes are untouched). It is the one function that decrypts a row: the server
// loop calls it (decryptRow), and so do the workers that decrypt the rows
// of a wide result in parallel (pipeline.go), each with its own dst and sc.
// Whatever else it reads of the session (the committed value formats) does
// not change while a result's rows arrive.
func (ss *session) appendDecryptedRow(dst []byte, sc *rowScratch, plan *rowPlan, m []byte) ([]byte, error) {
	c := ss.cloak
	body := m[wire.HeaderLen:]
	if len(body) < 2 {
		return nil, wire.Protocol("invalid DataRow from server")
	}
	if plan.unreadable {
		for i, f := range plan.fields {
			if f.col == nil && f.format != f.srvFormat {
				return nil, &pgerr.Error{Code: pgerrcode.InternalError, Message: fmt.Sprintf("result column %d: pgcloak asked the server for it in binary, taking it for a protected column, and it is not one (a pgcloak bug: please report the statement)", i+1)}
			}
		}
	}
	nf := int(binary.BigEndian.Uint16(body))
	if nf != len(plan.fields) {
		return nil, wire.Protocol("DataRow does not match its RowDescription")
	}
	start := len(dst)
	out := append(dst, 'D', 0, 0, 0, 0, body[0], body[1])
	i := 2
	sess := &c.fmtCommitted
	verbatim := !sess.Transcodes()
	var t *tally // counts the row's values; set at the first
	for k := range nf {
		if i+4 > len(body) {
			return nil, wire.Protocol("invalid DataRow from server")
		}
		l := int(int32(binary.BigEndian.Uint32(body[i:])))
		i += 4
		if l < 0 {
			out = append(out, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		if i+l > len(body) {
			return nil, wire.Protocol("invalid DataRow from server")
		}
		v := body[i : i+l]
		i += l
		f := &plan.fields[k]
		if f.col == nil {
			out = binary.BigEndian.AppendUint32(out, uint32(l))
			out = append(out, v...)
			continue
		}
		if f.verbatim && verbatim {
			// The plaintext goes straight into the row after its length.
			// Whatever does not decrypt here (not ciphertext, a key
			// version not loaded, a value that does not authenticate)
			// takes the general path below, which decides what it is.
			if r, version, err := f.col.keyring.DecryptVersion(append(out, 0, 0, 0, 0), v, f.col.id); err == nil {
				if t == nil {
					if t, err = sc.tally(ss, plan.fields); err != nil {
						return nil, err
					}
				}
				t.add(k, version)
				binary.BigEndian.PutUint32(r[len(out):], uint32(len(r)-len(out)-4))
				out = r
				continue
			}
		}
		var err error
		if !f.acc.decrypts {
			if out, err = ss.outputStored(out, sc, plan.fields, k, v, sess); err != nil {
				return nil, err
			}
			continue
		}
		plain, err := ss.decryptValue(sc, f, v)
		if err == errForgotten {
			out = append(out, 0xff, 0xff, 0xff, 0xff) // its subject was forgotten: NULL
			continue
		}
		if err != nil {
			return nil, err
		}
		if out, err = ss.output(out, sc, plan.fields, k, plain, sess); err != nil {
			return nil, err
		}
	}
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-1))
	return out, nil
}

// decryptValue returns the canonical plaintext of one protected value as the
// server sent it (bytea text form "\x…" or binary), in sc.
func (ss *session) decryptValue(sc *rowScratch, f *fieldPlan, v []byte) ([]byte, error) {
	raw := v
	if f.srvFormat == 0 {
		var err error
		if sc.hex, err = decodeByteaText(sc.hex[:0], v); err != nil {
			return nil, columnDataError(f.col, err)
		}
		raw = sc.hex
	}
	sc.version = 0
	h, herr := crypto.ParseHeader(raw) // once: the key version is the audit log's
	if herr != nil || len(raw) < h.Mode.Overhead() {
		if f.col.migrating {
			return raw, nil // not yet encrypted: the stored bytes are the plaintext
		}
		return nil, columnDataError(f.col, errors.New("value is not pgcloak ciphertext (written around pgcloak?)"))
	}
	plain, err := ss.openValue(f.col, sc.plain[:0], raw, h)
	if err != nil {
		return nil, err
	}
	sc.plain = plain
	sc.version = h.KeyVersion
	return plain, nil
}

// decodeByteaText appends the bytes of a bytea in text output form: hex
// ("\x…", bytea_output = hex) or escape (bytea_output = escape: octal
// "\nnn" and "\\" escapes, other bytes as themselves).
func decodeByteaText(dst, v []byte) ([]byte, error) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		n := len(dst)
		dst = slices.Grow(dst, (len(v)-2)/2)[:n+(len(v)-2)/2]
		if _, err := hex.Decode(dst[n:], v[2:]); err != nil {
			return dst[:n], err
		}
		return dst, nil
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b != '\\' {
			dst = append(dst, b)
			continue
		}
		switch {
		case i+1 < len(v) && v[i+1] == '\\':
			dst = append(dst, '\\')
			i++
		case i+3 < len(v) && isOctal(v[i+1]) && isOctal(v[i+2]) && isOctal(v[i+3]):
			dst = append(dst, (v[i+1]-'0')<<6|(v[i+2]-'0')<<3|(v[i+3]-'0'))
			i += 3
		default:
			return dst, errors.New("invalid bytea escape sequence")
		}
	}
	return dst, nil
}

func isOctal(b byte) bool { return b >= '0' && b <= '7' }

// isDDLTag reports whether a CommandComplete tag (NUL-terminated) is one of
// the schema changes that can change what the rules point at.
func isDDLTag(tag []byte) bool {
	for _, p := range ddlTags {
		if len(tag) >= len(p) && string(tag[:len(p)]) == p {
			return true
		}
	}
	return false
}

var ddlTags = [...]string{"CREATE TABLE", "ALTER TABLE", "DROP TABLE", "CREATE VIEW", "ALTER VIEW", "DROP VIEW",
	"CREATE MATERIALIZED VIEW", "ALTER MATERIALIZED VIEW", "DROP MATERIALIZED VIEW", "CREATE SCHEMA", "ALTER SCHEMA",
	"DROP SCHEMA", "IMPORT FOREIGN SCHEMA", "CREATE FOREIGN TABLE", "DROP FOREIGN TABLE"}

// unknownRelationRefresh bounds the catalog refresh that a result column of
// an unknown relation waits for.
const unknownRelationRefresh = 3 * time.Second

// scanRow refuses a DataRow (m, header included) in which an unattributed
// bytea field holds pgcloak ciphertext: a function, an expression or a
// relation pgcloak does not know returned a protected value, and handing its
// ciphertext to the application as bytea would be a silent wrong answer.
func scanRow(plan *rowPlan, m []byte) error {
	body := m[wire.HeaderLen:]
	if len(body) < 2 {
		return wire.Protocol("invalid DataRow from server")
	}
	nf := int(binary.BigEndian.Uint16(body))
	if nf != len(plan.fields) {
		return wire.Protocol("DataRow does not match its RowDescription")
	}
	i := 2
	for k := range nf {
		if i+4 > len(body) {
			return wire.Protocol("invalid DataRow from server")
		}
		l := int(int32(binary.BigEndian.Uint32(body[i:])))
		i += 4
		if l < 0 {
			continue
		}
		if i+l > len(body) {
			return wire.Protocol("invalid DataRow from server")
		}
		if f := plan.fields[k]; f.scan && looksLikeCiphertext(body[i:i+l], f.srvFormat) {
			return unattributedError(k)
		}
		i += l
	}
	return nil
}

// looksLikeCiphertext reports whether a bytea value, in the format it travels
// in, starts with the pgcloak header (magic, format version, a known mode).
func looksLikeCiphertext(v []byte, format int16) bool {
	if format == 1 {
		return crypto.HasHeader(v)
	}
	if len(v) >= 2+2*crypto.HeaderPrefixLen && v[0] == '\\' && v[1] == 'x' {
		var raw [crypto.HeaderPrefixLen]byte
		if _, err := hex.Decode(raw[:], v[2:2+2*crypto.HeaderPrefixLen]); err == nil {
			return crypto.HasHeader(raw[:])
		}
		return false
	}
	// bytea_output = escape: decode just the start.
	raw, _ := decodeByteaText(nil, v[:min(len(v), 4*crypto.HeaderPrefixLen)])
	return crypto.HasHeader(raw)
}

func unattributedError(field int) error {
	return &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("result column %d holds pgcloak ciphertext that pgcloak cannot attribute to a protected column "+
		"(it comes from a function, an expression or a relation pgcloak does not know), so it cannot be decrypted and is not passed on as data; "+
		"select the protected column from its table, or from a view that selects it plainly", field+1)}
}
