package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Reader splits a byte stream into PostgreSQL protocol messages without
// copying the ones that fit its buffer.
//
// Messages returned by Message alias the read buffer and are valid only until
// the next call on the Reader. Before any read that may block, the peer
// writer (the other leg's output) is flushed: output is batched while input
// keeps arriving and never held back while we wait, which both batches
// pipelined traffic and rules out deadlocks.
//
// A Reader is owned by exactly one goroutine.
type Reader struct {
	rd   io.Reader
	peer *bufio.Writer // flushed before a read that may block
	buf  []byte
	r, w int // buf[r:w] holds unread bytes

	// Stats receives the bytes and messages read, added at each flush so the
	// hot path does no atomic work per message. Nil: not counted.
	Stats        Counter
	nread, nmsgs int

	// BeforeWait, if set, runs before any read that may block, before the
	// peer is flushed (it may write to the peer). Its error is returned by
	// the call that was reading.
	BeforeWait func() error
}

// Counter receives the bytes and messages a Reader has read.
type Counter interface {
	Count(bytes, messages int)
}

// NewReader returns a Reader of rd with a buffer of size bytes that flushes
// peer before every read that may block.
func NewReader(rd io.Reader, peer *bufio.Writer, size int) *Reader {
	return &Reader{rd: rd, peer: peer, buf: make([]byte, size)}
}

// Buffered reports how many unread bytes are held.
func (f *Reader) Buffered() int { return f.w - f.r }

// Rest returns the unread bytes held and consumes them: the relay hands them
// on when it stops reading message by message.
func (f *Reader) Rest() []byte {
	rest := f.buf[f.r:f.w]
	f.r = f.w
	return rest
}

// Peek returns the next n bytes (n ≤ the buffer size) without consuming
// them; they alias the buffer until the next call.
func (f *Reader) Peek(n int) ([]byte, error) {
	if err := f.ensure(n); err != nil {
		return nil, err
	}
	return f.buf[f.r : f.r+n], nil
}

// wait prepares a read that may block: BeforeWait, then the peer's flush.
func (f *Reader) wait() error {
	if f.BeforeWait != nil {
		if err := f.BeforeWait(); err != nil {
			return err
		}
	}
	return f.flushPeer()
}

// flushPeer sends what the other leg has buffered.
func (f *Reader) flushPeer() error {
	if f.peer.Buffered() == 0 {
		return nil
	}
	f.Report()
	return f.peer.Flush()
}

// Report adds the bytes and messages read since the last report to Stats.
func (f *Reader) Report() {
	if f.Stats != nil && f.nread > 0 {
		f.Stats.Count(f.nread, f.nmsgs)
	}
	f.nread, f.nmsgs = 0, 0
}

// fill reads more bytes into the buffer, compacting it first if the unread
// part does not leave room for want bytes. It flushes the peer before reading.
func (f *Reader) fill(want int) error {
	if f.r == f.w {
		f.r, f.w = 0, 0
	} else if len(f.buf)-f.r < want {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if err := f.wait(); err != nil {
		return err
	}
	n, err := f.rd.Read(f.buf[f.w:])
	f.w += n
	f.nread += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// ensure makes at least n (≤ len(buf)) unread bytes available.
func (f *Reader) ensure(n int) error {
	for f.w-f.r < n {
		if err := f.fill(n); err != nil {
			if err == io.EOF && f.w > f.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// Header reads the next message header and returns its type and body length.
// The header stays unread: call Message, LargeMessage, Discard or Forward
// next.
func (f *Reader) Header(maxBody int) (typ byte, bodyLen int, err error) {
	if err := f.ensure(HeaderLen); err != nil {
		return 0, 0, err
	}
	f.nmsgs++
	typ = f.buf[f.r]
	l := int64(int32(binary.BigEndian.Uint32(f.buf[f.r+1:])))
	if l < 4 {
		return typ, 0, &ProtocolError{fmt.Sprintf("invalid message length %d for message type %q", l, typ)}
	}
	if l-4 > int64(maxBody) {
		return typ, 0, &MessageTooLargeError{Type: typ, Size: l - 4, Max: int64(maxBody)}
	}
	return typ, int(l - 4), nil
}

// Fits reports whether a message with this body length fits the buffer.
func (f *Reader) Fits(bodyLen int) bool { return HeaderLen+bodyLen <= len(f.buf) }

// Message returns the whole message (header included) whose header was just
// read. It requires Fits(bodyLen). The slice aliases the buffer and is valid
// until the next call on the Reader.
func (f *Reader) Message(bodyLen int) ([]byte, error) {
	n := HeaderLen + bodyLen
	if err := f.ensure(n); err != nil {
		return nil, err
	}
	m := f.buf[f.r : f.r+n]
	f.r += n
	return m, nil
}

// LargeMessage reads a message that does not fit the buffer (its header was
// just read) into l and returns it, header included; it is valid until
// l.Release. The buffer grows as the bytes arrive (see Large). When l's
// budget refuses a step, it returns an *OverBudgetError and the rest of the
// message is left unread.
func (f *Reader) LargeMessage(l *Large, bodyLen int) ([]byte, error) {
	n, typ := HeaderLen+bodyLen, f.buf[f.r]
	got := 0
	for got < n {
		if got == len(l.buf) && !l.grow(got, n) {
			return nil, &OverBudgetError{Type: typ, Size: n, Head: l.buf[:got], Left: n - got}
		}
		end := min(n, len(l.buf))
		if f.r < f.w {
			c := copy(l.buf[got:end], f.buf[f.r:f.w])
			f.r += c
			got += c
			continue
		}
		if err := f.wait(); err != nil {
			return nil, err
		}
		k, err := f.rd.Read(l.buf[got:end])
		f.nread += k
		got += k
		if err != nil && got < n {
			return nil, UnexpectedEOF(err)
		}
		if k == 0 && err == nil {
			return nil, io.ErrNoProgress
		}
	}
	return l.buf[:n], nil
}

// Forward copies the message whose header was just read to w, streaming it
// in buffer-sized chunks when it is larger than the buffer, so memory stays
// flat whatever the message size.
func (f *Reader) Forward(w *bufio.Writer, bodyLen int) error {
	if f.Fits(bodyLen) {
		m, err := f.Message(bodyLen)
		if err != nil {
			return err
		}
		_, err = w.Write(m)
		return err
	}
	left := HeaderLen + bodyLen
	for left > 0 {
		if f.r == f.w {
			if err := f.fill(1); err != nil {
				return UnexpectedEOF(err)
			}
		}
		chunk := min(left, f.w-f.r)
		if _, err := w.Write(f.buf[f.r : f.r+chunk]); err != nil {
			return err
		}
		f.r += chunk
		left -= chunk
	}
	return nil
}

// UnexpectedEOF turns io.EOF into io.ErrUnexpectedEOF: the stream ended
// inside a message.
func UnexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ProtocolError is a malformed message: the connection cannot continue.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return e.Msg }

// Protocol returns a *ProtocolError with msg.
func Protocol(msg string) error { return &ProtocolError{msg} }

// MessageTooLargeError is a message over limits.max_message_bytes.
type MessageTooLargeError struct {
	Type      byte
	Size, Max int64
}

func (e *MessageTooLargeError) Error() string {
	return fmt.Sprintf("message of type %q is %d bytes, over limits.max_message_bytes (%d)", e.Type, e.Size, e.Max)
}

// Discard skips the message whose header was just read.
func (f *Reader) Discard(bodyLen int) error { return f.Skip(HeaderLen + bodyLen) }

// Skip reads and drops the next n bytes: the rest of a message that
// LargeMessage left unread, say.
func (f *Reader) Skip(n int) error {
	for n > 0 {
		if f.r == f.w {
			if err := f.fill(1); err != nil {
				return UnexpectedEOF(err)
			}
		}
		chunk := min(n, f.w-f.r)
		f.r += chunk
		n -= chunk
	}
	return nil
}
