package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// heapMonitor samples this process's heap (pgcloak runs in it) until stop.
type heapMonitor struct {
	stop              chan struct{}
	done              chan struct{}
	baseLive, baseAll uint64
	peakLive, peakAll uint64
}

// heapSample reads the live heap (marked by the last GC) and all heap
// objects (live and not yet swept garbage).
func heapSample() (live, all uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func startHeapMonitor() *heapMonitor {
	runtime.GC()
	m := &heapMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	m.baseLive, m.baseAll = heapSample()
	go func() {
		defer close(m.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			live, all := heapSample()
			m.peakLive, m.peakAll = max(m.peakLive, live), max(m.peakAll, all)
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// growth stops the monitor and returns the peak growth of the live heap and
// of all heap objects.
func (m *heapMonitor) growth() (live, all int64) {
	close(m.stop)
	<-m.done
	return int64(m.peakLive) - int64(m.baseLive), int64(m.peakAll) - int64(m.baseAll)
}

// sendQuery writes a Query message of prefix, fill bytes 'x' and suffix from
// a small buffer, so that the sender holds nothing of its size. With cut >
// 0 it stops after cut bytes of the message, header included, and the rest
// never comes (the header lies).
func sendQuery(c net.Conn, prefix string, fill int, suffix string, cut int) error {
	size := 4 + len(prefix) + fill + len(suffix) + 1
	msg := binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(size))
	msg = append(msg, prefix...)
	chunk := []byte(strings.Repeat("x", 64<<10))
	sent := 0
	write := func(b []byte) error {
		if cut > 0 && sent+len(b) > cut {
			b = b[:cut-sent]
		}
		sent += len(b)
		_, err := c.Write(b)
		return err
	}
	if err := write(msg); err != nil {
		return err
	}
	for left := fill; left > 0 && (cut == 0 || sent < cut); left -= len(chunk) {
		if err := write(chunk[:min(left, len(chunk))]); err != nil {
			return err
		}
	}
	if cut > 0 {
		return nil
	}
	return write(append([]byte(suffix), 0))
}

// readResult reads up to ReadyForQuery and returns the ErrorResponse's code
// and message, if any.
func readResult(fe *pgproto3.Frontend) (code, msg string, err error) {
	for {
		m, err := fe.Receive()
		if err != nil {
			return "", "", err
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			code, msg = m.Code, m.Message
		case *pgproto3.ReadyForQuery:
			return code, msg, nil
		}
	}
}

// TestMessageBufferBudget runs, against one pgcloak with
// limits.message_buffer_budget at 64MB, messages that lie about their size
// (headers claiming 40 MB and 300 MB followed by part of the body, then
// silence) and several large messages at once, while another session keeps
// working:
//
//   - the lying headers cost what they sent, not what they claim;
//   - a message the budget cannot hold gets 53200 and does not reach the
//     server (no row), and its session goes on;
//   - a session to a database without protected columns streams a 72 MB
//     Query through, budget or not;
//   - pgcloak's live heap stays under the budget plus a little, and the
//     other session never fails;
//   - once the liars are gone, the refused message goes through.
//
// The large messages insert into a table without protected columns, so
// pgcloak holds them whole (it sees every Query of an encrypting session)
// without parsing them: the heap measures the buffered messages. Parsing a
// statement on a protected table costs more, outside the budget (README,
// "Memory"). Not parallel: the heap is the whole process's.
func TestMessageBufferBudget(t *testing.T) {
	const budget = 64 << 20
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{
		schema: `CREATE TABLE customers (id int PRIMARY KEY, email bytea);
			CREATE TABLE bulk (id int PRIMARY KEY, body text);`,
		tables: "public.customers:\n  email: {type: text, key: pii}\n",
		extra:  "limits:\n  message_buffer_budget: 64MB\n",
	}})
	direct := e.direct()
	ctx := queryCtx(t)
	rows := func(id int) int {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM bulk WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(id int) string { return fmt.Sprintf("INSERT INTO bulk VALUES (%d, '", id) }
	heap := startHeapMonitor()

	// Another session inserts and reads protected values all along.
	var steadyOps, steadyErrs atomic.Int64
	var steadyErr atomic.Value
	stopSteady := make(chan struct{})
	steadyDone := make(chan struct{})
	steady := e.connect()
	go func() {
		defer close(steadyDone)
		for i := 1; ; i++ {
			select {
			case <-stopSteady:
				return
			default:
			}
			var got string
			_, err := steady.Exec(ctx, "INSERT INTO customers VALUES ($1, $2)", i, fmt.Sprintf("user%d@example.org", i))
			if err == nil {
				err = steady.QueryRow(ctx, "SELECT email FROM customers WHERE id = $1", i).Scan(&got)
			}
			if err == nil && got != fmt.Sprintf("user%d@example.org", i) {
				err = fmt.Errorf("read %q back", got)
			}
			if err != nil {
				steadyErrs.Add(1)
				steadyErr.Store(err)
				return
			}
			steadyOps.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	// Liars: two claim 40 MB (within the budget) and send 16 MB; three
	// claim 300 MB (more than the whole budget) and send 1 kB.
	var liars []net.Conn
	for i, claim := range []int{40 << 20, 40 << 20, 300 << 20, 300 << 20, 300 << 20} {
		c, _ := rawSessionDB(t, e.addr, e.db)
		sent := 16 << 20
		if claim > budget {
			sent = 1 << 10
		}
		if err := sendQuery(c, insert(100+i), claim, "')", sent); err != nil {
			t.Fatalf("liar %d: %v", i, err)
		}
		liars = append(liars, c)
	}
	time.Sleep(200 * time.Millisecond) // let pgcloak read what they sent

	// The liars hold 40 MB of the budget: a 20 MB message does not fit.
	c, fe := rawSessionDB(t, e.addr, e.db)
	if err := sendQuery(c, insert(1), 20<<20, "')", 0); err != nil {
		t.Fatal(err)
	}
	code, msg, err := readResult(fe)
	if err != nil || code != "53200" || !strings.Contains(msg, "limits.message_buffer_budget") {
		t.Fatalf("20 MB message while liars hold the budget: %s %q %v, want 53200 naming limits.message_buffer_budget", code, msg, err)
	}
	t.Logf("refused: %s", msg)
	if n := rows(1); n != 0 {
		t.Fatalf("the refused message reached the server: %d rows", n)
	}
	// The session goes on.
	if err := sendQuery(c, "SELECT 'still here", 0, "'", 0); err != nil {
		t.Fatal(err)
	}
	if code, msg, err := readResult(fe); err != nil || code != "" {
		t.Fatalf("after the refusal: %s %s %v", code, msg, err)
	}

	// Several large messages at once: each is stored or refused with
	// 53200, nothing in between.
	var wg sync.WaitGroup
	outcomes := make([]string, 4)
	for i := range outcomes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, fe := rawSessionDB(t, e.addr, e.db)
			if err := sendQuery(c, insert(10+i), 12<<20, "')", 0); err != nil {
				outcomes[i] = err.Error()
				return
			}
			code, _, err := readResult(fe)
			switch {
			case err != nil:
				outcomes[i] = err.Error()
			case code == "":
				outcomes[i] = "stored"
			default:
				outcomes[i] = code
			}
		}()
	}
	wg.Wait()
	t.Logf("4 messages of 12 MB at once: %v", outcomes)
	for i, o := range outcomes {
		switch n := rows(10 + i); {
		case o == "stored" && n == 1, o == "53200" && n == 0:
		default:
			t.Errorf("message %d: %s, %d rows", i, o, n)
		}
	}

	// A session to another database is relayed untouched: its messages
	// stream through, whatever the budget.
	rc, rfe := rawSessionDB(t, e.addr, "postgres")
	if err := sendQuery(rc, "SELECT length('", 72<<20, "')", 0); err != nil {
		t.Fatal(err)
	}
	if code, msg, err := readResult(rfe); err != nil || code != "" {
		t.Fatalf("72 MB Query relayed without the engine: %s %s %v", code, msg, err)
	}

	live, all := heap.growth()
	t.Logf("heap growth at most: live %.1f MB, all objects %.1f MB (budget %d MB); steady session: %d round trips",
		float64(live)/(1<<20), float64(all)/(1<<20), budget>>20, steadyOps.Load())
	if live > budget+16<<20 {
		t.Errorf("live heap grew by %.1f MB; want under the budget (%d MB) and 16 MB", float64(live)/(1<<20), budget>>20)
	}
	close(stopSteady)
	<-steadyDone
	if n := steadyErrs.Load(); n > 0 || steadyOps.Load() == 0 {
		t.Errorf("the other session failed %d times (%v), %d round trips", n, steadyErr.Load(), steadyOps.Load())
	}

	// The liars go away; the refused message now fits.
	for _, l := range liars {
		l.Close()
	}
	if err := sendQuery(c, insert(1), 20<<20, "')", 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, msg, err := readResult(fe)
		if err != nil {
			t.Fatal(err)
		}
		if code == "" {
			break
		}
		// The liars' buffers are given back when pgcloak notices them
		// gone, a moment after they close.
		if code != "53200" || time.Now().After(deadline) {
			t.Fatalf("20 MB message after the liars left: %s %s", code, msg)
		}
		time.Sleep(50 * time.Millisecond)
		if err := sendQuery(c, insert(1), 20<<20, "')", 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := rows(1); n != 1 {
		t.Fatalf("after the liars left: %d rows, want 1", n)
	}
}

// TestLargeProtectedValue: a 32 MB value into a protected column, as a
// literal in a Query and as a Bind parameter, is stored as its ciphertext
// and reads back whole, and pgcloak's live heap grows by no more than the
// message it holds and the one rewritten message it sends (for a literal,
// hex doubles the ciphertext): issue 15's "about one copy per message".
// Before the rewrite in place, the Query grew the live heap by 271 MB and
// the Bind (with pgx's own copies) by 160 MB.
func TestLargeProtectedValue(t *testing.T) {
	const size = 32 << 20
	e := newCloakEnv(t, cloakEnvOptions{encEnvOptions: encEnvOptions{
		schema: `CREATE TABLE customers (id int PRIMARY KEY, email bytea);`,
		tables: "public.customers:\n  email: {type: text, key: pii}\n",
	}})
	direct := e.direct()
	ctx := queryCtx(t)
	big := strings.Repeat("x", size)
	check := func(id int) {
		t.Helper()
		var n, at int
		if err := direct.QueryRow(ctx, "SELECT length(email), position('\\x7878787878787878'::bytea in email) FROM customers WHERE id = $1", id).Scan(&n, &at); err != nil {
			t.Fatal(err)
		}
		if n <= size || at != 0 {
			t.Fatalf("row %d: stored %d bytes, plaintext run at %d: want ciphertext", id, n, at)
		}
		var got string
		if err := e.connect().QueryRow(ctx, "SELECT email FROM customers WHERE id = $1", id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != big {
			t.Fatalf("row %d read back %d bytes, want the %d stored", id, len(got), size)
		}
	}

	c, fe := rawSessionDB(t, e.addr, e.db)
	heap := startHeapMonitor()
	if err := sendQuery(c, "INSERT INTO customers VALUES (1, '", size, "')", 0); err != nil {
		t.Fatal(err)
	}
	if code, msg, err := readResult(fe); err != nil || code != "" {
		t.Fatalf("Query: %s %s %v", code, msg, err)
	}
	live, _ := heap.growth()
	t.Logf("Query with a %d MB literal: live heap grew by %.1f MB", size>>20, float64(live)/(1<<20))
	if live > 3*size+16<<20 {
		t.Errorf("live heap grew by %.1f MB; want at most the message and its rewrite (%d MB) and 16 MB", float64(live)/(1<<20), 3*size>>20)
	}
	check(1)

	conn := e.connect()
	heap = startHeapMonitor()
	if _, err := conn.Exec(ctx, "INSERT INTO customers VALUES ($1, $2)", 2, big); err != nil {
		t.Fatal(err)
	}
	live, _ = heap.growth()
	t.Logf("Bind with a %d MB parameter: live heap grew by %.1f MB (the client's own copies included)", size>>20, float64(live)/(1<<20))
	// pgcloak holds the message and sends its rewrite (the ciphertext);
	// pgx in this process builds the message once as well.
	if live > 3*size+16<<20 {
		t.Errorf("live heap grew by %.1f MB; want at most the client's message, pgcloak's copy of it and its rewrite (%d MB) and 16 MB", float64(live)/(1<<20), 3*size>>20)
	}
	check(2)
}
