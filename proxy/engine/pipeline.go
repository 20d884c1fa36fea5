package engine

import (
	"bufio"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/pgcloak/pgcloak/proxy"
)

// Decrypting the rows of one result on several cores.
//
// Every protected value costs an AES open, so a wide read of a protected
// table is bound by the one goroutine that handles the server's messages
// (the relay's server loop) long before PostgreSQL or the network are. When
// rows arrive faster than that goroutine decrypts them, it hands them on in
// batches and writes the rebuilt rows back in order:
//
//	server loop: DataRow ─copy─▶ batch ─full─▶ queue ─▶ … ─▶ write batches, oldest first
//	workers:     take a queued batch ─▶ appendDecryptedRow per row ─▶ done
//
// When. A result's first inlineRows protected rows are decrypted inline, as
// they always were, and so are rows larger than a batch: a point select or
// a small result gets no added latency. Batching starts at the next row,
// if there is a core to spare: GOMAXPROCS is more than the number of
// sessions in such a streak (wide reads), so that a busy proxy, whose cores
// all decrypt already, does not pay for the hand-over. Any other server
// message, or the server loop running out of input (it would wait for the
// server: proxy.ServerIdler), first writes out every batch and ends the
// streak; so batching runs while rows are already waiting, which is when it
// pays.
//
// Order and errors. Batches are written strictly in order. A batch stops at
// its first row that does not decrypt and keeps the rows before it; the
// server loop writes those, drops every later batch and returns the error,
// which ends the session with FATAL as inline decryption does. The client
// receives the same bytes either way: the rows before the failing one, then
// the error, nothing after. While rows are held, ServerWants asks for every
// message type, so that no message (a NoticeResponse, say) overtakes them.
//
// Bounds. A batch holds at most batchBytes of DataRows; a session has at
// most maxInflight batches queued or being decrypted, and holds nothing
// once a result ends. Workers are goroutines shared by all sessions, at most
// GOMAXPROCS-1 of them (started when there is work, gone when there is
// none); the server loop is the other one: while it waits for its oldest
// batch it decrypts its own queued batches itself, so no session depends on
// a free worker.
//
// Concurrency. rowPipeline belongs to the server loop. A batch belongs to
// the server loop while it is filled and after it is done; in between, to
// whoever claimed it (claim). appendDecryptedRow reads the session's
// committed value formats, which only the server loop changes, and only
// while nothing is held (every other message writes the batches out first).

const (
	// inlineRows protected rows in a row are decrypted inline before
	// batching starts.
	inlineRows = 64
	// batchBytes bounds the DataRows of one batch (~340 rows of three
	// 50-byte protected values); larger rows are decrypted inline. Each
	// hand-over costs a few microseconds of scheduling (a worker woken, the
	// server loop woken when it waits): at 32 KiB that was a third more CPU
	// per row than inline decryption and 1.5× the rows/s of one core on two;
	// at 64 KiB it is level with inline and 1.9× (BenchmarkDecryptResult).
	batchBytes = 64 << 10
	// maxInflight bounds a session's batches queued or being decrypted.
	maxInflight = 16
)

// rowScratch holds the buffers decryption of a row works in; each
// goroutine that decrypts has its own (the server loop's is cloak.scratch).
type rowScratch struct {
	hex   []byte // bytea text form decoded
	plain []byte // decrypted plaintext
	mask  []byte // a masked value
	// version is the key version of the value decrypted last.
	version uint32
	// deferred: the values are counted in local, and in the session's
	// tally later, by the server loop (a worker's batch). Otherwise they
	// are counted at once (the server loop's tally, tally.go).
	deferred bool
	local    tally
}

// tally returns the tally that counts the values of a row of fields: the
// session's (the server loop's) or a worker's own.
func (sc *rowScratch) tally(ss *session, fields []fieldPlan) (*tally, error) {
	if sc.deferred {
		return &sc.local, nil
	}
	return ss.tallyOf(fields)
}

// count counts field k of fields, decrypted under version.
func (sc *rowScratch) count(ss *session, fields []fieldPlan, k int, version uint32) error {
	t, err := sc.tally(ss, fields)
	if err != nil {
		return err
	}
	t.add(k, version)
	return nil
}

// rowPipeline is a session's state of batched decryption (server loop
// only).
type rowPipeline struct {
	// streak counts protected rows since the last other message or wait;
	// wide: it is longer than inlineRows, and counted in wideReads. procs
	// is GOMAXPROCS when it became wide, max the bound of inflight.
	streak int
	wide   bool
	procs  int
	max    int
	// cur is the batch being filled; inflight the batches queued or
	// decrypting, oldest first.
	cur      *rowBatch
	inflight []*rowBatch
	// batches counts the batches queued (tests check that batching ran).
	batches int
}

// Batch states: filled by the server loop, queued, claimed by one
// goroutine, which runs it and then signals done.
const (
	batchFilling int32 = iota
	batchQueued
	batchClaimed
)

// rowBatch is a run of DataRows of one result and their decryption.
type rowBatch struct {
	ss   *session
	plan *rowPlan
	in   []byte // the DataRows as the server sent them, back to back
	out  []byte // the rebuilt rows, back to back
	err  error  // the first row that failed; out holds the rows before it
	sc   rowScratch

	state atomic.Int32
	done  chan struct{} // one token per run
}

var batchPool = sync.Pool{New: func() any { return &rowBatch{done: make(chan struct{}, 1)} }}

// holding reports whether rows are held back.
func (p *rowPipeline) holding() bool { return p.cur != nil || len(p.inflight) > 0 }

// protectedRow handles a DataRow of a result with protected columns: it is
// written to w decrypted, now or (batched) later, in order.
func (ss *session) protectedRow(plan *rowPlan, m []byte, w *bufio.Writer) error {
	p := &ss.cloak.rows
	if p.holding() && (len(m) > batchBytes || p.inflightPlan() != plan) {
		if err := p.drain(w); err != nil {
			return err
		}
	}
	if !p.holding() && (!p.start(len(m)) || plan.deniesRead()) {
		out, err := ss.decryptRow(plan, m)
		if err != nil {
			return err // a value that does not decrypt is never passed on
		}
		_, err = w.Write(out)
		return err
	}
	if p.cur != nil && len(p.cur.in)+len(m) > batchBytes {
		if err := p.dispatch(w); err != nil {
			return err
		}
	}
	if p.cur == nil {
		b := batchPool.Get().(*rowBatch)
		b.ss, b.plan, b.in, b.out, b.err = ss, plan, b.in[:0], b.out[:0], nil
		b.sc.deferred = true
		b.sc.local.reset(plan.fields)
		b.state.Store(batchFilling)
		p.cur = b
	}
	p.cur.in = append(p.cur.in, m...)
	return nil
}

// wideReads counts the sessions in a streak of more than inlineRows
// protected rows.
var wideReads atomic.Int32

// start counts a protected row that arrives while nothing is held and
// reports whether to batch it.
func (p *rowPipeline) start(size int) bool {
	p.streak++
	if p.streak <= inlineRows || size > batchBytes {
		return false
	}
	if !p.wide {
		p.wide, p.procs = true, runtime.GOMAXPROCS(0)
		p.max = min(2*p.procs, maxInflight)
		wideReads.Add(1)
	}
	return int(wideReads.Load()) < p.procs
}

// endStreak ends a streak of protected rows.
func (p *rowPipeline) endStreak() {
	p.streak = 0
	if p.wide {
		p.wide = false
		wideReads.Add(-1)
	}
}

// inflightPlan is the row plan of the rows held.
func (p *rowPipeline) inflightPlan() *rowPlan {
	if p.cur != nil {
		return p.cur.plan
	}
	return p.inflight[0].plan
}

// rowsPause is called before any server message other than a DataRow: the
// rows held are written first, and the streak ends.
func (ss *session) rowsPause(w *bufio.Writer) error {
	p := &ss.cloak.rows
	if p.holding() {
		return p.drain(w)
	}
	p.endStreak()
	return nil
}

var _ proxy.ServerIdler = (*session)(nil)

// ServerHolding implements proxy.ServerIdler.
func (ss *session) ServerHolding() bool { return ss.cloak.rows.holding() }

// ServerIdle implements proxy.ServerIdler: the server loop is about to wait
// for more input, so the rows held are written now.
func (ss *session) ServerIdle(w *bufio.Writer) error { return ss.cloak.rows.drain(w) }

// dispatch queues the batch being filled, then writes the batches that are
// done, oldest first, waiting for the oldest only when maxInflight are out.
func (p *rowPipeline) dispatch(w *bufio.Writer) error {
	p.queue()
	for len(p.inflight) > 0 {
		ok, err := p.writeOldest(w, len(p.inflight) > p.max)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// drain writes every row held, in order, and ends the streak.
func (p *rowPipeline) drain(w *bufio.Writer) error {
	if p.cur != nil {
		p.queue()
	}
	for len(p.inflight) > 0 {
		if _, err := p.writeOldest(w, true); err != nil {
			return err
		}
	}
	p.endStreak()
	return nil
}

// queue moves the batch being filled to the in-flight list and offers it to
// the workers.
func (p *rowPipeline) queue() {
	b := p.cur
	p.cur = nil
	b.state.Store(batchQueued)
	p.inflight = append(p.inflight, b)
	p.batches++
	workers.offer(b)
}

// writeOldest writes the oldest batch to w once it is done; with wait it
// waits for it (decrypting queued batches meanwhile), else ok is false if
// it is not done yet. A batch that failed ends the pipeline with its error,
// after the rows before the failing one.
func (p *rowPipeline) writeOldest(w *bufio.Writer, wait bool) (ok bool, err error) {
	b := p.inflight[0]
	if wait {
		p.waitFor(b)
	} else {
		select {
		case <-b.done:
		default:
			return false, nil
		}
	}
	copy(p.inflight, p.inflight[1:])
	p.inflight[len(p.inflight)-1] = nil
	p.inflight = p.inflight[:len(p.inflight)-1]
	// The values the worker decrypted are counted now, on the server loop,
	// before their rows go out (the audit log may refuse them).
	err = b.ss.countAll(&b.sc.local)
	if err == nil {
		_, err = w.Write(b.out)
	}
	if err == nil {
		err = b.err
	}
	if err != nil {
		// The session ends: later batches are dropped (a worker may still
		// be running one: they are not reused).
		clear(p.inflight)
		p.inflight, p.cur = p.inflight[:0], nil
		return false, err
	}
	b.ss, b.plan = nil, nil
	if cap(b.in) <= 2*batchBytes && cap(b.out) <= 8*batchBytes {
		batchPool.Put(b)
	}
	return true, nil
}

// waitFor waits until b is done. Meanwhile the server loop decrypts the
// session's batches that no worker has claimed, oldest first.
func (p *rowPipeline) waitFor(b *rowBatch) {
	for {
		select {
		case <-b.done:
			return
		default:
		}
		helped := false
		for _, q := range p.inflight {
			if q.claim() {
				q.run()
				helped = true
				break
			}
		}
		if !helped {
			<-b.done
			return
		}
	}
}

// claim takes a queued batch for the caller to run; false if another
// goroutine has it (or it was run, and perhaps reused, since it was queued).
func (b *rowBatch) claim() bool { return b.state.CompareAndSwap(batchQueued, batchClaimed) }

// run decrypts the batch's rows into out, stopping at the first that fails,
// and signals done. The caller has claimed it.
func (b *rowBatch) run() {
	out := b.out[:0]
	for in := b.in; len(in) > 0; {
		n := 1 + int(binary.BigEndian.Uint32(in[1:])) // framed by the relay's reader
		r, err := b.ss.appendDecryptedRow(out, &b.sc, b.plan, in[:n])
		if err != nil {
			b.err = err
			break
		}
		out, in = r, in[n:]
	}
	b.out = out
	b.done <- struct{}{}
}

// workers are the goroutines that decrypt queued batches for all sessions.
var workers workerPool

// workerPool runs queued batches on at most GOMAXPROCS-1 goroutines, which
// exit when the queue is empty. A batch the queue cannot take, or that no
// worker reaches in time, is run by its own server loop (waitFor).
type workerPool struct {
	running atomic.Int32
	queue   chan *rowBatch
	once    sync.Once
}

// offer queues b and starts a worker if fewer than GOMAXPROCS-1 run.
func (wp *workerPool) offer(b *rowBatch) {
	wp.once.Do(func() { wp.queue = make(chan *rowBatch, 256) })
	select {
	case wp.queue <- b:
	default:
		return // full: the server loop runs it
	}
	if wp.acquire() {
		go wp.work()
	}
}

// acquire counts one more worker, unless GOMAXPROCS-1 run already.
func (wp *workerPool) acquire() bool {
	limit := int32(runtime.GOMAXPROCS(0) - 1)
	for {
		n := wp.running.Load()
		if n >= limit {
			return false
		}
		if wp.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// work runs queued batches until there are none.
func (wp *workerPool) work() {
	for {
		select {
		case b := <-wp.queue:
			if b.claim() {
				b.run()
			}
		default:
			wp.running.Add(-1)
			// A batch queued just now may have found every worker
			// still counted: look once more before leaving.
			if len(wp.queue) == 0 || !wp.acquire() {
				return
			}
		}
	}
}
