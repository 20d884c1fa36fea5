package crypto

import (
	"context"
	"fmt"
)

// KMS wraps data keys under a key-encryption key that never leaves it: Vault
// Transit in production (crypto/vault), a local master-key file for
// development (crypto/localkms). Only key loading and the keys commands call
// it; Encrypt and Decrypt never do.
//
// keyName names the KEK inside the KMS (the Transit key, e.g. "pgcloak-pii").
// Wrapped keys are opaque bytes to store in the pgcloak.keys table as they
// are. Implementations must be safe for concurrent use and must not log key
// bytes.
type KMS interface {
	// Wrap encrypts dek under the current version of the KEK keyName.
	Wrap(ctx context.Context, keyName string, dek []byte) (wrapped []byte, err error)
	// Unwrap decrypts a wrapped key. The caller owns the returned plaintext
	// and must wipe it (DEK.Zero) when done.
	Unwrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error)
	// Rewrap re-encrypts a wrapped key under the newest version of the KEK,
	// without the plaintext leaving the KMS where the KMS allows that (Vault
	// Transit's rewrap endpoint). The result replaces the stored bytes.
	Rewrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error)
}

// AddWrapped unwraps a stored data key with kms under the KEK keyName and adds
// it to the keyring as version. The plaintext key is wiped before return, so
// it exists only inside the keyring.
func (k *Keyring) AddWrapped(ctx context.Context, kms KMS, keyName string, version uint32, wrapped []byte) error {
	dek, err := kms.Unwrap(ctx, keyName, wrapped)
	if err != nil {
		return fmt.Errorf("keyring %q version %d: unwrap with KMS key %q: %w", k.name, version, keyName, err)
	}
	defer DEK(dek).Zero()
	return k.Add(version, dek)
}
