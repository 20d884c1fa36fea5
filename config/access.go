package config

import (
	"fmt"
	"strings"

	"github.com/pgcloak/pgcloak/proxy/mask"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// Access says which PostgreSQL role may see what of the protected columns.
// A config without it serves every protected column in plaintext to every
// role (as before access rules existed; serve warns); with it, a role no
// rule covers gets Default, which is deny unless written.
type Access struct {
	// Default is the rule of every role for every protected column that no
	// rule below covers (default deny).
	Default *AccessRule `yaml:"default"`
	// Roles are rules per role for every protected column.
	Roles map[string]AccessRule `yaml:"roles"`
	// Tables are rules per role for the protected columns of one table
	// ("schema.table") or for one column ("schema.table.column"). The role
	// "public" means every role not named beside it.
	Tables map[string]map[string]AccessRule `yaml:"tables"`
}

// AccessRule is what one role may do with a protected column. In the file it
// is a mapping, or a single word: plaintext, ciphertext, deny, or a mask
// format (email, last4, token, …), which means read: masked with that mask.
type AccessRule struct {
	// Read is plaintext, masked (with Mask), ciphertext (the stored bytes as
	// bytea) or deny (SQLSTATE 42501).
	Read string `yaml:"read"`
	// Mask is the format of read: masked (see proxy/mask).
	Mask string `yaml:"mask"`
	// Write lets the role store into the column (default false).
	Write bool `yaml:"write"`
	// Search lets the role compare the column with values (WHERE col = $1,
	// IN, joins, GROUP BY): default true when Read is plaintext, false
	// otherwise. Only deterministic columns can be compared at all.
	Search *bool `yaml:"search"`
	// ApplicationName, when set, limits the rule to sessions whose startup
	// application_name is one of these; other sessions of the role fall
	// through to the next less specific rule.
	ApplicationName []string `yaml:"application_name"`
	// ClientCert, when set, limits the rule to sessions whose TLS client
	// certificate has one of these subjects (the CN, or the whole subject
	// as CN=…,O=…); needs tls.client_ca_file.
	ClientCert []string `yaml:"client_cert"`
}

// Read outcomes of an access rule.
const (
	ReadPlaintext  = "plaintext"
	ReadMasked     = "masked"
	ReadCiphertext = "ciphertext"
	ReadDeny       = "deny"
)

// PublicRole names every role in access.tables rules, as in GRANT … TO
// PUBLIC (PostgreSQL reserves the name: no role is called public).
const PublicRole = "public"

// UnmarshalText reads the one-word form of a rule.
func (r *AccessRule) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	switch strings.ToLower(s) {
	case ReadPlaintext, ReadCiphertext, ReadDeny:
		*r = AccessRule{Read: strings.ToLower(s)}
		return nil
	case ReadMasked:
		return fmt.Errorf("%q needs its format: write the format itself (e.g. email, last4, token), or {read: masked, mask: email}", s)
	}
	if _, err := mask.Parse(s); err != nil {
		return fmt.Errorf("%q is not a rule: write plaintext, ciphertext, deny, a mask (%s), or a mapping {read: …, write: …}", s, mask.Specs)
	}
	*r = AccessRule{Read: ReadMasked, Mask: s}
	return nil
}

// SearchAllowed is Search with its default.
func (r AccessRule) SearchAllowed() bool {
	if r.Search != nil {
		return *r.Search
	}
	return r.Read == ReadPlaintext
}

// DefaultAccess is the rule of a role no rule covers when the access
// section leaves default out: least access.
var DefaultAccess = AccessRule{Read: ReadDeny}

// OpenAccess is every role's rule when the config has no access section:
// what pgcloak did before access rules existed.
var OpenAccess = AccessRule{Read: ReadPlaintext, Write: true}

// Audit is the tamper-evident log of decryptions and denials.
type Audit struct {
	// File is the log file (required); rotated files are FILE.<time>.<seq>.
	File string `yaml:"file"`
	// Stdout also writes every record to standard output.
	Stdout bool `yaml:"stdout"`
	// TransitKey is the Vault Transit key that wraps the log's HMAC key
	// (required with kms.vault).
	TransitKey string `yaml:"transit_key"`
	// Buffer is the number of records held while the file is written.
	Buffer int `yaml:"buffer"`
	// OnFailure is block (default: stop decrypting while records cannot be
	// written) or continue (decrypt, count the records lost).
	OnFailure string `yaml:"on_failure"`
	// RotateSize starts a new file once the current one is this large.
	RotateSize ByteSize `yaml:"rotate_size"`
}

// Audit failure modes.
const (
	AuditBlock    = "block"
	AuditContinue = "continue"
)

// Audit defaults.
const (
	DefaultAuditBuffer     = 16384
	DefaultAuditRotateSize = 256 << 20
)

// ColumnRef is a protected column of tables: as the access rules see it.
type ColumnRef struct {
	// Table is the tables: key ("schema.table" as written), Column the
	// column key; Schema and Name the parsed table name.
	Table, Column string
	Schema, Name  string
	Rule          Column
}

// ProtectedColumns lists every protected column of tables:, sorted.
func (c *Config) ProtectedColumns() []ColumnRef {
	var out []ColumnRef
	for _, t := range sortedKeys(c.Tables) {
		schema, name, err := SplitTable(t)
		if err != nil {
			continue
		}
		for _, col := range sortedKeys(c.Tables[t]) {
			out = append(out, ColumnRef{Table: t, Column: col, Schema: schema, Name: name, Rule: c.Tables[t][col]})
		}
	}
	return out
}

// AccessTarget resolves a key of access.tables: the table ("schema.table")
// or the column ("schema.table.column") of tables: it names. ok is false
// when it names neither.
func (c *Config) AccessTarget(key string) (schema, table, column string, ok bool) {
	if s, t, err := SplitTable(key); err == nil {
		for tk := range c.Tables {
			if ts, tt, err := SplitTable(tk); err == nil && ts == s && tt == t {
				return s, t, "", true
			}
		}
	}
	for _, ref := range c.ProtectedColumns() {
		if key == ref.Table+"."+ref.Column {
			return ref.Schema, ref.Name, ref.Column, true
		}
		if prefix, col, found := cutLast(key); found {
			if s, t, err := SplitTable(prefix); err == nil && s == ref.Schema && t == ref.Name && unquote(col) == ref.Column {
				return s, t, ref.Column, true
			}
		}
	}
	return "", "", "", false
}

// cutLast splits "a.b.c" at its last dot outside double quotes.
func cutLast(s string) (string, string, bool) {
	quoted := false
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '.':
			if !quoted {
				return s[:i], s[i+1:], true
			}
		}
	}
	return "", "", false
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

func checkAccess(l *loader, c *Config) {
	a := c.Access
	if a == nil {
		return
	}
	cols := c.ProtectedColumns()
	if a.Default != nil {
		checkRule(l, c, "access.default", *a.Default, cols)
	}
	for _, role := range sortedKeys(a.Roles) {
		key := "access.roles." + role
		if strings.EqualFold(role, PublicRole) {
			l.problem(key, "public means every role: write that rule as access.default")
			continue
		}
		checkRole(l, key, role)
		checkRule(l, c, key, a.Roles[role], cols)
	}
	for _, target := range sortedKeys(a.Tables) {
		key := "access.tables." + target
		s, t, col, ok := c.AccessTarget(target)
		if !ok {
			l.problem(key, "names no protected table or column of tables:; write schema.table or schema.table.column as in tables: (known: %s)", accessTargets(c))
			continue
		}
		var covered []ColumnRef
		for _, ref := range cols {
			if ref.Schema == s && ref.Name == t && (col == "" || ref.Column == col) {
				covered = append(covered, ref)
			}
		}
		for _, role := range sortedKeys(a.Tables[target]) {
			rkey := key + "." + role
			checkRole(l, rkey, role)
			checkRule(l, c, rkey, a.Tables[target][role], covered)
		}
	}
}

// accessTargets lists what access.tables may name, for messages.
func accessTargets(c *Config) string {
	var names []string
	for _, t := range sortedKeys(c.Tables) {
		names = append(names, t)
		for _, col := range sortedKeys(c.Tables[t]) {
			names = append(names, t+"."+col)
		}
	}
	if len(names) == 0 {
		return "tables: is empty"
	}
	if len(names) > 12 {
		names = append(names[:12], "…")
	}
	return strings.Join(names, ", ")
}

func checkRole(l *loader, key, role string) {
	if role == "" || len(role) > 63 {
		l.problem(key, "a role name has 1 to 63 characters, as in PostgreSQL")
	}
}

// checkRule checks one rule and, for masks, that the format applies to
// every column it covers.
func checkRule(l *loader, c *Config, key string, r AccessRule, cols []ColumnRef) {
	switch r.Read {
	case ReadPlaintext, ReadCiphertext, ReadDeny:
		if r.Mask != "" {
			l.problem(key+".mask", "only read: masked takes a mask; remove it or write read: masked")
		}
	case ReadMasked:
		if r.Mask == "" {
			l.problem(key, `read: masked needs mask: one of %s (quote "null": unquoted, YAML reads it as no value)`, mask.Specs)
			return
		}
		spec, err := mask.Parse(r.Mask)
		if err != nil {
			l.problem(key+".mask", "%v", err)
			return
		}
		for _, ref := range cols {
			t, err := values.Lookup(ref.Rule.Type)
			if err != nil {
				continue // checkTables reports it
			}
			if _, err := spec.For(t); err != nil {
				l.problem(key+".mask", "%s.%s: %v; give that column a rule of its own under access.tables", ref.Table, ref.Column, err)
			}
		}
	case "":
		l.problem(key, `empty rule; write plaintext, ciphertext, deny, a mask (%s; quote "null"), or {read: …, write: …}`, mask.Specs)
	default:
		l.problem(key+".read", "unknown read %q; use plaintext, masked, ciphertext or deny", r.Read)
	}
	if len(r.ClientCert) > 0 && (c.TLS == nil || c.TLS.ClientCAFile == "") {
		l.problem(key+".client_cert", "needs tls.client_ca_file: without client certificates no session matches; set tls.client_ca_file or remove client_cert")
	}
	for i, s := range append(append([]string(nil), r.ApplicationName...), r.ClientCert...) {
		if strings.TrimSpace(s) == "" {
			l.problem(key, "condition %d is empty; remove it", i+1)
		}
	}
}

func checkAudit(l *loader, c *Config) {
	a := c.Audit
	if a == nil {
		return
	}
	if a.File == "" {
		l.problem("audit.file", "required: the audit log file, e.g. file: /var/log/pgcloak/audit.log")
	}
	a.File = l.path(a.File)
	if a.Buffer == 0 {
		a.Buffer = DefaultAuditBuffer
	}
	if a.Buffer < 16 || a.Buffer > 1<<22 {
		l.problem("audit.buffer", "must be from 16 to %d records, got %d; the default is %d", 1<<22, a.Buffer, DefaultAuditBuffer)
	}
	switch a.OnFailure {
	case "":
		a.OnFailure = AuditBlock
	case AuditBlock, AuditContinue:
	default:
		l.problem("audit.on_failure", "unknown %q; use block (stop decrypting while the log cannot be written) or continue (decrypt and count the records lost)", a.OnFailure)
	}
	if a.RotateSize == 0 {
		a.RotateSize = DefaultAuditRotateSize
	}
	if a.RotateSize < 64<<10 {
		l.problem("audit.rotate_size", "must be at least 64kB, got %s; the default is %s", a.RotateSize, ByteSize(DefaultAuditRotateSize))
	}
	if c.KMS == nil {
		l.problem("audit", "needs kms: the log's HMAC key is wrapped by a KMS key; add kms: {vault: …} (or local for development)")
	} else if c.KMS.Vault != nil {
		if a.TransitKey == "" {
			l.problem("audit.transit_key", "required with kms.vault: the Transit key that wraps the log's HMAC key; write e.g. transit_key: pgcloak-audit (pgcloak keys init creates it)")
		} else if !keyName.MatchString(a.TransitKey) {
			l.problem("audit.transit_key", "%q is not a valid Transit key name; use %s", a.TransitKey, keyNameRule)
		}
	}
}
