package values

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
)

// Client encodings other than UTF8. PostgreSQL converts text between the
// client encoding and the server's; pgcloak's canonical plaintext is UTF-8,
// so in a session with another client encoding the text of protected values
// is converted the same way: decoded from the client encoding on the way in,
// encoded into it on the way out.
//
// Only encodings whose non-ASCII characters are made of bytes ≥ 0x80 are
// supported. pgcloak reads SQL text as the client sends it, before any
// conversion, and in SJIS, BIG5, GBK, UHC, GB18030 and JOHAB the second byte
// of a character may be an ASCII quote or backslash, which PostgreSQL only
// sees after it has converted the whole text. Each supported table is
// checked character by character against PostgreSQL's own conversion
// (integration/charset_test.go).

// charset is a client encoding pgcloak converts, by tables built once from
// golang.org/x/text's decoders with the corrections that make them agree
// with PostgreSQL's conversion.
type charset struct {
	name string // PostgreSQL's name, for messages
	// multibyte: EUC (a byte ≥ 0x80 starts a two-byte character, 0x8F a
	// three-byte one); otherwise one byte per character.
	multibyte bool
	jp        bool // EUC_JP: 0x8E and 0x8F lead katakana and JIS X 0212
	build     func(*charTables)
	once      sync.Once
	t         charTables
}

// charTables convert one charset.
type charTables struct {
	dec map[uint32]string // byte sequence (big-endian) → UTF-8
	enc map[rune]uint32   // and back
	// Sequences and characters PostgreSQL converts and pgcloak does not
	// (its tables lack them): refused with 0A000, not reported as invalid.
	decRefused map[uint32]bool
	encRefused map[rune]bool
}

func (c *charset) tables() *charTables {
	c.once.Do(func() {
		c.t = charTables{dec: map[uint32]string{}, enc: map[rune]uint32{}, decRefused: map[uint32]bool{}, encRefused: map[rune]bool{}}
		c.build(&c.t)
	})
	return &c.t
}

// add records a sequence and its text; the first sequence of a character
// is the one it is written as.
func (t *charTables) add(seq []byte, text string) {
	k := pack(seq)
	t.dec[k] = text
	if r, size := utf8.DecodeRuneInString(text); size == len(text) {
		if _, ok := t.enc[r]; !ok {
			t.enc[r] = k
		}
		delete(t.encRefused, r)
	}
}

func pack(seq []byte) uint32 {
	var k uint32
	for _, b := range seq {
		k = k<<8 | uint32(b)
	}
	return k
}

func unpack(dst []byte, k uint32) []byte {
	switch {
	case k > 0xffff:
		return append(dst, byte(k>>16), byte(k>>8), byte(k))
	case k > 0xff:
		return append(dst, byte(k>>8), byte(k))
	}
	return append(dst, byte(k))
}

// decodeWith returns what dec makes of seq, or "" when it does not define
// it.
func decodeWith(dec encoding.Encoding, seq []byte) string {
	out, err := dec.NewDecoder().Bytes(seq)
	if err != nil || bytes.Contains(out, []byte("\uFFFD")) {
		return ""
	}
	return string(out)
}

// singleByte builds a one-byte charset from x/text's table. c1: bytes
// 0x80–0x9F that the table leaves undefined are the C1 controls
// U+0080–U+009F, as in PostgreSQL's ISO 8859 tables. fix replaces entries
// ("" removes one).
func singleByte(name string, enc encoding.Encoding, c1 bool, fix map[byte]string) *charset {
	return &charset{name: name, build: func(t *charTables) {
		for b := 0x80; b <= 0xff; b++ {
			text := decodeWith(enc, []byte{byte(b)})
			if text == "" && c1 && b <= 0x9f {
				text = string(rune(b))
			}
			if f, ok := fix[byte(b)]; ok {
				text = f
			}
			if text != "" {
				t.add([]byte{byte(b)}, text)
			}
		}
	}}
}

// euc builds an EUC charset from x/text's decoder: every pair of bytes
// 0xA1–0xFE, and for EUC_JP the half-width katakana (0x8E) and JIS X 0212
// (0x8F) forms. skip leaves out sequences PostgreSQL does not define;
// refused are sequences PostgreSQL defines and x/text does not; fix
// replaces entries ("" removes one).
func euc(name string, enc encoding.Encoding, jp bool, skip func(seq []byte) bool, refused func(seq []byte) bool, fix map[string]string) *charset {
	return &charset{name: name, multibyte: true, jp: jp, build: func(t *charTables) {
		var seqs [][]byte
		for a := 0xa1; a <= 0xfe; a++ {
			for b := 0xa1; b <= 0xfe; b++ {
				seqs = append(seqs, []byte{byte(a), byte(b)})
			}
		}
		if jp {
			for b := 0xa1; b <= 0xdf; b++ {
				seqs = append(seqs, []byte{0x8e, byte(b)})
			}
			for a := 0xa1; a <= 0xfe; a++ {
				for b := 0xa1; b <= 0xfe; b++ {
					seqs = append(seqs, []byte{0x8f, byte(a), byte(b)})
				}
			}
		}
		for _, seq := range seqs {
			text := decodeWith(enc, seq)
			if f, ok := fix[string(seq)]; ok {
				text = f
			}
			switch {
			case refused != nil && refused(seq):
				t.decRefused[pack(seq)] = true
			case skip != nil && skip(seq):
				// Characters x/text reads here and PostgreSQL elsewhere
				// are refused unless found at another sequence.
				if r, size := utf8.DecodeRuneInString(text); text != "" && size == len(text) {
					if _, ok := t.enc[r]; !ok {
						t.encRefused[r] = true
					}
				}
			case text != "":
				t.add(seq, text)
			}
		}
	}}
}

// charsets are the supported client encodings by PostgreSQL's name.
var charsets = map[string]*charset{}

// charsetAliases maps the folded names PostgreSQL accepts for an encoding
// (pg_encname_tbl) to its name.
var charsetAliases = map[string]string{}

func init() {
	add := func(c *charset, aliases ...string) {
		charsets[c.name] = c
		charsetAliases[normEncoding(c.name)] = c.name
		for _, a := range aliases {
			charsetAliases[a] = c.name
		}
	}
	add(singleByte("LATIN1", charmap.ISO8859_1, true, nil), "iso88591")
	add(singleByte("LATIN2", charmap.ISO8859_2, true, nil), "iso88592")
	add(singleByte("LATIN3", charmap.ISO8859_3, true, nil), "iso88593")
	add(singleByte("LATIN4", charmap.ISO8859_4, true, nil), "iso88594")
	add(singleByte("LATIN5", charmap.ISO8859_9, true, nil), "iso88599")
	add(singleByte("LATIN6", charmap.ISO8859_10, true, nil), "iso885910")
	add(singleByte("LATIN7", charmap.ISO8859_13, true, nil), "iso885913")
	add(singleByte("LATIN8", charmap.ISO8859_14, true, nil), "iso885914")
	add(singleByte("LATIN9", charmap.ISO8859_15, true, nil), "iso885915")
	add(singleByte("LATIN10", charmap.ISO8859_16, true, nil), "iso885916")
	add(singleByte("ISO_8859_5", charmap.ISO8859_5, true, nil))
	add(singleByte("ISO_8859_6", charmap.ISO8859_6, true, nil))
	add(singleByte("ISO_8859_7", charmap.ISO8859_7, true, nil))
	add(singleByte("ISO_8859_8", charmap.ISO8859_8, true, nil))
	add(singleByte("WIN1250", charmap.Windows1250, false, nil), "windows1250")
	add(singleByte("WIN1251", charmap.Windows1251, false, nil), "windows1251", "win")
	add(singleByte("WIN1252", charmap.Windows1252, false, nil), "windows1252")
	add(singleByte("WIN1253", charmap.Windows1253, false, nil), "windows1253")
	add(singleByte("WIN1254", charmap.Windows1254, false, nil), "windows1254")
	add(singleByte("WIN1255", charmap.Windows1255, false, map[byte]string{0xca: ""}), "windows1255")
	add(singleByte("WIN1256", charmap.Windows1256, false, nil), "windows1256")
	add(singleByte("WIN1257", charmap.Windows1257, false, nil), "windows1257")
	add(singleByte("WIN1258", charmap.Windows1258, false, nil), "windows1258", "abc", "tcvn", "tcvn5712", "vscii")
	add(singleByte("WIN866", charmap.CodePage866, false, nil), "alt", "windows866")
	add(singleByte("WIN874", charmap.Windows874, false, nil), "windows874")
	add(singleByte("KOI8R", charmap.KOI8R, false, nil), "koi8")
	// PostgreSQL's KOI8U has box drawing where KOI8-RU has Belarusian ў, Ў.
	add(singleByte("KOI8U", charmap.KOI8U, false, map[byte]string{0xae: "╝", 0xbe: "╬"}))
	// EUC_JP: x/text (WHATWG) has the NEC-selected IBM extensions at
	// 0xF9–0xFC, which PostgreSQL does not; PostgreSQL has IBM extensions
	// at 0x8F 0xF3F3–0xF4FE, which x/text does not.
	add(euc("EUC_JP", japanese.EUCJP, true,
		func(seq []byte) bool { return len(seq) == 2 && seq[0] >= 0xf9 && seq[0] <= 0xfc },
		func(seq []byte) bool {
			return len(seq) == 3 && (seq[1] == 0xf3 && seq[2] >= 0xf3 || seq[1] == 0xf4)
		},
		map[string]string{"\x8f\xa2\xb7": "", "\x8f\xa2\xc3": "￤"}), "eucjp")
	// EUC_KR: x/text reads CP949 (UHC); PostgreSQL has KS X 1001 only,
	// with the circled hangul ieung u of its 2002 edition.
	add(euc("EUC_KR", korean.EUCKR, false, nil, nil, map[string]string{"\xa2\xe8": "㉾"}), "euckr")
}

// lookupCharset returns the charset of a client_encoding value, or nil.
func lookupCharset(name string) *charset {
	return charsets[charsetAliases[normEncoding(name)]]
}

// Converts reports whether pgcloak converts protected values between the
// client encoding named enc and UTF-8.
func Converts(enc string) bool { return lookupCharset(enc) != nil }

// SupportedEncodings lists the client encodings besides UTF8 and SQL_ASCII
// that protected values may travel in.
func SupportedEncodings() []string {
	out := make([]string, 0, len(charsets))
	for name := range charsets {
		out = append(out, name)
	}
	return out
}

// charLen is the length of the character v[i] starts.
func (c *charset) charLen(b byte) int {
	switch {
	case b < utf8.RuneSelf || !c.multibyte:
		return 1
	case b == 0x8f && c.jp:
		return 3
	}
	return 2
}

// toUTF8 appends v, text in the charset, to dst as UTF-8. A byte sequence
// the charset does not define is an error, as PostgreSQL's conversion
// reports it.
func (c *charset) toUTF8(dst, v []byte) ([]byte, error) {
	return c.convertIn(dst, v, nil)
}

// convertIn is toUTF8; when offs is not nil, the offset in v of each byte
// appended is appended to *offs.
func (c *charset) convertIn(dst, v []byte, offs *[]int) ([]byte, error) {
	t := c.tables()
	n := len(dst)
	for i := 0; i < len(v); {
		b := v[i]
		if b < utf8.RuneSelf {
			dst = append(dst, b)
			if offs != nil {
				*offs = append(*offs, i)
			}
			i++
			continue
		}
		l := c.charLen(b)
		if i+l > len(v) {
			return dst[:n], c.invalidInput(v[i:])
		}
		seq := v[i : i+l]
		k := pack(seq)
		text, ok := t.dec[k]
		if !ok {
			switch {
			case t.decRefused[k]:
				return dst[:n], c.notConverted(hexBytes(seq))
			case c.multibyte && !c.eucValid(seq):
				return dst[:n], c.invalidInput(v[i:])
			}
			return dst[:n], &ValueError{Code: CodeUntranslatableCharacter,
				Message: fmt.Sprintf("character with byte sequence %s in encoding %q has no equivalent in encoding \"UTF8\"", hexBytes(seq), c.name)}
		}
		dst = append(dst, text...)
		if offs != nil {
			for range len(text) {
				*offs = append(*offs, i)
			}
		}
		i += l
	}
	return dst, nil
}

// TextToUTF8 converts text the client sent in the session's client
// encoding (SQL) to UTF-8, for pgcloak's SQL parser, which reads UTF-8 as
// PostgreSQL's does after its own conversion. offsets[i] is the offset in
// text of the character that byte i of the result belongs to, and
// offsets[len(u)] is len(text). It returns u nil when the text needs no
// conversion (a UTF8 session, ASCII text), and an error for bytes the
// encoding does not define or an encoding pgcloak does not convert.
func (s *Session) TextToUTF8(text []byte) (u []byte, offsets []int, err error) {
	s = s.orDefault()
	if s.encoding == "" || isASCII(text) {
		return nil, nil, nil
	}
	if s.cs == nil {
		return nil, nil, s.unsupportedEncoding()
	}
	offsets = make([]int, 0, len(text)+1)
	u, err = s.cs.convertIn(make([]byte, 0, len(text)*2), text, &offsets)
	if err != nil {
		return nil, nil, err
	}
	return u, append(offsets, len(text)), nil
}

// TextFromUTF8 converts UTF-8 text (a value read from converted SQL) back
// to the session's client encoding.
func (s *Session) TextFromUTF8(u []byte) ([]byte, error) {
	s = s.orDefault()
	if s.encoding == "" || isASCII(u) {
		return u, nil
	}
	if s.cs == nil {
		return nil, s.unsupportedEncoding()
	}
	return s.cs.fromUTF8(u)
}

// eucValid reports whether seq is well formed EUC (pg_eucjp_verifychar,
// pg_euckr_verifychar): bytes 0xA1–0xFE after the lead, half-width
// katakana 0xA1–0xDF after 0x8E.
func (c *charset) eucValid(seq []byte) bool {
	inRange := func(b byte) bool { return b >= 0xa1 && b <= 0xfe }
	switch {
	case seq[0] == 0x8e && c.jp:
		return seq[1] >= 0xa1 && seq[1] <= 0xdf
	case seq[0] == 0x8f && c.jp:
		return inRange(seq[1]) && inRange(seq[2])
	}
	return inRange(seq[0]) && inRange(seq[1])
}

// fromUTF8 converts UTF-8 text to the charset. A character the charset
// cannot hold is an error, as PostgreSQL's conversion reports it.
func (c *charset) fromUTF8(v []byte) ([]byte, error) {
	t := c.tables()
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); {
		if v[i] < utf8.RuneSelf {
			out = append(out, v[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		k, ok := t.enc[r]
		if !ok {
			if t.encRefused[r] {
				return nil, c.notConverted(hexBytes(v[i : i+size]))
			}
			return nil, &ValueError{Code: CodeUntranslatableCharacter,
				Message: fmt.Sprintf("character with byte sequence %s in encoding \"UTF8\" has no equivalent in encoding %q", hexBytes(v[i:i+size]), c.name)}
		}
		out = unpack(out, k)
		i += size
	}
	return out, nil
}

// notConverted refuses a character PostgreSQL converts and pgcloak does
// not.
func (c *charset) notConverted(seq string) *ValueError {
	return &ValueError{Code: CodeFeatureNotSupported,
		Message: fmt.Sprintf("pgcloak does not convert the character %s between %s and UTF8 for protected columns", seq, c.name),
		Hint:    "Use client_encoding UTF8 for values with this character."}
}

// invalidInput is report_invalid_encoding for v, which starts with a
// sequence the charset does not define: its first bytes (two at most).
func (c *charset) invalidInput(v []byte) *ValueError {
	return &ValueError{Code: CodeCharacterNotInRepertoire,
		Message: fmt.Sprintf("invalid byte sequence for encoding %q: %s", c.name, hexBytes(v[:min(len(v), 2)]))}
}

// hexBytes formats bytes as PostgreSQL's encoding errors do: "0x8e 0x20".
func hexBytes(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("0x%02x", c)
	}
	return strings.Join(parts, " ")
}
