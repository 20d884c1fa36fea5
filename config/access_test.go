package config

import (
	"strings"
	"testing"
)

// accessBase protects two columns of public.customers.
const accessBase = `upstream: "host=127.0.0.1"
admin_dsn: "host=127.0.0.1 user=pgcloak dbname=app"
kms: {local: {key_file: dev.key}}
keys: {pii: {}}
tables:
  public.customers:
    email: {type: text, key: pii, mode: deterministic}
    birth_date: {type: date, key: pii}
`

func TestAccessSection(t *testing.T) {
	cfg, err := Parse("a.yaml", []byte(accessBase+`access:
  roles:
    app: {read: plaintext, write: true}
    backup: ciphertext
    analytics: token
    lookup: {read: deny, search: true}
  tables:
    public.customers:
      public: "null"
    public.customers.email:
      support: {read: masked, mask: email, application_name: [desk]}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Access
	if a.Default != nil {
		t.Errorf("default = %+v, want nil (least access is applied by the policy)", a.Default)
	}
	if r := a.Roles["backup"]; r.Read != ReadCiphertext || r.Write {
		t.Errorf("backup = %+v", r)
	}
	if r := a.Roles["analytics"]; r.Read != ReadMasked || r.Mask != "token" || r.SearchAllowed() {
		t.Errorf("analytics = %+v", r)
	}
	if r := a.Roles["app"]; !r.SearchAllowed() || !r.Write {
		t.Errorf("app = %+v", r)
	}
	if r := a.Roles["lookup"]; !r.SearchAllowed() || r.Read != ReadDeny {
		t.Errorf("lookup = %+v", r)
	}
	if r := a.Tables["public.customers"]["public"]; r.Read != ReadMasked || r.Mask != "null" {
		t.Errorf("public = %+v", r)
	}
	for key, want := range map[string]string{"public.customers": "|public|customers", "public.customers.email": "email|public|customers",
		`public."customers".email`: "email|public|customers", "public.customers.phone": "", "public.orders": ""} {
		s, tb, col, ok := cfg.AccessTarget(key)
		got := ""
		if ok {
			got = col + "|" + s + "|" + tb
		}
		if got != want {
			t.Errorf("AccessTarget(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestAccessErrors: each mistake is reported at its line with the fix.
func TestAccessErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"access:\n  default: open\n", `10: access.default: "open" is not a rule: write plaintext, ciphertext, deny, a mask`},
		{"access:\n  default: masked\n", `10: access.default: "masked" needs its format`},
		{"access:\n  roles:\n    app: {read: all}\n", `11: access.roles.app.read: unknown read "all"`},
		{"access:\n  roles:\n    app: {read: masked}\n", `11: access.roles.app: read: masked needs mask:`},
		{"access:\n  roles:\n    app: null\n", `11: access.roles.app: empty rule; write plaintext, ciphertext, deny, a mask`},
		{"access:\n  roles:\n    app: {read: plaintext, mask: email}\n", `11: access.roles.app.mask: only read: masked takes a mask`},
		{"access:\n  roles:\n    public: deny\n", `11: access.roles.public: public means every role: write that rule as access.default`},
		{"access:\n  roles:\n    support: email\n", `11: access.roles.support.mask: public.customers.birth_date: mask email does not apply to date`},
		{"access:\n  tables:\n    public.customers.birth_date:\n      support: {read: masked, mask: \"fixed:someday\"}\n", `12: access.tables.public.customers.birth_date.support.mask: public.customers.birth_date: mask fixed:someday does not apply to date: "someday" is not a value of that type`},
		{"access:\n  tables:\n    public.customer:\n      app: plaintext\n", `11: access.tables.public.customer: names no protected table or column of tables:; write schema.table or schema.table.column as in tables: (known: public.customers, public.customers.birth_date, public.customers.email)`},
		{"access:\n  roles:\n    app: {read: plaintext, rite: true}\n", `11: access.roles.app.rite: unknown key; did you mean "write"?`},
		{"access:\n  roles:\n    app: {read: plaintext, client_cert: [app]}\n", `11: access.roles.app.client_cert: needs tls.client_ca_file`},
		{"audit: {}\n", `9: audit.file: required`},
		{"audit: {file: a.log, on_failure: ignore}\n", `9: audit.on_failure: unknown "ignore"; use block`},
		{"audit: {file: a.log, rotate_size: 1kB}\n", `9: audit.rotate_size: must be at least 64kB`},
	} {
		_, err := Parse("a.yaml", []byte(accessBase+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), "a.yaml:"+tc.want) {
			t.Errorf("%q: error %v\nwant it to contain %q", tc.yaml, err, tc.want)
		}
	}
	// With Vault the audit key is a Transit key.
	vault := strings.Replace(accessBase, "kms: {local: {key_file: dev.key}}", "kms: {vault: {address: http://v:8200}}", 1)
	vault = strings.Replace(vault, "keys: {pii: {}}", "keys: {pii: {transit_key: p}}", 1)
	if _, err := Parse("a.yaml", []byte(vault+"audit: {file: a.log}\n")); err == nil || !strings.Contains(err.Error(), "audit.transit_key: required with kms.vault") {
		t.Errorf("audit without transit_key under Vault: %v", err)
	}
}
