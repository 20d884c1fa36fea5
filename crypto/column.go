package crypto

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/pgcloak/pgcloak/crypto/internal/siv"
)

// maxNameLen bounds each part of a ColumnID. PostgreSQL names are at most
// NAMEDATALEN-1 = 63 bytes in a default build; 255 leaves room for custom
// builds while keeping the associated data small enough for a pooled buffer.
const maxNameLen = 255

// ColumnID is the identity of a protected column that every value of that
// column is bound to through the associated data. Build it once per column
// with NewColumnID; it is a small handle, safe to copy and to share between
// goroutines. Two handles made by separate NewColumnID calls with the same
// names encrypt and decrypt alike, but are not == (compare String()).
//
// The identity is the catalog names joined by NUL bytes:
// schema 0x00 table 0x00 column. PostgreSQL names cannot contain NUL, so two
// different columns never share an identity (a dotted form would confuse
// schema "a.b" table "c" with schema "a" table "b.c").
//
// Renaming the schema, table or column changes the identity; values written
// before the rename then fail to decrypt under the new name. A configuration
// that renames must keep passing the original names here.
type ColumnID struct {
	p *columnData // nil for the zero ColumnID
}

type columnData struct {
	schema, table, name string
	ad                  []byte // the identity bytes; never modified after NewColumnID

	// siv caches the AES-SIV S2V state after (header, identity) for the last
	// active key this column was used with, so a deterministic value costs
	// only the CMAC of its plaintext and the CTR pass. The state is a CMAC
	// output derived from the key, not the key; it is replaced on rotation.
	siv atomic.Pointer[sivState]
	// gcmAD caches the AES-GCM associated data (Randomized header ||
	// identity) for the last active key, for the same reason.
	gcmAD atomic.Pointer[gcmAD]
}

type gcmAD struct {
	key *key
	ad  []byte
}

type sivState struct {
	key *key
	st  siv.State
}

// NewColumnID returns the identity of schema.table.column, given as exact
// (case-sensitive, unquoted) catalog names. Build one per protected column and
// reuse it: it carries a small per-key cache for deterministic mode.
func NewColumnID(schema, table, column string) (ColumnID, error) {
	for _, p := range [...]struct{ what, name string }{{"schema", schema}, {"table", table}, {"column", column}} {
		switch {
		case p.name == "":
			return ColumnID{}, fmt.Errorf("column identity: empty %s name", p.what)
		case len(p.name) > maxNameLen:
			return ColumnID{}, fmt.Errorf("column identity: %s name longer than %d bytes", p.what, maxNameLen)
		case strings.IndexByte(p.name, 0) >= 0:
			return ColumnID{}, errors.New("column identity: " + p.what + " name contains a NUL byte")
		}
	}
	ad := make([]byte, 0, len(schema)+len(table)+len(column)+2)
	ad = append(ad, schema...)
	ad = append(ad, 0)
	ad = append(ad, table...)
	ad = append(ad, 0)
	ad = append(ad, column...)
	return ColumnID{&columnData{schema: schema, table: table, name: column, ad: ad}}, nil
}

// Schema, Table and Column return the names the identity was built from.
func (c ColumnID) Schema() string { return c.p.schema }
func (c ColumnID) Table() string  { return c.p.table }
func (c ColumnID) Column() string { return c.p.name }

// IsZero reports whether c is the zero ColumnID, which Encrypt and Decrypt
// refuse.
func (c ColumnID) IsZero() bool { return c.p == nil }

// String returns schema.table.column for messages, double-quoting a part
// unless it is a plain lower-case identifier.
func (c ColumnID) String() string {
	if c.IsZero() {
		return "<no column>"
	}
	return quoteIfNeeded(c.p.schema) + "." + quoteIfNeeded(c.p.table) + "." + quoteIfNeeded(c.p.name)
}

func quoteIfNeeded(s string) string {
	for i, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '$') {
			continue
		}
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// searchGroupSchema is the schema part of search-group identities. It starts
// with a control character, which no sane schema name holds, so a group
// identity cannot stand for a real column.
const searchGroupSchema = "\x01pgcloak"

// NewSearchGroupID returns the identity shared by the deterministic columns
// of one search group: equal plaintexts in any of them encrypt to equal
// ciphertexts (so they can be joined), and a value moved between them still
// decrypts. Values bound to a group never decrypt as an ungrouped column's,
// and vice versa.
func NewSearchGroupID(group string) (ColumnID, error) {
	return NewColumnID(searchGroupSchema, "search_group", group)
}
