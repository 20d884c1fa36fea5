package engine

// The scripted harness of the engine's tests: one session of the engine,
// driven the way the relay drives it (proxy/session.go: the Wants check, then
// the message), with static keys and a catalog made from table definitions,
// no database. A test reads as the conversation it checks:
//
//	e := newEngine(t)
//	e.client(&pgproto3.Query{String: "INSERT INTO people (id, name) VALUES (1, 'Alice Liddell')"}).
//		want(`Query "INSERT INTO people (id, name) VALUES (1, ⟨name=Alice Liddell⟩)"`)
//	e.server(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}, ready('I')).
//		want(`CommandComplete "INSERT 0 1"`, `ReadyForQuery I`)
//
// client returns what the engine forwarded to the server, server what it
// delivered to the client, each message rendered on one line (render). A
// protected value is shown as ⟨column=plaintext⟩: the harness found pgcloak
// ciphertext there and decrypted it with that column's identity, so a line
// with ⟨…⟩ says both that the value was encrypted and for which column. Every
// client step also checks that the plaintext of each ⟨…⟩ it forwarded is not
// in the bytes sent to the server.
//
// render_test.go renders the messages; messages_test.go has the short
// constructors of the messages the tests send.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/pgerr"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// The fixture database "app": people holds four protected columns (secret's
// logical type is bytea), accounts two, one of which shares people.email's
// search group.
const (
	peopleOID   = 16401
	accountsOID = 16402

	oidBytea = 17
	oidInt4  = 23
	oidText  = 25
	oidDate  = 1082
)

var fixtureTables = []catalog.StaticTable{
	{Schema: "public", Name: "people", OID: peopleOID, Columns: []string{"id", "name", "email", "born", "note", "avatar", "secret"}},
	{Schema: "public", Name: "accounts", OID: accountsOID, Columns: []string{"id", "email", "pin"}},
}

// physicalTypes are the types the server describes the columns with:
// protected columns are bytea.
var physicalTypes = map[string]uint32{
	"id": oidInt4, "name": oidBytea, "email": oidBytea, "born": oidBytea, "note": oidText, "avatar": oidBytea, "secret": oidBytea, "pin": oidBytea,
}

func fixtureConfig() *config.Config {
	return &config.Config{Tables: map[string]map[string]config.Column{
		"public.people": {
			"name":   {Type: "text", Key: "pii"},
			"email":  {Type: "text", Key: "pii", Mode: config.ModeDeterministic, SearchGroup: "email"},
			"born":   {Type: "date", Key: "pii"},
			"secret": {Type: "bytea", Key: "pii"},
		},
		"public.accounts": {
			"email": {Type: "text", Key: "pii", Mode: config.ModeDeterministic, SearchGroup: "email"},
			"pin":   {Type: "int4", Key: "pii", Mode: config.ModeDeterministic},
		},
	}}
}

// engineTest is one session of the engine and the two peers it talks to.
type engineTest struct {
	t    testing.TB
	prot *Protector
	hook proxy.Hook
	ss   *session
	keys crypto.StaticKeyrings
	// rules are the fixture's protected columns (the ones the keys decrypt
	// for rendering).
	rules []*column

	up, down           bytes.Buffer  // what the engine wrote, not yet read by the test
	toServer, toClient *bufio.Writer // the relay's writers toward each peer
	sent               bytes.Buffer  // every byte sent to the server
}

// fixture is what a session is made from: the configuration and the
// database's tables.
type fixture struct {
	cfg    *config.Config
	tables []catalog.StaticTable
	// settings answer Started's settings query (nil: PostgreSQL's
	// defaults).
	settings []pgproto3.BackendMessage
	// access, when set, are the access rules of the session's role.
	access *config.Access
	// metrics, when set, count the session's values.
	metrics *Metrics
}

type engineOption func(*fixture)

// shadow runs the session in shadow mode (refusals logged, let through).
func shadow(f *fixture) { f.cfg.Shadow = true }

// newEngine starts a session of user alice to database app: startup
// ParameterStatus messages, then Started's settings query, answered as
// PostgreSQL 15 answers it with its defaults.
func newEngine(t testing.TB, opts ...engineOption) *engineTest {
	t.Helper()
	fx := &fixture{cfg: fixtureConfig(), tables: fixtureTables}
	for _, o := range opts {
		o(fx)
	}
	kr := crypto.NewKeyring("pii")
	dek := make([]byte, crypto.DEKSize)
	for i := range dek {
		dek[i] = byte(i * 7)
	}
	if err := kr.Add(1, dek); err != nil {
		t.Fatal(err)
	}
	keys := crypto.StaticKeyrings{"pii": kr}
	rs, err := NewRules(fx.cfg, keys)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.NewStaticSnapshot("app", rs.loader.Rules, fx.tables)
	if err != nil {
		t.Fatal(err)
	}
	prot, err := NewProtector("host=db user=pgcloak dbname=app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := prot.Ready(); ok {
		t.Fatal("a protector without a catalog reports ready")
	}
	if fx.access != nil {
		fx.cfg.Access = fx.access
		policy, err := access.New(fx.cfg)
		if err != nil {
			t.Fatal(err)
		}
		prot.SetGuard(Guard{Policy: policy})
	}
	if fx.metrics != nil {
		prot.UseMetrics(fx.metrics)
	}
	prot.Install(rs.protection(snap))
	if ok, why := prot.Ready(); !ok {
		t.Fatalf("not ready: %s", why)
	}
	hook, err := prot.Session(proxy.SessionInfo{User: "alice", Database: "app", ClientAddr: "192.0.2.1:5000"})
	if err != nil || hook == nil {
		t.Fatalf("Session: %v, %v", hook, err)
	}
	e := &engineTest{t: t, prot: prot, hook: hook, ss: hook.(*session), keys: keys}
	for _, r := range rs.loader.Rules {
		e.rules = append(e.rules, rs.cols[r])
	}
	e.toServer, e.toClient = bufio.NewWriter(&e.up), bufio.NewWriter(&e.down)

	for _, ps := range [][2]string{{"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"TimeZone", "UTC"},
		{"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}, {"server_version", "15.8"}} {
		e.hook.StartupMessage(wire.ParameterStatus, encode(t, &pgproto3.ParameterStatus{Name: ps[0], Value: ps[1]}))
	}
	if fx.settings == nil {
		fx.settings = []pgproto3.BackendMessage{
			rowDescription(text("current_setting"), text("current_setting"), text("current_setting")),
			dataRow(`"$user", public`, "hex", "1"),
			complete("SELECT 1"),
			ready('I'),
		}
	}
	x := &scriptedExchange{t: t}
	for _, m := range fx.settings {
		x.answers = append(x.answers, encode(t, m))
	}
	if err := e.hook.Started(x); err != nil {
		t.Fatal(err)
	}
	if len(x.sent) != 1 || !strings.HasPrefix(render(e, x.sent[0], true), `Query "SELECT /* pgcloak: session settings */`) {
		t.Fatalf("Started sent %q", x.sent)
	}
	return e
}

// scriptedExchange is the server leg while Started runs.
type scriptedExchange struct {
	t       testing.TB
	answers [][]byte
	sent    [][]byte
}

func (x *scriptedExchange) Send(m []byte) error {
	x.sent = append(x.sent, bytes.Clone(m))
	return nil
}

func (x *scriptedExchange) Receive() (wire.ServerMsg, []byte, error) {
	if len(x.answers) == 0 {
		x.t.Fatal("Started reads more than the server answered")
	}
	m := x.answers[0]
	x.answers = x.answers[1:]
	return wire.ServerMsg(m[0]), m, nil
}

// flow is what one step delivered to a peer.
type flow struct {
	e     *engineTest
	raw   []byte   // the bytes, as the peer reads them
	lines []string // one rendered line per message
}

// want checks the messages, one line each (see render). A line ending in
// "…" matches any line it starts.
func (f flow) want(lines ...string) flow {
	f.e.t.Helper()
	ok := len(lines) == len(f.lines)
	for i := 0; ok && i < len(lines); i++ {
		if p, cut := strings.CutSuffix(lines[i], "…"); cut {
			ok = strings.HasPrefix(f.lines[i], p)
		} else {
			ok = f.lines[i] == lines[i]
		}
	}
	if !ok {
		f.e.t.Fatalf("got:\n\t%s\nwant:\n\t%s", strings.Join(f.lines, "\n\t"), strings.Join(lines, "\n\t"))
	}
	return f
}

// nothing checks that no message was delivered.
func (f flow) nothing() {
	f.e.t.Helper()
	f.want()
}

// client sends msgs as the client, through the engine as the relay would,
// and returns what reached the server.
// A step that waits for an answer the script never gives fails the test
// (rather than hang it).
func (e *engineTest) client(msgs ...pgproto3.FrontendMessage) flow {
	e.t.Helper()
	return e.async(msgs...)().done()
}

// clientErr is client for a step that ends the session: it returns the
// engine's error.
func (e *engineTest) clientErr(msgs ...pgproto3.FrontendMessage) error {
	e.t.Helper()
	err := e.async(msgs...)().err
	if err == nil {
		e.t.Fatal("the client step did not fail")
	}
	return err
}

func (e *engineTest) clientSend(msgs ...pgproto3.FrontendMessage) error {
	// The relay forwards Terminate itself.
	wants := func(t wire.ClientMsg) bool { return t != wire.Terminate && e.hook.ClientWants(t) }
	return relay(e, msgs, e.toServer, wants, e.hook.ClientMessage)
}

// relay passes msgs through the hook as the relay's loop for one direction
// does: the message types the hook wants to it, the others to w untouched.
func relay[T ~byte, M interface{ Encode([]byte) ([]byte, error) }](e *engineTest, msgs []M, w *bufio.Writer,
	wants func(T) bool, handle func(T, []byte, *bufio.Writer) error) error {
	for _, msg := range msgs {
		m := encode(e.t, msg)
		if t := T(m[0]); wants(t) {
			if err := handle(t, m, w); err != nil {
				return err
			}
		} else {
			_, _ = w.Write(m)
		}
	}
	return nil
}

// upstream flushes what the engine wrote toward the server and reads it.
func (e *engineTest) upstream() flow {
	e.t.Helper()
	raw := e.take(e.toServer, &e.up)
	e.sent.Write(raw)
	f := flow{e: e, raw: raw, lines: renderAll(e, raw, true)}
	for _, l := range f.lines {
		for _, m := range protectedValue.FindAllStringSubmatch(l, -1) {
			if plain := m[2]; len(plain) >= 4 && bytes.Contains(raw, []byte(plain)) {
				e.t.Fatalf("plaintext %q of %s reached the server: %q", plain, m[1], raw)
			}
		}
	}
	return f
}

// refused sends sql as a Query that pgcloak must refuse: the server gets
// the placeholder and never secret, and the client gets err (a rendered
// ErrorResponse, see want) in place of the server's answer, then
// ReadyForQuery with status.
func (e *engineTest) refused(sql, secret, err string, status byte) {
	e.t.Helper()
	e.client(&pgproto3.Query{String: sql}).want(`Query "pgcloak refused this statement"`)
	e.neverSent(secret)
	e.server(serverError("42601", `syntax error at or near "pgcloak"`), ready(status)).
		want(err, fmt.Sprintf("ReadyForQuery %c", status))
}

// neverSent checks that none of plaintexts was ever sent to the server.
func (e *engineTest) neverSent(plaintexts ...string) {
	e.t.Helper()
	for _, p := range plaintexts {
		if bytes.Contains(e.sent.Bytes(), []byte(p)) {
			e.t.Fatalf("%q reached the server", p)
		}
	}
}

// async sends msgs on another goroutine, as the client loop does while the
// server loop runs: for steps that wait for the server's answer. The
// function it returns waits for the step to end.
func (e *engineTest) async(msgs ...pgproto3.FrontendMessage) func() asyncStep {
	done := make(chan error, 1)
	go func() { done <- e.clientSend(msgs...) }()
	return func() asyncStep {
		e.t.Helper()
		select {
		case err := <-done:
			return asyncStep{e: e, err: err}
		case <-time.After(10 * time.Second):
			e.t.Fatal("the client loop is still waiting for the server")
		}
		return asyncStep{}
	}
}

// waiting returns once the client loop waits for the server's answer
// (blocked in waitLocked): a step sent with async has then gone as far as
// it can without the answer.
func (e *engineTest) waiting() {
	e.t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("engine.(*session).waitLocked")) {
			return
		}
	}
	e.t.Fatal("the client loop does not wait for the server's answer")
}

// asyncStep is an async step that ended.
type asyncStep struct {
	e   *engineTest
	err error
}

// done checks that the step succeeded and returns what reached the server.
func (a asyncStep) done() flow {
	a.e.t.Helper()
	if a.err != nil {
		a.e.t.Fatalf("client message: %v", a.err)
	}
	return a.e.upstream()
}

// server sends msgs as the server and returns what reached the client.
func (e *engineTest) server(msgs ...pgproto3.BackendMessage) flow {
	e.t.Helper()
	if err := e.serverSend(msgs...); err != nil {
		e.t.Fatalf("server message: %v", err)
	}
	return e.downstream()
}

// serverErr is server for a step that ends the session: it returns the
// engine's error.
func (e *engineTest) serverErr(msgs ...pgproto3.BackendMessage) error {
	e.t.Helper()
	err := e.serverSend(msgs...)
	if err == nil {
		e.t.Fatal("the server step did not fail")
	}
	e.down.Reset()
	return err
}

func (e *engineTest) serverSend(msgs ...pgproto3.BackendMessage) error {
	return relay(e, msgs, e.toClient, e.hook.ServerWants, e.hook.ServerMessage)
}

func (e *engineTest) downstream() flow {
	e.t.Helper()
	raw := e.take(e.toClient, &e.down)
	return flow{e: e, raw: raw, lines: renderAll(e, raw, false)}
}

// take flushes w and takes what it wrote to buf.
func (e *engineTest) take(w *bufio.Writer, buf *bytes.Buffer) []byte {
	e.t.Helper()
	if err := w.Flush(); err != nil {
		e.t.Fatal(err)
	}
	raw := bytes.Clone(buf.Bytes())
	buf.Reset()
	return raw
}

// column returns the fixture's protected column table.name.
func (e *engineTest) column(table, name string) *column {
	for _, c := range e.rules {
		if c.rule.Table == table && c.rule.Name == name {
			return c
		}
	}
	e.t.Fatalf("no protected column %s.%s", table, name)
	return nil
}

// ciphertext is what the database stores for plain (the canonical text of
// the column's logical type) in people's column name.
func (e *engineTest) ciphertext(name, plain string) []byte {
	e.t.Helper()
	return e.ciphertextOf("people", name, plain)
}

func (e *engineTest) ciphertextOf(table, name, plain string) []byte {
	e.t.Helper()
	col := e.column(table, name)
	ct, err := col.keyring.Encrypt(nil, []byte(plain), col.id, col.mode)
	if err != nil {
		e.t.Fatal(err)
	}
	return ct
}

// sqlstate is the SQLSTATE of the FATAL error the relay sends the client
// for an error that ends the session (proxy/session.go fatalOf), or "" when
// it sends none.
func sqlstate(err error) string {
	var e *pgerr.Error
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &pe):
		return "08P01"
	case errors.As(err, &e):
		return e.Code
	}
	return ""
}
