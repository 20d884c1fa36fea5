package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/proxy/pgerr"
)

// KeySize is the length of the HMAC key.
const KeySize = 32

// NewKey draws a fresh HMAC key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k) // never fails since Go 1.24
	return k
}

// Options configure a Writer.
type Options struct {
	// File is the log file; it is created, or appended to, continuing the
	// chain of its last record.
	File string
	// Stdout, when set, receives every line too.
	Stdout io.Writer
	// Buffer is the number of records held for the writer.
	Buffer int
	// Continue: when records cannot be written, keep admitting (and count
	// what is lost) instead of refusing.
	Continue bool
	// RotateSize starts a new file once the current one holds this many
	// bytes (0: never).
	RotateSize int64
	// Key is the HMAC key; Wrapped is it wrapped by the KMS key KEK.
	Key, Wrapped []byte
	KEK          string
	Log          *zap.Logger
	// Lost is called with each number of records dropped (metrics).
	Lost func(n int)
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Session is what the records of one session share. It is not changed
// after the session's first record.
type Session struct {
	ID              string
	BackendPID      uint32
	Role            string
	ApplicationName string
	Client          string
	Database        string
}

// Event is a record a session hands to the writer.
type Event struct {
	Session *Session
	Time    time.Time
	Event   string // EventRead or EventDenied
	// SQL is the statement text: the writer turns it into a fingerprint
	// and forgets it.
	SQL        string
	Command    string
	Rows       int64
	Columns    []Column
	SQLState   string
	Incomplete bool
}

// admitWait bounds how long Admit waits for room in a full buffer.
const admitWait = 200 * time.Millisecond

// writeEvery is how often the writer writes what sessions handed over, and
// tries again when it cannot write; syncEvery how often it syncs the file.
const (
	writeEvery = 10 * time.Millisecond
	syncEvery  = time.Second
)

// Writer appends records to the log. Admit, Commit and Record may be called
// from any goroutine; one goroutine of its own writes.
type Writer struct {
	o Options
	// reserved counts the records admitted and not yet taken by the
	// writer: at most Buffer, so that events never blocks.
	reserved atomic.Int64
	events   chan *Event
	done     chan struct{}
	closed   chan struct{}

	// failing holds why records cannot be written, nil when they can.
	failing atomic.Pointer[error]
	// lost counts records dropped since the last lost record written.
	lost      atomic.Uint64
	lostTotal atomic.Uint64
	closeOnce sync.Once

	// The writer goroutine's state. batch holds the sealed lines not yet
	// in the file (batchN of them); seq and prev are the chain's end with
	// them, the w.file* fields without (what the file holds).
	f        *os.File
	size     int64
	seq      uint64
	prev     string
	fileSeq  uint64
	filePrev string
	keyID    string
	batch    []byte
	batchN   int
	dirty    bool
	fps      map[string]string
	mac      hash.Hash // HMAC-SHA-256 under the key
}

// Open opens (or continues) the log and writes its open record. It fails
// when the file cannot be written.
func Open(o Options) (*Writer, error) {
	if o.Buffer < 1 {
		o.Buffer = 1
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sum := sha256.Sum256(o.Wrapped)
	w := &Writer{
		o:      o,
		events: make(chan *Event, o.Buffer),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
		keyID:  hex.EncodeToString(sum[:8]),
		fps:    map[string]string{},
		mac:    newMAC(o.Key),
	}
	after, err := w.resume()
	if err != nil {
		return nil, err
	}
	w.fileSeq, w.filePrev = w.seq, w.prev
	if err := w.openFile(false); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if after == AfterUnclean {
		o.Log.Warn("the audit log did not end with a close record: the last run of pgcloak stopped without closing it (or its end was removed); pgcloak audit verify will report it", zap.String("file", o.File))
	}
	w.writeOpen(after)
	if err := w.writeBatch(); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("audit log %s: %w", o.File, err)
	}
	go w.run()
	return w, nil
}

// tailBytes is how much of an existing file resume reads: far more than
// the longest record.
const tailBytes = 1 << 20

// resume reads the chain's end from an existing file: its last complete
// record. It returns what the open record must say came before.
func (w *Writer) resume() (string, error) {
	f, err := os.Open(w.o.File)
	if errors.Is(err, os.ErrNotExist) {
		return AfterStart, nil
	}
	if err != nil {
		return "", fmt.Errorf("audit log %s: %w", w.o.File, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("audit log %s: %w", w.o.File, err)
	}
	if st.Size() == 0 {
		return AfterStart, nil
	}
	from := max(0, st.Size()-tailBytes)
	data := make([]byte, st.Size()-from)
	if _, err := f.ReadAt(data, from); err != nil {
		return "", fmt.Errorf("audit log %s: %w", w.o.File, err)
	}
	complete := data[len(data)-1] == '\n'
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if !complete {
		lines = lines[:len(lines)-1]
	}
	for i := len(lines) - 1; i >= 0; i-- {
		r, _, mac, err := parse(lines[i])
		if err != nil {
			continue
		}
		w.seq, w.prev = r.Seq, mac
		if complete && i == len(lines)-1 && r.Event == EventClose {
			return AfterClose, nil
		}
		break
	}
	if !complete {
		// A partial last line: the next record starts on a line of its own.
		a, err := os.OpenFile(w.o.File, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return "", fmt.Errorf("audit log %s: %w", w.o.File, err)
		}
		_, err = a.Write([]byte("\n"))
		a.Close()
		if err != nil {
			return "", fmt.Errorf("audit log %s: %w", w.o.File, err)
		}
	}
	return AfterUnclean, nil
}

// openFile opens the log for appending. With cut, a tail beyond what was
// written whole (a write that failed half-way) is cut off.
func (w *Writer) openFile(cut bool) error {
	f, err := os.OpenFile(w.o.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if cut && st.Size() > w.size {
		if err := f.Truncate(w.size); err != nil {
			f.Close()
			return err
		}
	} else {
		w.size = st.Size()
	}
	w.f = f
	return nil
}

// Admit reserves room for one record of a result about to deliver
// protected values. It returns false, with no error, when the record will
// be lost (on_failure: continue); with on_failure: block it returns the
// error to refuse the result with (58030 while records cannot be written,
// 57P03 while the buffer stays full).
func (w *Writer) Admit() (bool, error) {
	if why := w.failing.Load(); why != nil {
		if w.o.Continue {
			return false, nil
		}
		return false, &pgerr.Error{Code: pgerrcode.IOError, Message: "the audit log cannot be written (" + (*why).Error() + "), so pgcloak does not decrypt until it can (audit.on_failure: block)"}
	}
	if w.reserve() {
		return true, nil
	}
	if w.o.Continue {
		return false, nil
	}
	for deadline := time.Now().Add(admitWait); time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		if w.reserve() {
			return true, nil
		}
	}
	return false, &pgerr.Error{Code: pgerrcode.CannotConnectNow, Message: fmt.Sprintf("the audit log's buffer of %d records stayed full for %s, so pgcloak does not decrypt until records are written (audit.on_failure: block)", w.o.Buffer, admitWait)}
}

// reserve takes room for one record, if there is any.
func (w *Writer) reserve() bool {
	if w.reserved.Add(1) <= int64(w.o.Buffer) {
		return true
	}
	w.reserved.Add(-1)
	return false
}

// Commit hands the record of an admitted result to the writer; admitted
// false counts it as lost. It never blocks.
func (w *Writer) Commit(ev *Event, admitted bool) {
	if !admitted {
		w.drop(1)
		return
	}
	w.events <- ev
}

// Record hands a record to the writer without an Admit (a denial): it is
// lost if there is no room.
func (w *Writer) Record(ev *Event) {
	if !w.reserve() {
		w.drop(1)
		return
	}
	w.events <- ev
}

func (w *Writer) drop(n int) {
	w.lost.Add(uint64(n))
	w.lostTotal.Add(uint64(n))
	if w.o.Lost != nil {
		w.o.Lost(n)
	}
}

// Failing returns why records cannot be written now, or "".
func (w *Writer) Failing() string {
	if why := w.failing.Load(); why != nil {
		return (*why).Error()
	}
	return ""
}

// Blocks reports whether a failing log stops decryption (on_failure: block).
func (w *Writer) Blocks() bool { return !w.o.Continue }

// Lost is the number of records dropped since Open.
func (w *Writer) Lost() uint64 { return w.lostTotal.Load() }

// Close writes what is waiting and the close record, and syncs the file.
// Records committed after Close are lost.
func (w *Writer) Close() error {
	var err error
	w.closeOnce.Do(func() {
		close(w.done)
		<-w.closed
		w.write(&Record{Event: EventClose, Lost: w.lostTotal.Load()})
		if err = w.writeBatch(); err == nil {
			err = w.f.Sync()
		}
		if e := w.f.Close(); err == nil {
			err = e
		}
		if err != nil {
			err = fmt.Errorf("audit log %s: %w", w.o.File, err)
		}
	})
	return err
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.closed)
	// The writer wakes on a clock rather than on every record: a session
	// hands over a record without waking anyone, and a burst of records is
	// one write. While records cannot be written, each tick tries again.
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-tick.C:
			for w.drain() {
				w.endBatch()
			}
			w.endBatch()
			if w.dirty && w.batchN == 0 && time.Since(lastSync) >= syncEvery {
				if err := w.f.Sync(); err != nil {
					w.fail(err)
				}
				w.dirty, lastSync = false, time.Now()
			}
		case <-w.done:
			for w.drain() {
				w.endBatch()
			}
			w.endBatch()
			return
		}
	}
}

// drainMax bounds the records of one write, and so the batch's size.
const drainMax = 1024

// drain handles the events waiting, at most drainMax of them; it reports
// whether there may be more.
func (w *Writer) drain() bool {
	for n := 0; n < drainMax; n++ {
		select {
		case ev := <-w.events:
			w.handle(ev)
		default:
			return false
		}
	}
	return true
}

// handle turns an event into its record and seals it into the batch.
func (w *Writer) handle(ev *Event) {
	w.reserved.Add(-1)
	if n := w.lost.Load(); n > 0 && w.room() {
		w.lost.Add(-n)
		w.write(&Record{Event: EventLost, Lost: n})
	}
	if !w.room() {
		w.drop(1)
		return
	}
	s := ev.Session
	w.write(&Record{Event: ev.Event, Time: ev.Time.UTC().Format(time.RFC3339Nano), Session: s.ID, BackendPID: s.BackendPID, Role: s.Role,
		ApplicationName: s.ApplicationName, Client: s.Client, Database: s.Database, Fingerprint: w.fingerprint(ev.SQL),
		Command: ev.Command, Rows: ev.Rows, Columns: ev.Columns, SQLState: ev.SQLState, Incomplete: ev.Incomplete})
}

// room reports whether the batch may take another record: while the file
// cannot be written it holds at most Buffer of them.
func (w *Writer) room() bool { return w.batchN < w.o.Buffer }

// fingerprintCache bounds the cache of statement fingerprints.
const fingerprintCache = 4096

// fingerprint is pg_query's fingerprint of sql, cached by text.
func (w *Writer) fingerprint(sql string) string {
	if sql == "" {
		return ""
	}
	if fp, ok := w.fps[sql]; ok {
		return fp
	}
	fp, err := pg.Fingerprint(sql)
	if err != nil {
		fp = "unparsed"
	}
	if len(w.fps) >= fingerprintCache {
		clear(w.fps)
	}
	if len(sql) <= 4096 {
		w.fps[sql] = fp
	}
	return fp
}

// write seals r as the next record of the chain into the batch.
func (w *Writer) write(r *Record) {
	r.Seq, r.Prev = w.seq+1, w.prev
	if r.Time == "" {
		r.Time = w.o.Now().UTC().Format(time.RFC3339Nano)
	}
	w.batch, w.prev = seal(w.batch, r, w.mac)
	w.seq = r.Seq
	w.batchN++
}

// writeOpen seals the open record of a file.
func (w *Writer) writeOpen(after string) {
	host, _ := os.Hostname()
	w.write(&Record{Event: EventOpen, Instance: host + ":" + strconv.Itoa(os.Getpid()), KEK: w.o.KEK, KeyID: w.keyID, WrappedKey: w.o.Wrapped, After: after})
}

// writeBatch appends the batch to the file.
func (w *Writer) writeBatch() error {
	if w.failing.Load() != nil {
		// Reopen: the file may have been moved or repaired; a half-written
		// tail is cut off.
		if w.f != nil {
			w.f.Close()
		}
		if err := w.openFile(true); err != nil {
			return err
		}
	}
	if w.batchN == 0 {
		return nil
	}
	if _, err := w.f.Write(w.batch); err != nil {
		return err
	}
	if w.o.Stdout != nil {
		_, _ = w.o.Stdout.Write(w.batch)
	}
	w.size += int64(len(w.batch))
	w.fileSeq, w.filePrev = w.seq, w.prev
	w.batch, w.batchN, w.dirty = w.batch[:0], 0, true
	if cap(w.batch) > 1<<20 {
		w.batch = nil
	}
	return nil
}

// endBatch writes the batch, then rotates the file when it is large.
func (w *Writer) endBatch() {
	if err := w.writeBatch(); err != nil {
		w.fail(err)
		return
	}
	if w.failing.Load() != nil {
		w.o.Log.Info("the audit log can be written again", zap.String("file", w.o.File))
		w.failing.Store(nil)
	}
	if w.o.RotateSize > 0 && w.size >= w.o.RotateSize {
		if err := w.rotate(); err != nil {
			w.fail(err)
		}
	}
}

// fail records why records cannot be written. With on_failure: continue
// the batch is dropped (and counted), the chain going on from what the
// file holds, so that sessions go on; with block it is kept for the next
// try, and Admit refuses meanwhile.
func (w *Writer) fail(err error) {
	if w.failing.Load() == nil {
		w.o.Log.Error("the audit log cannot be written", zap.String("file", w.o.File), zap.Error(err), zap.Bool("decryption_stopped", !w.o.Continue))
	}
	w.failing.Store(&err)
	if w.o.Continue && w.batchN > 0 {
		w.drop(w.batchN)
		w.batch, w.batchN = w.batch[:0], 0
		w.seq, w.prev = w.fileSeq, w.filePrev
	}
}

// rotate ends the file with a rotate record, renames it and starts a new
// one whose open record continues the chain.
func (w *Writer) rotate() error {
	w.write(&Record{Event: EventRotate})
	if err := w.writeBatch(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	w.f.Close()
	name := w.o.File + "." + w.o.Now().UTC().Format("20060102T150405Z") + "." + strconv.FormatUint(w.seq, 10)
	if err := os.Rename(w.o.File, name); err != nil {
		return err
	}
	w.size = 0
	if err := w.openFile(false); err != nil {
		return err
	}
	w.writeOpen(AfterRotate)
	return w.writeBatch()
}
