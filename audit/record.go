package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"strconv"
	"unicode/utf8"
)

// Events of the log.
const (
	EventOpen   = "open"
	EventRead   = "read"
	EventDenied = "denied"
	EventLost   = "lost"
	EventRotate = "rotate"
	EventClose  = "close"
)

// After values of an open record: what preceded it.
const (
	AfterStart   = "start"   // a new chain
	AfterClose   = "close"   // a clean stop
	AfterRotate  = "rotate"  // the previous file was rotated
	AfterUnclean = "unclean" // the previous run ended without closing the log
)

// Record is one line of the log. The field order is the line's.
type Record struct {
	Seq   uint64 `json:"seq"`
	Time  string `json:"time"`
	Event string `json:"event"`

	// open
	Instance   string `json:"instance,omitempty"`
	KEK        string `json:"kek,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	WrappedKey []byte `json:"wrapped_key,omitempty"`
	After      string `json:"after,omitempty"`

	// read, denied: the session
	Session         string `json:"session,omitempty"`
	BackendPID      uint32 `json:"backend_pid,omitempty"`
	Role            string `json:"role,omitempty"`
	ApplicationName string `json:"application_name,omitempty"`
	Client          string `json:"client,omitempty"`
	Database        string `json:"database,omitempty"`

	// read, denied: the statement
	Fingerprint string   `json:"fingerprint,omitempty"`
	Command     string   `json:"command,omitempty"`
	Rows        int64    `json:"rows,omitempty"`
	Columns     []Column `json:"columns,omitempty"`
	SQLState    string   `json:"sqlstate,omitempty"`
	Incomplete  bool     `json:"incomplete,omitempty"`

	// lost: records dropped since the last one written; close: in all.
	Lost uint64 `json:"lost,omitempty"`

	Prev string `json:"prev"`
}

// Column is what a statement did with one protected column.
type Column struct {
	// Column is schema.table.column.
	Column string `json:"column"`
	// Outcome is plaintext, masked, ciphertext or denied.
	Outcome string `json:"outcome"`
	// Mask is the format of masked values.
	Mask string `json:"mask,omitempty"`
	// Access is what was denied: read, write or search.
	Access string `json:"access,omitempty"`
	// Values counts the non-NULL values sent.
	Values int64 `json:"values"`
	// KeyVersions are the data key versions of the values decrypted.
	KeyVersions []uint32 `json:"key_versions,omitempty"`
}

// macSep separates a line's signed part from its MAC.
const macSep = `,"mac":"`

// macHexLen is the MAC's length in hex digits.
const macHexLen = 2 * sha256.Size

// seal appends r as a line, its MAC under h (an HMAC-SHA-256, reset after)
// and a newline to dst.
func seal(dst []byte, r *Record, h hash.Hash) ([]byte, string) {
	start := len(dst)
	dst = appendRecord(dst, r)
	h.Write(dst[start:])
	var sum [sha256.Size]byte
	mac := hex.EncodeToString(h.Sum(sum[:0]))
	h.Reset()
	dst = append(dst, macSep...)
	dst = append(dst, mac...)
	dst = append(dst, "\"}\n"...)
	return dst, mac
}

// newMAC is the HMAC of records under key.
func newMAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

func sign(key, body []byte) string {
	h := newMAC(key)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// appendRecord appends r as JSON without its closing brace, fields in the
// order of the struct, empty optional ones left out: what encoding/json
// makes of it, without the reflection (the writer makes one per statement).
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = appendField(b, "time", r.Time)
	b = appendField(b, "event", r.Event)
	b = appendField(b, "instance", r.Instance)
	b = appendField(b, "kek", r.KEK)
	b = appendField(b, "key_id", r.KeyID)
	if len(r.WrappedKey) > 0 {
		b = append(b, `,"wrapped_key":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.WrappedKey)
		b = append(b, '"')
	}
	b = appendField(b, "after", r.After)
	b = appendField(b, "session", r.Session)
	if r.BackendPID != 0 {
		b = append(b, `,"backend_pid":`...)
		b = strconv.AppendUint(b, uint64(r.BackendPID), 10)
	}
	b = appendField(b, "role", r.Role)
	b = appendField(b, "application_name", r.ApplicationName)
	b = appendField(b, "client", r.Client)
	b = appendField(b, "database", r.Database)
	b = appendField(b, "fingerprint", r.Fingerprint)
	b = appendField(b, "command", r.Command)
	if r.Rows != 0 {
		b = append(b, `,"rows":`...)
		b = strconv.AppendInt(b, r.Rows, 10)
	}
	if len(r.Columns) > 0 {
		b = append(b, `,"columns":[`...)
		for i := range r.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendColumn(b, &r.Columns[i])
		}
		b = append(b, ']')
	}
	b = appendField(b, "sqlstate", r.SQLState)
	if r.Incomplete {
		b = append(b, `,"incomplete":true`...)
	}
	if r.Lost != 0 {
		b = append(b, `,"lost":`...)
		b = strconv.AppendUint(b, r.Lost, 10)
	}
	b = append(b, `,"prev":`...)
	return appendString(b, r.Prev)
}

// appendColumn appends one entry of a record's columns.
func appendColumn(b []byte, c *Column) []byte {
	b = append(b, `{"column":`...)
	b = appendString(b, c.Column)
	b = appendField(b, "outcome", c.Outcome)
	b = appendField(b, "mask", c.Mask)
	b = appendField(b, "access", c.Access)
	b = append(b, `,"values":`...)
	b = strconv.AppendInt(b, c.Values, 10)
	if len(c.KeyVersions) > 0 {
		b = append(b, `,"key_versions":[`...)
		for j, v := range c.KeyVersions {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(v), 10)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendField appends ,"name":"value" unless value is empty.
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 as U+FFFD (as encoding/json does).
// Runs that need nothing are copied whole.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	run := 0 // start of the bytes not yet appended
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b = append(b, s[run:i]...)
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, `\ufffd`...)
		}
		i++
		run = i
	}
	b = append(b, s[run:]...)
	return append(b, '"')
}

// split cuts a line (without its newline) into the signed part and the MAC.
func split(line []byte) (body []byte, mac string, err error) {
	n := len(line) - len(`"}`) - macHexLen - len(macSep)
	if n <= 0 || !bytes.HasSuffix(line, []byte(`"}`)) || string(line[n:n+len(macSep)]) != macSep {
		return nil, "", errors.New("the line does not end with its mac")
	}
	return line[:n], string(line[n+len(macSep) : len(line)-2]), nil
}

// parse reads a line into its record and MAC.
func parse(line []byte) (*Record, []byte, string, error) {
	body, mac, err := split(line)
	if err != nil {
		return nil, nil, "", err
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, nil, "", errors.New("the line is not a JSON record")
	}
	return &r, body, mac, nil
}
