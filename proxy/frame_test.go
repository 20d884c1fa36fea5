package proxy

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
func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	putUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// relayAll reads messages from in with a frameReader and forwards them all
// to a buffer, as the relay loops do.
func relayAll(t *testing.T, in io.Reader, bufSize, maxBody int) ([]byte, []byte, error) {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, 64)
	f := newFrameReader(in, w, bufSize)
	var types []byte
	for {
		typ, n, err := f.header(maxBody)
		if err != nil {
			w.Flush()
			return out.Bytes(), types, err
		}
		types = append(types, typ)
		if err := f.forward(w, n); err != nil {
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
		{"length below 4", []byte{'Q', 0, 0, 0, 3}, func(err error) bool { var pe *protocolError; return errors.As(err, &pe) }},
		{"negative length", []byte{'Q', 0x80, 0, 0, 0}, func(err error) bool { var pe *protocolError; return errors.As(err, &pe) }},
		{"2 GiB length", []byte{'Q', 0x7f, 0xff, 0xff, 0xff}, func(err error) bool {
			var tl *messageTooLargeError
			return errors.As(err, &tl) && tl.size == 0x7fffffff-4 && tl.typ == 'Q'
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
	f := newFrameReader(pr, w, 4096)
	go func() {
		pw.Write(append(msg('Q', "a\x00"), msg('Q', "b\x00")...))
	}()
	for range 2 {
		_, n, err := f.header(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.forward(w, n); err != nil {
			t.Fatal(err)
		}
	}
	if out.Len() != 0 {
		t.Fatalf("flushed %d bytes while input was still buffered", out.Len())
	}
	// The next header needs a read that blocks: the two messages go out first.
	done := make(chan struct{})
	go func() { f.header(1 << 20); close(done) }()
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
	f := newFrameReader(iotest.HalfReader(bytes.NewReader(m)), w, 64)
	_, n, err := f.header(1 << 20)
	if err != nil || f.fits(n) {
		t.Fatalf("header: n=%d fits=%v err=%v", n, f.fits(n), err)
	}
	got, err := f.largeMessage(nil, n)
	if err != nil || !bytes.Equal(got, m) {
		t.Fatalf("largeMessage = %q, %v", got, err)
	}
}

func TestWithoutChannelBinding(t *testing.T) {
	in := msg('R', "\x00\x00\x00\x0aSCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00")
	want := msg('R', "\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00")
	if got := withoutChannelBinding(in); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	plain := msg('R', "\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00")
	if got := withoutChannelBinding(plain); !bytes.Equal(got, plain) {
		t.Fatalf("a list without PLUS changed: %q", got)
	}
}

func TestParseStartupParams(t *testing.T) {
	pkt := startupPacket(t, "user", "alice", "options", "-c search_path=x", "application_name", "app")
	p, err := parseStartupParams(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if p.user != "alice" || p.database != "alice" || p.application != "app" {
		t.Fatalf("got %+v", p)
	}
	bad := append([]byte(nil), pkt[:len(pkt)-1]...) // no final terminator
	if _, err := parseStartupParams(bad); err == nil {
		t.Fatal("accepted a packet without its terminator")
	}
}

func startupPacket(t testing.TB, kv ...string) []byte {
	t.Helper()
	b := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	putUint32(b, uint32(len(b)))
	return b
}
