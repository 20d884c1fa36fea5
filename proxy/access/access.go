// Package access decides what a session may do with each protected column:
// read it in plaintext, masked, as ciphertext or not at all, write it,
// search it. It compiles the config's access section into a Policy; the
// engine asks it once per session and column, when the session starts, and
// applies the answers when it plans statements and rows (never per value).
//
// # Who a session is
//
// The role is the startup user of the session, taken only once PostgreSQL
// has authenticated it (AuthenticationOk). SET ROLE and SET SESSION
// AUTHORIZATION change what PostgreSQL checks, not what pgcloak decides:
// the decision is fixed at login, so a role cannot raise its access by
// switching to a role with more. Rules name login roles; membership in
// group roles is not followed. A rule may be narrowed to sessions started
// with given application_name values (chosen by the client: a convenience,
// not a security boundary) or TLS client certificates (verified by pgcloak
// against tls.client_ca_file).
//
// # Which rule applies
//
// The most specific rule that applies wins, in this order:
//
//	access.tables."schema.table.column".ROLE
//	access.tables."schema.table.column".public    (every role)
//	access.tables."schema.table".ROLE
//	access.tables."schema.table".public
//	access.roles.ROLE
//	access.default                                (deny unless written)
//
// A rule whose application_name or client_cert does not match the session
// does not apply: the next one in the order is tried. A config without an
// access section gives every role plaintext, write and search: what pgcloak
// did before access rules existed.
package access

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/mask"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// Read is what a session sees of a column's values.
type Read uint8

const (
	// Plaintext: the value in its logical type.
	Plaintext Read = iota
	// Masked: the value in a masking format (Decision.Mask).
	Masked
	// Ciphertext: the stored bytes, as bytea.
	Ciphertext
	// Deny: statements that return the column are refused (42501).
	Deny
)

func (r Read) String() string {
	switch r {
	case Plaintext:
		return config.ReadPlaintext
	case Masked:
		return config.ReadMasked
	case Ciphertext:
		return config.ReadCiphertext
	}
	return config.ReadDeny
}

// Session is what a decision depends on: an authenticated session.
type Session struct {
	// Role is the startup user, authenticated by PostgreSQL.
	Role string
	// ApplicationName is the startup packet's application_name.
	ApplicationName string
	// CertSubject and CertCN are the verified TLS client certificate's
	// subject (as x509 Name.String: CN=…,O=…) and common name; empty
	// without one.
	CertSubject, CertCN string
}

// Column is a protected column as the policy knows it: exact catalog names
// and the logical type.
type Column struct {
	Schema, Table, Name string
	Type                *values.Type
}

// Decision is what one session may do with one column.
type Decision struct {
	Read Read
	// Mask is set for Masked: the format bound to the column's type.
	Mask *mask.Mask
	// Write: the session may store into the column.
	Write bool
	// Search: the session may compare it with values.
	Search bool
	// Rule names the rule that decided, as a config key
	// ("access.tables.public.customers.email.support", "access.default",
	// "no access section"), for messages and pgcloak check.
	Rule string
}

// Outcome names the read outcome for people: plaintext, masked (FORMAT),
// ciphertext, deny.
func (d Decision) Outcome() string {
	if d.Read == Masked && d.Mask != nil {
		return "masked (" + d.Mask.Spec().String() + ")"
	}
	return d.Read.String()
}

// Policy is the compiled access section. It is immutable and safe for
// concurrent use.
type Policy struct {
	open    bool
	def     rule
	roles   map[string]rule
	tables  map[[2]string]map[string]rule // schema, table → role
	columns map[[3]string]map[string]rule // schema, table, column → role
}

// rule is one config rule with its mask parsed.
type rule struct {
	cfg  config.AccessRule
	mask mask.Spec
	key  string
}

// New compiles cfg's access section (validated by config.Parse).
func New(cfg *config.Config) (*Policy, error) {
	p := &Policy{roles: map[string]rule{}, tables: map[[2]string]map[string]rule{}, columns: map[[3]string]map[string]rule{}}
	a := cfg.Access
	if a == nil {
		p.open = true
		p.def = rule{cfg: config.OpenAccess, key: "no access section"}
		return p, nil
	}
	var err error
	def := config.DefaultAccess
	if a.Default != nil {
		def = *a.Default
	}
	if p.def, err = compile(def, "access.default"); err != nil {
		return nil, err
	}
	for role, r := range a.Roles {
		if p.roles[role], err = compile(r, "access.roles."+role); err != nil {
			return nil, err
		}
	}
	for target, byRole := range a.Tables {
		s, t, c, ok := cfg.AccessTarget(target)
		if !ok {
			return nil, fmt.Errorf("access.tables.%s: names no protected table or column", target)
		}
		rules := map[string]rule{}
		for role, r := range byRole {
			if rules[role], err = compile(r, "access.tables."+target+"."+role); err != nil {
				return nil, err
			}
		}
		if c == "" {
			p.tables[[2]string{s, t}] = rules
		} else {
			p.columns[[3]string{s, t, c}] = rules
		}
	}
	return p, nil
}

func compile(r config.AccessRule, key string) (rule, error) {
	out := rule{cfg: r, key: key}
	if r.Read == config.ReadMasked {
		spec, err := mask.Parse(r.Mask)
		if err != nil {
			return rule{}, fmt.Errorf("%s: %w", key, err)
		}
		out.mask = spec
	}
	return out, nil
}

// Open reports whether the config has no access section: every session
// reads, writes and searches every protected column.
func (p *Policy) Open() bool { return p.open }

// Decide returns what session s may do with column c.
func (p *Policy) Decide(s Session, c Column) (Decision, error) {
	r := p.find(s, c)
	d := Decision{Write: r.cfg.Write, Search: r.cfg.SearchAllowed(), Rule: r.key}
	switch r.cfg.Read {
	case config.ReadPlaintext:
		d.Read = Plaintext
	case config.ReadMasked:
		m, err := r.mask.For(c.Type)
		if err != nil {
			return Decision{}, fmt.Errorf("%s: %s.%s.%s: %w", r.key, c.Schema, c.Table, c.Name, err)
		}
		d.Read, d.Mask = Masked, m
	case config.ReadCiphertext:
		d.Read = Ciphertext
	default:
		d.Read = Deny
	}
	return d, nil
}

// find returns the most specific rule for s and c that applies.
func (p *Policy) find(s Session, c Column) rule {
	if p.open {
		return p.def
	}
	for _, rules := range []map[string]rule{p.columns[[3]string{c.Schema, c.Table, c.Name}], p.tables[[2]string{c.Schema, c.Table}]} {
		if r, ok := rules[s.Role]; ok && r.applies(s) {
			return r
		}
		if r, ok := rules[config.PublicRole]; ok && r.applies(s) {
			return r
		}
	}
	if r, ok := p.roles[s.Role]; ok && r.applies(s) {
		return r
	}
	return p.def
}

// applies reports whether the rule's conditions hold for s.
func (r rule) applies(s Session) bool {
	if len(r.cfg.ApplicationName) > 0 && !slices.Contains(r.cfg.ApplicationName, s.ApplicationName) {
		return false
	}
	if len(r.cfg.ClientCert) > 0 {
		if s.CertSubject == "" {
			return false
		}
		if !slices.ContainsFunc(r.cfg.ClientCert, func(want string) bool {
			return want == s.CertCN || strings.EqualFold(want, s.CertSubject)
		}) {
			return false
		}
	}
	return true
}

// Roles lists the roles the policy names (in access.roles and
// access.tables, public left out), sorted: what pgcloak check shows.
func (p *Policy) Roles() []string {
	seen := map[string]bool{}
	for r := range p.roles {
		seen[r] = true
	}
	for _, m := range p.tables {
		for r := range m {
			seen[r] = true
		}
	}
	for _, m := range p.columns {
		for r := range m {
			seen[r] = true
		}
	}
	delete(seen, config.PublicRole)
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
