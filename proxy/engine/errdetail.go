package engine

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/wire"
)

// byteaHex finds bytea values in hex output form in an error's text, with
// the "..." PostgreSQL appends to a value it cut short.
var byteaHex = regexp.MustCompile(`\\x[0-9a-f]+(?:\.\.\.)?`)

// cutShort replaces a ciphertext PostgreSQL cut short in an error's text
// (the failing row of a check violation shows 64 bytes of each value):
// what is left cannot be decrypted.
const cutShort = "(pgcloak ciphertext, cut short)"

// withheld replaces a value of a column the session may not read in
// plaintext (access rules).
const withheld = "(protected value)"

// magicHex is pgcloak's magic as it starts a bytea in hex output form.
var magicHex = `\x` + hex.EncodeToString([]byte(crypto.Magic))

// readableError returns the server's ErrorResponse m with the protected
// values that PostgreSQL quotes in its DETAIL decrypted: a unique or
// foreign-key violation names the key (`Key (email)=(\x5047…) already
// exists.`) and a check violation the failing row, in their stored form
// (each value cut to 64 bytes: those cannot be decrypted and are replaced
// by cutShort).
// Directly against PostgreSQL the application would read its own values
// there, so that is what it reads through pgcloak. Each ciphertext is tried
// with the protected columns of the table the error names (all of them when
// it names none); ciphertext is bound to its column, so only the right one
// opens it. A value no column opens is left as it is. m is returned
// unchanged when there is nothing to decrypt. A session whose access rules
// do not let it read a column in plaintext gets withheld in place of the
// value. Server loop, under cloak.mu.
func (ss *session) readableError(m []byte) []byte {
	if !bytes.Contains(m, []byte(magicHex)) {
		return m
	}
	var e pgproto3.ErrorResponse
	if err := e.Decode(m[wire.HeaderLen:]); err != nil {
		return m
	}
	cols := ss.columnsOf(e.SchemaName, e.TableName)
	changed := false
	e.Detail = byteaHex.ReplaceAllStringFunc(e.Detail, func(tok string) string {
		if len(tok) < len(magicHex) || tok[:len(magicHex)] != magicHex {
			return tok
		}
		if strings.HasSuffix(tok, "...") {
			changed = true
			return cutShort
		}
		raw, err := hex.DecodeString(tok[2:])
		if err != nil || !crypto.IsCiphertext(raw) {
			return tok
		}
		for _, col := range cols {
			plain, err := col.keyring.Decrypt(nil, raw, col.id)
			if err != nil {
				continue
			}
			if ss.guard != nil && ss.access(col).Read != access.Plaintext {
				// A role that may not read the column does not read it
				// here either (an UPDATE's failing row shows values the
				// client did not write).
				changed = true
				return withheld
			}
			text, err := col.typ.Encode(nil, plain, 0, &ss.cloak.fmtCommitted)
			if err != nil {
				return tok
			}
			changed = true
			return string(text)
		}
		return tok
	})
	if !changed {
		return m
	}
	out, err := e.Encode(nil)
	if err != nil {
		return m
	}
	return out
}

// columnsOf returns the protected columns of schema.table, or every
// protected column when table is "".
func (ss *session) columnsOf(schema, table string) []*column {
	p := ss.rs.prot.Load()
	if p == nil {
		return nil
	}
	var cols []*column
	for r, col := range p.rules.cols {
		if table == "" || r.Table == table && (schema == "" || r.Schema == schema) {
			cols = append(cols, col)
		}
	}
	return cols
}
