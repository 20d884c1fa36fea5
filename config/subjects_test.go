package config

import (
	"strings"
	"testing"
)

func TestSubjects(t *testing.T) {
	const base = "upstream: \"host=127.0.0.1\"\nadmin_dsn: \"host=127.0.0.1 user=pgcloak dbname=app\"\n" +
		"kms: {vault: {address: http://127.0.0.1:8200}}\n" +
		"keys: {pii: {transit_key: t-pii}, subj: {transit_key: t-subj}}\n"
	cfg, err := Parse("t.yaml", []byte(base+`tables:
  public.customers:
    email: {type: text, key: subj}
  public.orders:
    address: {type: text, key: subj}
subjects:
  public.customers: {column: id, key: subj, forgotten_reads: error}
  public.orders: {column: customer_id, key: subj, foreign_key: orders_customer_id_fkey}
retention:
  public.customers: {column: last_seen, keep: 3 years, action: forget}
  public.orders: {column: created_at, keep: 18mon, action: delete}
shred_window: 7d
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Subjects["public.orders"]; s.ForeignKey != "orders_customer_id_fkey" || cfg.ShredWindowOrDefault().Hours() != 7*24 {
		t.Errorf("subjects = %+v, shred window %v", cfg.Subjects, cfg.ShredWindowOrDefault())
	}
	if got := cfg.SubjectKeyrings(); len(got) != 1 || got[0] != "subj" || cfg.SubjectCacheOrDefault() != DefaultSubjectCache {
		t.Errorf("SubjectKeyrings = %v", got)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"tables: {public.c: {email: {type: text, key: subj}}}\nsubjects: {public.c: {key: subj}}\n",
			`t.yaml:6: subjects.public.c: column is required`},
		{"tables: {public.c: {email: {type: text, key: subj}}}\nsubjects: {public.c: {column: email, key: subj}}\n",
			`subjects.public.c.column: email is a protected column`},
		{"tables: {public.c: {email: {type: text, key: subj, mode: deterministic}}}\nsubjects: {public.c: {column: id, key: subj}}\n",
			`tables.public.c.email.mode: a subject-keyed column cannot be deterministic`},
		{"tables: {public.c: {email: {type: text, key: pii}}}\nsubjects: {public.c: {column: id, key: subj}}\n",
			`tables.public.c.email.key: public.c has subjects (subjects.public.c), so its columns are encrypted under subject keys wrapped by keyring "subj"; write key: subj`},
		{"tables: {public.c: {email: {type: text, key: subj}}, public.d: {x: {type: text, key: subj}}}\nsubjects: {public.c: {column: id, key: subj}}\n",
			`tables.public.d.x.key: keyring "subj" wraps the subject keys of public.c`},
		{"tables: {public.c: {email: {type: text, key: subj, state: migrating}}}\nsubjects: {public.c: {column: id, key: subj}}\n",
			`tables.public.c.email.state: pgcloak migrate does not encrypt under subject keys yet`},
		{"subjects: {public.c: {column: id}}\n", `subjects.public.c: key is required`},
		{"subjects: {public.c: {column: id, key: nope}}\n", `subjects.public.c.key: keyring "nope" is not in keys:`},
		{"subjects: {public.c: {column: id, key: subj, forgotten_reads: zero}}\n", `forgotten_reads: unknown value "zero"`},
		{"subjects: {public.c: {column: id, key: subj}}\nshred_window: 10ms\n", `shred_window: must be from 1s to 10 years`},
		{"retention: {public.c: {column: t, keep: 3y, action: forget}}\n", `retention.public.c.action: forget needs the table's subject`},
		{"retention: {public.c: {column: t, keep: 3 eons, action: delete}}\n", `retention.public.c.keep: unknown unit "eons"`},
		{"retention: {public.c: {column: t, keep: forever, action: delete}}\n", `retention.public.c.keep: "forever" is not a period`},
		{"retention: {public.c: {column: t, keep: 1y, action: shred}}\n", `retention.public.c.action: unknown action "shred"`},
		{"retention: {public.c: {keep: 1y, action: delete}}\n", `retention.public.c: column is required`},
		{"retention_schedule: 1h\n", `retention_schedule: is set but retention: names no table`},
	} {
		_, err := Parse("t.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}

	// The Transit key of subject keys is trimmed: no other keyring may use it.
	_, err = Parse("t.yaml", []byte("upstream: \"host=127.0.0.1\"\nadmin_dsn: \"host=127.0.0.1 user=pgcloak dbname=app\"\n"+
		"kms: {vault: {address: http://127.0.0.1:8200}}\nkeys: {pii: {transit_key: shared}, subj: {transit_key: shared}}\n"+
		"subjects: {public.c: {column: id, key: subj}}\n"))
	if err == nil || !strings.Contains(err.Error(), `keyring "subj" shares Transit key "shared" with keyring "pii"`) {
		t.Errorf("shared Transit key: %v", err)
	}
}

func TestKeepInterval(t *testing.T) {
	for in, want := range map[string]string{"3y": "3 years", "3 years": "3 years", "18mon": "18 months", "90d": "90 days", "2w": "2 weeks", "12h": "12 hours", " 1 YEAR ": "1 years"} {
		if got, err := KeepInterval(in); err != nil || got != want {
			t.Errorf("KeepInterval(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "y", "0d", "3", "-1d", "1.5y", "5m"} {
		if got, err := KeepInterval(in); err == nil {
			t.Errorf("KeepInterval(%q) = %q", in, got)
		}
	}
}
