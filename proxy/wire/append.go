package wire

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

// AppendQuery appends a Query message carrying sql.
func AppendQuery(dst []byte, sql string) []byte {
	start := len(dst)
	dst = append(dst, 'Q', 0, 0, 0, 0)
	dst = append(dst, sql...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendDescribe appends a Describe of a statement (kind 'S') or portal
// ('P') called name.
func AppendDescribe(dst []byte, kind byte, name string) []byte {
	start := len(dst)
	dst = append(dst, 'D', 0, 0, 0, 0, kind)
	dst = append(dst, name...)
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// CString returns the NUL-terminated string at the start of b (all of b if
// it has no NUL).
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// BeginMessage appends the header of a message of type t, whose length
// EndMessage fills in once its body has been appended; start is where the
// message begins in dst. Building a message in place spares a copy of a large
// body.
func BeginMessage(dst []byte, t byte) (out []byte, start int) {
	return append(dst, t, 0, 0, 0, 0), len(dst)
}

// EndMessage sets the length of the message that begins at start in dst and
// runs to its end.
func EndMessage(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// CStringView is CString without the copy: the string aliases b and is valid
// only while b's bytes are (for a message, until the relay reads the next).
// Whatever is kept of it must be copied (strings.Clone).
func CStringView(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
