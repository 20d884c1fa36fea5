package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// TokenLen is the length of a token in hex digits (128 bits of
// HMAC-SHA-256).
const TokenLen = 32

// Token appends the keyed-hash token of a canonical plaintext: 32 lowercase
// hex digits of HMAC-SHA-256 under a key derived (HKDF) from the keyring's
// lowest loaded version. Equal plaintexts give equal tokens across every
// column of the keyring, so tokens join and count like the values, while
// revealing nothing of them without the key. Tokens stay the same while that
// version stays loaded: rotating the keyring (a new version) does not change
// them.
func (k *Keyring) Token(dst, plaintext []byte) ([]byte, error) {
	s := k.snap.Load()
	if len(s.keys) == 0 {
		return nil, k.emptyErr(s)
	}
	nk := s.keys[len(s.keys)-1]
	// hmac.New allocates; a pooled one is Reset to its keyed state.
	h, _ := nk.tokens.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, nk.sub.token[:])
	}
	h.Write(plaintext)
	var sum [sha256.Size]byte
	out := hex.AppendEncode(dst, h.Sum(sum[:0])[:TokenLen/2])
	h.Reset()
	nk.tokens.Put(h)
	return out, nil
}
