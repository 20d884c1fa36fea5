package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// withClientTLS returns a startProxy configure function that terminates TLS
// on the client leg with a certificate for 127.0.0.1 and localhost issued
// by ca, requiring client certificates from clientCA when it is not nil.
func withClientTLS(t *testing.T, ca, clientCA *harness.CA) func(*config.Config) {
	cert := ca.Issue(t, "127.0.0.1", "localhost")
	return func(cfg *config.Config) {
		cfg.TLS = &config.TLS{CertFile: cert.CertFile, KeyFile: cert.KeyFile}
		if clientCA != nil {
			cfg.TLS.ClientCAFile = clientCA.CertFile
		}
	}
}

// requireTLS fails t unless c's connection to pgcloak is TLS.
func requireTLS(t *testing.T, c *pgx.Conn) {
	t.Helper()
	if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
		t.Errorf("client connection is %T, want *tls.Conn", c.PgConn().Conn())
	}
}

// requireUnknownAuthority fails t unless err is a certificate verification
// failure for a certificate signed by an unknown authority.
func requireUnknownAuthority(t *testing.T, err error) {
	t.Helper()
	var uae x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &uae) && !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("got %v, want a certificate error (signed by unknown authority)", err)
	}
}

// TestTLSClientVerifyFull connects with sslmode=verify-full to pgcloak's
// own certificate, by IP address and by name, with pgx and lib/pq; a client
// that trusts another CA fails with a certificate error.
func TestTLSClientVerifyFull(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	ca := harness.NewCA(t, "pgcloak client-leg CA")
	addr, _ := startProxy(t, pg, withClientTLS(t, ca, nil))
	_, port, _ := net.SplitHostPort(addr)

	for _, host := range []string{"127.0.0.1", "localhost"} {
		a := net.JoinHostPort(host, port)
		c := connect(t, dsn(pg, a, harness.SCRAMUser, "sslmode", "verify-full", "sslrootcert", ca.CertFile))
		requireTLS(t, c)
		if got := queryString(t, c, "SELECT current_user::text"); got != harness.SCRAMUser {
			t.Errorf("%s: current_user %q", host, got)
		}
	}
	db, err := sql.Open("postgres", dsn(pg, addr, harness.MD5User, "sslmode", "verify-full", "sslrootcert", ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(queryCtx(t), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("lib/pq verify-full: %v", err)
	}
	// TLS is optional on the client leg without client_ca_file.
	requireWorks(t, pg, addr)

	// A client that trusts another CA refuses pgcloak's certificate.
	other := harness.NewCA(t, "some other CA")
	_, err = tryConnect(t, dsn(pg, addr, harness.TrustUser, "sslmode", "verify-full", "sslrootcert", other.CertFile))
	requireUnknownAuthority(t, err)
	t.Logf("wrong CA on the client: %v", err)
	requireWorks(t, pg, addr)
}

// TestTLSUpstreamVerifyFull runs pgcloak to a PostgreSQL that requires TLS,
// with sslmode=verify-full in the upstream setting, behind both a plain and
// a TLS client leg; cancel goes over TLS too.
func TestTLSUpstreamVerifyFull(t *testing.T) {
	t.Parallel()
	pgTLS, _ := sharedTLSPG(t)
	ca := harness.NewCA(t, "pgcloak client-leg CA")
	addr, _ := startProxy(t, pgTLS, withClientTLS(t, ca, nil))
	if !strings.Contains(upstreamFor(pgTLS), "sslmode=verify-full") {
		t.Fatalf("upstream %q", upstreamFor(pgTLS))
	}

	for _, params := range [][]string{nil, {"sslmode", "verify-full", "sslrootcert", ca.CertFile}} {
		c := connect(t, dsn(pgTLS, addr, harness.MD5User, params...))
		if got := queryString(t, c, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
			t.Errorf("client params %v: pg_stat_ssl.ssl = %s for pgcloak's upstream connection", params, got)
		}
	}

	// A CancelRequest is forwarded over TLS as well.
	c, err := connectConfig(t, cancelConfig(t, dsn(pgTLS, addr, harness.TrustUser)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Exec(ctx, "SELECT pg_sleep(10)")
	requirePgError(t, err, "57014")
	deadline, _ := ctx.Deadline()
	if el := time.Since(deadline); el > time.Second {
		t.Errorf("cancel over a TLS upstream took %v", el)
	}
}

// TestTLSUpstreamWrongCA configures an upstream CA that did not sign
// PostgreSQL's certificate: the client gets an ErrorResponse that names the
// upstream and the certificate problem.
func TestTLSUpstreamWrongCA(t *testing.T) {
	t.Parallel()
	pgTLS, _ := sharedTLSPG(t)
	other := harness.NewCA(t, "not PostgreSQL's CA")
	addr, _ := startProxy(t, pgTLS, func(cfg *config.Config) {
		cfg.Upstream = fmt.Sprintf("host=%s port=%d sslmode=verify-full sslrootcert=%s", pgTLS.Host, pgTLS.Port, other.CertFile)
	})
	_, err := tryConnect(t, dsn(pgTLS, addr, harness.TrustUser))
	upstream := net.JoinHostPort(pgTLS.Host, strconv.Itoa(pgTLS.Port))
	pe := requirePgError(t, err, "08001", upstream, "certificate signed by unknown authority")
	if pe.Severity != "FATAL" || !strings.HasPrefix(pe.Message, "pgcloak:") {
		t.Errorf("got %s %q, want a FATAL error from pgcloak", pe.Severity, pe.Message)
	}
	t.Logf("wrong upstream CA: %s", pe.Message)
}

// TestTLSClientCertificates sets tls.client_ca_file: a client without a
// certificate, or without TLS, or with a certificate of another CA is
// refused; one with a certificate from the CA gets in.
func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	serverCA := harness.NewCA(t, "pgcloak server CA")
	clientCA := harness.NewCA(t, "pgcloak client CA")
	addr, _ := startProxy(t, pg, withClientTLS(t, serverCA, clientCA))
	verify := []string{"sslmode", "verify-full", "sslrootcert", serverCA.CertFile}

	_, err := tryConnect(t, dsn(pg, addr, harness.TrustUser, verify...))
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("TLS without a client certificate: %v, want refused (certificate required)", err)
	}
	t.Logf("no client certificate: %v", err)

	_, err = tryConnect(t, dsn(pg, addr, harness.TrustUser))
	requirePgError(t, err, "28000", "client certificate is required")

	stranger := harness.NewCA(t, "unknown client CA").IssueClient(t, harness.TrustUser)
	_, err = tryConnect(t, dsn(pg, addr, harness.TrustUser, append(verify, "sslcert", stranger.CertFile, "sslkey", stranger.KeyFile)...))
	// Go's TLS client sends no certificate when its one does not chain to a
	// CA the server named, so the refusal reads as for no certificate.
	if err == nil || !strings.Contains(err.Error(), "certificate required") && !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Errorf("client certificate from another CA: %v, want refused", err)
	}

	cert := clientCA.IssueClient(t, harness.TrustUser)
	c := connect(t, dsn(pg, addr, harness.TrustUser, append(verify, "sslcert", cert.CertFile, "sslkey", cert.KeyFile)...))
	requireTLS(t, c)
	if got := queryString(t, c, "SELECT 'mutual TLS'"); got != "mutual TLS" {
		t.Errorf("got %q", got)
	}
}

// TestTLSNoChannelBinding: pgcloak terminates the client's TLS, so it must
// not offer SCRAM-SHA-256-PLUS (the client would bind to pgcloak's
// certificate, PostgreSQL to its own). A client that requires channel
// binding fails cleanly; one that prefers it (the default of pgx and libpq)
// logs in without it, whether pgcloak reaches PostgreSQL over TLS or not.
// PostgreSQL itself does offer it (checked directly), so the difference is
// pgcloak's.
func TestTLSNoChannelBinding(t *testing.T) {
	t.Parallel()
	pgTLS, _ := sharedTLSPG(t)
	ca := harness.NewCA(t, "pgcloak client-leg CA")
	addr, _ := startProxy(t, pgTLS, withClientTLS(t, ca, nil))
	verify := []string{"sslmode", "verify-full", "sslrootcert", ca.CertFile}
	scram := func(t *testing.T, pg *harness.Postgres, addr, channelBinding string) error {
		t.Helper()
		c, err := tryConnect(t, dsn(pg, addr, harness.SCRAMUser, append(verify, "channel_binding", channelBinding)...))
		if err != nil {
			return err
		}
		requireTLS(t, c)
		if got := queryString(t, c, "SELECT current_user::text"); got != harness.SCRAMUser {
			t.Errorf("current_user %q", got)
		}
		return nil
	}

	t.Run("PostgreSQL offers it", func(t *testing.T) {
		direct := connect(t, directDSN(pgTLS, harness.SCRAMUser, "channel_binding", "require"))
		if got := queryString(t, direct, "SELECT 'bound'"); got != "bound" {
			t.Fatalf("direct with channel binding: %q", got)
		}
	})
	t.Run("require is refused", func(t *testing.T) {
		err := scram(t, pgTLS, addr, "require")
		if err == nil || !strings.Contains(err.Error(), "channel binding required but server does not support SCRAM-SHA-256-PLUS") {
			t.Errorf("channel_binding=require through pgcloak: %v, want refused for lack of SCRAM-SHA-256-PLUS", err)
		}
		t.Logf("channel_binding=require: %v", err)
		requireWorks(t, pgTLS, addr)
	})
	t.Run("disable", func(t *testing.T) {
		if err := scram(t, pgTLS, addr, "disable"); err != nil {
			t.Errorf("channel_binding=disable through pgcloak: %v", err)
		}
	})
	t.Run("prefer, plain upstream", func(t *testing.T) {
		pg := sharedPG(t)
		plainAddr, _ := startProxy(t, pg, withClientTLS(t, ca, nil))
		if err := scram(t, pg, plainAddr, "prefer"); err != nil {
			t.Errorf("channel_binding=prefer through pgcloak to a plain upstream: %v", err)
		}
	})
	t.Run("prefer, TLS upstream", func(t *testing.T) {
		// The client supports channel binding but is not offered it, so it
		// sends the GS2 flag 'y', which PostgreSQL on TLS refuses as a
		// downgrade. pgcloak cannot change the flag (the proof covers it),
		// so it refuses first and says how to connect.
		err := scram(t, pgTLS, addr, "prefer")
		pe := pgError(err)
		if pe == nil || pe.Code != "28000" || !strings.Contains(pe.Message, "set channel_binding=disable") {
			t.Fatalf("channel_binding=prefer through pgcloak to a TLS upstream: %v, want pgcloak's 28000 naming channel_binding=disable", err)
		}
		requireWorks(t, pgTLS, addr)
	})
}

// TestTLSClientModes: tls.client_mode require refuses plaintext clients
// with a server certificate alone (no client CA); verify-full takes only
// client certificates whose common name is the user logging in; disable
// answers SSLRequest with 'N' although a certificate is configured.
func TestTLSClientModes(t *testing.T) {
	t.Parallel()
	pg := sharedPG(t)
	serverCA := harness.NewCA(t, "pgcloak server CA")
	clientCA := harness.NewCA(t, "pgcloak client CA")
	verify := []string{"sslmode", "verify-full", "sslrootcert", serverCA.CertFile}
	mode := func(m string, clientCA *harness.CA) func(*config.Config) {
		withTLS := withClientTLS(t, serverCA, clientCA)
		return func(cfg *config.Config) {
			withTLS(cfg)
			cfg.TLS.ClientMode = m
		}
	}

	addr, _ := startProxy(t, pg, mode(config.ClientTLSRequire, nil))
	_, err := tryConnect(t, dsn(pg, addr, harness.TrustUser))
	requirePgError(t, err, "28000", "TLS is required")
	requireTLS(t, connect(t, dsn(pg, addr, harness.TrustUser, verify...)))

	addr, _ = startProxy(t, pg, mode(config.ClientTLSVerifyFull, clientCA))
	own := clientCA.IssueClient(t, harness.TrustUser)
	c := connect(t, dsn(pg, addr, harness.TrustUser, append(verify, "sslcert", own.CertFile, "sslkey", own.KeyFile)...))
	requireTLS(t, c)
	someoneElse := clientCA.IssueClient(t, harness.SCRAMUser)
	_, err = tryConnect(t, dsn(pg, addr, harness.TrustUser, append(verify, "sslcert", someoneElse.CertFile, "sslkey", someoneElse.KeyFile)...))
	requirePgError(t, err, "28000", "certificate authentication failed", harness.SCRAMUser)

	addr, _ = startProxy(t, pg, mode(config.ClientTLSDisable, nil))
	_, err = tryConnect(t, dsn(pg, addr, harness.TrustUser, "sslmode", "require"))
	if err == nil || !strings.Contains(err.Error(), "server refused TLS connection") {
		t.Errorf("sslmode=require against client_mode disable: %v, want TLS refused", err)
	}
	requireWorks(t, pg, addr)
}
