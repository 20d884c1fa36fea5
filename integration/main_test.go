package integration

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pgcloak/pgcloak/integration/harness"
)

// TestMain stops the clusters that tests shared once every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	plainCluster.stop()
	tlsCluster.stop()
	vaultServer.stop()
	if pgcloakBin.dir != "" {
		os.RemoveAll(pgcloakBin.dir)
	}
	os.Exit(code)
}

// sharedCluster is a PostgreSQL cluster started on first use by any test and
// stopped by TestMain, so the package pays for one initdb, not one per test.
// Tests that share it use table names of their own.
type sharedCluster struct {
	once sync.Once
	tb   packageTB
	pg   *harness.Postgres
	ca   *harness.CA // TLS clusters only: the CA that issued the server certificate
	err  string      // why starting failed
}

var (
	plainCluster sharedCluster // no TLS
	tlsCluster   sharedCluster // TLS required on every TCP connection
)

// sharedPG returns the package's plain cluster (no TLS).
func sharedPG(t *testing.T) *harness.Postgres {
	t.Helper()
	plainCluster.start(t, func(tb harness.TB) (*harness.Postgres, *harness.CA) {
		return harness.StartPostgres(tb, harness.PostgresOptions{}), nil
	})
	return plainCluster.pg
}

// sharedTLSPG returns the package's TLS cluster: its certificate, issued by
// the returned CA for 127.0.0.1 and localhost, is required on every TCP
// connection (pg_hba.conf has only hostssl lines).
func sharedTLSPG(t *testing.T) (*harness.Postgres, *harness.CA) {
	t.Helper()
	tlsCluster.start(t, func(tb harness.TB) (*harness.Postgres, *harness.CA) {
		ca := harness.NewCA(tb, "pgcloak test PostgreSQL CA")
		cert := ca.Issue(tb, "127.0.0.1", "localhost")
		pg := harness.StartPostgres(tb, harness.PostgresOptions{TLS: &cert, RequireTLS: true})
		return pg, ca
	})
	return tlsCluster.pg, tlsCluster.ca
}

func (c *sharedCluster) start(t *testing.T, start func(harness.TB) (*harness.Postgres, *harness.CA)) {
	t.Helper()
	c.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(packageFatal)
				if !ok {
					panic(r)
				}
				c.err = string(f)
			}
		}()
		c.pg, c.ca = start(&c.tb)
	})
	if c.err != "" {
		t.Fatalf("shared cluster: %s\n%s", c.err, c.tb.logs())
	}
}

func (c *sharedCluster) stop() { c.tb.runCleanups() }

// sharedVaultServer is a Vault dev server shared like sharedCluster. Tests
// that share it use Transit key names of their own.
type sharedVaultServer struct {
	once  sync.Once
	tb    packageTB
	vault *harness.Vault
	err   string
}

var vaultServer sharedVaultServer

// sharedVault returns the package's Vault dev server (transit/ mounted).
// Tests that kill or reconfigure Vault start their own.
func sharedVault(t *testing.T) *harness.Vault {
	t.Helper()
	v := &vaultServer
	v.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(packageFatal)
				if !ok {
					panic(r)
				}
				v.err = string(f)
			}
		}()
		v.vault = harness.StartVault(&v.tb, harness.VaultOptions{})
	})
	if v.err != "" {
		t.Fatalf("shared Vault: %s\n%s", v.err, v.tb.logs())
	}
	return v.vault
}

func (v *sharedVaultServer) stop() { v.tb.runCleanups() }

// packageTB is the harness.TB of servers that outlive a single test. Fatalf
// panics with a packageFatal that sharedCluster.start turns into a failure
// of the test that asked for the server; cleanups run when TestMain calls
// runCleanups.
type packageTB struct {
	mu       sync.Mutex
	cleanups []func()
	log      []string
}

type packageFatal string

func (tb *packageTB) Helper() {}

func (tb *packageTB) Fatalf(format string, args ...any) {
	panic(packageFatal(fmt.Sprintf(format, args...)))
}

func (tb *packageTB) Logf(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.log = append(tb.log, fmt.Sprintf(format, args...))
}

func (tb *packageTB) Cleanup(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, f)
}

func (tb *packageTB) TempDir() string {
	d, err := os.MkdirTemp("", "pgcloak-integration-")
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (tb *packageTB) logs() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return strings.Join(tb.log, "\n")
}

// runCleanups runs the cleanups in reverse order, as testing does.
func (tb *packageTB) runCleanups() {
	tb.mu.Lock()
	fs := tb.cleanups
	tb.cleanups = nil
	tb.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
