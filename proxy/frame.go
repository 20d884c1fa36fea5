package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// headerLen is the size of a regular protocol message header: a type byte and
// an int32 length that counts itself but not the type byte.
const headerLen = 5

// frameReader splits a byte stream into PostgreSQL protocol messages without
// copying the ones that fit its buffer.
//
// Messages returned by message alias the read buffer and are valid only until
// the next call on the frameReader. Before any read that may block, the peer
// writer (the other leg's output) is flushed: output is batched while input
// keeps arriving and never held back while we wait, which both batches
// pipelined traffic and rules out deadlocks.
//
// A frameReader is owned by exactly one goroutine.
type frameReader struct {
	rd   io.Reader
	peer *bufio.Writer // flushed before a read that may block
	buf  []byte
	r, w int // buf[r:w] holds unread bytes

	// stats receives the bytes and messages read, added at each flush so the
	// hot path does no atomic work per message. Nil: not counted.
	stats        *dirStats
	nread, nmsgs int
}

func newFrameReader(rd io.Reader, peer *bufio.Writer, size int) *frameReader {
	return &frameReader{rd: rd, peer: peer, buf: make([]byte, size)}
}

// buffered reports how many unread bytes are held.
func (f *frameReader) buffered() int { return f.w - f.r }

// flushPeer sends what the other leg has buffered.
func (f *frameReader) flushPeer() error {
	if f.peer.Buffered() == 0 {
		return nil
	}
	f.report()
	return f.peer.Flush()
}

// report adds the bytes and messages read since the last report to stats.
func (f *frameReader) report() {
	if f.stats != nil && f.nread > 0 {
		f.stats.bytes.Add(float64(f.nread))
		f.stats.messages.Add(float64(f.nmsgs))
	}
	f.nread, f.nmsgs = 0, 0
}

// fill reads more bytes into the buffer, compacting it first if the unread
// part does not leave room for want bytes. It flushes the peer before reading.
func (f *frameReader) fill(want int) error {
	if f.r == f.w {
		f.r, f.w = 0, 0
	} else if len(f.buf)-f.r < want {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if err := f.flushPeer(); err != nil {
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
func (f *frameReader) ensure(n int) error {
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

// header reads the next message header and returns its type and body length.
// The header stays unread: call message, discard or forward next.
func (f *frameReader) header(maxBody int) (typ byte, bodyLen int, err error) {
	if err := f.ensure(headerLen); err != nil {
		return 0, 0, err
	}
	f.nmsgs++
	typ = f.buf[f.r]
	l := int64(int32(binary.BigEndian.Uint32(f.buf[f.r+1:])))
	if l < 4 {
		return typ, 0, &protocolError{fmt.Sprintf("invalid message length %d for message type %q", l, typ)}
	}
	if l-4 > int64(maxBody) {
		return typ, 0, &messageTooLargeError{typ: typ, size: l - 4, max: int64(maxBody)}
	}
	return typ, int(l - 4), nil
}

// fits reports whether a message with this body length fits the buffer.
func (f *frameReader) fits(bodyLen int) bool { return headerLen+bodyLen <= len(f.buf) }

// message returns the whole message (header included) whose header was just
// read. It requires fits(bodyLen). The slice aliases the buffer.
func (f *frameReader) message(bodyLen int) ([]byte, error) {
	n := headerLen + bodyLen
	if err := f.ensure(n); err != nil {
		return nil, err
	}
	m := f.buf[f.r : f.r+n]
	f.r += n
	return m, nil
}

// largeMessage reads a message that does not fit the buffer into dst (grown
// as needed) and returns it, header included.
func (f *frameReader) largeMessage(dst []byte, bodyLen int) ([]byte, error) {
	n := headerLen + bodyLen
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	got := copy(dst, f.buf[f.r:f.w])
	f.r += got
	if err := f.flushPeer(); err != nil {
		return nil, err
	}
	n2, err := io.ReadFull(f.rd, dst[got:])
	f.nread += n2
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	return dst, nil
}

// forward copies the message whose header was just read to w, streaming it
// in buffer-sized chunks when it is larger than the buffer, so memory stays
// flat whatever the message size.
func (f *frameReader) forward(w *bufio.Writer, bodyLen int) error {
	if f.fits(bodyLen) {
		m, err := f.message(bodyLen)
		if err != nil {
			return err
		}
		_, err = w.Write(m)
		return err
	}
	left := headerLen + bodyLen
	for left > 0 {
		if f.r == f.w {
			if err := f.fill(1); err != nil {
				return unexpectedEOF(err)
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

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// protocolError is a malformed message: the connection cannot continue.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

// messageTooLargeError is a message over limits.max_message_bytes.
type messageTooLargeError struct {
	typ       byte
	size, max int64
}

func (e *messageTooLargeError) Error() string {
	return fmt.Sprintf("message of type %q is %d bytes, over limits.max_message_bytes (%d)", e.typ, e.size, e.max)
}

// discard skips the message whose header was just read.
func (f *frameReader) discard(bodyLen int) error {
	left := headerLen + bodyLen
	for left > 0 {
		if f.r == f.w {
			if err := f.fill(1); err != nil {
				return unexpectedEOF(err)
			}
		}
		chunk := min(left, f.w-f.r)
		f.r += chunk
		left -= chunk
	}
	return nil
}
