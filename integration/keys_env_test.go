package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/vault"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// keysEnv is a Vault dev server, a database of its own on the shared
// cluster, and a config file for the keys commands that uses both.
type keysEnv struct {
	t        *testing.T
	vault    *harness.Vault
	pg       *harness.Postgres
	db       string
	adminDSN string
	dir      string
	config   string // path of the config file
}

// keysConfigOpts shapes the config file that newKeysEnv writes.
type keysConfigOpts struct {
	vaultAddr  string // default: the Vault server's address
	auth       string // YAML of kms.vault.auth; default token from token_file
	keyRefresh string // default 200ms
	vault      harness.VaultOptions
}

// newKeysEnv starts Vault and makes a fresh database. The config names two
// keyrings, pii (Transit key pgcloak-pii) and cards (pgcloak-cards).
func newKeysEnv(t *testing.T, o keysConfigOpts) *keysEnv {
	t.Helper()
	pg := sharedPG(t)
	e := &keysEnv{t: t, vault: harness.StartVault(t, o.vault), pg: pg, dir: t.TempDir()}
	e.db = "keys_" + randomSuffix()
	if err := pg.ExecDB("postgres", "CREATE DATABASE "+e.db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.ExecDB("postgres", "DROP DATABASE IF EXISTS "+e.db+" WITH (FORCE)") })
	e.adminDSN = pg.DSN(harness.SuperUser, e.db)
	if err := os.WriteFile(filepath.Join(e.dir, "vault-token"), []byte(e.vault.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(o)
	return e
}

func (e *keysEnv) writeConfig(o keysConfigOpts) {
	if o.vaultAddr == "" {
		o.vaultAddr = e.vault.Addr
	}
	if o.auth == "" {
		o.auth = "{method: token, token_file: vault-token}"
	}
	if o.keyRefresh == "" {
		o.keyRefresh = "200ms"
	}
	yaml := fmt.Sprintf(`upstream: host=127.0.0.1
admin_dsn: %q
kms:
  vault:
    address: %s
    auth: %s
keys:
  pii: {transit_key: pgcloak-pii}
  cards: {transit_key: pgcloak-cards}
key_refresh: %s
`, e.adminDSN, o.vaultAddr, o.auth, o.keyRefresh)
	e.config = filepath.Join(e.dir, "pgcloak.yaml")
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// keys runs `pgcloak keys ARGS --config <env's config>` in process and
// returns the exit code and what it printed.
func (e *keysEnv) keys(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmd.RunKeys(append(args, "--config", e.config, "--log-level", "warn"), &out, &errb)
	e.t.Logf("pgcloak keys %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// mustKeys is keys that fails the test unless the command succeeds.
func (e *keysEnv) mustKeys(args ...string) string {
	e.t.Helper()
	code, out, errs := e.keys(args...)
	if code != 0 {
		e.t.Fatalf("pgcloak keys %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out
}

// cfg loads the env's config file.
func (e *keysEnv) cfg() *config.Config {
	e.t.Helper()
	c, err := config.Load(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// instance is a pgcloak's keys as serve loads them (cmd.OpenKeyrings),
// closed when the test ends.
func (e *keysEnv) instance(configure func(*config.Config)) *keystore.Loader {
	e.t.Helper()
	c := e.cfg()
	if configure != nil {
		configure(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, closeFn, err := cmd.OpenKeyrings(ctx, c, zaptest.NewLogger(e.t))
	if err != nil {
		e.t.Fatalf("OpenKeyrings: %v", err)
	}
	e.t.Cleanup(closeFn)
	return l
}

// loader is an instance built directly on keystore.Load, with its own
// refresh interval, LISTEN on or off, and a root-token Vault KMS.
func (e *keysEnv) loader(refresh time.Duration, listen bool) *keystore.Loader {
	e.t.Helper()
	ctx := context.Background()
	kms, err := vault.New(ctx, vault.Config{Address: e.vault.Addr, Auth: vault.Auth{TokenFile: filepath.Join(e.dir, "vault-token")}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { kms.Close(ctx) })
	store, err := keystore.OpenStore(ctx, e.adminDSN)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(store.Close)
	o := keystore.Options{Store: store, KMS: kms, Keyrings: []string{"pii", "cards"}, Refresh: refresh, Logger: zaptest.NewLogger(e.t)}
	if listen {
		o.DSN = e.adminDSN
	}
	l, err := keystore.Load(ctx, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(l.Close)
	return l
}

// rows returns keyring/version → wrapped key as stored.
func (e *keysEnv) rows() map[string]string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, e.adminDSN)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT keyring, version, wrapped FROM pgcloak.keys`)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k string
		var v int32
		var w []byte
		if err := rows.Scan(&k, &v, &w); err != nil {
			e.t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%d", k, v)] = string(w)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// encrypt encrypts pt for public.customers.email with l's keyring name.
func encrypt(t *testing.T, l crypto.Keyrings, name, pt string) []byte {
	t.Helper()
	kr, err := l.Keyring(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := kr.Encrypt(nil, []byte(pt), testColumn(t), crypto.Randomized)
	if err != nil {
		t.Fatalf("encrypt with keyring %s: %v", name, err)
	}
	return v
}

func decrypt(l crypto.Keyrings, name string, value []byte, col crypto.ColumnID) (string, error) {
	kr, err := l.Keyring(name)
	if err != nil {
		return "", err
	}
	pt, err := kr.Decrypt(nil, value, col)
	return string(pt), err
}

func testColumn(t *testing.T) crypto.ColumnID {
	t.Helper()
	col, err := crypto.NewColumnID("public", "customers", "email")
	if err != nil {
		t.Fatal(err)
	}
	return col
}

// keyVersion is the key version in a value's header.
func keyVersion(t *testing.T, value []byte) uint32 {
	t.Helper()
	h, err := crypto.ParseHeader(value)
	if err != nil {
		t.Fatal(err)
	}
	return h.KeyVersion
}

// vaultCounter is a reverse proxy in front of Vault that counts the
// requests it forwards, so a test can assert that a code path calls Vault
// not at all, and records the namespace each request named.
type vaultCounter struct {
	Addr       string
	n          atomic.Int64
	mu         sync.Mutex
	paths      []string
	namespaces map[string]int // X-Vault-Namespace → requests
}

// startVaultCounter serves plain HTTP in front of v (which may use TLS).
func startVaultCounter(t *testing.T, v *harness.Vault) *vaultCounter {
	t.Helper()
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &vaultCounter{Addr: "http://" + ln.Addr().String(), namespaces: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	if v.CACert != "" {
		pem, err := os.ReadFile(v.CACert)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		c.mu.Lock()
		c.paths = append(c.paths, r.Method+" "+r.URL.Path)
		c.namespaces[r.Header.Get("X-Vault-Namespace")]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// Namespaces returns how many requests named each namespace ("" for none).
func (c *vaultCounter) Namespaces() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.namespaces)
}

// Count returns the requests so far and their method and path.
func (c *vaultCounter) Count() (int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n.Load(), append([]string(nil), c.paths...)
}

// keepUsing wraps and unwraps a fresh data key with kms every 200 ms for d,
// and every tenth round rotates keyring pii and has inst load and use the
// new version, so that both tokens (the KMS's and the instance's) must
// outlive their TTLs. round, if not nil, runs at the end of each round with
// its index. It fails the test at the first failed request, and unless kms
// renewed its token and logged in again and inst holds the rotations; it
// returns kms's stats.
func (e *keysEnv) keepUsing(kms *vault.KMS, inst *keystore.Loader, d time.Duration, round func(i int)) vault.Stats {
	t := e.t
	t.Helper()
	col := testColumn(t)
	ctx := context.Background()
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		dek := crypto.NewDEK()
		w, err := kms.Wrap(ctx, "pgcloak-pii", dek)
		if err != nil {
			t.Fatalf("wrap at %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		back, err := kms.Unwrap(ctx, "pgcloak-pii", w)
		if err != nil || string(back) != string(dek) {
			t.Fatalf("unwrap at %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		if i%10 == 0 {
			e.mustKeys("rotate", "pii")
			if err := inst.Reload(ctx); err != nil {
				t.Fatalf("instance reload at %v: %v", time.Since(start).Round(time.Millisecond), err)
			}
			if _, err := decrypt(inst, "pii", encrypt(t, inst, "pii", "x"), col); err != nil {
				t.Fatal(err)
			}
		}
		if round != nil {
			round(i)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st := kms.Stats()
	if st.Renewals < 1 || st.Logins < 2 {
		t.Errorf("stats %+v: want at least one renewal and one login after the first", st)
	}
	kr, _ := inst.Keyring("pii")
	if active, _ := kr.Active(); active < 3 {
		t.Errorf("instance active version %d, want the rotations loaded", active)
	}
	return st
}
