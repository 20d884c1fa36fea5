package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// seal marshals r and appends the MAC under key and a newline.
func seal(dst []byte, r *Record, key []byte) ([]byte, string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return dst, "", err
	}
	body = body[:len(body)-1] // the closing brace
	mac := sign(key, body)
	dst = append(dst, body...)
	dst = append(dst, macSep...)
	dst = append(dst, mac...)
	dst = append(dst, "\"}\n"...)
	return dst, mac, nil
}

func sign(key, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
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
