package admin

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/config"
)

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		sql  string
		want [][]string
	}{
		{"", nil},
		{" ; ;", nil},
		{"show clients", [][]string{{"show", "clients"}}},
		{"SHOW CLIENTS;\nSHOW SERVERS;", [][]string{{"SHOW", "CLIENTS"}, {"SHOW", "SERVERS"}}},
		{`PAUSE "My ""DB"""`, [][]string{{"PAUSE", `My "DB"`}}},
		{`PAUSE 'a;b'; RESUME`, [][]string{{"PAUSE", "a;b"}, {"RESUME"}}},
		{"KILL\t12 ;", [][]string{{"KILL", "12"}}},
	}
	for _, tt := range tests {
		if got := splitStatements(tt.sql); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitStatements(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}

// TestConfigRowsHidePasswords: SHOW CONFIG never shows a password of
// admin_dsn or upstream, in either connection string form.
func TestConfigRowsHidePasswords(t *testing.T) {
	for _, dsn := range []string{
		"host=db user=pgcloak password=s3cret dbname=app",
		"host=db user=pgcloak password='s3 cret' dbname=app",
		"postgres://pgcloak:s3cret@db:5432/app",
	} {
		cfg := config.Default()
		cfg.AdminDSN = dsn
		cfg.Upstream = "host=db port=5432"
		cfg.KMS = &config.KMS{Vault: &config.Vault{Auth: config.VaultAuth{RoleID: "role-1234"}}}
		rows := configRows(cfg)
		var text strings.Builder
		for _, r := range rows {
			text.WriteString(strings.Join(r, "=") + "\n")
		}
		if s := text.String(); strings.Contains(s, "s3") || strings.Contains(s, "role-1234") || !strings.Contains(s, "admin_dsn=") {
			t.Errorf("SHOW CONFIG for %q:\n%s", dsn, s)
		}
	}
}
