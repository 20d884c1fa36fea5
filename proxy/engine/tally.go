package engine

import (
	"bytes"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/audit"
	"github.com/pgcloak/pgcloak/proxy/access"
)

// tally counts what one result (a Query's statement, an Execute, a COPY TO)
// delivers per protected field: the audit record and the metrics are made
// from it when the result ends. It belongs to the server loop.
type tally struct {
	// fields is the plan of the result being counted; nil: none.
	fields []fieldPlan
	// admitted: the audit log reserved room for the result's record.
	admitted bool
	values   []int64
	versions [][]uint32
}

// count counts one value of field k of fields, decrypted under key
// version (0: not pgcloak ciphertext), in the session's tally.
func (ss *session) count(fields []fieldPlan, k int, version uint32) error {
	t, err := ss.tallyOf(fields)
	if err != nil {
		return err
	}
	t.add(k, version)
	return nil
}

// tallyOf returns the session's tally of the result with fields. The first
// value of a result starts its tally and, with an audit log, reserves room
// for its record: when the log cannot take it (audit.on_failure: block) the
// value is not sent and the error ends the session.
func (ss *session) tallyOf(fields []fieldPlan) (*tally, error) {
	t := &ss.guard.t
	if t.fields != nil && &t.fields[0] == &fields[0] {
		return t, nil
	}
	if t.fields != nil {
		ss.endResult(nil, false)
	}
	if w := ss.guard.Audit; w != nil {
		ok, err := w.Admit()
		if err != nil {
			ss.guard.refused("", "audit_unavailable")
			return nil, err
		}
		t.admitted = ok
	}
	t.reset(fields)
	return t, nil
}

// reset makes t an empty tally of fields.
func (t *tally) reset(fields []fieldPlan) {
	t.fields = fields
	if cap(t.values) < len(fields) {
		t.values = make([]int64, len(fields))
	}
	t.values = t.values[:len(fields)]
	clear(t.values)
	for len(t.versions) < len(fields) {
		t.versions = append(t.versions, nil)
	}
	for i := range fields {
		t.versions[i] = t.versions[i][:0]
	}
}

// add counts a value of field k under key version (0: none).
func (t *tally) add(k int, version uint32) {
	t.values[k]++
	if vs := t.versions[k]; version != 0 && (len(vs) == 0 || vs[len(vs)-1] != version) {
		t.addVersion(k, version)
	}
}

// addVersion notes that field k holds a value under version.
func (t *tally) addVersion(k int, version uint32) {
	if !containsVersion(t.versions[k], version) {
		t.versions[k] = append(t.versions[k], version)
	}
}

func containsVersion(vs []uint32, v uint32) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// countAll adds u, a worker's tally of a batch of the result with
// u.fields, to the session's tally, as if its values were counted one by
// one now.
func (ss *session) countAll(u *tally) error {
	counted := false
	for _, n := range u.values {
		counted = counted || n > 0
	}
	if !counted {
		return nil
	}
	t, err := ss.tallyOf(u.fields)
	if err != nil {
		return err
	}
	for k, n := range u.values {
		t.values[k] += n
		for _, v := range u.versions[k] {
			t.addVersion(k, v)
		}
	}
	return nil
}

// endResult ends the result being counted: tag is its CommandComplete (nil
// for PortalSuspended, an error, or the session's end: incomplete). It
// writes the audit record and adds to the metrics.
func (ss *session) endResult(tag []byte, incomplete bool) {
	g := ss.guard
	if g == nil || g.t.fields == nil {
		return
	}
	t := &g.t
	var cols []audit.Column
	if g.Audit != nil {
		cols = make([]audit.Column, 0, len(t.fields))
	}
	for i, f := range t.fields {
		if f.acc == nil {
			continue
		}
		n := t.values[i]
		if f.acc.ctr != nil && n > 0 {
			f.acc.ctr.add(f.acc.Read, n)
		}
		if g.Audit == nil {
			continue
		}
		c := audit.Column{Column: f.acc.name, Outcome: f.acc.Read.String(), Values: n, KeyVersions: versionList(t.versions[i])}
		if f.acc.Mask != nil {
			c.Mask = f.acc.Mask.Spec().String()
		}
		cols = append(cols, c)
	}
	if g.Audit != nil {
		cmd, rows := commandTag(tag)
		g.Audit.Commit(&audit.Event{Session: &g.audit, Time: time.Now(), Event: audit.EventRead, SQL: ss.resultSQL(),
			Command: cmd, Rows: rows, Columns: cols, Incomplete: incomplete}, t.admitted)
	}
	t.fields, t.admitted = nil, false
}

// oneVersion holds a shared one-element list per key version: most results
// hold values of one version, and the writer only reads the lists.
var oneVersion sync.Map // uint32 → []uint32

// versionList is a list of the versions vs that the caller may keep (vs
// is reused).
func versionList(vs []uint32) []uint32 {
	switch len(vs) {
	case 0:
		return nil
	case 1:
		if l, ok := oneVersion.Load(vs[0]); ok {
			return l.([]uint32)
		}
		l, _ := oneVersion.LoadOrStore(vs[0], []uint32{vs[0]})
		return l.([]uint32)
	}
	return append([]uint32(nil), vs...)
}

// resultSQL is the text of the statement whose result is being sent.
func (ss *session) resultSQL() string {
	c := ss.cloak
	c.mu.Lock()
	defer c.mu.Unlock()
	head := c.q.peek()
	switch {
	case head == nil:
		return ""
	case head.kind == pSimple:
		return head.sql
	case head.portal != nil && head.portal.stmt != nil:
		return head.portal.stmt.text
	}
	return ""
}

// commandTag splits a CommandComplete tag ("SELECT 3\x00", "INSERT 0 1")
// into its command and row count.
func commandTag(tag []byte) (string, int64) {
	tag = bytes.TrimRight(tag, "\x00")
	cmd, rest, _ := bytes.Cut(tag, []byte(" "))
	if i := bytes.LastIndexByte(rest, ' '); i >= 0 {
		rest = rest[i+1:]
	}
	var n int64
	for _, d := range rest {
		if d < '0' || d > '9' {
			return commandName(cmd), 0
		}
		n = n*10 + int64(d-'0')
	}
	return commandName(cmd), n
}

// commandName is a tag's command as a string, without allocating for the
// usual ones.
func commandName(cmd []byte) string {
	for _, c := range [...]string{"SELECT", "FETCH", "COPY", "INSERT", "UPDATE", "DELETE", "MERGE"} {
		if string(cmd) == c {
			return c
		}
	}
	return string(cmd)
}

// auditing reports whether the session writes audit records.
func (ss *session) auditing() bool { return ss.guard != nil && ss.guard.Audit != nil }

// recordDenial writes the audit record of a denial and counts it. command
// and sql describe the statement when known.
func (ss *session) recordDenial(ca *colAccess, verb, command, sql string) {
	g := ss.guard
	g.refused(ca.name, verb+"_denied")
	if g.Audit == nil {
		return
	}
	g.Audit.Record(&audit.Event{Session: &g.audit, Time: time.Now(), Event: audit.EventDenied, SQL: sql, Command: command,
		Columns: []audit.Column{{Column: ca.name, Outcome: "denied", Access: verb}}, SQLState: "42501"})
}

// refused counts a refusal for the metrics.
func (g *sessionGuard) refused(column, reason string) {
	if g.Metrics != nil {
		g.Metrics.refusals.WithLabelValues(column, g.role, reason).Inc()
	}
}

// countEncrypted counts a value encrypted for col.
func (ss *session) countEncrypted(col *column) {
	if g := ss.guard; g != nil && g.Metrics != nil {
		if ca := g.cols[col]; ca != nil && ca.ctr != nil {
			ca.ctr.encrypted.Inc()
		}
	}
}

// Metrics are the engine's Prometheus series: protected values by column,
// role and outcome, and refusals by reason.
type Metrics struct {
	values   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	// AuditLost counts audit records lost (audit.on_failure: continue).
	AuditLost prometheus.Counter
	cols      sync.Map // role + "\x00" + column → *colCounters
}

// NewMetrics registers the engine's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		values: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_protected_values_total",
			Help: "Values of protected columns by column, role and outcome: plaintext (decrypted), masked, ciphertext (sent as stored), encrypted (written).",
		}, []string{"column", "role", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_access_refusals_total",
			Help: "Statements and results refused by access rules and the audit log, by column, role and reason (read_denied, write_denied, search_denied, audit_unavailable).",
		}, []string{"column", "role", "reason"}),
		AuditLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgcloak_audit_records_lost_total",
			Help: "Audit records dropped because the log could not be written (audit.on_failure: continue).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.values, m.refusals, m.AuditLost)
	}
	return m
}

// colCounters are the counters of one column and role.
type colCounters struct {
	plaintext, masked, ciphertext, encrypted prometheus.Counter
}

func (m *Metrics) column(column, role string) *colCounters {
	key := role + "\x00" + column
	if c, ok := m.cols.Load(key); ok {
		return c.(*colCounters)
	}
	c := &colCounters{
		plaintext:  m.values.WithLabelValues(column, role, "plaintext"),
		masked:     m.values.WithLabelValues(column, role, "masked"),
		ciphertext: m.values.WithLabelValues(column, role, "ciphertext"),
		encrypted:  m.values.WithLabelValues(column, role, "encrypted"),
	}
	actual, _ := m.cols.LoadOrStore(key, c)
	return actual.(*colCounters)
}

func (c *colCounters) add(r access.Read, n int64) {
	switch r {
	case access.Plaintext:
		c.plaintext.Add(float64(n))
	case access.Masked:
		c.masked.Add(float64(n))
	case access.Ciphertext:
		c.ciphertext.Add(float64(n))
	}
}
