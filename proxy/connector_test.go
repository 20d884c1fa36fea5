package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestWarnUnverified: an upstream on another host reached with less than
// verify-full is named in a warning at start; one verified, or on this
// machine (loopback, unix socket), is not.
func TestWarnUnverified(t *testing.T) {
	for _, tc := range []struct {
		upstream string
		reached  []string // nil: no warning
	}{
		{"host=db.example.com sslmode=verify-full", nil},
		{"host=db.example.com sslmode=disable", []string{"db.example.com:5432 in plaintext"}},
		{"host=db.example.com sslmode=prefer", []string{"db.example.com:5432 over TLS without checking its certificate", "db.example.com:5432 in plaintext"}},
		{"host=db.example.com sslmode=require", []string{"db.example.com:5432 over TLS without checking its certificate"}},
		{"host=10.1.2.3 port=6000 sslmode=verify-ca sslrootcert=system", nil}, // system forces verify-full, as in libpq
		{"host=127.0.0.1 sslmode=disable", nil},
		{"host=localhost sslmode=prefer", nil},
		{"host=::1 sslmode=disable", nil},
		{"host=/var/run/postgresql", nil},
		{"host=127.0.0.1,db.example.com sslmode=disable", []string{"db.example.com:5432 in plaintext"}},
	} {
		c, err := newConnector(&config.Config{Upstream: tc.upstream, Limits: config.Limits{LoginTimeout: time.Second}}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.upstream, err)
		}
		core, logs := observer.New(zapcore.WarnLevel)
		warnUnverified(zap.New(core), "upstream", c.targets())
		var got []string
		for _, e := range logs.All() {
			if !strings.Contains(e.Message, "verify-full") {
				t.Errorf("%s: warning %q does not say how to fix it", tc.upstream, e.Message)
			}
			reached, _ := e.ContextMap()["reached"].([]any)
			for _, r := range reached {
				got = append(got, r.(string))
			}
		}
		if strings.Join(got, "|") != strings.Join(tc.reached, "|") {
			t.Errorf("%s: warned about %q, want %q", tc.upstream, got, tc.reached)
		}
	}
}
