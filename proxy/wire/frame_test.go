package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/iotest"
)

// msg builds one protocol message: type byte, int32 length, body.

// relayAll reads messages from in with a Reader and forwards them all
// to a buffer, as the relay loops do.
func relayAll(t *testing.T, in io.Reader, bufSize, maxBody int) ([]byte, []byte, error) {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 64)
	f := NewReader(in, w, bufSize)
	var types []byte
	for {
		typ, n, err := f.Header(maxBody)
		if err != nil {
			w.Flush()
			return out.Bytes(), types, err
		}
		types = append(types, typ)
		if err := f.Forward(w, n); err != nil {
			w.Flush()
			return out.Bytes(), types, err
		}
	}
}

func TestFrameReaderForwardsExactBytes(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1000) // larger than the 64-byte buffer below
	stream := bytes.Join([][]byte{
		msg('Q', "SELECT 1\x00"),
		msg('D', string(big)),
		msg('S', ""),
		msg('d', string(big[:63])), // exactly one byte short of the buffer with its header
		msg('c', ""),
	}, nil)
	for _, tc := range []struct {
		name string
		in   io.Reader
	}{
		{"whole", bytes.NewReader(stream)},
		{"one byte per read", iotest.OneByteReader(bytes.NewReader(stream))},
		{"half reads", iotest.HalfReader(bytes.NewReader(stream))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, types, err := relayAll(t, tc.in, 64, 1<<20)
			if err != io.EOF {
				t.Fatalf("err = %v, want io.EOF at a message boundary", err)
			}
			if string(types) != "QDSdc" {
				t.Errorf("types = %q, want %q", types, "QDSdc")
			}
			if !bytes.Equal(out, stream) {
				t.Errorf("forwarded %d bytes that differ from the %d input bytes", len(out), len(stream))
			}
		})
	}
}

func TestFrameReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		check func(error) bool
	}{
		{"length below 4", []byte{'Q', 0, 0, 0, 3}, func(err error) bool { var pe *ProtocolError; return errors.As(err, &pe) }},
		{"negative length", []byte{'Q', 0x80, 0, 0, 0}, func(err error) bool { var pe *ProtocolError; return errors.As(err, &pe) }},
		{"2 GiB length", []byte{'Q', 0x7f, 0xff, 0xff, 0xff}, func(err error) bool {
			var tl *MessageTooLargeError
			return errors.As(err, &tl) && tl.Size == 0x7fffffff-4 && tl.Type == 'Q'
		}},
		{"cut header", []byte{'Q', 0, 0}, func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"cut body", append(msg('Q', "SELECT 1"), msg('Q', "SELECT 2")[:8]...), func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"cut streamed body", msg('D', string(make([]byte, 500)))[:300], func(err error) bool { return err == io.ErrUnexpectedEOF }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := relayAll(t, bytes.NewReader(tc.in), 64, 1<<20)
			if !tc.check(err) {
				t.Fatalf("unexpected error %v (%T)", err, err)
			}
		})
	}
}

// TestFrameReaderFlushesBeforeBlocking checks the rule that keeps pipelines
// moving: output is held only while more input is already buffered.
func TestFrameReaderFlushesBeforeBlocking(t *testing.T) {
	var out syncBuffer // written by the goroutine that blocks in header
	w := bufio.NewWriterSize(&out, 4096)
	pr, pw := io.Pipe()
	f := NewReader(pr, w, 4096)
	go func() {
		pw.Write(append(msg('Q', "a\x00"), msg('Q', "b\x00")...))
	}()
	for range 2 {
		_, n, err := f.Header(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Forward(w, n); err != nil {
			t.Fatal(err)
		}
	}
	if out.Len() != 0 {
		t.Fatalf("flushed %d bytes while input was still buffered", out.Len())
	}
	// The next header needs a read that blocks: the two messages go out first.
	done := make(chan struct{})
	go func() { f.Header(1 << 20); close(done) }()
	for out.Len() == 0 {
		select {
		case <-done:
			t.Fatal("header returned without input")
		default:
		}
	}
	if got, want := out.Len(), 2*len(msg('Q', "a\x00")); got != want {
		t.Fatalf("flushed %d bytes, want %d", got, want)
	}
	pw.Close()
	<-done
}

// syncBuffer is a bytes.Buffer that one goroutine may write while another
// reads its length.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func TestLargeMessage(t *testing.T) {
	m := msg('B', string(bytes.Repeat([]byte("y"), 300)))
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	f := NewReader(iotest.HalfReader(bytes.NewReader(m)), w, 64)
	_, n, err := f.Header(1 << 20)
	if err != nil || f.Fits(n) {
		t.Fatalf("header: n=%d fits=%v err=%v", n, f.Fits(n), err)
	}
	var l Large
	defer l.Release()
	got, err := f.LargeMessage(&l, n)
	if err != nil || !bytes.Equal(got, m) {
		t.Fatalf("largeMessage = %q, %v", got, err)
	}
}

// countingBudget is a Budget of limit bytes that remembers the most it held.
type countingBudget struct {
	limit, used, peak int
}

func (b *countingBudget) Take(n int) bool {
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

func (b *countingBudget) Give(n int) { b.used -= n }

// TestLargeMessageGrowsWithBytesReceived: a header that claims 100 MB and
// then sends 1000 bytes costs one buffer under 128 KiB, not 100 MB; a message that
// does arrive grows its buffer to its own size, and every byte taken from
// the budget is given back by Release.
func TestLargeMessageGrowsWithBytesReceived(t *testing.T) {
	if largeMin<<(len(largePools)-1) != largePoolMax {
		t.Fatalf("%d pools do not cover %d to %d", len(largePools), largeMin, largePoolMax)
	}
	lying := msg('Q', string(make([]byte, 100<<20)))[:HeaderLen+1000]
	b := &countingBudget{limit: 1 << 30}
	f := NewReader(bytes.NewReader(lying), bufio.NewWriter(io.Discard), 4096)
	_, n, err := f.Header(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	l := Large{Budget: b}
	if _, err := f.LargeMessage(&l, n); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	l.Release()
	if b.peak > 2*largeMin || b.used != 0 {
		t.Errorf("a 100 MB claim with 1000 bytes sent held %d bytes at most (%d after Release), want at most %d (0)", b.peak, b.used, 2*largeMin)
	}

	for _, size := range []int{40 << 10, 3 << 20, 5<<20 + 7} {
		m := msg('B', string(bytes.Repeat([]byte{'v'}, size)))
		b := &countingBudget{limit: 1 << 30}
		f := NewReader(iotest.HalfReader(bytes.NewReader(m)), bufio.NewWriter(io.Discard), 4096)
		_, n, _ := f.Header(1 << 30)
		l := Large{Budget: b}
		got, err := f.LargeMessage(&l, n)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("%d bytes: read %d bytes, %v", size, len(got), err)
		}
		// While it grows, the old and the new buffer are both held for a
		// moment: 1.5 times the message beyond 1 MiB, twice below.
		if limit := max(len(m)+len(m)/2+1, 2*largePoolMax); b.peak > limit {
			t.Errorf("%d bytes: held up to %d bytes", size, b.peak)
		}
		l.Release()
		if b.used != 0 {
			t.Errorf("%d bytes: %d bytes still held after Release", size, b.used)
		}
	}
}

// TestLargeMessageOverBudget: when the budget cannot hold the next step,
// LargeMessage says how much of the message is left; Skip passes over it and
// the message after it is read as usual.
func TestLargeMessageOverBudget(t *testing.T) {
	big := msg('Q', string(bytes.Repeat([]byte{'x'}, 1<<20))+"\x00")
	next := msg('S', "")
	b := &countingBudget{limit: 300 << 10}
	f := NewReader(iotest.HalfReader(bytes.NewReader(append(big, next...))), bufio.NewWriter(io.Discard), 4096)
	_, n, _ := f.Header(1 << 30)
	l := Large{Budget: b}
	_, err := f.LargeMessage(&l, n)
	var ob *OverBudgetError
	if !errors.As(err, &ob) {
		t.Fatalf("err = %v, want *OverBudgetError", err)
	}
	if ob.Type != 'Q' || ob.Size != len(big) || len(ob.Head)+ob.Left != len(big) || !bytes.Equal(ob.Head, big[:len(ob.Head)]) {
		t.Fatalf("OverBudgetError{Type %q, Size %d, %d head bytes, Left %d}; message of %d bytes", ob.Type, ob.Size, len(ob.Head), ob.Left, len(big))
	}
	l.Release()
	if b.used != 0 || b.peak > b.limit {
		t.Errorf("budget: %d bytes held after Release, peak %d of %d", b.used, b.peak, b.limit)
	}
	if err := f.Skip(ob.Left); err != nil {
		t.Fatal(err)
	}
	typ, n, err := f.Header(1 << 30)
	if err != nil || typ != 'S' || n != 0 {
		t.Fatalf("after Skip: %q %d %v, want the Sync", typ, n, err)
	}
}

// TestBeforeWait: BeforeWait runs before every read (Header, Message,
// LargeMessage), before the peer is flushed, and never while whole messages
// are buffered; its error is the reading call's.
func TestBeforeWait(t *testing.T) {
	m := append(msg('D', "ab"), msg('D', string(bytes.Repeat([]byte("y"), 300)))...)
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	f := NewReader(iotest.OneByteReader(bytes.NewReader(m)), w, 64)
	var calls int
	f.BeforeWait = func() error {
		calls++
		_, err := w.WriteString("held") // written before the peer's flush
		return err
	}
	_, n, err := f.Header(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Message(n); err != nil {
		t.Fatal(err)
	}
	_, n, err = f.Header(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.LargeMessage(&Large{}, n); err != nil {
		t.Fatal(err)
	}
	// One byte per read: one call per byte of input.
	if calls != len(m) {
		t.Errorf("BeforeWait ran %d times for %d one-byte reads", calls, len(m))
	}
	if want := bytes.Repeat([]byte("held"), calls); !bytes.Equal(out.Bytes(), want) || w.Buffered() != 0 {
		t.Errorf("peer got %d bytes, holds %d, want %d flushed: what BeforeWait wrote must go out before each read", out.Len(), w.Buffered(), len(want))
	}

	stop := errors.New("stop")
	f = NewReader(bytes.NewReader(m), w, 64)
	f.BeforeWait = func() error { return stop }
	if _, _, err := f.Header(1 << 20); err != stop {
		t.Errorf("Header: %v, want BeforeWait's error", err)
	}
}
