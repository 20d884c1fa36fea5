// Package crypto holds pgcloak's value format, its two ciphers, the in-memory
// keyring and the KMS interface that wraps data keys. FORMAT.md in this
// directory is the byte-exact reference with worked examples; this comment is
// the summary.
//
// # Value format (version 1)
//
//	offset  len  field
//	0       3    magic "PGC" (50 47 43)
//	3       1    format version, 01
//	4       1    mode: 01 randomized (AES-256-GCM), 02 deterministic (AES-SIV)
//	5       4    key version, uint32 big-endian (1 or higher)
//	9       …    body
//	             randomized:    nonce (12) | ciphertext | GCM tag (16)   overhead 37
//	             deterministic: SIV (16)   | ciphertext                  overhead 25
//
// The associated data binds every value to its header and its column:
//
//	randomized:    AD = header (9 bytes) || identity           (one GCM AD string)
//	deterministic: S2V components (header, identity), in that order (RFC 5297)
//	identity:      schema 0x00 table 0x00 column                (see ColumnID)
//
// so a value copied to another column, or with any header byte changed, does
// not decrypt (ErrAuthFailed), and every single-bit change anywhere is
// detected.
//
// # Keys
//
// A keyring version is one 256-bit data key (DEK). Each mode uses its own key
// derived with HKDF-SHA-256 (no salt): 32 bytes with info "pgcloak v1
// AES-256-GCM", 64 bytes with info "pgcloak v1 AES-SIV-CMAC-512". So one
// stored (wrapped) DEK per version serves both modes, and no AES key is ever
// used by two algorithms.
//
// The highest loaded version encrypts; every loaded version decrypts. A value
// under a version not loaded fails with *UnknownKeyVersionError (a loader may
// reload once and retry). Encrypt and Decrypt never call a KMS: data keys are
// unwrapped once, at load (Keyring.AddWrapped), and live only in the keyring.
//
// # Hot path
//
// Encrypt and Decrypt append to the caller's buffer and allocate nothing when
// it has room; they take no lock (an atomic pointer to an immutable snapshot).
// A ColumnID caches the AES-SIV state of its header and identity for the
// active key, so a deterministic value costs only the CMAC of its plaintext
// and the CTR pass. bench_test.go holds the measured figures.
//
// # Limits and caveats
//
//   - Randomized mode uses 96-bit random nonces: rotate the DEK before about
//     2^32 values have been encrypted under one version (NIST SP 800-38D),
//     which keeps the chance of a nonce collision below 2^-32.
//   - Deterministic mode reveals which rows of a column hold equal values
//     (that is its purpose), and nothing else; values are not comparable
//     across columns or key versions.
//   - The identity is the catalog names: renaming a schema, table or column
//     changes it, and values written before need the old names.
//   - Keyring.Zero wipes the DEK-derived keys this package holds. The AES key
//     schedules inside Go's crypto/aes cannot be wiped from Go; they are
//     dropped with the keyring, as are the per-column AES-SIV states (CMAC
//     outputs, not keys) with their ColumnIDs.
//   - A DEK prints as "[redacted]" under fmt, log/slog and encoding/json; a
//     Keyring prints its name and versions only.
package crypto
