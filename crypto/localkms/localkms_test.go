package localkms

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/crypto"
)

var _ crypto.KMS = (*KMS)(nil)

func newTestKMS(t *testing.T) *KMS {
	t.Helper()
	k, err := New(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	k := newTestKMS(t)
	dek := crypto.NewDEK()
	w, err := k.Wrap(ctx, "pgcloak-pii", dek)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1+12+32+16 || w[0] != 1 {
		t.Fatalf("wrapped = %d bytes, first %#x", len(w), w[0])
	}
	if bytes.Contains(w, dek) {
		t.Fatal("wrapped key contains the plaintext")
	}
	got, err := k.Unwrap(ctx, "pgcloak-pii", w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap = %v", err)
	}
	if w2, _ := k.Wrap(ctx, "pgcloak-pii", dek); bytes.Equal(w, w2) {
		t.Fatal("two wraps of one key are equal: nonce not fresh")
	}

	if _, err := k.Unwrap(ctx, "other-key", w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("Unwrap under another key name: %v", err)
	}
	other, _ := New(bytes.Repeat([]byte{0x43}, 32))
	if _, err := other.Unwrap(ctx, "pgcloak-pii", w); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("Unwrap under another master key: %v", err)
	}
	for i := range len(w) * 8 {
		bad := bytes.Clone(w)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := k.Unwrap(ctx, "pgcloak-pii", bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("bit %d flipped: %v", i, err)
		}
	}
	for n := range len(w) {
		if _, err := k.Unwrap(ctx, "pgcloak-pii", w[:n]); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}

	rw, err := k.Rewrap(ctx, "pgcloak-pii", w)
	if err != nil || bytes.Equal(rw, w) {
		t.Fatalf("Rewrap: %v (same bytes: %v)", err, bytes.Equal(rw, w))
	}
	if got, err := k.Unwrap(ctx, "pgcloak-pii", rw); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap after Rewrap: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.Wrap(cctx, "pgcloak-pii", dek); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wrap with cancelled context: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dev-master.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v", fi.Mode())
	}
	if err := GenerateKeyFile(path); err == nil {
		t.Fatal("GenerateKeyFile overwrote an existing file")
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != 65 || raw[64] != '\n' {
		t.Fatalf("file = %q", raw)
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, _ := k.Wrap(ctx, "n", []byte("0123456789abcdef0123456789abcdef"))

	// The same key as 32 raw bytes opens the same wrapped keys.
	key, _ := hex.DecodeString(strings.TrimSpace(string(raw)))
	rawPath := filepath.Join(dir, "raw.key")
	os.WriteFile(rawPath, key, 0o600)
	k2, err := Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Unwrap(ctx, "n", w); err != nil {
		t.Fatalf("raw key file: %v", err)
	}

	// Nothing prints the key.
	for _, s := range []string{k.String(), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, string(raw[:16])) || strings.Contains(s, string(key[:8])) {
			t.Fatalf("key material in %q", s)
		}
	}

	os.Chmod(path, 0o644)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open of a 0644 file: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	if _, err := Open(bad); err == nil {
		t.Fatal("Open accepted a malformed key file")
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Open accepted a missing file")
	}
}

func TestWarning(t *testing.T) {
	if Warning != "local file KMS: for development only; the master key sits next to the data" {
		t.Fatalf("Warning = %q", Warning)
	}
}
