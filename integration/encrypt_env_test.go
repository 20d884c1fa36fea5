package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// encEnv is pgcloak with protected columns in front of a database of its
// own on the shared cluster, with keys in a real Vault dev server.
type encEnv struct {
	t      *testing.T
	pg     *harness.Postgres
	vault  *harness.Vault
	db     string
	dir    string
	config string
	addr   string // pgcloak
	srv    *proxy.Server
	prot   *engine.Protector
	stop   func() // stops pgcloak (also a cleanup)
	reg    *prometheus.Registry
}

// encEnvOptions shapes an encEnv.
type encEnvOptions struct {
	schema string // SQL run directly (as superuser) before pgcloak starts
	tables string // YAML of the tables: section
	extra  string // more top-level YAML (e.g. "shadow: true")
}

// newEncEnv creates a database on the shared cluster, runs schema, writes
// the config, runs `pgcloak keys init` and starts pgcloak with the protected
// columns loaded as `serve` loads them (newCloakEnv with its defaults).
func newEncEnv(t *testing.T, o encEnvOptions) *encEnv {
	t.Helper()
	return newCloakEnv(t, cloakEnvOptions{encEnvOptions: o})
}

// dsn is a connection string to the env's database through pgcloak as the
// superuser (trusted on 127.0.0.1), plus key, value params.
func (e *encEnv) dsn(params ...string) string {
	s := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", harness.SuperUser, e.addr, e.db)
	for i := 0; i+1 < len(params); i += 2 {
		s += "&" + params[i] + "=" + params[i+1]
	}
	return s
}

// directDSN connects to the env's database straight to PostgreSQL.
func (e *encEnv) directDSN() string { return e.pg.DSN(harness.SuperUser, e.db) }

// connect opens a pgx connection through pgcloak.
func (e *encEnv) connect(params ...string) *pgx.Conn { return connect(e.t, e.dsn(params...)) }

// direct opens a pgx connection straight to PostgreSQL.
func (e *encEnv) direct() *pgx.Conn { return connect(e.t, e.directDSN()) }

// indent indents YAML lines by two spaces (the tables: section).
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}
