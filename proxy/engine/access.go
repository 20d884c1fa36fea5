package engine

// Access rules: what a session may do with each protected column is
// decided once, when the session starts (startGuard), and applied where
// statements and results are planned:
//
//   - statements (Query, Parse, PREPARE, COPY) that return, store into or
//     compare a column the session may not read, write or search are
//     refused with 42501 before anything reaches the server (checkAccess);
//   - a RowDescription gives each protected field its outcome (fieldPlan.acc)
//     and the type the client sees: the logical type, the mask's, or bytea
//     for ciphertext;
//   - each value then ends in one call, output (decrypted values) or
//     outputStored (ciphertext, or a denial the analyzer could not see),
//     which also counts it for the audit log and the metrics (tally.go).
//
// A denied column that only the server's RowDescription shows (a statement
// the analyzer cannot see through) cannot be refused before the statement
// runs: a Bind or Execute of a statement or portal described that way is
// refused; rows that arrive end the session with FATAL 42501 rather than
// let the client and the server disagree about the statement.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/copyfmt"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/sqlplan"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// Guard is what a Protector applies to sessions beside encryption.
type Guard struct {
	// Policy decides each session's access; nil is the open policy (every
	// role reads, writes and searches every protected column).
	Policy *access.Policy
	// Audit, when set, records every result with protected values and every
	// denial.
	Audit *audit.Writer
}

// SetGuard installs g for the sessions that start from now on. Call it
// before the protection is installed.
func (p *Protector) SetGuard(g Guard) { p.guard.Store(&g) }

// SetPolicy replaces the access rules of the sessions that start from now
// on (a reload), keeping the audit log.
func (p *Protector) SetPolicy(policy *access.Policy) {
	g := Guard{Policy: policy}
	if old := p.guard.Load(); old != nil {
		g.Audit = old.Audit
	}
	p.guard.Store(&g)
}

// UseMetrics makes sessions count protected values and refusals in m.
// Call it before serving.
func (p *Protector) UseMetrics(m *Metrics) { p.metrics.Store(m) }

// CountAuditLost counts audit records lost (the audit log's Lost hook).
func (p *Protector) CountAuditLost(n int) {
	if m := p.metrics.Load(); m != nil {
		m.AuditLost.Add(float64(n))
	}
}

// colAccess is what one session may do with one protected column.
type colAccess struct {
	access.Decision
	col *column
	// name is col as schema.table.column, for audit records.
	name string
	// typ is the type the client sees in RowDescription.
	typ *values.Type
	// decrypts: the values are decrypted (plaintext, masked).
	decrypts bool
	// ctr are the metrics of the column for the session's role (nil: none).
	ctr *colCounters
}

// sessionGuard is a session's access decisions, audit identity and the
// tally of the result being sent.
type sessionGuard struct {
	Guard
	// Metrics, when set, counts values and refusals.
	Metrics *Metrics
	role    string
	open    bool
	cols    map[*column]*colAccess
	// audit is the identity the session's records share.
	audit audit.Session
	// t is the result being sent (server loop only).
	t tally
}

var byteaType, _ = values.Lookup("bytea")

// errAccessDenied marks the refusals of access rules: shadow mode never
// lets them through.
var errAccessDenied = errors.New("access denied by an access rule")

// startGuard decides the session's access to every protected column. It
// runs in Started: the role is the startup user, now authenticated by the
// server; nothing the session does later (SET ROLE, SET SESSION
// AUTHORIZATION) changes it.
func (ss *session) startGuard() error {
	g := &sessionGuard{role: ss.info.User}
	if pg := ss.prot.guard.Load(); pg != nil {
		g.Guard = *pg
	}
	g.Metrics = ss.prot.metrics.Load()
	g.open = g.Policy == nil || g.Policy.Open()
	g.audit = audit.Session{ID: fmt.Sprintf("%x.%x", ss.started.Unix(), ss.backendPID), BackendPID: ss.backendPID, Role: ss.info.User,
		ApplicationName: ss.info.ApplicationName, Client: ss.info.ClientAddr, Database: ss.info.Database}
	facts := access.Session{Role: ss.info.User, ApplicationName: ss.info.ApplicationName, CertSubject: ss.info.CertSubject, CertCN: ss.info.CertCN}
	prot := ss.rs.prot.Load()
	g.cols = make(map[*column]*colAccess, len(prot.rules.cols))
	for _, col := range prot.rules.cols {
		d := access.Decision{Read: access.Plaintext, Write: true, Search: true, Rule: "no access section"}
		if g.Policy != nil {
			var err error
			if d, err = g.Policy.Decide(facts, access.Column{Schema: col.rule.Schema, Table: col.rule.Table, Name: col.rule.Name, Type: col.typ}); err != nil {
				return &pgerr.Error{Code: pgerrcode.ConfigFileError, Message: err.Error(), Err: err}
			}
		}
		ca := &colAccess{Decision: d, col: col, name: col.String(), typ: col.typ, decrypts: d.Read == access.Plaintext || d.Read == access.Masked}
		switch d.Read {
		case access.Masked:
			ca.typ = d.Mask.Type()
		case access.Ciphertext:
			ca.typ = byteaType
		}
		if g.Metrics != nil {
			ca.ctr = g.Metrics.column(ca.name, g.role)
		}
		g.cols[col] = ca
	}
	ss.guard = g
	return nil
}

// access returns what the session may do with col.
func (ss *session) access(col *column) *colAccess {
	if ca := ss.guard.cols[col]; ca != nil {
		return ca
	}
	// Columns are made once, with the rules: every one is in cols. Should
	// one not be, it is denied.
	return &colAccess{Decision: access.Decision{Read: access.Deny, Rule: "unknown column"}, col: col, typ: col.typ}
}

// denied is the 42501 refusal of verb (read, write, search) on col.
func (ss *session) denied(ca *colAccess, verb string) error {
	return &pgerr.Error{Code: pgerrcode.InsufficientPrivilege, Err: errAccessDenied,
		Message: fmt.Sprintf("permission denied for column %s: role %q may not %s it (%s)", ca.col, ss.guard.role, verb, ca.Rule),
		Hint:    "pgcloak check --role " + ss.guard.role + " shows the role's access to each protected column; access rules are in the access section of pgcloak's configuration"}
}

// checkAccess refuses a text whose statements return, store into or
// compare protected columns the session may not read, write or search. It
// records the denial. sql is the text, for the audit record.
func (ss *session) checkAccess(a *sqlplan.Analysis, sql string) error {
	if a == nil || ss.guard.open {
		return nil
	}
	for i := range a.Statements {
		st := &a.Statements[i]
		if err := ss.checkStatement(st, sql); err != nil {
			return err
		}
		for _, e := range st.Effects {
			if e.Kind == sqlplan.EffectPrepare && e.Statement != nil {
				if err := ss.checkStatement(e.Statement, sql); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkStatement is checkAccess for one statement.
func (ss *session) checkStatement(st *sqlplan.Statement, sql string) error {
	deny := func(pc *sqlplan.Column, verb string) error {
		ca := ss.access(ss.cloak.p.byPlan[pc])
		ss.recordDenial(ca, verb, st.Kind, sql)
		return ss.denied(ca, verb)
	}
	for _, pc := range st.Reads {
		if col := ss.cloak.p.byPlan[pc]; col != nil && ss.access(col).Read == access.Deny {
			return deny(pc, "read")
		}
	}
	for _, pc := range st.Writes {
		if col := ss.cloak.p.byPlan[pc]; col != nil && !ss.access(col).Write {
			return deny(pc, "write")
		}
	}
	for _, pc := range st.Compares {
		if col := ss.cloak.p.byPlan[pc]; col != nil && !ss.access(col).Search {
			return deny(pc, "search")
		}
	}
	if cp := st.Copy; cp != nil {
		binaryCopy := false
		for _, o := range cp.Options {
			binaryCopy = binaryCopy || o.Name == "format" && o.Value == "binary"
		}
		for _, pc := range cp.Protected {
			col := ss.cloak.p.byPlan[pc]
			if col == nil {
				continue
			}
			ca := ss.access(col)
			switch {
			case cp.From && !ca.Write:
				return deny(pc, "write")
			case !cp.From && ca.Read == access.Deny:
				return deny(pc, "read")
			case !cp.From && ca.Read == access.Masked && ca.Mask.Null():
				return &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("COPY TO cannot show %s as NULL (%s: mask null); select it with SELECT, or export without it", col, ca.Rule)}
			case !cp.From && binaryCopy && ca.typ != col.typ:
				return &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: fmt.Sprintf("COPY TO in binary format cannot show %s as %s (%s, %s): a binary COPY carries no types; use FORMAT text or csv", col, ca.typ, ca.Outcome(), ca.Rule)}
			}
		}
	}
	return nil
}

// describedDenial returns the first denied field of a plan the server
// described, or nil.
func describedDenial(rp *rowPlan) *colAccess {
	if rp == nil {
		return nil
	}
	for _, f := range rp.fields {
		if f.acc != nil && f.acc.Read == access.Deny {
			return f.acc
		}
	}
	return nil
}

// checkDescribed refuses to bind or execute a statement or portal whose
// description shows a column the session may not read.
func (ss *session) checkDescribed(rp *rowPlan, sql string) error {
	ca := describedDenial(rp)
	if ca == nil {
		return nil
	}
	ss.recordDenial(ca, "read", "", sql)
	return ss.denied(ca, "read")
}

// deniedLate is the detail of a denial found only once the statement runs.
const deniedLate = "pgcloak could not see before the statement ran that it returns this column (a view, function or cursor it cannot see through), so the session ends rather than return the rows"

// deniedRows ends the session when rows the session may not read are
// described to arrive now (a simple Query): the statement already runs.
func (ss *session) deniedRows(rp *rowPlan, sql string) error {
	err := ss.checkDescribed(rp, sql)
	if err != nil {
		err.(*pgerr.Error).Detail = deniedLate
	}
	return err
}

// output appends field k of a row, its length and value, from the decrypted
// canonical plaintext, as the session may see it: the value in the client's
// format, or masked. s shapes the value's text form.
func (ss *session) output(dst []byte, sc *rowScratch, fields []fieldPlan, k int, plain []byte, s *values.Session) ([]byte, error) {
	f := &fields[k]
	if err := sc.count(ss, fields, k, sc.version); err != nil {
		return dst, err
	}
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	out, null, err := ss.appendValue(dst, sc, f.acc, plain, f.format, s)
	if err != nil {
		return dst[:lenAt], err
	}
	if null {
		return append(dst[:lenAt], 0xff, 0xff, 0xff, 0xff), nil
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out, nil
}

// appendValue appends the value the session sees of a decrypted plaintext
// in format; null: the mask shows NULL (nothing appended).
func (ss *session) appendValue(dst []byte, sc *rowScratch, ca *colAccess, plain []byte, format int16, s *values.Session) (out []byte, null bool, err error) {
	col := ca.col
	if ca.Read == access.Plaintext {
		out, err = col.typ.Encode(dst, plain, format, s)
		if err != nil {
			return dst, false, columnValueError(col, err)
		}
		return out, false, nil
	}
	m := ca.Mask
	switch {
	case m.Null():
		return dst, true, nil
	case m.Token():
		if sc.mask, err = col.keyring.Token(sc.mask[:0], plain); err != nil {
			return dst, false, keyError(col, err)
		}
	default:
		sc.mask = m.Apply(sc.mask[:0], plain)
	}
	if out, err = ca.typ.Encode(dst, sc.mask, format, s); err != nil {
		return dst, false, columnValueError(col, err)
	}
	return out, false, nil
}

// outputStored appends field k of a row whose outcome does not decrypt:
// the stored ciphertext as bytea (v as the server sent it, in srvFormat),
// or, for a column the session may not read, the error that ends the
// session.
func (ss *session) outputStored(dst []byte, sc *rowScratch, fields []fieldPlan, k int, v []byte, s *values.Session) ([]byte, error) {
	f := &fields[k]
	if f.acc.Read == access.Deny {
		ss.recordDenial(f.acc, "read", "", "")
		err := ss.denied(f.acc, "read").(*pgerr.Error)
		err.Detail = deniedLate
		return dst, err
	}
	raw := v
	if f.srvFormat == 0 {
		var err error
		if sc.hex, err = decodeByteaText(sc.hex[:0], v); err != nil {
			return dst, columnDataError(f.col, err)
		}
		raw = sc.hex
	}
	if err := sc.count(ss, fields, k, keyVersionOf(raw)); err != nil {
		return dst, err
	}
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	if f.format == f.srvFormat {
		dst = append(dst, v...) // as the server sent it: bytea in the session's bytea_output, or raw
	} else {
		dst, _ = byteaType.Encode(dst, raw, f.format, s)
	}
	binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	return dst, nil
}

// deniesRead reports whether the result has a column the session may not
// read: its rows are decrypted by the server loop, which records the
// denial (pipeline.go).
func (rp *rowPlan) deniesRead() bool {
	for _, f := range rp.fields {
		if f.acc != nil && f.acc.Read == access.Deny {
			return true
		}
	}
	return false
}

// keyVersionOf reads the key version of a pgcloak value (0 if it is none).
func keyVersionOf(raw []byte) uint32 {
	if h, err := crypto.ParseHeader(raw); err == nil {
		return h.KeyVersion
	}
	return 0
}

// copyOutput is the value of protected field i of a COPY TO as the session
// may see it, in the COPY's format (without framing).
func (ss *session) copyOutput(dst []byte, st *copyState, i int, v []byte) ([]byte, error) {
	f := &st.fields[i]
	if !f.acc.decrypts {
		if err := ss.count(st.fields, i, keyVersionOf(v)); err != nil {
			return dst, err
		}
		return byteaType.Encode(dst, v, valueFormat(st.cfg.Options), &st.fmt)
	}
	sc := &ss.cloak.scratch
	plain, err := ss.decryptValue(sc, &fieldPlan{col: f.col, format: 1, srvFormat: 1}, v)
	if err == errForgotten {
		return dst, copyfmt.ErrNull // its subject was forgotten: NULL
	}
	if err != nil {
		return dst, err
	}
	if err := ss.count(st.fields, i, sc.version); err != nil {
		return dst, err
	}
	out, _, err := ss.appendValue(dst, sc, f.acc, plain, valueFormat(st.cfg.Options), &st.fmt)
	return out, err
}

// copyFields are the field plans of a COPY TO's protected columns.
func (ss *session) copyFields(cols []*column) []fieldPlan {
	fields := make([]fieldPlan, len(cols))
	for i, col := range cols {
		if col != nil {
			fields[i] = fieldPlan{col: col, acc: ss.access(col), format: 1, srvFormat: 1}
		}
	}
	return fields
}
