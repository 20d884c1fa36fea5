// Package localkms is a KMS backed by a 256-bit master key in a local file. It
// exists for the demo and for development: the master key sits on the same
// machine as the data it protects, so it protects nothing against anyone who
// can read that machine. Production uses Vault Transit.
//
// A wrapped key is
//
//	0x01 | nonce (12 bytes) | AES-256-GCM(master key, DEK) with its 16-byte tag
//
// with the associated data "pgcloak localkms v1" 0x00 keyName, so a wrapped
// key only unwraps under the key name it was wrapped for.
package localkms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Warning is what a caller must print, prominently, whenever it uses this KMS.
// Open itself logs nothing.
const Warning = "local file KMS: for development only; the master key sits next to the data"

const (
	masterKeyLen  = 32
	formatVersion = 1
	nonceLen      = 12
	adPrefix      = "pgcloak localkms v1\x00"
)

// ErrUnwrap means a wrapped key did not decrypt: another master key file,
// another key name, or damaged bytes.
var ErrUnwrap = errors.New("local KMS: cannot unwrap (wrong master key file, wrong key name, or damaged wrapped key)")

// KMS wraps data keys with AES-256-GCM under the master key. It implements
// crypto.KMS and is safe for concurrent use.
type KMS struct {
	path string
	aead cipher.AEAD
}

// GenerateKeyFile writes a new random master key to path as 64 hex digits and
// a newline, with mode 0600. It never overwrites: losing a master key loses
// every value encrypted under the keys it wraps.
func GenerateKeyFile(path string) error {
	key := make([]byte, masterKeyLen)
	rand.Read(key) // never fails: since Go 1.24 a broken entropy source crashes the program
	defer clear(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("local KMS: create master key file: %w", err)
	}
	buf := make([]byte, 2*masterKeyLen+1)
	defer clear(buf)
	hex.Encode(buf, key)
	buf[len(buf)-1] = '\n'
	if _, err := f.Write(buf); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("local KMS: write master key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("local KMS: write master key file: %w", err)
	}
	return nil
}

// Open reads a master key file: 64 hex digits (surrounding white space
// ignored) or exactly 32 raw bytes. It refuses a file that group or others
// may read or write, as ssh does for private keys.
func Open(path string) (*KMS, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("local KMS: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("local KMS: master key file %s has mode %#o, open to group or others; run chmod 600 %s", path, perm, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("local KMS: %w", err)
	}
	defer clear(raw)
	key, err := parseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("local KMS: master key file %s: %w", path, err)
	}
	defer clear(key)
	k, err := New(key)
	if err != nil {
		return nil, err
	}
	k.path = path
	return k, nil
}

func parseKey(raw []byte) ([]byte, error) {
	if len(raw) == masterKeyLen {
		return append([]byte(nil), raw...), nil
	}
	s := strings.TrimSpace(string(raw))
	if len(s) != 2*masterKeyLen {
		return nil, fmt.Errorf("want %d hex digits or %d raw bytes, found %d bytes", 2*masterKeyLen, masterKeyLen, len(raw))
	}
	key, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid hex")
	}
	return key, nil
}

// New returns a KMS for a 32-byte master key held in memory (tests, or keys
// that come from somewhere other than a file). The caller may wipe masterKey
// afterwards.
func New(masterKey []byte) (*KMS, error) {
	if len(masterKey) != masterKeyLen {
		return nil, fmt.Errorf("local KMS: master key must be %d bytes, got %d", masterKeyLen, len(masterKey))
	}
	blk, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &KMS{aead: aead}, nil
}

// Path returns the master key file, or "" for New.
func (k *KMS) Path() string { return k.path }

// String describes the KMS without key material.
func (k *KMS) String() string { return "local file KMS " + k.path }

// GoString is String, so %#v cannot print internals either.
func (k *KMS) GoString() string { return k.String() }

// Wrap encrypts dek for keyName under the master key.
func (k *KMS) Wrap(ctx context.Context, keyName string, dek []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(dek) == 0 {
		return nil, errors.New("local KMS: empty key")
	}
	out := make([]byte, 1+nonceLen, 1+nonceLen+len(dek)+k.aead.Overhead())
	out[0] = formatVersion
	nonce := out[1 : 1+nonceLen]
	rand.Read(nonce)
	return k.aead.Seal(out, nonce, dek, []byte(adPrefix+keyName)), nil
}

// Unwrap decrypts a key that Wrap made for keyName. The caller must wipe the
// result when done.
func (k *KMS) Unwrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(wrapped) < 1+nonceLen+k.aead.Overhead() || wrapped[0] != formatVersion {
		return nil, ErrUnwrap
	}
	dek, err := k.aead.Open(nil, wrapped[1:1+nonceLen], wrapped[1+nonceLen:], []byte(adPrefix+keyName))
	if err != nil {
		return nil, ErrUnwrap
	}
	return dek, nil
}

// Rewrap unwraps and wraps again with a fresh nonce. The local KMS has one
// master key version, so this exists for the interface (and to exercise
// `pgcloak keys rewrap` in development); the plaintext is wiped at once.
func (k *KMS) Rewrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	dek, err := k.Unwrap(ctx, keyName, wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return k.Wrap(ctx, keyName, dek)
}
