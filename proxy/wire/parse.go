package wire

import "encoding/binary"

// ParseMessage is a Parse body read without copying its query text.
type ParseMessage struct {
	Name string
	// Query aliases the message (see CStringView): valid only while the
	// message is.
	Query string
	// ParamOIDs are the parameter types the client declared (0: none).
	ParamOIDs []uint32
}

// ScanParse reads a Parse body (the message after its header) without
// copying its query text, which may be most of a large message.
func ScanParse(b []byte) (ParseMessage, error) {
	bad := Protocol("invalid Parse message")
	var p ParseMessage
	i := 0
	for ; i < len(b) && b[i] != 0; i++ {
	}
	if i == len(b) {
		return p, bad
	}
	p.Name = string(b[:i])
	b = b[i+1:]
	for i = 0; i < len(b) && b[i] != 0; i++ {
	}
	if i == len(b) {
		return p, bad
	}
	p.Query = CStringView(b[:i+1])
	b = b[i+1:]
	if len(b) < 2 {
		return p, bad
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 4*n {
		return p, bad
	}
	if n > 0 {
		p.ParamOIDs = make([]uint32, n)
		for k := range n {
			p.ParamOIDs[k] = binary.BigEndian.Uint32(b[4*k:])
		}
	}
	return p, nil
}

// AppendParseTail appends what follows a Parse's query text: its NUL and
// the parameter types.
func AppendParseTail(dst []byte, oids []uint32) []byte {
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(oids)))
	for _, o := range oids {
		dst = binary.BigEndian.AppendUint32(dst, o)
	}
	return dst
}
