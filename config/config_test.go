package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeTLS writes a self-signed ECDSA P-256 certificate (also usable as a CA)
// and its key into dir as server.crt, ca.crt and server.key, plus other.key
// (a key that does not match) and notpem.txt.
func writeTLS(t *testing.T, dir string) {
	t.Helper()
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	key, keyPEM := newKey()
	_, otherPEM := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgcloak test"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"server.crt": certPEM,
		"ca.crt":     certPEM,
		"server.key": keyPEM,
		"other.key":  otherPEM,
		"notpem.txt": []byte("not a certificate\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// topLevelKeys lists the top-level keys as errors name them.
const topLevelKeys = "listen, upstream, admin_dsn, metrics_listen, tls, limits, kms, keys, key_refresh, tables, catalog_refresh, allow_missing_backstop, shadow, access, audit, subjects, shred_window, subject_cache, retention, retention_schedule, log_level, admin_users, admin_auth_database, shutdown_timeout"

// TestParseErrors checks every kind of mistake: each want line is
// "LINE: KEY: message" after the file name, DIR stands for the file's
// directory, and the error must hold exactly these lines in this order.
func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	writeTLS(t, dir)
	name := filepath.Join(dir, "pgcloak.yaml")
	const up = "upstream: host=127.0.0.1\n"

	tests := []struct {
		name string
		yaml string
		want []string
	}{
		// The file as a whole.
		{"empty file", "", []string{
			`1: the file is empty; at least upstream is required, e.g. upstream: "host=127.0.0.1 port=5432"`}},
		{"only comments", "# nothing yet\n", []string{
			`1: the file is empty; at least upstream is required, e.g. upstream: "host=127.0.0.1 port=5432"`}},
		{"syntax error", up + "listen: a: b\n", []string{
			`2: invalid YAML: mapping values are not allowed in this context; check the indentation and quoting near this line`}},
		{"bad indentation", up + "limits:\n  login_timeout: 1s\n max_message_bytes: 1GB\n", []string{
			`3: invalid YAML: did not find expected key; check the indentation and quoting near this line`}},
		{"top level list", "- listen\n- upstream\n", []string{
			`1: the top level must be a mapping of keys (listen: …, upstream: …), got a list; see the example in the README`}},
		{"top level scalar", "hello\n", []string{
			`1: the top level must be a mapping of keys (listen: …, upstream: …), got "hello"; see the example in the README`}},
		{"two documents", up + "---\nlisten: :1\n", []string{
			`2: a second YAML document; keep one document per file (remove the --- line)`}},

		// Unknown keys and wrong types.
		{"unknown top-level key", up + "lisen: 127.0.0.1:1\n", []string{
			`2: lisen: unknown key; did you mean "listen"? known keys: ` + topLevelKeys}},
		{"unknown nested key", up + "limits:\n  max_conections: 5\n", []string{
			`3: limits.max_conections: unknown key; known keys: max_client_connections, max_pending_logins, login_timeout, max_message_bytes, message_buffer_budget, cancel_rate`}},
		{"nested key one typo away", up + "limits:\n  max_client_conections: 5\n", []string{
			`3: limits.max_client_conections: unknown key; did you mean "max_client_connections"? known keys: max_client_connections, max_pending_logins, login_timeout, max_message_bytes, message_buffer_budget, cancel_rate`}},
		{"duplicate key", up + "listen: :1\nlisten: :2\n", []string{
			`3: listen: duplicate key (first at line 2); keep one of them`}},
		{"integer expected", up + "limits:\n  max_client_connections: lots\n", []string{
			`3: limits.max_client_connections: expected an integer, got "lots"`}},
		{"quoted integer", up + "limits:\n  max_client_connections: \"10\"\n", []string{
			`3: limits.max_client_connections: expected an integer, got "10"`}},
		{"mapping expected", up + "limits: 5\n", []string{
			`2: limits: expected a mapping, got "5"`}},
		{"string expected", up + "listen: [a, b]\n", []string{
			`2: listen: expected a string, got a list`}},
		{"wrong type is reported once", "upstream: {host: h}\n", []string{
			`1: upstream: expected a string, got a mapping`}},
		{"tls not a mapping", up + "tls: yes\n", []string{
			`2: tls: expected a mapping, got "yes"`}},
		{"bad duration", up + "limits:\n  login_timeout: soon\n", []string{
			`3: limits.login_timeout: invalid duration "soon"; write e.g. 10s, 1m30s, 500ms or 2min`}},
		{"duration without unit", up + "limits:\n  login_timeout: 10\n", []string{
			`3: limits.login_timeout: duration "10" has no unit; write e.g. 10s, 1m30s, 500ms or 2min`}},
		{"bad size", up + "limits:\n  max_message_bytes: 1 XB\n", []string{
			`3: limits.max_message_bytes: unknown unit "XB" in size "1 XB"; ` + sizeHint}},
		{"new limits out of range", up + "limits:\n  max_pending_logins: 0\n  message_buffer_budget: 64kB\n  cancel_rate: 0\n", []string{
			`3: limits.max_pending_logins: must be at least 1, got 0; the default is 100`,
			`4: limits.message_buffer_budget: must be between 1MB and 1TB, got 64kB; the default is 256MB`,
			`5: limits.cancel_rate: must be at least 1 (CancelRequests per second from one address), got 0; the default is 20`}},
		{"shutdown_timeout out of range", up + "shutdown_timeout: 2h\n", []string{
			`2: shutdown_timeout: must be from 0s to 1h, got 2h0m0s; the default is 30s`}},

		// Addresses.
		{"listen without port", up + "listen: \"6432\"\n", []string{
			`2: listen: "6432" is not host:port (missing port in address); write e.g. 127.0.0.1:6432, or :6432 for every interface`}},
		{"listen port not numeric", up + "listen: localhost:pg\n", []string{
			`2: listen: port "pg" is not a number from 0 to 65535; write e.g. 127.0.0.1:6432`}},
		{"listen port too large", up + "listen: localhost:70000\n", []string{
			`2: listen: port "70000" is not a number from 0 to 65535; write e.g. 127.0.0.1:6432`}},
		{"metrics_listen bad", up + "metrics_listen: 9187\n", []string{
			`2: metrics_listen: "9187" is not host:port (missing port in address); write e.g. 127.0.0.1:9187, or :9187 for every interface`}},

		// Upstream.
		{"upstream missing", "listen: :6432\n", []string{
			`1: upstream: required: the PostgreSQL server to proxy to; write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer"`}},
		{"upstream empty", "listen: :6432\nupstream: \"\"\n", []string{
			`2: upstream: required: the PostgreSQL server to proxy to; write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer"`}},
		{"upstream unparseable", "upstream: localhost:5432\n", []string{
			"1: upstream: cannot parse `localhost:5432`: failed to parse as keyword/value (invalid keyword/value); " +
				`write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer", or a postgres://host:port/?sslmode=prefer URL`}},
		{"upstream bad port", "upstream: host=h port=x\n", []string{
			"1: upstream: cannot parse `host=h port=x`: invalid port; " +
				`write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer", or a postgres://host:port/?sslmode=prefer URL`}},
		{"upstream user", "upstream: host=h user=app\n", []string{
			`1: upstream: sets user, but user, database and password come from each client; remove user=… (or user@ in a URL)`}},
		{"upstream dbname and password", "upstream: host=h dbname='my db' password=secret\n", []string{
			`1: upstream: sets password, but user, database and password come from each client; remove password=… (or :password@ in a URL)`,
			`1: upstream: sets dbname, but user, database and password come from each client; remove dbname=… (or /dbname in a URL)`}},
		{"upstream URL userinfo", "upstream: postgres://app:pw@h:5432/\n", []string{
			`1: upstream: sets user, but user, database and password come from each client; remove user=… (or user@ in a URL)`,
			`1: upstream: sets password, but user, database and password come from each client; remove password=… (or :password@ in a URL)`}},
		{"upstream URL path", "upstream: postgresql://h:5432/app?sslmode=require\n", []string{
			`1: upstream: sets dbname, but user, database and password come from each client; remove dbname=… (or /dbname in a URL)`}},
		{"upstream URL query user", "upstream: postgres://h/?user=app\n", []string{
			`1: upstream: sets user, but user, database and password come from each client; remove user=… (or user@ in a URL)`}},
		{"upstream sslmode", "upstream: host=h sslmode=preferred\n", []string{
			`1: upstream: unknown sslmode "preferred"; use one of disable, allow, prefer, require, verify-ca, verify-full`}},
		{"upstream URL sslmode", "upstream: postgres://h/?sslmode=on\n", []string{
			`1: upstream: unknown sslmode "on"; use one of disable, allow, prefer, require, verify-ca, verify-full`}},

		// Limits.
		{"zero connections", up + "limits:\n  max_client_connections: 0\n", []string{
			`3: limits.max_client_connections: must be at least 1, got 0; the default is 1000`}},
		{"zero login timeout", up + "limits:\n  login_timeout: 0s\n", []string{
			`3: limits.login_timeout: must be more than 0 and at most 1h, got 0s; the default is 10s`}},
		{"login timeout too long", up + "limits:\n  login_timeout: 2h\n", []string{
			`3: limits.login_timeout: must be more than 0 and at most 1h, got 2h0m0s; the default is 10s`}},
		{"message size too small", up + "limits:\n  max_message_bytes: 1kB\n", []string{
			`3: limits.max_message_bytes: must be between 64kB and 1GB, got 1kB; the default is 1GB`}},
		{"message size too large", up + "limits:\n  max_message_bytes: 2GB\n", []string{
			`3: limits.max_message_bytes: must be between 64kB and 1GB, got 2GB; the default is 1GB`}},

		// TLS.
		{"tls empty", up + "tls:\n", []string{
			`2: tls.cert_file: required when tls is set; add cert_file: server.crt (PEM), or remove tls to serve only plaintext clients`,
			`2: tls.key_file: required when tls is set; add key_file: server.key (PEM), or remove tls to serve only plaintext clients`}},
		{"tls without key", up + "tls:\n  cert_file: server.crt\n", []string{
			`2: tls.key_file: required when tls is set; add key_file: server.key (PEM), or remove tls to serve only plaintext clients`}},
		{"tls files missing", up + "tls:\n  cert_file: nope.crt\n  key_file: /nonexistent/nope.key\n", []string{
			`3: tls.cert_file: cannot read DIR/nope.crt: no such file or directory; check the path (a relative path starts at the config file's directory)`,
			`4: tls.key_file: cannot read /nonexistent/nope.key: no such file or directory; check the path (a relative path starts at the config file's directory)`}},
		{"tls key does not match", up + "tls:\n  cert_file: server.crt\n  key_file: other.key\n", []string{
			`2: tls: cannot load DIR/server.crt and DIR/other.key as a key pair: tls: private key does not match public key; give a PEM certificate and its unencrypted PEM private key`}},
		{"tls cert not PEM", up + "tls:\n  cert_file: notpem.txt\n  key_file: server.key\n", []string{
			`2: tls: cannot load DIR/notpem.txt and DIR/server.key as a key pair: tls: failed to find any PEM data in certificate input; give a PEM certificate and its unencrypted PEM private key`}},
		{"client CA missing", up + "tls:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: nope.crt\n", []string{
			`5: tls.client_ca_file: cannot read DIR/nope.crt: no such file or directory; check the path (a relative path starts at the config file's directory)`}},
		{"unknown client TLS mode", up + "tls:\n  cert_file: server.crt\n  key_file: server.key\n  client_mode: always\n", []string{
			`5: tls.client_mode: unknown mode "always"; use one of disable, allow, prefer, require, verify-ca, verify-full (PgBouncer's client_tls_sslmode values)`}},
		{"verify-ca without a client CA", up + "tls:\n  cert_file: server.crt\n  key_file: server.key\n  client_mode: verify-full\n", []string{
			`5: tls.client_mode: verify-full checks client certificates, which needs tls.client_ca_file; add client_ca_file: ca.crt (the CA that signs them), or use require`}},
		{"client CA that require ignores", up + "tls:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n  client_mode: require\n", []string{
			`6: tls.client_mode: require does not check client certificates, but tls.client_ca_file is set; use verify-ca or verify-full, or remove client_ca_file`}},
		{"client CA without certificates", up + "tls:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: notpem.txt\n", []string{
			`5: tls.client_ca_file: DIR/notpem.txt contains no PEM certificates; give the CA certificate(s) that sign client certificates, in PEM`}},
		{"unknown tls key and missing files", up + "tls:\n  cert: server.crt\n", []string{
			`2: tls.cert_file: required when tls is set; add cert_file: server.crt (PEM), or remove tls to serve only plaintext clients`,
			`2: tls.key_file: required when tls is set; add key_file: server.key (PEM), or remove tls to serve only plaintext clients`,
			`3: tls.cert: unknown key; known keys: cert_file, key_file, client_ca_file, client_mode`}},

		// Every problem at once, sorted by line although found out of order.
		{"all problems sorted by line", "listen: nowhere\nlimits:\n  max_client_connections: -1\n  login_timeout: forever\nextra: 1\n", []string{
			`1: listen: "nowhere" is not host:port (missing port in address); write e.g. 127.0.0.1:6432, or :6432 for every interface`,
			`1: upstream: required: the PostgreSQL server to proxy to; write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer"`,
			`3: limits.max_client_connections: must be at least 1, got -1; the default is 1000`,
			`4: limits.login_timeout: invalid duration "forever"; write e.g. 10s, 1m30s, 500ms or 2min`,
			`5: extra: unknown key; known keys: ` + topLevelKeys}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(name, []byte(tt.yaml))
			if cfg != nil {
				t.Errorf("got a config with an error")
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = name + ":" + strings.ReplaceAll(w, "DIR", dir)
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			for _, p := range cerr.Problems {
				if p.File != name || p.Line < 1 {
					t.Errorf("problem %+v lacks file or line", p)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("pgcloak.yaml", []byte("upstream: host=127.0.0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:   "127.0.0.1:6432",
		Upstream: "host=127.0.0.1",
		Limits: Limits{MaxClientConnections: 1000, MaxPendingLogins: 100, LoginTimeout: 10 * time.Second,
			MaxMessageBytes: 1 << 30, MessageBufferBudget: 256 << 20, CancelRate: 20},
		KeyRefresh: 30 * time.Second, CatalogRefresh: 5 * time.Second, ShutdownTimeout: 30 * time.Second,
		AdminAuthDatabase: "postgres",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}

	// A partly written section keeps the defaults of the keys it leaves out,
	// and an empty value means the default.
	cfg, err = Parse("pgcloak.yaml", []byte("upstream: host=h\nlisten:\nlimits:\n  login_timeout: 1m30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	want.Upstream, want.Limits.LoginTimeout = "host=h", 90*time.Second
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
}

func TestExampleRoundTrip(t *testing.T) {
	// No other file is needed: the example loads exactly as printed.
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, "pgcloak.yaml"), []byte(Example()))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:        "127.0.0.1:6432",
		Upstream:      "host=db.example.internal port=5432 sslmode=verify-full sslrootcert=system",
		MetricsListen: "127.0.0.1:9187",
		Limits: Limits{MaxClientConnections: 1000, MaxPendingLogins: 100, LoginTimeout: 10 * time.Second,
			MaxMessageBytes: 1 << 30, MessageBufferBudget: 256 << 20, CancelRate: 20},
		ShutdownTimeout: 30 * time.Second,
		AdminDSN:        "host=db.example.internal port=5432 user=pgcloak dbname=app sslmode=verify-full sslrootcert=system",
		KMS: &KMS{Vault: &Vault{
			Address:      "http://127.0.0.1:8200",
			TransitMount: "transit",
			Auth:         VaultAuth{Method: AuthToken},
		}},
		Keys:       map[string]Key{"pii": {TransitKey: "pgcloak-pii"}, "subject-keys": {TransitKey: "pgcloak-subject-keys"}},
		KeyRefresh: 30 * time.Second, CatalogRefresh: 5 * time.Second,
		Tables: map[string]map[string]Column{
			"public.customers": {
				"email":      {Type: "text", Key: "pii", Mode: ModeDeterministic, SearchGroup: "email", State: StateEncrypted},
				"birth_date": {Type: "date", Key: "pii"},
			},
			"public.orders": {"address": {Type: "text", Key: "subject-keys"}},
		},
		Subjects:     map[string]Subject{"public.orders": {Column: "customer_id", Key: "subject-keys"}}, // forgotten_reads: null is YAML null: the default,
		ShredWindow:  30 * 24 * time.Hour,
		SubjectCache: 20000,
		Retention:    map[string]Retention{"public.orders": {Column: "created_at", Keep: "3y", Action: RetentionForget}},
		Access: &Access{
			Default: &AccessRule{Read: ReadDeny},
			Roles: map[string]AccessRule{
				"app":       {Read: ReadPlaintext, Write: true},
				"analytics": {Read: ReadMasked, Mask: "token"},
			},
			Tables: map[string]map[string]AccessRule{
				"public.customers":            {"support": {Read: ReadMasked, Mask: "null"}},
				"public.customers.email":      {"support": {Read: ReadMasked, Mask: "email", Search: &yes}},
				"public.customers.birth_date": {"support": {Read: ReadMasked, Mask: "fixed:1900-01-01"}},
			},
		},
		Audit:             &Audit{File: filepath.Join(dir, "audit.log"), TransitKey: "pgcloak-audit", Buffer: 16384, OnFailure: AuditBlock, RotateSize: 256 << 20},
		LogLevel:          "info",
		AdminUsers:        []string{},
		AdminAuthDatabase: "postgres",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

var yes = true

func TestLoadResolvesTLSPaths(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTLS(t, certs)
	// Relative paths start at the config file's directory, not the working
	// directory; absolute paths stay as written.
	yaml := "upstream: postgres://db.internal:5432/?sslmode=require\n" +
		"tls:\n  cert_file: certs/server.crt\n  key_file: " + filepath.Join(certs, "server.key") + "\n"
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CertFile: filepath.Join(certs, "server.crt"), KeyFile: filepath.Join(certs, "server.key")}
	if *cfg.TLS != want {
		t.Errorf("got %+v, want %+v", *cfg.TLS, want)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: got %v, want os.ErrNotExist", err)
	}
}

func TestAliases(t *testing.T) {
	yaml := "upstream: &up host=h\nlimits: &lim\n  max_client_connections: 7\n"
	cfg, err := Parse("a.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxClientConnections != 7 || cfg.Upstream != "host=h" {
		t.Errorf("got %+v", cfg)
	}
}

// TestDecodeGeneric shows the shapes future sections take (maps of maps of
// structs, lists) decoding with no change to the decoder, unknown keys
// reported at every depth.
func TestDecodeGeneric(t *testing.T) {
	type column struct {
		Type string `yaml:"type"`
		Mode string `yaml:"mode"`
	}
	type future struct {
		Tables map[string]map[string]column `yaml:"tables"`
		Keys   []struct {
			Name string `yaml:"name"`
		} `yaml:"keys"`
		Shadow bool `yaml:"shadow"`
	}
	const yaml = `tables:
  public.customers:
    email: {type: text, mode: deterministic}
    phone:
      type: text
      mdoe: randomized
keys:
  - name: k1
  - nmae: k2
shadow: maybe
`
	l := &loader{file: "f.yaml", lines: map[string]int{}, bad: map[string]bool{}}
	var got future
	root := l.parseYAML([]byte(yaml))
	l.decode(root, reflect.ValueOf(&got).Elem(), "")
	wantProblems := []string{
		`f.yaml:6: tables.public.customers.phone.mdoe: unknown key; did you mean "mode"? known keys: type, mode`,
		`f.yaml:9: keys[1].nmae: unknown key; did you mean "name"? known keys: name`,
		`f.yaml:10: shadow: expected true or false, got "maybe"`,
	}
	var gotProblems []string
	for _, p := range l.problems {
		gotProblems = append(gotProblems, p.String())
	}
	if !reflect.DeepEqual(gotProblems, wantProblems) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(gotProblems, "\n"), strings.Join(wantProblems, "\n"))
	}
	if c := got.Tables["public.customers"]["email"]; c != (column{"text", "deterministic"}) {
		t.Errorf("email column: got %+v", c)
	}
	if len(got.Keys) != 2 || got.Keys[0].Name != "k1" {
		t.Errorf("keys: got %+v", got.Keys)
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
	}{
		{"65536", 65536},
		{"64kB", 64 << 10},
		{"64KB", 64 << 10},
		{"512MB", 512 << 20},
		{"512mb", 512 << 20},
		{"1GB", 1 << 30},
		{"1 GB", 1 << 30},
		{"1GiB", 1 << 30},
		{"2TB", 2 << 40},
		{"3tib", 3 << 40},
		{"100B", 100},
		{" 7 KiB ", 7 << 10},
	} {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if back, err := ParseByteSize(got.String()); err != nil || back != got {
			t.Errorf("ParseByteSize(%q.String() = %q) = %d, %v", tt.in, got.String(), back, err)
		}
	}
	for _, in := range []string{"", "GB", "1.5GB", "-1", "1 XB", "1 G B", "99999999999TB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
	for b, want := range map[ByteSize]string{0: "0B", 1000: "1000B", 1 << 10: "1kB", 1536: "1536B", 64 << 10: "64kB", 1 << 30: "1GB", 3 << 40: "3TB"} {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"10s", 10 * time.Second},
		{"1m30s", 90 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"10 s", 10 * time.Second},
		{"2min", 2 * time.Minute},
		{"1.5min", 90 * time.Second},
		{"250 us", 250 * time.Microsecond},
		{"1h", time.Hour},
		{"1d", 24 * time.Hour},
		{"0", 0},
	} {
		if got, err := ParseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "10", "soon", "10 sec", "2 MIN", "1e400d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestConnSettings(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want map[string]string
	}{
		{"host=h port=5432", map[string]string{"host": "h", "port": "5432"}},
		{"  host = h  sslmode='verify-full' ", map[string]string{"host": "h", "sslmode": "verify-full"}},
		{`options='-c a=b\'c' database=x`, map[string]string{"options": "-c a=b'c", "dbname": "x"}},
		{`application_name=a\ b user=`, map[string]string{"application_name": "a b", "user": ""}},
		{"postgres://u@h1:5432,h2/?sslmode=require", map[string]string{"user": "u", "sslmode": "require"}},
		{"postgresql://h/db", map[string]string{"dbname": "db"}},
		{"postgres://h?x=1&dbname=d", map[string]string{"x": "1", "dbname": "d"}},
	} {
		got, ok := connSettings(tt.in)
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("connSettings(%q) = %v, %v; want %v", tt.in, got, ok, tt.want)
		}
	}
	for _, in := range []string{"localhost", "host", "a b=c", "host='h"} {
		if got, ok := connSettings(in); ok {
			t.Errorf("connSettings(%q) = %v, want not ok", in, got)
		}
	}
}
