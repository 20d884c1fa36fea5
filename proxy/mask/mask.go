// Package mask holds the named formats in which pgcloak shows a protected
// value to a role that may see it only masked (access rules, read: masked).
//
// A format is written as a short spec in the configuration:
//
//	spec        value shown                       logical types             type the client sees
//	email       t***@example.jp                   text, varchar             the column's
//	first:N     the first N characters, the       text, varchar, bpchar     the column's
//	last:N      rest (the others) one * each;     int2, int4, int8,         text
//	last4       last4 is last:4: ******5678       numeric, uuid
//	fixed:TEXT  TEXT, whatever the value          every type (TEXT must     the column's
//	                                              be a value of it)
//	token       a keyed hash (32 hex digits):     every type                text
//	            equal values, equal tokens
//	null        NULL                              every type                the column's
//
// NULL stays NULL under every format. Characters are Unicode code points of
// the value's canonical text (for numbers the text PostgreSQL prints for
// them, sign included; for bpchar the value without its padding, which is
// kept as it is). email keeps the first character of the part before the
// last @, then "***@" and the domain; a value without @ becomes "***". The
// token is computed by the caller (crypto.Keyring.Token): this package only
// says what it looks like.
package mask

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgcloak/pgcloak/proxy/values"
)

// Kind is a masking format.
type Kind uint8

const (
	Email Kind = iota + 1
	First
	Last
	Fixed
	Token
	Null
)

// Spec is a parsed format spec: what the configuration says.
type Spec struct {
	Kind Kind
	N    int    // First, Last: characters kept
	Text string // Fixed: the value shown
}

// Specs lists the spellings Parse accepts, for messages.
const Specs = `email, first:N, last:N, last4, fixed:TEXT, token, "null"`

// maxKeep bounds N of first:N and last:N.
const maxKeep = 1000

// Parse reads a format spec.
func Parse(spec string) (Spec, error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	name = strings.ToLower(strings.TrimSpace(name))
	noArg := func(k Kind) (Spec, error) {
		if hasArg {
			return Spec{}, fmt.Errorf("mask %q takes no argument; write %s", spec, name)
		}
		return Spec{Kind: k}, nil
	}
	switch name {
	case "email":
		return noArg(Email)
	case "token":
		return noArg(Token)
	case "null":
		return noArg(Null)
	case "last4":
		if hasArg {
			return Spec{}, fmt.Errorf("mask %q takes no argument; write last4 or last:N", spec)
		}
		return Spec{Kind: Last, N: 4}, nil
	case "first", "last":
		n, err := strconv.Atoi(strings.TrimSpace(arg))
		if !hasArg || err != nil || n < 1 || n > maxKeep {
			return Spec{}, fmt.Errorf("mask %q needs the number of characters to keep, from 1 to %d; write e.g. %s:4", spec, maxKeep, name)
		}
		k := First
		if name == "last" {
			k = Last
		}
		return Spec{Kind: k, N: n}, nil
	case "fixed":
		if !hasArg {
			return Spec{}, fmt.Errorf("mask %q needs the value to show; write e.g. fixed:REDACTED", spec)
		}
		return Spec{Kind: Fixed, Text: arg}, nil
	case "":
		return Spec{}, errors.New("empty mask; use one of " + Specs)
	}
	return Spec{}, fmt.Errorf("unknown mask %q; use one of %s", spec, Specs)
}

// String is the spec as written in the configuration.
func (s Spec) String() string {
	switch s.Kind {
	case Email:
		return "email"
	case First:
		return "first:" + strconv.Itoa(s.N)
	case Last:
		if s.N == 4 {
			return "last4"
		}
		return "last:" + strconv.Itoa(s.N)
	case Fixed:
		return "fixed:" + s.Text
	case Token:
		return "token"
	case Null:
		return "null"
	}
	return "?"
}

// textType is what a format that cannot keep a column's type shows.
var textType, _ = values.Lookup("text")

// Mask is a format bound to a column's logical type. It is immutable and
// safe for concurrent use.
type Mask struct {
	spec  Spec
	in    *values.Type
	out   *values.Type
	fixed []byte // Fixed: the canonical value of Text in the column's type
}

// For binds the format to a column of logical type t, or says why it does
// not apply (the error reads "mask X does not apply to TYPE: …").
func (s Spec) For(t *values.Type) (*Mask, error) {
	m := &Mask{spec: s, in: t, out: t}
	switch s.Kind {
	case Email:
		if t.Name() != "text" && t.Name() != "varchar" {
			return nil, fmt.Errorf("mask email does not apply to %s: it masks text and varchar; use first:N, fixed:…, token or \"null\"", t)
		}
	case First, Last:
		switch t.Name() {
		case "text", "varchar", "bpchar":
		case "int2", "int4", "int8", "numeric", "uuid":
			m.out = textType
		default:
			return nil, fmt.Errorf("mask %s does not apply to %s: it masks text, varchar, bpchar, integers, numeric and uuid; use fixed:…, token or \"null\"", s, t)
		}
	case Fixed:
		c, err := t.Canonical(nil, 0, []byte(s.Text), nil)
		if err != nil {
			return nil, fmt.Errorf("mask %s does not apply to %s: %q is not a value of that type (%v)", s, t, s.Text, err)
		}
		m.fixed = c
	case Token:
		m.out = textType
	case Null:
	default:
		return nil, fmt.Errorf("mask %s: unknown format", s)
	}
	return m, nil
}

// Spec is the format.
func (m *Mask) Spec() Spec { return m.spec }

// Type is the logical type the client sees: the column's, or text.
func (m *Mask) Type() *values.Type { return m.out }

// Null reports whether every value shows as NULL.
func (m *Mask) Null() bool { return m.spec.Kind == Null }

// Token reports whether the value shows as the token the caller computes.
func (m *Mask) Token() bool { return m.spec.Kind == Token }

// Apply appends the masked form of plain (a canonical value of the column's
// type) to dst: a canonical value of Type(). It is not for Null and Token
// masks, which the caller handles.
func (m *Mask) Apply(dst, plain []byte) []byte {
	switch m.spec.Kind {
	case Fixed:
		return append(dst, m.fixed...)
	case Email:
		return email(dst, plain)
	case First, Last:
		v, pad := plain, 0
		if m.in.Name() == "bpchar" {
			// The padding is not part of the value: keep it as it is.
			for len(v) > 0 && v[len(v)-1] == ' ' {
				v, pad = v[:len(v)-1], pad+1
			}
		}
		dst = keep(dst, v, m.spec.N, m.spec.Kind == First)
		for ; pad > 0; pad-- {
			dst = append(dst, ' ')
		}
		return dst
	}
	return append(dst, plain...)
}

// keep appends v with every character but the first (or last) n replaced by
// '*'.
func keep(dst, v []byte, n int, first bool) []byte {
	total := utf8.RuneCount(v)
	for i := 0; len(v) > 0; i++ {
		_, size := utf8.DecodeRune(v)
		if first && i < n || !first && i >= total-n {
			dst = append(dst, v[:size]...)
		} else {
			dst = append(dst, '*')
		}
		v = v[size:]
	}
	return dst
}

// email appends the email mask of v: the first character of the local part,
// "***@", the domain.
func email(dst, v []byte) []byte {
	at := bytes.LastIndexByte(v, '@')
	if at < 0 {
		return append(dst, "***"...)
	}
	if at > 0 {
		_, size := utf8.DecodeRune(v)
		dst = append(dst, v[:size]...)
	}
	dst = append(dst, "***@"...)
	return append(dst, v[at+1:]...)
}
