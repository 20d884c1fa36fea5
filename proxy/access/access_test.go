package access

import (
	"testing"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// base protects customers' email, card and birth_date and orders' address.
const base = `tables:
  public.customers: {email: {type: text, key: pii, mode: deterministic}, card: {type: varchar(19), key: pii}, birth_date: {type: date, key: pii}}
  public.orders: {address: {type: text, key: pii}}
keys: {pii: {}}
kms: {local: {key_file: dev.key}}
admin_dsn: "host=127.0.0.1 user=pgcloak dbname=app"
upstream: "host=127.0.0.1"
`

func policy(t *testing.T, access string) *Policy {
	t.Helper()
	cfg, err := config.Parse("p.yaml", []byte(base+access))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func col(t *testing.T, table, name, typ string) Column {
	ty, err := values.Lookup(typ)
	if err != nil {
		t.Fatal(err)
	}
	return Column{Schema: "public", Table: table, Name: name, Type: ty}
}

// TestResolution: the most specific rule that applies wins, column before
// table before role before default; public stands for any role at its level.
func TestResolution(t *testing.T) {
	p := policy(t, `access:
  roles:
    app: {read: plaintext, write: true}
    support: "null"
    analytics: token
  tables:
    public.customers:
      support: {read: masked, mask: "fixed:1900-01-01", application_name: [desk]}
      public: ciphertext
    public.customers.email:
      support: {read: masked, mask: email, search: true}
    public.customers.card:
      support: last4
      public: deny
`)
	email, card, birth, address := col(t, "customers", "email", "text"), col(t, "customers", "card", "varchar(19)"), col(t, "customers", "birth_date", "date"), col(t, "orders", "address", "text")
	for _, c := range []struct {
		s       Session
		c       Column
		outcome string
		write   bool
		search  bool
		rule    string
	}{
		{Session{Role: "support"}, email, "masked (email)", false, true, "access.tables.public.customers.email.support"},
		{Session{Role: "support"}, card, "masked (last4)", false, false, "access.tables.public.customers.card.support"},
		{Session{Role: "app"}, card, "deny", false, false, "access.tables.public.customers.card.public"},
		{Session{Role: "support"}, birth, "ciphertext", false, false, "access.tables.public.customers.public"},
		{Session{Role: "support", ApplicationName: "desk"}, birth, "masked (fixed:1900-01-01)", false, false, "access.tables.public.customers.support"},
		{Session{Role: "app"}, birth, "ciphertext", false, false, "access.tables.public.customers.public"},
		{Session{Role: "app"}, address, "plaintext", true, true, "access.roles.app"},
		{Session{Role: "support"}, address, "masked (null)", false, false, "access.roles.support"},
		{Session{Role: "analytics"}, address, "masked (token)", false, false, "access.roles.analytics"},
		{Session{Role: "nobody"}, address, "deny", false, false, "access.default"},
	} {
		d, err := p.Decide(c.s, c.c)
		if err != nil {
			t.Fatal(err)
		}
		if d.Outcome() != c.outcome || d.Write != c.write || d.Search != c.search || d.Rule != c.rule {
			t.Errorf("%+v on %s: got %s write=%v search=%v by %s; want %s write=%v search=%v by %s",
				c.s, c.c.Name, d.Outcome(), d.Write, d.Search, d.Rule, c.outcome, c.write, c.search, c.rule)
		}
	}
	if got := p.Roles(); len(got) != 3 || got[0] != "analytics" || got[1] != "app" || got[2] != "support" {
		t.Errorf("Roles() = %v", got)
	}
}

// TestOpenAndDefault: no access section is the old behaviour (everything
// for everyone); an access section without default denies.
func TestOpenAndDefault(t *testing.T) {
	c := col(t, "orders", "address", "text")
	d, err := policy(t, "").Decide(Session{Role: "anyone"}, c)
	if err != nil || d.Read != Plaintext || !d.Write || !d.Search {
		t.Errorf("no access section: %+v, %v; want plaintext, write, search", d, err)
	}
	d, _ = policy(t, "access:\n  roles:\n    app: plaintext\n").Decide(Session{Role: "anyone"}, c)
	if d.Read != Deny || d.Write || d.Search || d.Rule != "access.default" {
		t.Errorf("access without default: %+v, want deny", d)
	}
	d, _ = policy(t, "access:\n  roles:\n    app: plaintext\n").Decide(Session{Role: "app"}, c)
	if d.Read != Plaintext || d.Write || !d.Search {
		t.Errorf("app: plaintext: %+v, want read and search, no write", d)
	}
}

// TestCertificates: client_cert matches the CN or the whole subject of a
// verified certificate, and never a session without one.
func TestCertificates(t *testing.T) {
	_, err := config.Parse("p.yaml", []byte(base+`access:
  roles:
    support: {read: plaintext, client_cert: [desk-1]}
`))
	if err == nil {
		t.Fatal("client_cert without tls.client_ca_file was accepted")
	}
	// Build the policy directly: the TLS files are not needed to decide.
	p := &Policy{roles: map[string]rule{"support": {cfg: config.AccessRule{Read: config.ReadPlaintext, ClientCert: []string{"desk-1", "CN=desk-2,O=Example"}}, key: "access.roles.support"}},
		def: rule{cfg: config.DefaultAccess, key: "access.default"}}
	c := col(t, "orders", "address", "text")
	for s, want := range map[Session]Read{
		{Role: "support"}: Deny,
		{Role: "support", CertSubject: "CN=desk-1,O=Example", CertCN: "desk-1"}: Plaintext,
		{Role: "support", CertSubject: "CN=desk-2,O=Example", CertCN: "desk-2"}: Plaintext,
		{Role: "support", CertSubject: "CN=desk-3,O=Example", CertCN: "desk-3"}: Deny,
		{Role: "app", CertSubject: "CN=desk-1", CertCN: "desk-1"}:               Deny,
	} {
		if d, _ := p.Decide(s, c); d.Read != want {
			t.Errorf("%+v: %s, want %s", s, d.Read, want)
		}
	}
}
