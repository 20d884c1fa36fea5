package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
)

// infoSubjectGCM separates the AES-256-GCM key of a subject key from any
// other use of its bytes. Changing it is a format change.
const infoSubjectGCM = "pgcloak v1 subject AES-256-GCM"

// SubjectKeyID names a subject key. It is 16 bytes from crypto/rand: every
// Subject value carries it, and it says nothing about the subject.
type SubjectKeyID [SubjectKeyIDLen]byte

// NewSubjectKeyID returns a fresh random id.
func NewSubjectKeyID() SubjectKeyID {
	var id SubjectKeyID
	rand.Read(id[:]) // never fails: since Go 1.24 a broken entropy source crashes the program
	return id
}

// String is the id in hex.
func (id SubjectKeyID) String() string { return hex.EncodeToString(id[:]) }

// SubjectKey is the data key of one subject (a customer, say): the values
// of subject-keyed columns in that subject's rows are encrypted under it, in
// mode Subject, and destroying it erases them all at once (FORMAT.md,
// "Subject values"). It is safe for concurrent use and holds no lock.
//
// The AES key schedule inside crypto/aes cannot be wiped from Go; a
// SubjectKey keeps no other copy of key bytes, and is dropped with the
// last reference to it.
type SubjectKey struct {
	id  SubjectKeyID
	gcm cipher.AEAD
	hdr [SubjectHeaderLen]byte
}

// NewSubjectKey makes the key with this id from its 32-byte data key. dek
// is not kept (the caller wipes it).
func NewSubjectKey(id SubjectKeyID, dek []byte) (*SubjectKey, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("subject key %s: data key must be %d bytes, got %d", id, DEKSize, len(dek))
	}
	k, err := hkdf.Key(sha256.New, dek, nil, infoSubjectGCM, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	sk := &SubjectKey{id: id, gcm: gcm}
	copy(sk.hdr[:], Magic)
	sk.hdr[3], sk.hdr[4] = FormatVersion, byte(Subject)
	copy(sk.hdr[HeaderPrefixLen:], id[:])
	return sk, nil
}

// ID returns the key's id.
func (k *SubjectKey) ID() SubjectKeyID { return k.id }

// String names the key by its id, never its bytes.
func (k *SubjectKey) String() string { return "subject key " + k.id.String() }

// adPool holds the buffers the associated data (header ‖ identity) is
// assembled in: GCM takes it as one slice, and building it per value must
// not allocate.
var adPool = sync.Pool{New: func() any { b := make([]byte, 0, SubjectHeaderLen+3*maxNameLen+2); return &b }}

func (k *SubjectKey) ad(col ColumnID) *[]byte {
	p := adPool.Get().(*[]byte)
	*p = append(append((*p)[:0], k.hdr[:]...), col.p.ad...)
	return p
}

// Encrypt encrypts plaintext for column col under this subject key,
// appends the Subject value to dst and returns the extended slice. It
// allocates nothing when dst has room for len(plaintext) + SubjectOverhead
// more bytes. plaintext must not overlap dst's spare capacity.
func (k *SubjectKey) Encrypt(dst, plaintext []byte, col ColumnID) ([]byte, error) {
	if col.IsZero() {
		return nil, ErrInvalidColumn
	}
	ret, out := grow(dst, SubjectOverhead+len(plaintext))
	copy(out, k.hdr[:])
	nonce := out[SubjectHeaderLen : SubjectHeaderLen+gcmNonceLen]
	rand.Read(nonce)
	ad := k.ad(col)
	k.gcm.Seal(out[SubjectHeaderLen+gcmNonceLen:SubjectHeaderLen+gcmNonceLen], nonce, plaintext, *ad)
	adPool.Put(ad)
	return ret, nil
}

// Decrypt authenticates and decrypts a Subject value that Encrypt made for
// column col under this key, appends the plaintext to dst and returns the
// extended slice. Errors: ErrNotCiphertext, ErrUnsupportedFormat (not a
// Subject value), ErrAuthFailed (tampered, truncated, another column, or
// another subject's key). No plaintext is returned on error.
func (k *SubjectKey) Decrypt(dst, value []byte, col ColumnID) ([]byte, error) {
	h, err := ParseHeader(value)
	if err != nil {
		return nil, err
	}
	if h.Mode != Subject {
		return nil, fmt.Errorf("%w: a %v value is not under a subject key", ErrUnsupportedFormat, h.Mode)
	}
	if col.IsZero() {
		return nil, ErrInvalidColumn
	}
	if h.KeyID != k.id || len(value) < SubjectOverhead {
		return nil, ErrAuthFailed
	}
	ad := k.ad(col)
	out, err := k.gcm.Open(dst, value[SubjectHeaderLen:SubjectHeaderLen+gcmNonceLen], value[SubjectHeaderLen+gcmNonceLen:], *ad)
	adPool.Put(ad)
	if err != nil {
		return nil, ErrAuthFailed
	}
	return out, nil
}
