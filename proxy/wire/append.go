package wire

import "encoding/binary"

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
