package proxy

import (
	"testing"
)

func TestWithDatabase(t *testing.T) {
	startup := func(kv ...string) []byte { return startupPacket(t, kv...) }
	tests := []struct {
		in, want []byte
	}{
		{startup("user", "ada", "database", "pgcloak", "application_name", "psql"),
			startup("user", "ada", "application_name", "psql", "database", "postgres")},
		{startup("user", "pgcloak"), startup("user", "pgcloak", "database", "postgres")},
	}
	for _, tt := range tests {
		got := withDatabase(tt.in, "postgres")
		if string(got) != string(tt.want) {
			t.Errorf("withDatabase(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if info, err := parseStartupParams(got); err != nil || info.Database != "postgres" {
			t.Errorf("the rewritten packet parses as %+v, %v", info, err)
		}
	}
}
