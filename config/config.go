package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole pgcloak configuration file.
type Config struct {
	// Listen is the address clients connect to, e.g. "127.0.0.1:6432".
	Listen string `yaml:"listen"`
	// Upstream is the PostgreSQL server in libpq keyword/value or URL form.
	// User, database and password come from each client, never from here.
	Upstream string `yaml:"upstream"`
	// AdminDSN is pgcloak's own connection to the protected database (a full
	// libpq string with user and dbname), for the pgcloak.keys table and the
	// catalog. Required with keys or tables.
	AdminDSN string `yaml:"admin_dsn"`
	// MetricsListen serves Prometheus /metrics, /healthz and /readyz. Optional.
	MetricsListen string `yaml:"metrics_listen"`
	// TLS terminates TLS on the client leg. Optional.
	TLS *TLS `yaml:"tls"`
	// Limits bounds what a client may cost.
	Limits Limits `yaml:"limits"`
	// KMS holds the key-encryption keys (Vault Transit, or a local file
	// for development). Required with keys.
	KMS *KMS `yaml:"kms"`
	// Keys names the keyrings: name → the KEK that wraps its data keys.
	Keys map[string]Key `yaml:"keys"`
	// KeyRefresh is how often a running instance looks for new key
	// versions: a rotation reaches every instance within this time plus one
	// refresh (usually within a second, through LISTEN/NOTIFY).
	KeyRefresh time.Duration `yaml:"key_refresh"`
	// Tables names the protected columns: "schema.table" → column → rule.
	Tables map[string]map[string]Column `yaml:"tables"`
	// CatalogRefresh is how often a running instance re-reads the catalog
	// (tables, columns, types, backstop constraints, views over protected
	// tables), so that schema changes made around pgcloak are noticed. DDL
	// relayed by pgcloak and ciphertext in an unknown result column trigger
	// a refresh at once.
	CatalogRefresh time.Duration `yaml:"catalog_refresh"`
	// AllowMissingBackstop lets serve relay sessions while protected columns
	// lack their CHECK backstop (state: encrypted). For roll-outs only: a
	// write around pgcloak could then store plaintext. Logged loudly.
	AllowMissingBackstop bool `yaml:"allow_missing_backstop"`
	// Shadow, when true, logs statements pgcloak would refuse instead of
	// refusing them. For roll-outs only: it lets plaintext through.
	Shadow bool `yaml:"shadow"`
	// Access says which role may see what of the protected columns; nil:
	// every role reads and writes them in plaintext (see access.go).
	Access *Access `yaml:"access"`
	// Audit, when set, records every decryption and denial in a
	// tamper-evident log.
	Audit *Audit `yaml:"audit"`
	// Subjects names the tables whose protected values are encrypted under
	// per-subject keys: "schema.table" → where the subject comes from.
	Subjects map[string]Subject `yaml:"subjects"`
	// ShredWindow bounds how long a forgotten subject stays readable from
	// backups taken before the forget: the keyrings that wrap subject keys
	// get a new version this often and their older ones are destroyed
	// (0: DefaultShredWindow).
	ShredWindow time.Duration `yaml:"shred_window"`
	// SubjectCache is how many subject keys one instance keeps in memory
	// (0: DefaultSubjectCache).
	SubjectCache int `yaml:"subject_cache"`
	// Retention says how long rows are kept: "schema.table" → rule.
	Retention map[string]Retention `yaml:"retention"`
	// RetentionSchedule is how often serve applies the retention rules
	// (0, the default: never; run pgcloak retention run instead).
	RetentionSchedule time.Duration `yaml:"retention_schedule"`
	// LogLevel is serve's log level (debug, info, warn, error); empty: the
	// --log-level flag's. A reload applies it.
	LogLevel string `yaml:"log_level"`
	// AdminUsers are the roles that may connect to the admin console (the
	// virtual database "pgcloak"). Empty: the console is off.
	AdminUsers []string `yaml:"admin_users"`
	// AdminAuthDatabase is the upstream database that the console's logins
	// are checked against (the role must be allowed to connect to it).
	AdminAuthDatabase string `yaml:"admin_auth_database"`
	// ShutdownTimeout is how long SIGTERM waits for busy sessions (in a
	// statement or a transaction) before closing them; idle ones are closed
	// at once.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// TLS is the client-leg TLS configuration. After Load or Parse, relative paths
// have been resolved against the config file's directory.
type TLS struct {
	// CertFile is the PEM server certificate (chain) shown to clients.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the unencrypted PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, requires and verifies client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientMode is what clients must do, as PgBouncer's
	// client_tls_sslmode: disable, allow, prefer, require, verify-ca or
	// verify-full. Empty: verify-ca with ClientCAFile, else prefer.
	ClientMode string `yaml:"client_mode"`
}

// Client TLS modes (tls.client_mode).
const (
	ClientTLSDisable    = "disable"     // SSLRequest is answered 'N'
	ClientTLSAllow      = "allow"       // TLS if the client asks (same as prefer)
	ClientTLSPrefer     = "prefer"      // TLS if the client asks
	ClientTLSRequire    = "require"     // TLS required
	ClientTLSVerifyCA   = "verify-ca"   // TLS with a client certificate signed by client_ca_file
	ClientTLSVerifyFull = "verify-full" // verify-ca, and the certificate's CN is the user name
)

// ClientTLSModes are the values of tls.client_mode, weakest first.
var ClientTLSModes = []string{ClientTLSDisable, ClientTLSAllow, ClientTLSPrefer, ClientTLSRequire, ClientTLSVerifyCA, ClientTLSVerifyFull}

// Mode returns the client TLS mode in force: ClientMode, or its default.
func (t *TLS) Mode() string {
	switch {
	case t == nil:
		return ClientTLSDisable
	case t.ClientMode != "":
		return t.ClientMode
	case t.ClientCAFile != "":
		return ClientTLSVerifyCA
	}
	return ClientTLSPrefer
}

// Limits bounds connections, login time, message size and memory.
type Limits struct {
	// MaxClientConnections is the number of authenticated client sessions
	// served at once.
	MaxClientConnections int `yaml:"max_client_connections"`
	// MaxPendingLogins is the number of client connections that may be
	// open at once without having authenticated yet; they do not count
	// toward MaxClientConnections.
	MaxPendingLogins int `yaml:"max_pending_logins"`
	// LoginTimeout bounds the time from accept to the first ReadyForQuery.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// MaxMessageBytes is the largest protocol message accepted from either side.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// MessageBufferBudget bounds the memory, across all sessions, of the
	// messages pgcloak must hold whole to look into them (Query, Parse,
	// Bind, and rows and COPY data of protected tables, beyond 32 KiB).
	MessageBufferBudget ByteSize `yaml:"message_buffer_budget"`
	// CancelRate is how many CancelRequests one source address may send
	// per second (in bursts of as many); more are dropped.
	CancelRate int `yaml:"cancel_rate"`
}

// ByteSize is a size in bytes written as a number or with a unit
// (B, kB, MB, GB, TB, 1024-based as in PostgreSQL; KiB, MiB, GiB, TiB are
// accepted too). See ParseByteSize.
type ByteSize int64

// Default returns the configuration that every key left out of the file takes.
// Upstream has no default: a file must name it.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:6432",
		Limits: Limits{
			MaxClientConnections: 1000,
			MaxPendingLogins:     100,
			LoginTimeout:         10 * time.Second,
			MaxMessageBytes:      1 << 30,
			MessageBufferBudget:  256 << 20,
			CancelRate:           20,
		},
		KeyRefresh:        DefaultKeyRefresh,
		CatalogRefresh:    DefaultCatalogRefresh,
		AdminAuthDatabase: "postgres",
		ShutdownTimeout:   30 * time.Second,
	}
}

// Load reads and validates the configuration file at path. A file that cannot be
// read gives the *fs.PathError (wrapped); a file with mistakes gives an *Error
// listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data as the configuration file called name. The
// name prefixes every problem and its directory anchors relative file paths.
// On any mistake it returns a nil *Config and an *Error listing all of them.
func Parse(name string, data []byte) (*Config, error) {
	l := &loader{
		file:  name,
		dir:   filepath.Dir(name),
		lines: map[string]int{},
		bad:   map[string]bool{},
	}
	cfg := Default()
	if root := l.parseYAML(data); root != nil {
		l.lines[""] = root.Line
		l.decode(root, reflect.ValueOf(cfg).Elem(), "")
		for _, check := range checks {
			check(l, cfg)
		}
	}
	if len(l.problems) > 0 {
		sort.SliceStable(l.problems, func(i, j int) bool { return l.problems[i].Line < l.problems[j].Line })
		return nil, &Error{Problems: l.problems}
	}
	return cfg, nil
}

// Problem is one mistake in a configuration file.
type Problem struct {
	File string
	Line int    // 1-based; 0 when YAML did not say
	Key  string // dotted path such as "limits.login_timeout"; empty for the file as a whole
	Msg  string // what is wrong, then "; " and how to fix it
}

// String formats p as "FILE:LINE: KEY: problem; fix".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in one configuration file, sorted by line.
type Error struct {
	Problems []Problem
}

// Error returns one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// loader holds the state of one Parse: where problems are reported and what the
// decoder learnt about lines for the checks that run after it.
type loader struct {
	file     string
	dir      string          // directory of file, for relative paths
	lines    map[string]int  // dotted key -> line of the key; "" is the top level
	bad      map[string]bool // keys that already have a problem: checks stay quiet about them
	problems []Problem
}

// at records a problem that the decoder found at a known line, and marks key
// as bad so that the checks say nothing more about it.
func (l *loader) at(line int, key, format string, args ...any) {
	l.bad[key] = true
	l.add(line, key, format, args...)
}

func (l *loader) add(line int, key, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: l.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// problem records a problem that a check found, at the line where key (or, if
// the file leaves key out, its nearest written parent) appears. It stays quiet
// when the decoder already reported key or a parent, so that one mistake (a
// wrong type, say) does not also come back as an impossible value.
func (l *loader) problem(key, format string, args ...any) {
	for k := key; ; k = parentKey(k) {
		if l.bad[k] {
			return
		}
		if k == "" {
			break
		}
	}
	line := 0
	for k := key; ; k = parentKey(k) {
		if n, ok := l.lines[k]; ok || k == "" {
			line = n
			break
		}
	}
	l.add(line, key, format, args...)
}

// path resolves a file path from the config against the config file's directory.
func (l *loader) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

// yamlLine matches yaml.v3's syntax errors, which carry the line in their text only.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the top-level mapping of data, or nil after reporting why
// there is none.
func (l *loader) parseYAML(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err == nil && len(doc.Content) == 0 {
		err = io.EOF
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			l.at(1, "", "the file is empty; at least upstream is required, e.g. upstream: \"host=127.0.0.1 port=5432\"")
			return nil
		}
		msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		l.at(line, "", "invalid YAML: %s; check the indentation and quoting near this line", msg)
		return nil
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		l.at(extra.Line, "", "a second YAML document; keep one document per file (remove the --- line)")
	}
	root := resolve(doc.Content[0])
	if root.ShortTag() == "!!null" {
		l.at(root.Line, "", "the file is empty; at least upstream is required, e.g. upstream: \"host=127.0.0.1 port=5432\"")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		l.at(root.Line, "", "the top level must be a mapping of keys (listen: …, upstream: …), got %s; see the example in the README", describe(root))
		return nil
	}
	return root
}
