package crypto

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
)

// DEKSize is the length of a data key: 256 bits, what Vault Transit's datakey
// endpoint returns by default.
const DEKSize = 32

// HKDF info strings that separate the keys derived from one DEK, so one
// keyring version serves both modes without using one AES key for two
// algorithms. Changing any of them is a format change.
const (
	infoGCM   = "pgcloak v1 AES-256-GCM"
	infoSIV   = "pgcloak v1 AES-SIV-CMAC-512"
	infoCheck = "pgcloak v1 key check"
	infoToken = "pgcloak v1 HMAC-SHA-256 token"
)

const redacted = "[redacted]"

// DEK is the plaintext of a data key. It formats as "[redacted]" under fmt,
// log/slog, encoding/json and any logger that honours fmt.Stringer, so that key
// bytes cannot reach a log by accident. Its underlying type is []byte, so it
// can be passed to KMS methods as it is.
type DEK []byte

// NewDEK returns a fresh 256-bit data key from crypto/rand.
func NewDEK() DEK {
	k := make(DEK, DEKSize)
	rand.Read(k) // never fails: since Go 1.24 a broken entropy source crashes the program
	return k
}

// Zero overwrites the key bytes with zeros.
func (k DEK) Zero() { clear(k) }

func (k DEK) String() string                { return redacted }
func (k DEK) GoString() string              { return redacted }
func (k DEK) Format(f fmt.State, verb rune) { f.Write([]byte(redacted)) }
func (k DEK) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (k DEK) MarshalText() ([]byte, error)  { return []byte(redacted), nil }

// subkeys are the per-mode keys derived from one DEK with HKDF-SHA-256
// (RFC 5869, no salt): 32 bytes for AES-256-GCM, 64 for AES-SIV, and a 32-byte
// check value that lets Keyring.Add tell a repeated load of the same key from
// a conflicting one without keeping the DEK.
type subkeys struct {
	gcm   [32]byte
	siv   [64]byte
	check [32]byte
	token [32]byte // keyed-hash tokens of masked values (token.go)
}

func deriveSubkeys(dek []byte) (*subkeys, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("data key must be %d bytes, got %d", DEKSize, len(dek))
	}
	s := new(subkeys)
	for _, d := range [...]struct {
		out  []byte
		info string
	}{{s.gcm[:], infoGCM}, {s.siv[:], infoSIV}, {s.check[:], infoCheck}, {s.token[:], infoToken}} {
		k, err := hkdf.Key(sha256.New, dek, nil, d.info, len(d.out))
		if err != nil {
			return nil, err
		}
		copy(d.out, k)
		clear(k)
	}
	return s, nil
}

func (s *subkeys) zero() {
	clear(s.gcm[:])
	clear(s.siv[:])
	clear(s.check[:])
	clear(s.token[:])
}
