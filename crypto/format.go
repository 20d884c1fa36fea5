package crypto

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Value format constants. FORMAT.md has the byte layout with worked examples.
const (
	// Magic starts every pgcloak value ("PGC", 0x50 0x47 0x43).
	Magic = "PGC"
	// FormatVersion is the only format version this code reads and writes.
	FormatVersion = 1
	// HeaderLen is the length of magic, format version, mode and key version.
	HeaderLen = 9

	gcmNonceLen = 12
	gcmTagLen   = 16
	sivLen      = 16

	// RandomizedOverhead is the number of bytes a Randomized value adds to its
	// plaintext: header, 12-byte nonce, 16-byte tag.
	RandomizedOverhead = HeaderLen + gcmNonceLen + gcmTagLen // 37
	// DeterministicOverhead is the number of bytes a Deterministic value adds
	// to its plaintext: header and 16-byte synthetic IV.
	DeterministicOverhead = HeaderLen + sivLen // 25

	// SubjectKeyIDLen is the length of a subject key's id, which a Subject
	// value carries in place of the key version.
	SubjectKeyIDLen = 16
	// SubjectHeaderLen is the header of a Subject value: magic, format
	// version, mode, subject key id.
	SubjectHeaderLen = HeaderPrefixLen + SubjectKeyIDLen // 21
	// SubjectOverhead is the number of bytes a Subject value adds to its
	// plaintext: header, 12-byte nonce, 16-byte tag.
	SubjectOverhead = SubjectHeaderLen + gcmNonceLen + gcmTagLen // 49
)

// Mode is how a column is encrypted. Its number is stored in byte 4 of every
// value.
type Mode uint8

const (
	// Randomized is AES-256-GCM with a fresh random nonce per value: equal
	// plaintexts give unrelated ciphertexts. The default.
	Randomized Mode = 1
	// Deterministic is AES-SIV (RFC 5297, 512-bit key): equal plaintexts in the
	// same column under the same key version give equal ciphertexts, so
	// PostgreSQL can compare them for equality, unique constraints and joins.
	// It reveals which rows share a value, and nothing else.
	Deterministic Mode = 2
	// Subject is AES-256-GCM under the data key of one subject (a customer,
	// say) rather than a keyring version: the value carries the subject
	// key's id, and destroying that key (pgcloak forget) makes every value
	// of the subject unreadable wherever it is. See SubjectKey.
	Subject Mode = 3
)

// String returns "randomized" or "deterministic" (as in the config file).
func (m Mode) String() string {
	switch m {
	case Randomized:
		return "randomized"
	case Deterministic:
		return "deterministic"
	case Subject:
		return "subject"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses "randomized" or "deterministic".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "randomized":
		return Randomized, nil
	case "deterministic":
		return Deterministic, nil
	}
	return 0, fmt.Errorf("unknown encryption mode %q (want randomized or deterministic)", s)
}

// Overhead is the number of bytes a value in mode m adds to its plaintext, or
// 0 if m is not a known mode.
func (m Mode) Overhead() int {
	switch m {
	case Randomized:
		return RandomizedOverhead
	case Deterministic:
		return DeterministicOverhead
	case Subject:
		return SubjectOverhead
	}
	return 0
}

// Header is the start of a value: 9 bytes for the keyring modes, 21 for
// Subject.
type Header struct {
	Format     uint8  // format version; ParseHeader accepts only FormatVersion
	Mode       Mode   // cipher of the body
	KeyVersion uint32 // keyring version of the data key (keyring modes; 0 for Subject)
	// KeyID is the subject key's id (Subject mode; zero otherwise).
	KeyID SubjectKeyID
}

// appendHeader appends the 9 header bytes for mode and key version.
func appendHeader(b []byte, m Mode, version uint32) []byte {
	b = append(b, Magic...)
	b = append(b, FormatVersion, byte(m))
	return binary.BigEndian.AppendUint32(b, version)
}

// ParseHeader reads the header of a value. It returns ErrNotCiphertext when b
// does not start with the magic (it is not pgcloak ciphertext at all) or is
// shorter than its mode's header, and ErrUnsupportedFormat when the format
// version or mode is unknown. It does not check the body.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen || string(b[:3]) != Magic {
		return Header{}, ErrNotCiphertext
	}
	h := Header{Format: b[3], Mode: Mode(b[4])}
	if h.Format != FormatVersion {
		return Header{}, fmt.Errorf("%w: format version %d (this pgcloak reads %d)", ErrUnsupportedFormat, h.Format, FormatVersion)
	}
	switch h.Mode {
	case Randomized, Deterministic:
		h.KeyVersion = binary.BigEndian.Uint32(b[5:9])
	case Subject:
		if len(b) < SubjectHeaderLen {
			return Header{}, ErrNotCiphertext
		}
		copy(h.KeyID[:], b[HeaderPrefixLen:SubjectHeaderLen])
	default:
		return Header{}, fmt.Errorf("%w: mode %d", ErrUnsupportedFormat, b[4])
	}
	return h, nil
}

// keyringHeader reports whether b starts with the header of a keyring mode
// (Randomized, Deterministic) and returns its key version. It is ParseHeader
// for the common case, small enough to be inlined: a Header returned from a
// call costs a stall (its fields are stored one by one and read back as a
// whole), which was a tenth of a decrypted value's CPU.
func keyringHeader(b []byte) (version uint32, ok bool) {
	if len(b) < HeaderLen || string(b[:3]) != Magic || b[3] != FormatVersion || b[4] != byte(Randomized) && b[4] != byte(Deterministic) {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[5:9]), true
}

// IsCiphertext reports whether b looks like a pgcloak value: a valid header
// and at least the mode's overhead in length. It does not authenticate b (that
// needs the key); a plaintext that happens to start with the same bytes is
// misjudged, which is why migration decrypts rather than trusting this alone.
// CheckExpr is the same test in SQL.
func IsCiphertext(b []byte) bool {
	h, err := ParseHeader(b)
	return err == nil && len(b) >= h.Mode.Overhead()
}

// HeaderPrefixLen is the length of the part of the header that every value
// of this format version starts with whatever its key version: magic,
// format version, mode.
const HeaderPrefixLen = 5

// HasHeader reports whether b starts with the first HeaderPrefixLen bytes
// of a pgcloak header (a known mode). It is the quick test for "is this
// pgcloak ciphertext?" when only the start of a value is at hand.
func HasHeader(b []byte) bool {
	return len(b) >= HeaderPrefixLen && string(b[:3]) == Magic && b[3] == FormatVersion && Mode(b[4]).Overhead() != 0
}

// CheckExpr returns a boolean SQL expression that is true exactly when
// IsCiphertext would be for the bytea column, for use in
// ALTER TABLE … ADD CONSTRAINT … CHECK (…). column is the exact catalog name
// and is quoted here. NULL passes, as NULL stays NULL under pgcloak. It uses
// decode(…, 'hex') so it does not depend on standard_conforming_strings.
func CheckExpr(column string) string {
	c := `"` + strings.ReplaceAll(column, `"`, `""`) + `"`
	return fmt.Sprintf("((substring(%[1]s from 1 for 5) = decode('%[2]x%02[3]x%02[4]x', 'hex') AND octet_length(%[1]s) >= %[5]d)"+
		" OR (substring(%[1]s from 1 for 5) = decode('%[2]x%02[3]x%02[6]x', 'hex') AND octet_length(%[1]s) >= %[7]d))",
		c, Magic, FormatVersion, uint8(Randomized), RandomizedOverhead, uint8(Deterministic), DeterministicOverhead)
}

// SubjectCheckExpr is CheckExpr for a subject-keyed column: true exactly
// for a Subject value (NULL passes). Keyring values are refused there, so
// every value of the column is erased with its subject's key.
func SubjectCheckExpr(column string) string {
	c := `"` + strings.ReplaceAll(column, `"`, `""`) + `"`
	return fmt.Sprintf("(substring(%[1]s from 1 for 5) = decode('%[2]x%02[3]x%02[4]x', 'hex') AND octet_length(%[1]s) >= %[5]d)",
		c, Magic, FormatVersion, uint8(Subject), SubjectOverhead)
}
