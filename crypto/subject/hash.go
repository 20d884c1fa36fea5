package subject

import (
	"crypto/sha256"

	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// Hash is the subject_hash of a subject of scope: SHA-256 of "pgcloak subject
// v1", NUL, the scope, NUL, the subject's canonical text. pgcloak.subject_hash
// computes the same in SQL.
type Hash [sha256.Size]byte

// HashOf returns the subject_hash of subject (canonical text) in scope.
func HashOf(scope, subject string) Hash {
	h := sha256.New()
	h.Write([]byte("pgcloak subject v1\x00"))
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write([]byte(subject))
	var out Hash
	h.Sum(out[:0])
	return out
}

// ScopeName is the scope of the subjects of table schema.table: the table
// written as in messages (schema.table, a part double-quoted unless it is a
// plain lower-case identifier). It is stored with every subject key and
// bound into its wrapping, so it never changes for a table: renaming the
// table leaves its subjects' keys under the old scope.
func ScopeName(schema, table string) string {
	return catalog.Display(schema) + "." + catalog.Display(table)
}
