package config

import (
	"strings"
	"testing"
)

func TestTables(t *testing.T) {
	const base = "upstream: \"host=127.0.0.1\"\n"
	// After the tables, so that their lines stay as written.
	const keys = "admin_dsn: \"host=127.0.0.1 user=pgcloak dbname=app\"\nkms: {local: {key_file: dev.key}}\nkeys: {pii: {}, k: {}}\n"
	cfg, err := Parse("t.yaml", []byte(base+`tables:
  public.customers:
    email: {type: text, key: pii}
    ssn: {type: varchar(11), key: pii, mode: deterministic, search_group: people}
  app."Order Lines":
    card: {type: text, key: pii, state: migrating}
`+keys))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Tables["public.customers"]["ssn"]; got.Mode != ModeDeterministic || got.SearchGroup != "people" || got.Type != "varchar(11)" {
		t.Errorf("ssn = %+v", got)
	}
	schema, table, err := SplitTable(`app."Order Lines"`)
	if err != nil || schema != "app" || table != "Order Lines" {
		t.Errorf("SplitTable = %q, %q, %v", schema, table, err)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"tables:\n  customers:\n    email: {type: text, key: pii}\n", `3: tables.customers: want schema.table`},
		{"tables:\n  public.customers:\n    email: {type: txt, key: pii}\n", `4: tables.public.customers.email.type: unknown logical type "txt"`},
		{"tables:\n  public.customers:\n    email: {type: text}\n", `4: tables.public.customers.email: key is required`},
		{"tables:\n  public.customers:\n    email: {type: text, key: k, mode: fast}\n", `4: tables.public.customers.email.mode: unknown mode "fast"`},
		{"tables:\n  public.customers:\n    email: {type: text, key: k, search_group: g}\n", `only deterministic columns can share a search group`},
		{"tables:\n  public.customers:\n    email: {type: text, key: k, stat: migrating}\n", `unknown key; did you mean "state"?`},
	} {
		_, err := Parse("t.yaml", []byte(base+tc.yaml+keys))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}
