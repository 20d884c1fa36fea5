package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeysSection(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"secret-id", "token", "jwt", "vault-ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Join(dir, "pgcloak.yaml")
	const yaml = `upstream: host=127.0.0.1
admin_dsn: "host=127.0.0.1 port=5432 user=pgcloak dbname=app"
kms:
  vault:
    address: https://vault.internal:8200
    transit_mount: /pgcloak/transit/
    ca_cert: vault-ca.pem
    auth: {method: approle, role_id: r-1, secret_id_file: secret-id}
keys:
  pii: {transit_key: pgcloak-pii}
  cards: {transit_key: pgcloak-cards}
key_refresh: 200ms
tables:
  public.customers:
    email: {type: text, key: pii}
    card: {type: text, key: cards}
`
	cfg, err := Parse(name, []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := &KMS{Vault: &Vault{
		Address:      "https://vault.internal:8200",
		TransitMount: "pgcloak/transit",
		CACert:       filepath.Join(dir, "vault-ca.pem"),
		Auth:         VaultAuth{Method: AuthAppRole, RoleID: "r-1", SecretIDFile: filepath.Join(dir, "secret-id")},
	}}
	if !reflect.DeepEqual(cfg.KMS, want) {
		t.Errorf("kms = %+v, want %+v", cfg.KMS.Vault, want.Vault)
	}
	if cfg.KeyRefresh != 200*time.Millisecond || cfg.Keys["cards"].TransitKey != "pgcloak-cards" {
		t.Errorf("key_refresh %v, keys %v", cfg.KeyRefresh, cfg.Keys)
	}

	cfg, err = Parse(name, []byte("upstream: host=h\nadmin_dsn: host=h\nkms:\n  local: {key_file: dev.key}\nkeys: {pii: }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.KMS.Local.KeyFile; got != filepath.Join(dir, "dev.key") {
		t.Errorf("local key_file = %q, not resolved against the config's directory", got)
	}

	t.Setenv("VAULT_ADDR", "")
	const up = "upstream: host=h\nadmin_dsn: host=h\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"both kms", up + "kms:\n  vault: {address: http://v:8200}\n  local: {key_file: k}\n", []string{
			`3: kms: sets both vault and local; keep exactly one (vault in production)`}},
		{"no kms", up + "kms: {}\n", []string{
			`3: kms: names no KMS; add vault: {address: https://vault:8200, auth: {method: token}} (or local: {key_file: dev-master.key} for development)`}},
		{"kms missing", "upstream: host=h\nadmin_dsn: host=h\nkeys: {pii: {transit_key: t}}\n", []string{
			`1: kms: required with keys or tables: where the key-encryption keys live; add kms: {vault: {address: https://vault:8200, auth: {method: token}}}`}},
		{"admin_dsn missing", "upstream: host=h\nkms: {local: {key_file: k}}\nkeys: {pii: }\n", []string{
			`1: admin_dsn: required with keys or tables: pgcloak's own connection to the protected database, which holds the pgcloak.keys table; write e.g. admin_dsn: "host=127.0.0.1 port=5432 user=pgcloak dbname=app" (the password may come from PGPASSWORD or ~/.pgpass)`}},
		{"admin_dsn unparseable", "upstream: host=h\nadmin_dsn: \"host=h port=x\"\n", []string{
			"2: admin_dsn: cannot parse `host=h port=x`: invalid port; write e.g. admin_dsn: \"host=127.0.0.1 port=5432 user=pgcloak dbname=app\""}},
		{"local without key_file", up + "kms:\n  local:\n", []string{
			`4: kms.local.key_file: required: the development master key file; write e.g. key_file: dev-master.key (pgcloak keys init creates it)`}},
		{"no address", up + "kms:\n  vault:\n    auth: {method: token}\n", []string{
			`4: kms.vault.address: required (or set VAULT_ADDR): Vault's URL, e.g. address: https://vault.internal:8200`}},
		{"address not a URL", up + "kms:\n  vault:\n    address: vault:8200\n", []string{
			`5: kms.vault.address: "vault:8200" is not an http:// or https:// URL; write e.g. https://vault.internal:8200`}},
		{"unknown method", up + "kms:\n  vault:\n    address: http://v:8200\n    auth: {method: ldap}\n", []string{
			`6: kms.vault.auth.method: unknown method "ldap"; use token, approle or kubernetes`}},
		{"approle incomplete", up + "kms:\n  vault:\n    address: http://v:8200\n    auth:\n      method: approle\n", []string{
			`6: kms.vault.auth.role_id: required with method approle: the AppRole's role id`,
			`6: kms.vault.auth.secret_id_file: required with method approle: a file holding the secret id`}},
		{"approle secret file missing", up + "kms:\n  vault:\n    address: http://v:8200\n    auth:\n      method: approle\n      role_id: r\n      secret_id_file: nope\n", []string{
			`9: kms.vault.auth.secret_id_file: cannot open DIR/nope: no such file or directory; check the path (a relative path starts at the config file's directory)`}},
		{"kubernetes without role", up + "kms:\n  vault:\n    address: http://v:8200\n    auth: {method: kubernetes, jwt_file: jwt}\n", []string{
			`6: kms.vault.auth.role: required with method kubernetes: the Vault role bound to this service account`}},
		{"field of another method", up + "kms:\n  vault:\n    address: http://v:8200\n    auth:\n      method: token\n      role_id: r\n", []string{
			`8: kms.vault.auth.role_id: not used by method token (it takes token_file); remove it or change the method`}},
		{"unknown auth key", up + "kms:\n  vault:\n    address: http://v:8200\n    auth: {metod: token}\n", []string{
			`6: kms.vault.auth.metod: unknown key; did you mean "method"? known keys: method, token_file, role_id, secret_id_file, role, jwt_file, mount`}},
		{"transit_key missing", up + "kms: {vault: {address: http://v:8200}}\nkeys:\n  pii: {}\n", []string{
			`5: keys.pii: transit_key is required with kms.vault: the Transit key that wraps this keyring's data keys; write e.g. pii: {transit_key: pgcloak-pii}`}},
		{"bad names", up + "kms: {vault: {address: http://v:8200}}\nkeys:\n  \"p i\": {transit_key: t}\n  pii: {transit_key: a/b}\n", []string{
			`5: keys.p i: "p i" is not a valid keyring name; use 1 to 63 letters, digits, '_', '-' or '.', starting with a letter or digit`,
			`6: keys.pii.transit_key: "a/b" is not a valid Transit key name; use 1 to 63 letters, digits, '_', '-' or '.', starting with a letter or digit`}},
		{"key_refresh too short", up + "key_refresh: 10ms\n", []string{
			`3: key_refresh: must be from 100ms to 1h, got 10ms; the default is 30s`}},
		{"column names an unknown keyring", up + "kms: {local: {key_file: k}}\nkeys: {pii: }\ntables:\n  public.t:\n    c: {type: text, key: cards}\n", []string{
			`7: tables.public.t.c.key: keyring "cards" is not in keys:; add keys: {cards: {transit_key: pgcloak-cards}} or use one of: pii`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(name, []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = name + ":" + strings.ReplaceAll(w, "DIR", dir)
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
		})
	}
}
