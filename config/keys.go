package config

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// KMS chooses where the key-encryption keys live: exactly one of Vault
// (production) or Local (development only).
type KMS struct {
	// Vault is Vault's Transit secrets engine.
	Vault *Vault `yaml:"vault"`
	// Local is a master key file beside the data: for the demo and
	// development only.
	Local *LocalKMS `yaml:"local"`
}

// Vault says how to reach Vault and log in. After Load, empty fields hold
// their defaults (Address, Namespace and CACert stay empty when their VAULT_*
// variable is to be used) and relative paths are resolved.
type Vault struct {
	// Address is Vault's URL (default: VAULT_ADDR).
	Address string `yaml:"address"`
	// TransitMount is the Transit engine's path (default "transit").
	TransitMount string `yaml:"transit_mount"`
	// Namespace is the Vault Enterprise namespace (default: VAULT_NAMESPACE).
	Namespace string `yaml:"namespace"`
	// CACert is a PEM file of CAs for Vault's certificate (default: VAULT_CACERT).
	CACert string `yaml:"ca_cert"`
	// Auth is the login method.
	Auth VaultAuth `yaml:"auth"`
}

// VaultAuth is a Vault login method and what it needs.
type VaultAuth struct {
	// Method is token (default), approle or kubernetes.
	Method string `yaml:"method"`
	// TokenFile holds the token (token; default: VAULT_TOKEN).
	TokenFile string `yaml:"token_file"`
	// RoleID is the AppRole role id (approle).
	RoleID string `yaml:"role_id"`
	// SecretIDFile holds the AppRole secret id (approle).
	SecretIDFile string `yaml:"secret_id_file"`
	// Role is the Vault role to log in as (kubernetes).
	Role string `yaml:"role"`
	// JWTFile is the service account token (kubernetes; default
	// /var/run/secrets/kubernetes.io/serviceaccount/token).
	JWTFile string `yaml:"jwt_file"`
	// Mount is the auth method's path (default: the method's name).
	Mount string `yaml:"mount"`
}

// LocalKMS is the development master key file.
type LocalKMS struct {
	// KeyFile holds 64 hex digits; `pgcloak keys init` creates it if missing.
	KeyFile string `yaml:"key_file"`
}

// Key is one keyring: a list of data key versions wrapped by one KEK.
type Key struct {
	// TransitKey is the Vault Transit key that wraps its data keys
	// (required with kms.vault).
	TransitKey string `yaml:"transit_key"`
}

// Auth methods of kms.vault.auth.method.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// DefaultKeyRefresh is key_refresh's default.
const DefaultKeyRefresh = 30 * time.Second

// DefaultCatalogRefresh is catalog_refresh's default.
const DefaultCatalogRefresh = 5 * time.Second

// keyName is what a keyring or Transit key may be called: it goes into a
// table row, a URL path and a command line.
var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

const keyNameRule = "1 to 63 letters, digits, '_', '-' or '.', starting with a letter or digit"

// checkKeys checks admin_dsn, kms, keys and key_refresh, and that every
// protected column names a keyring of keys:.
func checkKeys(l *loader, c *Config) {
	needKeys := len(c.Keys) > 0 || len(c.Tables) > 0
	if c.AdminDSN != "" {
		if _, err := pgconn.ParseConfig(c.AdminDSN); err != nil {
			l.problem("admin_dsn", "%v; write e.g. admin_dsn: \"host=127.0.0.1 port=5432 user=pgcloak dbname=app\"", err)
		}
	} else if needKeys {
		l.problem("admin_dsn", "required with keys or tables: pgcloak's own connection to the protected database, which holds the pgcloak.keys table; "+
			"write e.g. admin_dsn: \"host=127.0.0.1 port=5432 user=pgcloak dbname=app\" (the password may come from PGPASSWORD or ~/.pgpass)")
	}
	if c.KMS != nil {
		checkKMS(l, c.KMS)
	} else if needKeys {
		l.problem("kms", "required with keys or tables: where the key-encryption keys live; add kms: {vault: {address: https://vault:8200, auth: {method: token}}}")
	}
	for name, k := range c.Keys {
		key := "keys." + name
		if !keyName.MatchString(name) {
			l.problem(key, "%q is not a valid keyring name; use %s", name, keyNameRule)
			continue
		}
		if c.KMS == nil || c.KMS.Vault == nil {
			continue
		}
		if k.TransitKey == "" {
			l.problem(key, "transit_key is required with kms.vault: the Transit key that wraps this keyring's data keys; write e.g. %s: {transit_key: pgcloak-%s}", name, name)
		} else if !keyName.MatchString(k.TransitKey) {
			l.problem(key+".transit_key", "%q is not a valid Transit key name; use %s", k.TransitKey, keyNameRule)
		}
	}
	if c.KeyRefresh < 100*time.Millisecond || c.KeyRefresh > time.Hour {
		l.problem("key_refresh", "must be from 100ms to 1h, got %s; the default is %s", c.KeyRefresh, DefaultKeyRefresh)
	}
	if c.CatalogRefresh < 100*time.Millisecond || c.CatalogRefresh > time.Hour {
		l.problem("catalog_refresh", "must be from 100ms to 1h, got %s; the default is %s", c.CatalogRefresh, DefaultCatalogRefresh)
	}
	for tname, cols := range c.Tables {
		for cname, col := range cols {
			if col.Key == "" {
				continue // checkTables says it is required
			}
			if _, ok := c.Keys[col.Key]; !ok {
				l.problem("tables."+tname+"."+cname+".key", "keyring %q is not in keys:; add keys: {%s: {transit_key: pgcloak-%s}} or use one of: %s",
					col.Key, col.Key, col.Key, keyNames(c.Keys))
			}
		}
	}
}

func keyNames(keys map[string]Key) string {
	if len(keys) == 0 {
		return "(keys: is empty)"
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func checkKMS(l *loader, k *KMS) {
	switch {
	case k.Vault != nil && k.Local != nil:
		l.problem("kms", "sets both vault and local; keep exactly one (vault in production)")
		return
	case k.Vault == nil && k.Local == nil:
		l.problem("kms", "names no KMS; add vault: {address: https://vault:8200, auth: {method: token}} (or local: {key_file: dev-master.key} for development)")
		return
	case k.Local != nil:
		if k.Local.KeyFile == "" {
			l.problem("kms.local.key_file", "required: the development master key file; write e.g. key_file: dev-master.key (pgcloak keys init creates it)")
		}
		k.Local.KeyFile = l.path(k.Local.KeyFile)
		return
	}
	v := k.Vault
	if v.Address == "" && os.Getenv("VAULT_ADDR") == "" {
		l.problem("kms.vault.address", "required (or set VAULT_ADDR): Vault's URL, e.g. address: https://vault.internal:8200")
	} else if v.Address != "" {
		if u, err := url.Parse(v.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.problem("kms.vault.address", "%q is not an http:// or https:// URL; write e.g. https://vault.internal:8200", v.Address)
		}
	}
	if v.TransitMount = strings.Trim(v.TransitMount, "/"); v.TransitMount == "" {
		v.TransitMount = "transit"
	}
	v.CACert = l.path(v.CACert)
	if v.CACert != "" {
		checkReadable(l, "kms.vault.ca_cert", v.CACert)
	}
	a := &v.Auth
	if a.Method == "" {
		a.Method = AuthToken
	}
	set := map[string]bool{"token_file": a.TokenFile != "", "role_id": a.RoleID != "", "secret_id_file": a.SecretIDFile != "",
		"role": a.Role != "", "jwt_file": a.JWTFile != "", "mount": a.Mount != ""}
	var allowed []string
	switch a.Method {
	case AuthToken:
		allowed = []string{"token_file"}
		// VAULT_TOKEN is read when pgcloak starts, not here: a config is
		// often checked where the token is not.
	case AuthAppRole:
		allowed = []string{"role_id", "secret_id_file", "mount"}
		if a.RoleID == "" {
			l.problem("kms.vault.auth.role_id", "required with method approle: the AppRole's role id")
		}
		if a.SecretIDFile == "" {
			l.problem("kms.vault.auth.secret_id_file", "required with method approle: a file holding the secret id")
		}
	case AuthKubernetes:
		allowed = []string{"role", "jwt_file", "mount"}
		if a.Role == "" {
			l.problem("kms.vault.auth.role", "required with method kubernetes: the Vault role bound to this service account")
		}
	default:
		l.problem("kms.vault.auth.method", "unknown method %q; use token, approle or kubernetes", a.Method)
		return
	}
	for _, f := range []string{"token_file", "role_id", "secret_id_file", "role", "jwt_file", "mount"} {
		if set[f] && !slices.Contains(allowed, f) {
			l.problem("kms.vault.auth."+f, "not used by method %s (it takes %s); remove it or change the method", a.Method, strings.Join(allowed, ", "))
		}
	}
	for _, f := range []struct {
		key  string
		path *string
	}{{"token_file", &a.TokenFile}, {"secret_id_file", &a.SecretIDFile}, {"jwt_file", &a.JWTFile}} {
		if *f.path != "" {
			*f.path = l.path(*f.path)
			checkReadable(l, "kms.vault.auth."+f.key, *f.path)
		}
	}
}

// checkReadable reports a file that cannot be opened, without reading it (it
// may hold a secret that another process rotates).
func checkReadable(l *loader, key, path string) {
	f, err := os.Open(path)
	if err != nil {
		l.problem(key, "cannot open %s: %v; check the path (a relative path starts at the config file's directory)", path, unwrapPathError(err))
		return
	}
	f.Close()
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
