package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgcloak/pgcloak/crypto/internal/siv"
)

// Keyring is a named list of data key versions. The highest version encrypts;
// every loaded version decrypts.
//
// Concurrency: Encrypt and Decrypt take no lock. They read an immutable
// snapshot through an atomic pointer, so any number of session goroutines may
// call them while a loader calls Add. Writers (Add, Zero) are serialised by a
// mutex and publish a new snapshot. Zero is for shutdown: call it after the
// last Encrypt/Decrypt has returned, because it wipes key bytes that a call
// still in flight might be reading.
type Keyring struct {
	name string
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[snapshot]
}

// snapshot is one immutable state of a Keyring.
type snapshot struct {
	keys   []*key // sorted by version, descending: keys[0] encrypts
	closed bool
}

// key is one data key version, ready to use in both modes.
type key struct {
	version uint32
	gcm     cipher.AEAD
	siv     *siv.Cipher
	sub     *subkeys
	hdr     [2][HeaderLen]byte // header per mode (index Mode-1), also the AD prefix
	sivHdr  siv.State          // S2V state after the Deterministic header
	tokens  sync.Pool          // keyed hashes for Token (token.go)
}

// NewKeyring returns an empty keyring. name identifies it in errors and in the
// pgcloak.keys table (the config's key name, e.g. "pii").
func NewKeyring(name string) *Keyring {
	k := &Keyring{name: name}
	k.snap.Store(&snapshot{})
	return k
}

// Name returns the keyring's name.
func (k *Keyring) Name() string { return k.name }

// String describes the keyring without key material, for logs.
func (k *Keyring) String() string {
	s := k.snap.Load()
	if s.closed {
		return fmt.Sprintf("keyring %q (closed)", k.name)
	}
	return fmt.Sprintf("keyring %q versions %v", k.name, s.versions())
}

// Add loads a data key as version (1 or higher). dek is copied (subkeys are
// derived from it), so the caller may wipe it afterwards. Adding a version
// that is already loaded with the same key is a no-op, so a loader can re-add
// everything it reads; the same version with a different key is an error.
func (k *Keyring) Add(version uint32, dek []byte) error {
	if version == 0 {
		return fmt.Errorf("keyring %q: key version 0 is reserved; versions start at 1", k.name)
	}
	sub, err := deriveSubkeys(dek)
	if err != nil {
		return fmt.Errorf("keyring %q version %d: %w", k.name, version, err)
	}
	nk, err := newKey(version, sub)
	if err != nil {
		sub.zero()
		return fmt.Errorf("keyring %q version %d: %w", k.name, version, err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.snap.Load()
	if old.closed {
		nk.zero()
		return fmt.Errorf("keyring %q: %w", k.name, ErrClosed)
	}
	if have := old.lookup(version); have != nil {
		same := subtle.ConstantTimeCompare(have.sub.check[:], sub.check[:]) == 1
		nk.zero()
		if same {
			return nil
		}
		return fmt.Errorf("keyring %q: version %d is already loaded with a different key", k.name, version)
	}
	keys := make([]*key, 0, len(old.keys)+1)
	keys = append(keys, old.keys...)
	keys = append(keys, nk)
	slices.SortFunc(keys, func(a, b *key) int { return cmpDesc(a.version, b.version) })
	k.snap.Store(&snapshot{keys: keys})
	return nil
}

func cmpDesc(a, b uint32) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func newKey(version uint32, sub *subkeys) (*key, error) {
	blk, err := aes.NewCipher(sub.gcm[:])
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	s, err := siv.New(sub.siv[:])
	if err != nil {
		return nil, err
	}
	nk := &key{version: version, gcm: gcm, siv: s, sub: sub}
	appendHeader(nk.hdr[Randomized-1][:0], Randomized, version)
	appendHeader(nk.hdr[Deterministic-1][:0], Deterministic, version)
	nk.sivHdr = s.Absorb(s.Init(), nk.hdr[Deterministic-1][:])
	return nk, nil
}

// zero wipes what this package holds of the key. The AES key schedules inside
// crypto/aes and crypto/cipher cannot be wiped from Go; they become garbage
// with the key.
func (nk *key) zero() {
	nk.sub.zero()
	nk.siv.Zero()
	nk.gcm = nil
}

// Drop wipes version and unloads it, unless it is the newest (the active
// one, which stays): a version that a shred rotation destroyed must not
// stay usable in memory. Values under it then fail with
// *UnknownKeyVersionError. It reports whether it dropped a version.
func (k *Keyring) Drop(version uint32) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.snap.Load()
	if old.closed || len(old.keys) == 0 || old.keys[0].version == version {
		return false
	}
	keys := make([]*key, 0, len(old.keys))
	var gone *key
	for _, nk := range old.keys {
		if nk.version == version {
			gone = nk
			continue
		}
		keys = append(keys, nk)
	}
	if gone == nil {
		return false
	}
	k.snap.Store(&snapshot{keys: keys})
	// Encrypt and Decrypt may still hold the old snapshot for an instant;
	// the key bytes are wiped once they are done with it.
	time.AfterFunc(time.Second, gone.zero)
	return true
}

// Active returns the version that Encrypt uses, and false if none is loaded.
func (k *Keyring) Active() (version uint32, ok bool) {
	s := k.snap.Load()
	if len(s.keys) == 0 {
		return 0, false
	}
	return s.keys[0].version, true
}

// Has reports whether version is loaded.
func (k *Keyring) Has(version uint32) bool { return k.snap.Load().lookup(version) != nil }

// Versions returns the loaded versions, newest first.
func (k *Keyring) Versions() []uint32 { return k.snap.Load().versions() }

func (s *snapshot) versions() []uint32 {
	v := make([]uint32, len(s.keys))
	for i, nk := range s.keys {
		v[i] = nk.version
	}
	return v
}

func (s *snapshot) lookup(version uint32) *key {
	// Versions are few and the active one is by far the most common.
	for _, nk := range s.keys {
		if nk.version == version {
			return nk
		}
	}
	return nil
}

// Zero wipes every key and closes the keyring: later calls fail with
// ErrClosed. See the Keyring doc for when to call it. ColumnIDs keep their
// cached AES-SIV state (a CMAC output, not key material) until they are
// dropped.
func (k *Keyring) Zero() {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.snap.Swap(&snapshot{closed: true})
	for _, nk := range old.keys {
		nk.zero()
	}
}

// gcmAD returns the AES-GCM associated data of col under this key: the
// Randomized header || col's identity. It is cached on col for the active key
// (as sivState is); an older key's costs one allocation per value.
func (nk *key) gcmAD(col ColumnID, active bool) []byte {
	if c := col.p.gcmAD.Load(); c != nil && c.key == nk {
		return c.ad
	}
	ad := append(nk.hdr[Randomized-1][:], col.p.ad...)
	if active {
		col.p.gcmAD.Store(&gcmAD{key: nk, ad: ad})
	}
	return ad
}

// Encrypt encrypts plaintext for column col in mode with the active key,
// appends the value (see FORMAT.md) to dst and returns the extended slice. It
// allocates nothing when dst has room for len(plaintext) + mode.Overhead()
// more bytes. plaintext must not overlap dst's spare capacity.
func (k *Keyring) Encrypt(dst, plaintext []byte, col ColumnID, mode Mode) ([]byte, error) {
	s := k.snap.Load()
	if len(s.keys) == 0 {
		return nil, k.emptyErr(s)
	}
	if col.IsZero() {
		return nil, ErrInvalidColumn
	}
	nk := s.keys[0]
	switch mode {
	case Randomized:
		ret, out := grow(dst, RandomizedOverhead+len(plaintext))
		hdr := out[:HeaderLen]
		copy(hdr, nk.hdr[Randomized-1][:])
		nonce := out[HeaderLen : HeaderLen+gcmNonceLen]
		rand.Read(nonce) // never fails: since Go 1.24 a broken entropy source crashes the program
		nk.gcm.Seal(out[HeaderLen+gcmNonceLen:HeaderLen+gcmNonceLen], nonce, plaintext, nk.gcmAD(col, true))
		return ret, nil
	case Deterministic:
		ret, out := grow(dst, DeterministicOverhead+len(plaintext))
		copy(out, nk.hdr[Deterministic-1][:])
		st := nk.sivState(col, true)
		nk.siv.SealFrom(out[HeaderLen:HeaderLen], &st, plaintext)
		return ret, nil
	}
	return nil, fmt.Errorf("pgcloak crypto: cannot encrypt in %v", mode)
}

// Decrypt authenticates and decrypts value, a value that Encrypt made for
// column col, appends the plaintext to dst and returns the extended slice. The
// mode and key version come from the value's header. Errors: ErrNotCiphertext,
// ErrUnsupportedFormat, ErrSubjectValue, *UnknownKeyVersionError, ErrAuthFailed (tampered,
// truncated, other column, other key). On error no plaintext is returned or
// left in dst's spare capacity. It allocates nothing when dst has room for
// the plaintext. value must not overlap dst's spare capacity.
func (k *Keyring) Decrypt(dst, value []byte, col ColumnID) ([]byte, error) {
	out, _, err := k.DecryptVersion(dst, value, col)
	return out, err
}

// DecryptVersion is Decrypt that also returns the key version the value
// was encrypted under (the audit log's), so that a reader needs no header
// of its own.
func (k *Keyring) DecryptVersion(dst, value []byte, col ColumnID) (plain []byte, version uint32, err error) {
	version, ok := keyringHeader(value)
	if !ok {
		h, err := ParseHeader(value)
		if err == nil { // a valid header of another mode
			_, err = k.decrypt(dst, value, h.Mode, h.KeyVersion, col)
		}
		return nil, 0, err
	}
	if plain, err = k.decrypt(dst, value, Mode(value[4]), version, col); err != nil {
		return nil, 0, err
	}
	return plain, version, nil
}

// DecryptParsed is Decrypt for a value whose header the caller has parsed
// already (h, from ParseHeader(value)): a reader that needs the header too
// parses it once.
func (k *Keyring) DecryptParsed(dst, value []byte, h Header, col ColumnID) ([]byte, error) {
	return k.decrypt(dst, value, h.Mode, h.KeyVersion, col)
}

// decrypt is Decrypt of a value whose header names mode and version.
func (k *Keyring) decrypt(dst, value []byte, mode Mode, version uint32, col ColumnID) ([]byte, error) {
	if col.IsZero() {
		return nil, ErrInvalidColumn
	}
	if mode == Subject {
		return nil, ErrSubjectValue
	}
	s := k.snap.Load()
	nk := s.lookup(version)
	if nk == nil {
		if s.closed {
			return nil, ErrClosed
		}
		return nil, &UnknownKeyVersionError{Keyring: k.name, Version: version}
	}
	if len(value) < mode.Overhead() {
		return nil, ErrAuthFailed
	}
	switch mode {
	case Randomized:
		// The value's header is nk.hdr[Randomized-1]: the header was
		// checked field by field and the key version picked nk.
		nonce := value[HeaderLen : HeaderLen+gcmNonceLen]
		out, err := nk.gcm.Open(dst, nonce, value[HeaderLen+gcmNonceLen:], nk.gcmAD(col, nk == s.keys[0]))
		if err != nil {
			return nil, ErrAuthFailed
		}
		return out, nil
	default: // Deterministic; the header parsers accept no other mode
		// The header is part of the AD; for this key and mode it is always
		// nk.hdr[Deterministic-1], which nk.sivHdr has absorbed.
		st := nk.sivState(col, nk == s.keys[0])
		out, err := nk.siv.OpenFrom(dst, &st, value[HeaderLen:])
		if err != nil {
			return nil, ErrAuthFailed
		}
		return out, nil
	}
}

// sivState returns the S2V state after the Deterministic header and col's
// identity for this key, from col's cache when it was made for this key.
// Only the active key's state is cached: values under older keys are rare
// once re-encrypted, and caching them would make a mixed read replace the
// entry (one allocation) on every switch.
func (nk *key) sivState(col ColumnID, active bool) siv.State {
	if c := col.p.siv.Load(); c != nil && c.key == nk {
		return c.st
	}
	st := nk.siv.Absorb(nk.sivHdr, col.p.ad)
	if active {
		col.p.siv.Store(&sivState{key: nk, st: st})
	}
	return st
}

func (k *Keyring) emptyErr(s *snapshot) error {
	if s.closed {
		return ErrClosed
	}
	return fmt.Errorf("keyring %q: %w", k.name, ErrNoActiveKey)
}

// grow extends dst by n bytes, reusing its capacity when it can, and returns
// the whole slice and the new tail.
func grow(dst []byte, n int) (whole, tail []byte) {
	whole = slices.Grow(dst, n)[:len(dst)+n]
	return whole, whole[len(dst):]
}
