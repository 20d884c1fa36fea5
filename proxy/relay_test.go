package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/config"
)

// scriptedUpstream is a loopback PostgreSQL stand-in: it accepts any login
// (AuthenticationOk, BackendKeyData, ReadyForQuery) and answers each Query
// with the result its handler returns.
func scriptedUpstream(t *testing.T, answer func(query []byte) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				var n [4]byte
				if _, err := io.ReadFull(r, n[:]); err != nil {
					return
				}
				if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:])) - 4); err != nil {
					return
				}
				login := append(msg('R', "\x00\x00\x00\x00"), msg('K', "\x00\x00\x00\x07\x00\x00\x00\x09")...)
				if _, err := c.Write(append(login, msg('Z', "I")...)); err != nil {
					return
				}
				for {
					var hdr [5]byte
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					if hdr[0] == 'X' {
						return
					}
					if hdr[0] == 'Q' {
						if _, err := c.Write(answer(body)); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// plainProxy runs a Server without hooks in front of upstream.
func plainProxy(t *testing.T, upstream string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(upstream)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream = fmt.Sprintf("host=%s port=%s sslmode=disable", host, port)
	srv, err := NewServer(cfg, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// TestFastRelayBackPressure drives the fast relay (a plain session) with
// results far larger than the socket buffers to a client that reads slowly,
// so its writes come up short again and again: every byte must arrive, in
// order, and the session must go on to the next query.
func TestFastRelayBackPressure(t *testing.T) {
	const rows = 20000
	result := func(q []byte) []byte {
		var b bytes.Buffer
		for i := range rows {
			row := fmt.Sprintf("%s row %08d %s", q[:1], i, bytes.Repeat([]byte{'x'}, 200))
			b.Write(msg('D', "\x00\x01"+string(binary.BigEndian.AppendUint32(nil, uint32(len(row))))+row))
		}
		b.Write(msg('C', "SELECT 20000\x00"))
		b.Write(msg('Z', "I"))
		return b.Bytes()
	}
	addr := plainProxy(t, scriptedUpstream(t, result))
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(startupPacket(t, "user", "u", "database", "d")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(c, 512)
	readMsg := func() (byte, []byte) {
		t.Helper()
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		return hdr[0], body
	}
	for typ := byte(0); typ != 'Z'; {
		typ, _ = readMsg()
	}
	for _, q := range []string{"a", "b", "c"} {
		if _, err := c.Write(msg('Q', q+"\x00")); err != nil {
			t.Fatal(err)
		}
		want := result([]byte(q))
		for i := 0; len(want) > 0; i++ {
			typ, body := readMsg()
			m := msg(typ, string(body))
			if !bytes.HasPrefix(want, m) {
				t.Fatalf("query %s, message %d: got %q…", q, i, m[:min(len(m), 40)])
			}
			want = want[len(m):]
			if i%1000 == 0 {
				time.Sleep(2 * time.Millisecond) // a slow reader: the proxy's writes to it come up short
			}
		}
	}
	if _, err := c.Write(msg('X', "")); err != nil {
		t.Fatal(err)
	}
}
