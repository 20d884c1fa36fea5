package crypto

import (
	"errors"
	"fmt"
)

var (
	// ErrAuthFailed means a value did not authenticate: it was changed,
	// truncated, written for another column, or encrypted under other key
	// bytes than the keyring holds for its version. No plaintext is returned.
	ErrAuthFailed = errors.New("pgcloak crypto: value failed authentication (tampered, truncated, or encrypted for another column or key)")

	// ErrNotCiphertext means a value does not start with the pgcloak header:
	// typically plaintext in a protected column that was never migrated.
	ErrNotCiphertext = errors.New("pgcloak crypto: value is not pgcloak ciphertext (no PGC header)")

	// ErrUnsupportedFormat means a value has the pgcloak magic but a format
	// version or mode this build does not know (written by a newer pgcloak, or
	// corrupted).
	ErrUnsupportedFormat = errors.New("pgcloak crypto: unsupported value format")

	// ErrSubjectValue means a keyring was asked to decrypt a Subject value,
	// which only its subject's key opens (SubjectKey.Decrypt). It is an
	// ErrUnsupportedFormat for the keyring.
	ErrSubjectValue = fmt.Errorf("%w: value is encrypted under a subject key, not a keyring version", ErrUnsupportedFormat)

	// ErrNoActiveKey means the keyring holds no key to encrypt with.
	ErrNoActiveKey = errors.New("pgcloak crypto: keyring has no key loaded")

	// ErrClosed means the keyring was wiped by Zero.
	ErrClosed = errors.New("pgcloak crypto: keyring is closed")

	// ErrInvalidColumn means the zero ColumnID was used: every value must be
	// bound to a column.
	ErrInvalidColumn = errors.New("pgcloak crypto: value not bound to a column (zero ColumnID)")
)

// UnknownKeyVersionError means a value names a key version that the keyring
// has not loaded: a version created by another instance since the last load,
// a version that was removed, or a damaged header. A loader may react by
// reloading the keyring once and retrying.
type UnknownKeyVersionError struct {
	Keyring string
	Version uint32
}

func (e *UnknownKeyVersionError) Error() string {
	return fmt.Sprintf("pgcloak crypto: keyring %q has no key version %d loaded", e.Keyring, e.Version)
}
