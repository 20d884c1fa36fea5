package proxy

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// msg builds one protocol message: type byte, int32 length, body.
func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
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
	if p.User != "alice" || p.Database != "alice" || p.ApplicationName != "app" {
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
