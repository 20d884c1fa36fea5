package config

import (
	"errors"
	"strings"
	"testing"
)

// TestOpsProblems checks the operational keys: each file must be refused
// with exactly the problem given (line, key and message).
func TestOpsProblems(t *testing.T) {
	const up = "upstream: host=127.0.0.1\n"
	tests := []struct{ name, yaml, want string }{
		{"log level", up + "log_level: loud\n", `2: log_level: unknown level "loud"; use debug, info, warn or error`},
		{"empty admin user", up + "admin_users: [a, '']\n", `2: admin_users: entry 2 is empty; list role names, e.g. admin_users: [postgres]`},
		{"admin user twice", up + "admin_users: [a, a]\n", `2: admin_users: "a" is listed twice; list each role once`},
		{"console as auth database", up + "admin_auth_database: pgcloak\n",
			`2: admin_auth_database: "pgcloak" is the console itself; name a real database of the upstream server, e.g. postgres`},
		{"target_session_attrs", "upstream: host=a,b target_session_attrs=master\n",
			"1: upstream: cannot parse `host=a,b target_session_attrs=master`: unknown target_session_attrs value: master"},
		{"load_balance_hosts", "upstream: host=a,b load_balance_hosts=roundrobin\n",
			`1: upstream: unknown load_balance_hosts "roundrobin"; use disable or random`},
		{"target_session_attrs needs admin_dsn", "upstream: postgres://a,b/?target_session_attrs=primary\n",
			`1: upstream: target_session_attrs=primary needs admin_dsn`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("pgcloak.yaml", []byte(tt.yaml))
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("got %v, want one problem", err)
			}
			if got := strings.TrimPrefix(ce.Problems[0].String(), "pgcloak.yaml:"); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}

	cfg, err := Parse("pgcloak.yaml", []byte("upstream: host=a,b port=1,2 target_session_attrs=read-write load_balance_hosts=random\nadmin_dsn: user=x dbname=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := UpstreamRouting(cfg.Upstream); r != (Routing{"read-write", "random"}) {
		t.Errorf("routing %+v", r)
	}
	t.Setenv("PGTARGETSESSIONATTRS", "standby")
	if r := UpstreamRouting("host=a"); r != (Routing{"standby", "disable"}) {
		t.Errorf("routing from the environment %+v", r)
	}
}
