package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// checks validate the decoded values, one function per section, after the
// decoder has reported unknown keys and wrong types. A new section (admin_dsn,
// kms, keys, tables) is a new Config field plus one function here.
// A check reports with l.problem(dottedKey, ...), which finds the line.
var checks = []func(*loader, *Config){
	checkListen,
	checkUpstream,
	checkTLS,
	checkLimits,
	checkShutdown,
	checkTables,
	checkKeys,
	checkAccess,
	checkAudit,
	checkSubjects,
	checkOps,
}

func checkListen(l *loader, c *Config) {
	checkAddr(l, "listen", c.Listen, "127.0.0.1:6432")
	if c.MetricsListen != "" {
		checkAddr(l, "metrics_listen", c.MetricsListen, "127.0.0.1:9187")
	}
}

// checkAddr wants host:port with a numeric port; the host may be empty, which
// means every interface.
func checkAddr(l *loader, key, addr, example string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		l.problem(key, "%q is not host:port (%v); write e.g. %s, or :%s for every interface",
			addr, err, example, example[strings.LastIndexByte(example, ':')+1:])
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		l.problem(key, "port %q is not a number from 0 to 65535; write e.g. %s", port, example)
	}
}

// sslModes are libpq's sslmode values.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// clientOwned are connection settings that belong to each client, not to the
// proxy: pgcloak forwards every client's own startup message and
// authentication, so a value here would be ignored while looking used.
var clientOwned = []struct{ key, where string }{
	{"user", "user=… (or user@ in a URL)"},
	{"password", "password=… (or :password@ in a URL)"},
	{"dbname", "dbname=… (or /dbname in a URL)"},
}

func checkUpstream(l *loader, c *Config) {
	const example = `write e.g. upstream: "host=127.0.0.1 port=5432 sslmode=prefer"`
	if strings.TrimSpace(c.Upstream) == "" {
		l.problem("upstream", "required: the PostgreSQL server to proxy to; %s", example)
		return
	}
	// pgconn.ParseConfig fills user and database from the environment and the
	// OS user, so what the string itself sets is read here. When this simpler
	// reading fails, ParseConfig below says why.
	if settings, ok := connSettings(c.Upstream); ok {
		wrong := false
		for _, o := range clientOwned {
			if _, ok := settings[o.key]; ok {
				l.problem("upstream", "sets %s, but user, database and password come from each client; remove %s", o.key, o.where)
				wrong = true
			}
		}
		if mode, ok := settings["sslmode"]; ok && !slices.Contains(sslModes, mode) {
			l.problem("upstream", "unknown sslmode %q; use one of %s", mode, strings.Join(sslModes, ", "))
			wrong = true
		}
		if wrong {
			return
		}
	}
	if _, err := pgconn.ParseConfig(c.Upstream); err != nil {
		l.problem("upstream", "%v; %s, or a postgres://host:port/?sslmode=prefer URL", err, example)
	}
}

// connSettings returns the keywords a libpq connection string sets, in
// keyword/value or URL form, keyed by libpq keyword (database is dbname). It
// follows libpq's syntax as far as finding keywords needs; ok is false when
// the string does not parse.
func connSettings(s string) (settings map[string]string, ok bool) {
	settings = map[string]string{}
	rest, isURL := strings.CutPrefix(s, "postgresql://")
	if !isURL {
		rest, isURL = strings.CutPrefix(s, "postgres://")
	}
	if isURL {
		// Like libpq, only a '/' ends the search for the userinfo '@'.
		if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
			user, password, _ := strings.Cut(rest[:i], ":")
			if user != "" {
				settings["user"] = user
			}
			if password != "" {
				settings["password"] = password
			}
			rest = rest[i+1:]
		}
		hosts, query, _ := strings.Cut(rest, "?")
		if _, db, _ := strings.Cut(hosts, "/"); db != "" {
			settings["dbname"] = db
		}
		for kv := range strings.SplitSeq(query, "&") {
			if k, v, _ := strings.Cut(kv, "="); k != "" {
				settings[canonicalKeyword(k)] = v
			}
		}
		return settings, true
	}
	const spaces = " \t\n\r\v\f"
	for s = strings.TrimLeft(s, spaces); s != ""; s = strings.TrimLeft(s, spaces) {
		k, rest, found := strings.Cut(s, "=")
		k = strings.TrimRight(k, spaces)
		if !found || k == "" || strings.ContainsAny(k, spaces) {
			return nil, false
		}
		rest = strings.TrimLeft(rest, spaces)
		// A value runs to the next space, or is 'quoted'; a backslash escapes
		// the next byte in both.
		quoted := strings.HasPrefix(rest, "'")
		if quoted {
			rest = rest[1:]
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest); i++ {
			ch := rest[i]
			if quoted && ch == '\'' || !quoted && strings.IndexByte(spaces, ch) >= 0 {
				break
			}
			if ch == '\\' && i+1 < len(rest) {
				i++
				ch = rest[i]
			}
			v.WriteByte(ch)
		}
		if quoted {
			if i == len(rest) {
				return nil, false // unterminated quote
			}
			i++
		}
		settings[canonicalKeyword(k)] = v.String()
		s = rest[i:]
	}
	return settings, true
}

// canonicalKeyword maps pgx's alias "database" to libpq's "dbname".
func canonicalKeyword(k string) string {
	if k == "database" {
		return "dbname"
	}
	return k
}

func checkTLS(l *loader, c *Config) {
	t := c.TLS
	if t == nil {
		return
	}
	cert, certOK := readFile(l, "tls.cert_file", &t.CertFile, "server.crt")
	key, keyOK := readFile(l, "tls.key_file", &t.KeyFile, "server.key")
	if certOK && keyOK {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			l.problem("tls", "cannot load %s and %s as a key pair: %v; give a PEM certificate and its unencrypted PEM private key",
				t.CertFile, t.KeyFile, err)
		}
	}
	if t.ClientCAFile != "" {
		if pem, ok := readFile(l, "tls.client_ca_file", &t.ClientCAFile, ""); ok && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			l.problem("tls.client_ca_file", "%s contains no PEM certificates; give the CA certificate(s) that sign client certificates, in PEM", t.ClientCAFile)
		}
	}
	switch mode := t.ClientMode; {
	case mode == "":
	case !slices.Contains(ClientTLSModes, mode):
		l.problem("tls.client_mode", "unknown mode %q; use one of %s (PgBouncer's client_tls_sslmode values)", mode, strings.Join(ClientTLSModes, ", "))
	case (mode == ClientTLSVerifyCA || mode == ClientTLSVerifyFull) && t.ClientCAFile == "":
		l.problem("tls.client_mode", "%s checks client certificates, which needs tls.client_ca_file; add client_ca_file: ca.crt (the CA that signs them), or use require", mode)
	case mode != ClientTLSVerifyCA && mode != ClientTLSVerifyFull && t.ClientCAFile != "":
		l.problem("tls.client_mode", "%s does not check client certificates, but tls.client_ca_file is set; use verify-ca or verify-full, or remove client_ca_file", mode)
	}
}

// readFile resolves *path against the config file's directory (storing the
// result back, so the rest of pgcloak uses the resolved path) and reads it. An
// empty path is required when example is non-empty.
func readFile(l *loader, key string, path *string, example string) ([]byte, bool) {
	if *path == "" {
		if example != "" {
			l.problem(key, "required when tls is set; add %s: %s (PEM), or remove tls to serve only plaintext clients", key[strings.LastIndexByte(key, '.')+1:], example)
		}
		return nil, false
	}
	*path = l.path(*path)
	data, err := os.ReadFile(*path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		l.problem(key, "cannot read %s: %v; check the path (a relative path starts at the config file's directory)", *path, err)
		return nil, false
	}
	return data, true
}

func checkLimits(l *loader, c *Config) {
	lim, def := c.Limits, Default().Limits
	if lim.MaxClientConnections < 1 {
		l.problem("limits.max_client_connections", "must be at least 1, got %d; the default is %d",
			lim.MaxClientConnections, def.MaxClientConnections)
	}
	if lim.MaxPendingLogins < 1 {
		l.problem("limits.max_pending_logins", "must be at least 1, got %d; the default is %d",
			lim.MaxPendingLogins, def.MaxPendingLogins)
	}
	if lim.CancelRate < 1 {
		l.problem("limits.cancel_rate", "must be at least 1 (CancelRequests per second from one address), got %d; the default is %d",
			lim.CancelRate, def.CancelRate)
	}
	if lim.LoginTimeout <= 0 || lim.LoginTimeout > time.Hour {
		l.problem("limits.login_timeout", "must be more than 0 and at most 1h, got %s; the default is %s",
			lim.LoginTimeout, def.LoginTimeout)
	}
	// PostgreSQL caps one field at 1GB - 1 (MaxAllocSize in memutils.h), so a
	// larger message cannot be legitimate; below 64kB ordinary rows break.
	const minMsg, maxMsg = 64 << 10, 1 << 30
	if lim.MaxMessageBytes < minMsg || lim.MaxMessageBytes > maxMsg {
		l.problem("limits.max_message_bytes", "must be between %s and %s, got %s; the default is %s",
			ByteSize(minMsg), ByteSize(maxMsg), lim.MaxMessageBytes, def.MaxMessageBytes)
	}
	// Below 1MB a few ordinary rows of a protected table would not fit.
	const minBudget, maxBudget = 1 << 20, 1 << 40
	if lim.MessageBufferBudget < minBudget || lim.MessageBufferBudget > maxBudget {
		l.problem("limits.message_buffer_budget", "must be between %s and %s, got %s; the default is %s",
			ByteSize(minBudget), ByteSize(maxBudget), lim.MessageBufferBudget, def.MessageBufferBudget)
	}
}

func checkShutdown(l *loader, c *Config) {
	if c.ShutdownTimeout < 0 || c.ShutdownTimeout > time.Hour {
		l.problem("shutdown_timeout", "must be from 0s to 1h, got %s; the default is %s",
			c.ShutdownTimeout, Default().ShutdownTimeout)
	}
}
