package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/jackc/pgerrcode"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// The fast relay moves the bytes of plain sessions (no TLS on either leg, no
// encryption layer) after authentication. Go's network poller registers
// every socket for output readiness too, so each write's acknowledgement
// wakes a thread for nothing; measured with pgbench -S -M prepared and one
// client, that was 2.8 context switches per transaction against PgBouncer's
// 2.0, and 30 µs more latency. Here, as in PgBouncer, one epoll loop per CPU
// waits for input only (level-triggered), reads what is there, writes it to
// the other leg at once, and waits for output readiness only while a write
// is short (then it stops reading that leg: back-pressure, flat memory).
//
// The bytes are forwarded as read; a scanner follows the message framing to
// enforce limits.max_message_bytes, spot Terminate, follow requests and
// ReadyForQuery for the drain at shutdown (txState), and count messages.
// Nothing is allocated per message.

// fastBufSize is the read buffer of one direction of a fast session.
const fastBufSize = 32 << 10

// fastRelays are a Server's relay loops, one per P (GOMAXPROCS), started
// on first use and stopped by Server.Close.
type fastRelays struct {
	mu      sync.Mutex
	loops   []*relayLoop
	next    int
	stopped bool
	wg      sync.WaitGroup
}

func (f *fastRelays) pick() (*relayLoop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, errors.New("server closed")
	}
	if f.loops == nil {
		for range runtime.GOMAXPROCS(0) {
			l, err := newRelayLoop(&f.wg)
			if err != nil {
				return nil, err
			}
			f.loops = append(f.loops, l)
		}
	}
	f.next = (f.next + 1) % len(f.loops)
	return f.loops[f.next], nil
}

// unpark lets the sessions that PAUSE holds go on where their database is
// not paused any more.
func (f *fastRelays) unpark() {
	f.mu.Lock()
	loops := f.loops
	f.mu.Unlock()
	for _, l := range loops {
		l.unpark()
	}
}

// stop ends the loops; their sessions must have ended.
func (f *fastRelays) stop() {
	f.mu.Lock()
	f.stopped = true
	loops := f.loops
	f.loops = nil
	f.mu.Unlock()
	for _, l := range loops {
		_, _ = syscall.Write(l.wakeW, []byte{0})
	}
	f.wg.Wait()
}

// relayLoop is one epoll loop, run by one goroutine.
type relayLoop struct {
	epfd         int
	wakeR, wakeW int // a pipe whose input tells the loop to stop
	mu           sync.Mutex
	byFD         map[int32]*half // fd → the half that reads it
	// parked are the pipes whose client input PAUSE holds (pause.go).
	parked map[*pipe]struct{}
}

func newRelayLoop(wg *sync.WaitGroup) (*relayLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller (see run).
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, fmt.Errorf("epoll add: %w", err)
	}
	l := &relayLoop{epfd: epfd, wakeR: p[0], wakeW: p[1], byFD: make(map[int32]*half), parked: make(map[*pipe]struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.run()
	}()
	return l, nil
}

// pipe is one session on the fast relay.
type pipe struct {
	loop           *relayLoop
	ss             *session
	client, server half
	maxBody        int
	done           chan error // receives once, when the session ends
	// status: the transaction status of the last ReadyForQuery, which the
	// loop mirrors into ss for the console and PAUSE; tx: the session's
	// requests, ReadyForQuery and drain.
	status byte
	tx     *txState
	closed bool
	stats  [2]dirStats
}

// half is one leg: the fd it reads and the bytes read but not yet written
// to the other leg.
type half struct {
	p          *pipe
	fd         int
	peer       *half
	fromClient bool
	buf        []byte
	off, end   int  // buf[off:end] waits to be written to peer.fd
	reading    bool // EPOLLIN is on for fd
	writing    bool // EPOLLOUT is on for fd (its peer has bytes waiting)
	scan       frameScan
	nread      int
	nmsgs      int
}

// frameScan follows message boundaries across reads.
type frameScan struct {
	hdr    [wire.HeaderLen]byte
	hn     int   // header bytes seen of the current message
	left   int64 // body bytes still to come of the current message
	status bool  // the next body byte is a ReadyForQuery's status
}

// atBoundary reports whether the bytes scanned end at a message boundary.
func (s *frameScan) atBoundary() bool { return s.hn == 0 && s.left == 0 }

// scanResult is what a chunk held.
type scanResult struct {
	msgs      int
	terminate bool // client: Terminate seen
	status    byte // server: the transaction status of the last ReadyForQuery seen (0: none)
	drained   bool // client: the session is drained, the chunk must not go out; server: drain it now
}

// scan follows the messages of b, recording the client's requests and the
// server's ReadyForQuery in tx.
func (s *frameScan) scan(b []byte, maxBody int, fromClient bool, tx *txState) (scanResult, error) {
	var r scanResult
	for len(b) > 0 {
		if s.left > 0 {
			if s.status {
				s.status = false
				r.status = b[0]
				r.drained = tx.ready(b[0]) || r.drained
			}
			n := min(int64(len(b)), s.left)
			s.left -= n
			b = b[n:]
			continue
		}
		n := copy(s.hdr[s.hn:], b)
		s.hn += n
		b = b[n:]
		if s.hn < wire.HeaderLen {
			break
		}
		s.hn = 0
		typ := s.hdr[0]
		l := int64(int32(binary.BigEndian.Uint32(s.hdr[1:])))
		if l < 4 {
			return r, &wire.ProtocolError{Msg: fmt.Sprintf("invalid message length %d for message type %q", l, typ)}
		}
		if l-4 > int64(maxBody) {
			return r, &wire.MessageTooLargeError{Type: typ, Size: l - 4, Max: int64(maxBody)}
		}
		s.left = l - 4
		r.msgs++
		switch {
		case fromClient && typ == 'X':
			r.terminate = true
		case fromClient:
			if !tx.request(typ) {
				r.drained = true
				return r, nil
			}
		case typ == 'Z' && s.left == 1:
			s.status = true
		case typ == 'Z':
			r.drained = tx.ready(0) || r.drained // malformed: count it, status unknown
		}
	}
	return r, nil
}

// errFastTerminated is the clean end: the client sent Terminate.
var errFastTerminated = errors.New("client terminated")

// runFast relays the session on the fast path until it ends. Bytes already
// buffered by the frame readers are forwarded first; then the sockets are
// taken from Go's poller. It returns why the session ended (nil: the client
// terminated) and whether a query was in flight; ok is false when the fast
// path is not available and nothing was done.
func (ss *session) runFast() (busy, ok bool, err error) {
	// Forward what the frame readers hold beyond the last whole message
	// (a pipelining client may have sent more), and let the scanners start
	// where it ends.
	var clientScan, serverScan frameScan
	ss.fromClient.Report()
	ss.fromServer.Report()
	for _, leg := range []struct {
		r    *wire.Reader
		w    *bufio.Writer
		scan *frameScan
		c    bool
	}{{ss.fromClient, ss.toServer, &clientScan, true}, {ss.fromServer, ss.toClient, &serverScan, false}} {
		if rest := leg.r.Rest(); len(rest) > 0 {
			res, err := leg.scan.scan(rest, ss.maxBody, leg.c, &ss.tx)
			if err != nil {
				return false, true, err
			}
			if !(res.drained && leg.c) { // a drained client's requests do not go out
				leg.w.Write(rest)
			}
		}
		if err := leg.w.Flush(); err != nil {
			return false, true, err
		}
	}
	if ss.tx.drained() {
		ss.sayGoodbye(ss.toClient) // drained before the fast relay started
		return false, true, errDrained
	}
	clientFD, cerr := detach(ss.client)
	if cerr != nil {
		return false, false, nil
	}
	serverFD, serr := detach(ss.server)
	if serr != nil {
		syscall.Close(clientFD)
		return false, false, nil
	}
	l, lerr := ss.srv.fast.pick()
	if lerr != nil {
		syscall.Close(clientFD)
		syscall.Close(serverFD)
		return false, true, lerr
	}
	p := &pipe{loop: l, ss: ss, maxBody: ss.maxBody, status: byte(ss.txStatus.Load()), done: make(chan error, 1), tx: &ss.tx}
	p.stats = [2]dirStats{ss.c2s, ss.s2c}
	p.client = half{p: p, fd: clientFD, peer: &p.server, fromClient: true, buf: make([]byte, fastBufSize)}
	p.server = half{p: p, fd: serverFD, peer: &p.client, buf: make([]byte, fastBufSize)}
	p.client.scan, p.server.scan = clientScan, serverScan
	closer := fdCloser{p}
	ss.srv.track(closer)
	defer ss.srv.untrack(closer)
	var ender io.Closer = closer
	ss.ender.Store(&ender)
	if err := l.add(p); err != nil {
		syscall.Close(clientFD)
		syscall.Close(serverFD)
		return false, true, err
	}
	if ss.onFast(p) {
		p.drain() // the drain came while the session moved here
	}
	err = <-p.done
	if err == errFastTerminated {
		err = nil
	}
	return ss.tx.busy(), true, err
}

// detach takes a TCP or Unix socket out of Go's poller: it duplicates the
// descriptor (still non-blocking: the flag belongs to the shared file
// description) and closes the net.Conn, which removes it from the poller.
func detach(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) {
		fd, derr = syscall.Dup(int(s))
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	syscall.CloseOnExec(fd)
	c.Close()
	return fd, nil
}

// fdCloser lets Server.Close end a fast session: shutting the sockets down
// makes the loop see end-of-file and tear the session down.
type fdCloser struct{ p *pipe }

func (f fdCloser) Close() error {
	l := f.p.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if !f.p.closed { // else the fds are closed and their numbers may be reused
		_ = syscall.Shutdown(f.p.client.fd, syscall.SHUT_RDWR)
		_ = syscall.Shutdown(f.p.server.fd, syscall.SHUT_RDWR)
	}
	return nil
}

// drain ends the session if the drain at shutdown has closed it (see
// finishDrain). It may be called from any goroutine.
func (p *pipe) drain() {
	l := p.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if !p.closed && p.tx.drained() {
		l.finishDrain(p)
	}
}

// finishDrain ends a drained session (l.mu held): the client reads 57P01
// after everything the server said, the server gets a Terminate, both at
// message boundaries. A session forced closed while busy gets the 57P01
// only if the client's stream is at a boundary, and no Terminate (its query
// is cancelled by runSession). Writes are best effort: the sockets are
// non-blocking and the session ends either way.
func (l *relayLoop) finishDrain(p *pipe) {
	forced := p.tx.forced()
	toClientPending := p.server.off < p.server.end
	if toClientPending && !forced {
		return // flush() calls back once the client has taken it
	}
	if !toClientPending && p.server.scan.atBoundary() {
		_, _ = syscall.Write(p.client.fd, shutdownFatal)
	}
	if !forced && p.client.off == p.client.end && p.client.scan.atBoundary() {
		_, _ = syscall.Write(p.server.fd, terminateMsg)
	}
	l.teardown(p, errDrained)
}

func (l *relayLoop) add(p *pipe) error {
	// Under l.mu, which the loop holds while it handles events: what is
	// set here happens before the loop reads it.
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range []*half{&p.client, &p.server} {
		h.reading = true
		l.byFD[int32(h.fd)] = h
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(h.fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, h.fd, &ev); err != nil {
			for _, h := range []*half{&p.client, &p.server} {
				delete(l.byFD, int32(h.fd))
				_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, h.fd, nil)
			}
			return fmt.Errorf("epoll add: %w", err)
		}
	}
	return nil
}

// run is the loop. It owns every pipe it was given until it sends on done.
//
// The loop's own epoll set is itself a pollable descriptor, registered with
// Go's network poller: the loop goroutine parks there while nothing is
// ready, and when it runs it collects events with epoll_wait(0), which never
// blocks. A loop that blocked in epoll_wait on a thread of its own would keep
// its P in a system call, and the runtime would act on that: sysmon retakes
// the P after 20 µs, wakes another thread to spin for work, and keeps
// polling every 20 µs itself, so a relay that waits between short bursts
// spent about a fifth of its CPU time in the scheduler (measured with perf
// under pgbench -S).
func (l *relayLoop) run() {
	f := os.NewFile(uintptr(l.epfd), "epoll")
	defer func() {
		f.Close() // closes l.epfd
		syscall.Close(l.wakeR)
		syscall.Close(l.wakeW)
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		panic(fmt.Sprintf("pgcloak: epoll fd: %v", err)) // a fresh epoll fd: cannot happen
	}
	events := make([]syscall.EpollEvent, 128)
	err = rc.Read(func(uintptr) bool {
		// Until nothing is ready: the set is level-triggered, and an fd
		// that stays ready after a read (more than the buffer was
		// waiting) is not announced to the outer poller again.
		for rounds := 1; ; rounds++ {
			if rounds%64 == 0 {
				// Busy without a pause: let the other goroutines
				// (new sessions, the listener) have the P.
				runtime.Gosched()
			}
			n, err := rawEpollWait(l.epfd, events)
			if err == syscall.EINTR {
				continue
			}
			if err != 0 {
				panic(fmt.Sprintf("pgcloak: epoll_wait: %v", err)) // the epoll fd is ours: cannot happen
			}
			if n == 0 {
				return false // park in Go's poller until the set is ready
			}
			if l.serve(events[:n]) {
				return true
			}
		}
	})
	if err != nil {
		panic(fmt.Sprintf("pgcloak: epoll fd: %v", err)) // only Close ends the wait, and only run closes f
	}
}

// serve handles a batch of events; it reports whether the loop must stop.
func (l *relayLoop) serve(events []syscall.EpollEvent) (stop bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range events {
		ev := &events[i]
		if ev.Fd == int32(l.wakeR) {
			return true
		}
		h := l.byFD[ev.Fd]
		if h == nil || h.p.closed {
			continue
		}
		l.handle(h, ev.Events)
	}
	return false
}

// handle serves one readiness event of h's fd. It runs with l.mu held.
func (l *relayLoop) handle(h *half, events uint32) {
	p := h.p
	if events&syscall.EPOLLOUT != 0 && h.writing {
		// h.fd can take more of what its peer read.
		if err := l.flush(h.peer); err != nil {
			l.teardown(p, err)
			return
		}
		if p.tx.drained() {
			l.finishDrain(p)
			return
		}
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 || !h.reading {
		return
	}
	if h.fromClient && !p.tx.busy() && p.status == 'I' && p.ss.gate != nil && p.ss.gate.paused.Load() {
		// PAUSE: the client's next request stays unread until RESUME.
		l.park(p)
		return
	}
	n, err := rawRead(h.fd, h.buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != 0 {
		l.teardown(p, err)
		return
	}
	if n == 0 {
		l.teardown(p, io.EOF)
		return
	}
	h.nread += n
	res, serr := h.scan.scan(h.buf[:n], p.maxBody, h.fromClient, p.tx)
	h.nmsgs += res.msgs
	if h.nmsgs >= 4096 {
		h.report(p)
	}
	if serr != nil {
		if h.fromClient {
			l.tellClient(p, serr)
		}
		l.teardown(p, serr)
		return
	}
	if res.status != 0 {
		p.status = res.status
		p.ss.txStatus.Store(uint32(res.status))
	}
	if res.drained && h.fromClient {
		// Drained: what the client sent now must not go out.
		l.finishDrain(p)
		return
	}
	h.off, h.end = 0, n
	if err := l.flush(h); err != nil {
		l.teardown(p, err)
		return
	}
	if res.terminate {
		l.teardown(p, errFastTerminated)
		return
	}
	if res.drained {
		l.finishDrain(p)
	}
}

// flush writes what src read to its peer. A short write turns src's input
// off and the peer's output readiness on until the rest is written.
func (l *relayLoop) flush(src *half) error {
	dst := src.peer
	for src.off < src.end {
		n, err := rawWrite(dst.fd, src.buf[src.off:src.end])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != 0 {
			return err
		}
		src.off += n
	}
	pendingOut := src.off < src.end
	if pendingOut == dst.writing {
		return nil
	}
	// Switch: src stops reading while dst cannot take more, and back.
	dst.writing, src.reading = pendingOut, !pendingOut
	if err := l.modify(dst); err != nil {
		return err
	}
	return l.modify(src)
}

func (l *relayLoop) modify(h *half) error {
	var events uint32 = syscall.EPOLLRDHUP
	if h.reading {
		events |= syscall.EPOLLIN
	}
	if h.writing {
		events |= syscall.EPOLLOUT
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(h.fd)}
	if err := rawEpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, h.fd, &ev); err != 0 {
		return err
	}
	return nil
}

// The loop's system calls on its sockets and its epoll set never block
// (the sockets are non-blocking, epoll_wait has a zero timeout), so they go
// through RawSyscall, without telling the scheduler (entersyscall). That
// saves its bookkeeping, and more: when every P is idle between events,
// sysmon sleeps, and each entersyscall would wake it again, for two more
// context switches per event (measured with perf under pgbench -S -c 1).

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// rawEpollWait collects ready events without waiting (epoll_pwait, which
// every Linux architecture has, with no signal mask).
func rawEpollWait(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

func rawEpollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// tellClient sends the client the FATAL error for a message it may not send
// (best effort: the session ends right after).
func (l *relayLoop) tellClient(p *pipe, err error) {
	var msg []byte
	var tooLarge *wire.MessageTooLargeError
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &tooLarge):
		msg = fatal(pgerrcode.ProgramLimitExceeded, tooLarge.Error())
	case errors.As(err, &pe):
		msg = fatal(pgerrcode.ProtocolViolation, pe.Msg)
	default:
		return
	}
	_, _ = syscall.Write(p.client.fd, msg)
}

// teardown ends a session: both sockets leave the loop and are closed, and
// the session goroutine learns why.
func (l *relayLoop) teardown(p *pipe, err error) {
	if p.closed {
		return
	}
	p.closed = true
	if _, ok := l.parked[p]; ok {
		l.unparkLocked(p)
	}
	for _, h := range []*half{&p.client, &p.server} {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, h.fd, nil)
		delete(l.byFD, int32(h.fd))
		syscall.Close(h.fd)
		h.report(p)
	}
	p.done <- err
}

// report adds the counts since the last report to the metrics.
func (h *half) report(p *pipe) {
	i := 1
	if h.fromClient {
		i = 0
	}
	if h.nread > 0 {
		p.stats[i].Count(h.nread, h.nmsgs)
	}
	h.nread, h.nmsgs = 0, 0
}

// park stops reading p's client until RESUME (pause.go): the request stays
// in the socket. Output readiness and hang-ups of the client are not
// watched meanwhile (a hang-up is seen when reading resumes); the server
// leg is read as before. It runs with l.mu held.
func (l *relayLoop) park(p *pipe) {
	h := &p.client
	h.reading = false
	ev := syscall.EpollEvent{Fd: int32(h.fd)}
	if h.writing {
		ev.Events = syscall.EPOLLOUT
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, h.fd, &ev); err != nil {
		l.teardown(p, err)
		return
	}
	l.parked[p] = struct{}{}
	p.ss.waiting.Store(true)
	p.ss.srv.ops.pausedClients.Inc()
}

// unpark reads the client of every parked pipe whose database is not
// paused any more.
func (l *relayLoop) unpark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.parked {
		if p.ss.gate.paused.Load() {
			continue
		}
		l.unparkLocked(p)
		if p.closed {
			continue
		}
		p.client.reading = true
		if err := l.modify(&p.client); err != nil {
			l.teardown(p, err)
		}
	}
}

func (l *relayLoop) unparkLocked(p *pipe) {
	delete(l.parked, p)
	p.ss.waiting.Store(false)
	p.ss.srv.ops.pausedClients.Dec()
}
