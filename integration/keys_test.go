package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/crypto/keystore"
	"github.com/pgcloak/pgcloak/crypto/vault"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/catalog"
)

// TestKeysCommands runs init (twice), list, rotate and rewrap against a real
// Vault and PostgreSQL, then retires the old Transit key version and checks
// that a fresh instance still loads every data key.
func TestKeysCommands(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})

	// Before init there is no table: list says what to do.
	code, _, errs := e.keys("list")
	if code != 1 || !strings.Contains(errs, "pgcloak.keys does not exist; run pgcloak keys init") {
		t.Errorf("list before init: exit %d, stderr %q", code, errs)
	}

	out := e.mustKeys("init")
	for _, want := range []string{
		"created Transit key pgcloak-cards (aes256-gcm96) at " + e.vault.Addr,
		"created Transit key pgcloak-pii (aes256-gcm96)",
		"created table pgcloak.keys in PostgreSQL postgres@127.0.0.1:",
		"keyring cards: created version 1, wrapped by Transit key pgcloak-cards",
		"keyring pii: created version 1, wrapped by Transit key pgcloak-pii",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("init output lacks %q", want)
		}
	}
	first := e.rows()
	out = e.mustKeys("init")
	if want := "keyring cards: has versions up to 1; unchanged\nkeyring pii: has versions up to 1; unchanged\n"; out != want {
		t.Errorf("second init printed %q, want %q", out, want)
	}
	if again := e.rows(); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Errorf("second init changed pgcloak.keys: %v -> %v", first, again)
	}

	out = e.mustKeys("rotate", "pii")
	if !strings.Contains(out, "keyring pii: created version 2, wrapped by Transit key pgcloak-pii.") ||
		!strings.Contains(out, "within key_refresh (200ms)") {
		t.Errorf("rotate output: %q", out)
	}
	out = e.mustKeys("list")
	listRE := regexp.MustCompile(`(?m)^KEYRING +VERSION +CREATED +KEK +ACTIVE\n` +
		`cards +1 +\d{4}-\d\d-\d\dT[0-9:]+Z +pgcloak-cards v1 +yes\n` +
		`pii +1 +\S+ +pgcloak-pii v1 *\n` +
		`pii +2 +\S+ +pgcloak-pii v1 +yes\n$`)
	if !listRE.MatchString(out) {
		t.Errorf("list output:\n%s\ndoes not match %s", out, listRE)
	}

	// Mistakes: an unknown keyring, a config with mistakes (exit 2).
	if code, _, errs := e.keys("rotate", "nope"); code != 1 || !strings.Contains(errs, `no keyring "nope" in the config; configured: cards, pii`) {
		t.Errorf("rotate nope: exit %d, %q", code, errs)
	}
	bad := filepath.Join(e.dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("upstream: host=h\nkeys: {pii: {}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := runKeysArgs(t, "list", "--config", bad); code != 2 {
		t.Errorf("list with a bad config: exit %d, want 2", code)
	}

	// A value under each pii version, to check after rewrap that the data
	// keys did not change.
	inst := e.instance(nil)
	v2 := encrypt(t, inst, "pii", "after rotation")
	if keyVersion(t, v2) != 2 {
		t.Fatalf("encrypted under version %d, want 2", keyVersion(t, v2))
	}

	// KEK rotation: rotate the Transit key in Vault, then rewrap.
	if err := e.vault.Call("POST", "transit/keys/pgcloak-pii/rotate", nil, nil); err != nil {
		t.Fatal(err)
	}
	before := e.rows()
	out = e.mustKeys("rewrap")
	for _, want := range []string{
		"keyring cards version 1: Transit key pgcloak-cards v1 -> v1",
		"keyring pii version 1: Transit key pgcloak-pii v1 -> v2",
		"keyring pii version 2: Transit key pgcloak-pii v1 -> v2",
		"rewrapped 3 data keys of 2 keyrings in one transaction; no row of user data was touched",
		"vault write transit/keys/pgcloak-pii/config min_decryption_version=2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rewrap output lacks %q", want)
		}
	}
	after := e.rows()
	for k, w := range after {
		want := "vault:v2:"
		if strings.HasPrefix(k, "cards/") {
			want = "vault:v1:"
		}
		if !strings.HasPrefix(w, want) || w == before[k] {
			t.Errorf("%s after rewrap: %.12s… (before %.12s…), want a new %s value", k, w, before[k], want)
		}
	}

	// Retire Transit key version 1: only rewrapped keys can still be
	// unwrapped, and a fresh instance loads them all, with the same DEKs.
	if err := e.vault.Call("POST", "transit/keys/pgcloak-pii/config", map[string]any{"min_decryption_version": 2}, nil); err != nil {
		t.Fatal(err)
	}
	fresh := e.instance(nil)
	kr, _ := fresh.Keyring("pii")
	if got := kr.Versions(); fmt.Sprint(got) != "[2 1]" {
		t.Errorf("fresh instance loaded pii versions %v, want [2 1]", got)
	}
	if pt, err := decrypt(fresh, "pii", v2, testColumn(t)); err != nil || pt != "after rotation" {
		t.Errorf("fresh instance decrypts %q, %v", pt, err)
	}
	if code, _, errs := e.keys("rewrap"); code != 0 {
		t.Errorf("a second rewrap failed: %s", errs)
	}
}

// runKeysArgs runs the keys command with explicit flags only.
func runKeysArgs(t *testing.T, args ...string) int {
	t.Helper()
	var out, errs strings.Builder
	code := cmd.RunKeys(args, &out, &errs)
	t.Logf("pgcloak keys %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errs.String())
	return code
}

// TestKeysSharedKeyring runs three instances on one keyring. One rotates;
// an instance that only polls encrypts with the new version within
// key_refresh, one that only listens picks it up from NOTIFY, and one that
// does neither loads it on Reload when it meets a value under it.
func TestKeysSharedKeyring(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{keyRefresh: "200ms"})
	e.mustKeys("init")
	load := e.loader
	const refresh = 200 * time.Millisecond
	poller := load(refresh, false)    // polling only
	listener := load(time.Hour, true) // LISTEN/NOTIFY only
	lazy := load(time.Hour, false)    // neither
	rotator := e.instance(nil)        // as serve runs it

	v1 := encrypt(t, poller, "pii", "written before the rotation")
	if keyVersion(t, v1) != 1 {
		t.Fatalf("version %d before rotation", keyVersion(t, v1))
	}
	e.mustKeys("rotate", "pii")
	rotated := time.Now()

	// The documented bound: key_refresh plus one refresh. Allow 2s for
	// the refresh on this small, shared machine.
	bound := refresh + 2*time.Second
	for name, l := range map[string]*keystore.Loader{"poller": poller, "listener": listener, "rotator": rotator} {
		for {
			v := encrypt(t, l, "pii", "x")
			if keyVersion(t, v) == 2 {
				t.Logf("%s encrypts with version 2 %v after the rotation", name, time.Since(rotated).Round(time.Millisecond))
				break
			}
			if time.Since(rotated) > bound {
				t.Fatalf("%s still encrypts with version %d %v after the rotation (bound %v)", name, keyVersion(t, v), time.Since(rotated), bound)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if kr, _ := lazy.Keyring("pii"); kr.Has(2) {
		t.Fatal("the lazy instance loaded version 2 without a poll, a notification or Reload")
	}

	// A value under version 2 reaches the lazy instance: it does not know
	// the version, reloads once, and then decrypts.
	v2 := encrypt(t, poller, "pii", "written after the rotation")
	col := testColumn(t)
	_, err := decrypt(lazy, "pii", v2, col)
	var unknown *crypto.UnknownKeyVersionError
	if !errors.As(err, &unknown) || unknown.Version != 2 {
		t.Fatalf("lazy decrypt before Reload: %v, want UnknownKeyVersionError for version 2", err)
	}
	if err := lazy.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*keystore.Loader{"lazy": lazy, "listener": listener, "rotator": rotator} {
		for _, v := range [][]byte{v1, v2} {
			if _, err := decrypt(l, "pii", v, col); err != nil {
				t.Errorf("%s: decrypt version %d: %v", name, keyVersion(t, v), err)
			}
		}
	}
	// Reload is rate-limited: a second call at once does not query again.
	n := lazy.Stats().Refreshes
	if err := lazy.Reload(context.Background()); err != nil || lazy.Stats().Refreshes != n {
		t.Errorf("second Reload within %v: err %v, refreshes %d -> %d", keystore.ReloadInterval, err, n, lazy.Stats().Refreshes)
	}
}

// TestKeysVaultLost kills Vault under a running instance: values under the
// keys it holds still decrypt and it keeps encrypting, a version that
// appears afterwards is not loaded (and never half-loaded) with a warning
// and an error that name Vault's address, and a new instance cannot start.
func TestKeysVaultLost(t *testing.T) {
	t.Setenv("VAULT_MAX_RETRIES", "0") // fail fast once Vault is gone
	e := newKeysEnv(t, keysConfigOpts{})
	e.mustKeys("init")
	core, logs := observer.New(zapcore.WarnLevel)
	c := e.cfg()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inst, closeFn, err := cmd.OpenKeyrings(ctx, c, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	col := testColumn(t)
	before := encrypt(t, inst, "pii", "stored while Vault was up")

	e.vault.Kill()

	if pt, err := decrypt(inst, "pii", before, col); err != nil || pt != "stored while Vault was up" {
		t.Fatalf("decrypt after Vault died: %q, %v", pt, err)
	}
	during := encrypt(t, inst, "pii", "stored while Vault is down")
	if pt, err := decrypt(inst, "pii", during, col); err != nil || pt != "stored while Vault is down" {
		t.Fatalf("round trip after Vault died: %q, %v", pt, err)
	}

	// Another instance rotated just before Vault died: a version 2 row that
	// this instance cannot unwrap now.
	if err := e.pg.ExecDB(e.db, `INSERT INTO pgcloak.keys (keyring, version, wrapped, kek) VALUES ('pii', 2, 'vault:v1:AAAA', 'pgcloak-pii')`); err != nil {
		t.Fatal(err)
	}
	err = inst.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "vault at "+e.vault.Addr) || !strings.Contains(err.Error(), `keyring "pii" version 2`) {
		t.Errorf("Reload with Vault down: %v; want an error naming %s and the version", err, e.vault.Addr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("cannot load new data key versions").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no warning logged for the version that cannot be loaded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := logs.FilterMessageSnippet("cannot load new data key versions").All()[0]
	if msg := fmt.Sprint(w.ContextMap()["error"]); !strings.Contains(msg, e.vault.Addr) {
		t.Errorf("warning's error %q does not name Vault's address", msg)
	}
	kr, _ := inst.Keyring("pii")
	if got := kr.Versions(); fmt.Sprint(got) != "[1]" {
		t.Errorf("versions after failed loads: %v, want [1]", got)
	}
	if v := encrypt(t, inst, "pii", "still"); keyVersion(t, v) != 1 {
		t.Errorf("encrypts with version %d, want 1", keyVersion(t, v))
	}

	// A new instance cannot start without Vault, and says where Vault is.
	_, _, err = cmd.OpenKeyrings(ctx, c, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), e.vault.Addr) {
		t.Errorf("starting without Vault: %v; want an error naming %s", err, e.vault.Addr)
	}
}

// TestKeysAppRoleShortTTL logs in with AppRole tokens that live 2s and can
// be renewed up to 4s, and keeps wrapping and unwrapping for 10s: the KMS
// must renew the token and log in again, without a failed request.
func TestKeysAppRoleShortTTL(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})
	v := e.vault
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"sys/auth/approle", map[string]any{"type": "approle"}},
		{"transit/keys/pgcloak-pii", map[string]any{}},
		{"transit/keys/pgcloak-cards", map[string]any{}},
		{"sys/policies/acl/pgcloak", map[string]any{"policy": `
path "transit/encrypt/pgcloak-*" { capabilities = ["update"] }
path "transit/decrypt/pgcloak-*" { capabilities = ["update"] }
path "transit/rewrap/pgcloak-*"  { capabilities = ["update"] }
`}},
		{"auth/approle/role/pgcloak", map[string]any{"token_policies": "pgcloak", "token_ttl": "2s", "token_max_ttl": "4s"}},
	} {
		if err := v.Call("POST", c.path, c.body, nil); err != nil {
			t.Fatal(err)
		}
	}
	var roleID struct {
		Data struct {
			RoleID string `json:"role_id"`
		} `json:"data"`
	}
	var secretID struct {
		Data struct {
			SecretID string `json:"secret_id"`
		} `json:"data"`
	}
	if err := v.Call("GET", "auth/approle/role/pgcloak/role-id", nil, &roleID); err != nil {
		t.Fatal(err)
	}
	if err := v.Call("POST", "auth/approle/role/pgcloak/secret-id", map[string]any{}, &secretID); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "secret-id"), []byte(secretID.Data.SecretID), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(keysConfigOpts{auth: fmt.Sprintf("{method: approle, role_id: %s, secret_id_file: secret-id}", roleID.Data.RoleID)})

	// The CLI with AppRole: this policy may not read keys, so init assumes
	// the Transit keys exist.
	e.mustKeys("init")
	inst := e.instance(nil)

	a := e.cfg().KMS.Vault.Auth
	kms, err := vault.New(context.Background(), vault.Config{Address: v.Addr, Logger: zaptest.NewLogger(t),
		Auth: vault.Auth{Method: a.Method, RoleID: a.RoleID, SecretIDFile: a.SecretIDFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kms.Close(context.Background()) })
	st := e.keepUsing(kms, inst, 10*time.Second, nil)
	t.Logf("AppRole KMS over 10s: %+v", st)
}

// TestKeysNoVaultOnHotPath counts the HTTP requests that reach Vault: after
// the keys are loaded, encrypting and decrypting make none, and neither does
// a refresh that finds no new version.
func TestKeysNoVaultOnHotPath(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})
	e.mustKeys("init")
	counter := startVaultCounter(t, e.vault)
	inst := e.instance(func(c *config.Config) { c.KMS.Vault.Address = counter.Addr })
	loaded, paths := counter.Count()
	if loaded == 0 {
		t.Fatal("the counting proxy saw no request: the instance did not use it")
	}
	t.Logf("loading made %d Vault requests: %v", loaded, paths)
	unwraps := inst.Stats().Unwraps

	col := testColumn(t)
	kr, _ := inst.Keyring("pii")
	buf := make([]byte, 0, 256)
	for i := range 10000 {
		mode := crypto.Randomized
		if i%2 == 1 {
			mode = crypto.Deterministic
		}
		v, err := kr.Encrypt(buf[:0], []byte("someone@example.com"), col, mode)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kr.Decrypt(make([]byte, 0, 64), v, col); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // two polls at key_refresh 200ms
	if err := inst.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, paths := counter.Count(); n != loaded {
		t.Errorf("20000 operations and the refreshes made %d Vault requests: %v", n-loaded, paths[loaded:])
	}
	if got := inst.Stats().Unwraps; got != unwraps {
		t.Errorf("unwraps %d -> %d", unwraps, got)
	}
}

// TestKeysLocalKMS runs the commands with the development KMS: init creates
// the master key file and warns.
func TestKeysLocalKMS(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})
	yaml := fmt.Sprintf("upstream: host=127.0.0.1\nadmin_dsn: %q\nkms: {local: {key_file: dev-master.key}}\nkeys: {pii: }\n", e.adminDSN)
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := e.keys("init")
	if code != 0 || !strings.Contains(out, "created master key file "+filepath.Join(e.dir, "dev-master.key")) ||
		!strings.Contains(out, "keyring pii: created version 1, wrapped by the local master key") ||
		!strings.Contains(errs, "local file KMS: for development only") {
		t.Fatalf("init with kms.local: exit %d\n%s%s", code, out, errs)
	}
	e.mustKeys("rotate", "pii")
	out = e.mustKeys("rewrap")
	if !strings.Contains(out, "keyring pii version 2: rewrapped by the local master key") {
		t.Errorf("rewrap: %q", out)
	}
	inst := e.instance(nil)
	if v := encrypt(t, inst, "pii", "x"); keyVersion(t, v) != 2 {
		t.Errorf("version %d, want 2", keyVersion(t, v))
	}
}

// TestKeysAllOrNothing gives an instance two new versions, one of which
// Vault refuses to unwrap: the keyring gains neither until both load.
func TestKeysAllOrNothing(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})
	e.mustKeys("init")
	inst := e.loader(time.Hour, false)
	e.mustKeys("rotate", "pii") // version 2: fine
	if err := e.pg.ExecDB(e.db, `INSERT INTO pgcloak.keys (keyring, version, wrapped, kek) VALUES ('pii', 3, 'vault:v1:AAAA', 'pgcloak-pii')`); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err := inst.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), `keyring "pii" version 3 (KEK "pgcloak-pii"): vault at `+e.vault.Addr+`: transit key "pgcloak-pii": decrypt: HTTP 400`) {
		t.Fatalf("Reload: %v", err)
	}
	kr, _ := inst.Keyring("pii")
	if got := kr.Versions(); fmt.Sprint(got) != "[1]" {
		t.Fatalf("versions %v after a failed load, want [1]: version 2 must wait for version 3", got)
	}
	if err := e.pg.ExecDB(e.db, `DELETE FROM pgcloak.keys WHERE version = 3`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(keystore.ReloadInterval)
	if err := inst.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kr.Versions(); fmt.Sprint(got) != "[2 1]" {
		t.Errorf("versions %v, want [2 1]", got)
	}
}

// TestKeysVaultEnvironment configures Vault only through the environment
// variables every Vault client honours: VAULT_ADDR (an HTTPS server with a
// private CA), VAULT_CACERT and VAULT_TOKEN, with a config file that names
// neither address nor token. Without the CA the commands fail, naming the
// address and the certificate problem. VAULT_NAMESPACE is sent with every
// request (Vault Enterprise's namespaces; the open-source server ignores
// the header, so a recording proxy checks it).
func TestKeysVaultEnvironment(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{vault: harness.VaultOptions{TLS: true}})
	if !strings.HasPrefix(e.vault.Addr, "https://") {
		t.Fatalf("Vault at %s, want HTTPS", e.vault.Addr)
	}
	yaml := fmt.Sprintf(`upstream: host=127.0.0.1
admin_dsn: %q
kms:
  vault:
    auth: {method: token}
keys:
  pii: {transit_key: pgcloak-pii}
`, e.adminDSN)
	if err := os.WriteFile(e.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_ADDR", e.vault.Addr)
	t.Setenv("VAULT_TOKEN", e.vault.RootToken)
	t.Setenv("VAULT_MAX_RETRIES", "0")

	t.Setenv("VAULT_CACERT", "")
	if code, _, errs := e.keys("init"); code == 0 || !strings.Contains(errs, e.vault.Addr) || !strings.Contains(errs, "certificate") {
		t.Fatalf("keys init without the CA: exit %d, %q; want a failure naming %s and the certificate", code, errs, e.vault.Addr)
	}

	t.Setenv("VAULT_CACERT", e.vault.CACert)
	e.mustKeys("init")
	if out := e.mustKeys("list"); !strings.Contains(out, "pii") {
		t.Fatalf("keys list: %q", out)
	}
	inst := e.instance(nil)
	v := encrypt(t, inst, "pii", "over https")
	if pt, err := decrypt(inst, "pii", v, testColumn(t)); err != nil || pt != "over https" {
		t.Fatalf("round trip: %q, %v", pt, err)
	}

	counter := startVaultCounter(t, e.vault)
	t.Setenv("VAULT_ADDR", counter.Addr)
	t.Setenv("VAULT_NAMESPACE", "team-a/pgcloak")
	e.mustKeys("rotate", "pii")
	ns := counter.Namespaces()
	if len(ns) != 1 || ns["team-a/pgcloak"] == 0 {
		t.Fatalf("requests by namespace %v; want every request in team-a/pgcloak", ns)
	}
}

// TestKeysTwoProxiesShareKeyring is TestKeysSharedKeyring end to end: two
// pgcloak proxies in front of one database, as serve starts them
// (key_refresh: 1s). After `pgcloak keys rotate`, rows written through
// either proxy are stored under the new version within the documented
// bound, and each proxy reads the rows the other wrote, under both
// versions, without a restart.
func TestKeysTwoProxiesShareKeyring(t *testing.T) {
	e := newLCEnv(t, "CREATE TABLE customers (id int PRIMARY KEY, email bytea, "+catalog.BackstopConstraint("email")+")",
		[]lcRule{{"public.customers", "email", "{type: text, key: pii}"}})
	cfg := e.config("encrypted")
	a, b := e.startProxy(cfg), e.startProxy(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ca, cb, d := e.connect(e.dsn(a)), e.connect(e.dsn(b)), e.direct()
	stored := func(id int) uint32 {
		t.Helper()
		var v []byte
		if err := d.QueryRow(ctx, `SELECT email FROM customers WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return keyVersion(t, v)
	}
	if _, err := ca.Exec(ctx, `INSERT INTO customers VALUES (1, 'one@example.org')`); err != nil {
		t.Fatal(err)
	}
	if v := stored(1); v != 1 {
		t.Fatalf("version %d before the rotation", v)
	}

	if code, _, errs := e.keysCmd(cfg, "rotate", "pii"); code != 0 {
		t.Fatalf("keys rotate: %s", errs)
	}
	rotated := time.Now()
	const bound = time.Second + 2*time.Second // key_refresh plus one refresh, plus slack for this machine
	for name, c := range map[string]*pgx.Conn{"a": ca, "b": cb} {
		first := map[string]int{"a": 100, "b": 100_000}[name] // ids of its own
		for id := first; ; id++ {
			if _, err := c.Exec(ctx, `INSERT INTO customers VALUES ($1, $2)`, id, fmt.Sprintf("%d@example.org", id)); err != nil {
				t.Fatal(err)
			}
			if stored(id) == 2 {
				t.Logf("proxy %s stores version 2 %v after the rotation", name, time.Since(rotated).Round(time.Millisecond))
				break
			}
			if time.Since(rotated) > bound {
				t.Fatalf("proxy %s still stores version 1 %v after the rotation", name, time.Since(rotated))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Each proxy reads everything: version 1 and 2 rows, written by either.
	for name, c := range map[string]*pgx.Conn{"a": ca, "b": cb} {
		rows, _ := c.Query(ctx, `SELECT id, email FROM customers ORDER BY id`)
		n := 0
		for rows.Next() {
			var id int
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d@example.org", id); id != 1 && email != want || id == 1 && email != "one@example.org" {
				t.Fatalf("proxy %s: row %d = %q", name, id, email)
			}
			n++
		}
		if err := rows.Err(); err != nil || n < 3 {
			t.Fatalf("proxy %s: %d rows, %v", name, n, err)
		}
	}
}
