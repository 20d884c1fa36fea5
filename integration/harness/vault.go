package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VaultVersion is the Vault release that BuildVault builds (MPL-2.0; later
// releases are BUSL and must not be used).
const VaultVersion = "v1.13.0"

// VaultOptions configures StartVault.
type VaultOptions struct {
	// RootToken is the dev root token; random if empty.
	RootToken string
	// StartTimeout bounds the wait for the server to be healthy (default
	// 30s). Building Vault is not counted.
	StartTimeout time.Duration
	// TLS serves HTTPS with a certificate of a CA the dev server makes
	// (vault server -dev-tls); its PEM file is Vault.CACert.
	TLS bool
}

// Vault is a running Vault dev server (in-memory storage, unsealed) with the
// transit secrets engine mounted at transit/.
type Vault struct {
	Addr      string // http://127.0.0.1:PORT, https:// with VaultOptions.TLS
	RootToken string
	LogPath   string // stdout and stderr of the server
	CACert    string // with VaultOptions.TLS: the PEM file of the CA

	dir    string
	proc   *process
	tls    bool
	client *http.Client
}

// StartVault starts a Vault dev server on a free port, building the binary
// first if the cache does not hold it (see BuildVault). A Cleanup on t stops
// the server and removes its directory.
func StartVault(t TB, opts VaultOptions) *Vault {
	t.Helper()
	begin := time.Now()
	bin, err := vaultBinary(t)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	dir, err := serverDir("pgcloak-vault-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	v := &Vault{RootToken: opts.RootToken, LogPath: filepath.Join(dir, "vault.log"), dir: dir, tls: opts.TLS, client: http.DefaultClient}
	t.Cleanup(func() { v.cleanup(t) })
	if v.RootToken == "" {
		v.RootToken = "root-" + randomHex(12)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if err := v.start(bin, timeout); err != nil {
		t.Fatalf("harness: start Vault: %v", err)
	}
	if err := v.Call("POST", "sys/mounts/transit", map[string]any{"type": "transit"}, nil); err != nil {
		t.Fatalf("harness: enable transit: %v", err)
	}
	t.Logf("harness: Vault %s on %s ready in %v (log %s)", VaultVersion, v.Addr, time.Since(begin).Round(time.Millisecond), v.LogPath)
	return v
}

// vaultBinary is BuildVault with a note in the test log, since the first
// build takes minutes.
func vaultBinary(t TB) (string, error) {
	if p := os.Getenv("PGCLOAK_VAULT"); p != "" {
		return p, nil
	}
	if p := vaultPath(); fileExists(p) {
		return p, nil
	}
	t.Logf("harness: building Vault %s into %s (the first build takes about 6 minutes; tools/buildvault.sh warms the cache)", VaultVersion, vaultPath())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	return BuildVault(ctx)
}

func (v *Vault) start(bin string, timeout time.Duration) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = v.startOnce(bin, timeout)
		// Retry a port taken between freePort and Vault's bind, and a Vault
		// that wrote nothing at all (seen once on a loaded machine).
		log := tail(v.LogPath, 4096)
		if err == nil || log != "" && !strings.Contains(log, "address already in use") {
			return err
		}
	}
	return err
}

func (v *Vault) startOnce(bin string, timeout time.Duration) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	v.Addr = "http://127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.OpenFile(v.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + v.RootToken,
		"-dev-listen-address=127.0.0.1:" + strconv.Itoa(port)}
	if v.tls {
		certs := filepath.Join(v.dir, "tls")
		if err := os.MkdirAll(certs, 0o755); err != nil {
			return err
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certs)
		v.Addr = "https://127.0.0.1:" + strconv.Itoa(port)
		v.CACert = filepath.Join(certs, "vault-ca.pem")
	}
	cmd := account{}.command(bin, args...)
	cmd.Env = vaultEnv(v.dir)
	cmd.Dir = v.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if v.proc, err = startProcess(cmd); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		if v.tls && v.client == http.DefaultClient {
			if c, err := caClient(v.CACert); err == nil { // once the server wrote it
				v.client = c
			}
		}
		err := v.Call("GET", "sys/health", nil, nil)
		if err == nil {
			return nil
		}
		if v.proc.exited() {
			return fmt.Errorf("vault exited (%v); log %s:\n%s", v.proc.err, v.LogPath, tail(v.LogPath, 4096))
		}
		if time.Now().After(deadline) {
			v.proc.stop(syscall.SIGKILL, 0)
			return fmt.Errorf("vault not healthy after %v: %v; log %s:\n%s", timeout, err, v.LogPath, tail(v.LogPath, 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vaultEnv is the server's environment: ours without VAULT_* variables,
// HOME in the server directory (the dev server writes ~/.vault-token), and
// GODEBUG=x509negativeserial=1, without which a dependency panics at init
// on Go ≥ 1.23.
func vaultEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "GODEBUG=") {
			continue
		}
		env = append(env, kv)
	}
	godebug := "x509negativeserial=1"
	if g := os.Getenv("GODEBUG"); g != "" {
		godebug = g + "," + godebug
	}
	return append(env, "HOME="+home, "GODEBUG="+godebug)
}

// Call sends a request to the Vault HTTP API at /v1/<path> with the root
// token. in, if not nil, is sent as JSON; out, if not nil, receives the JSON
// answer. A status other than 2xx is an error that holds Vault's message.
func (v *Vault) Call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, v.Addr+"/v1/"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", v.RootToken)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("vault %s /v1/%s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// caClient is an HTTP client that trusts the CA in the PEM file at path.
func caClient(path string) (*http.Client, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 5s) and waits for
// it. It is safe to call more than once.
func (v *Vault) Stop() {
	if v.proc != nil {
		v.proc.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// Kill kills the server with SIGKILL, as when Vault is lost mid-run, and
// waits for it. Its in-memory state is gone.
func (v *Vault) Kill() {
	if v.proc != nil {
		v.proc.stop(syscall.SIGKILL, 0)
	}
}

func (v *Vault) cleanup(t TB) {
	v.Kill()
	if failed(t) {
		t.Logf("harness: end of Vault log %s:\n%s", v.LogPath, tail(v.LogPath, 8192))
	}
	if err := os.RemoveAll(v.dir); err != nil {
		t.Logf("harness: remove %s: %v", v.dir, err)
	}
}

// CacheDir is where built tools are cached: $PGCLOAK_CACHE, else
// $XDG_CACHE_HOME/pgcloak, else ~/.cache/pgcloak.
func CacheDir() string {
	if d := os.Getenv("PGCLOAK_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pgcloak")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "pgcloak-cache")
	}
	return filepath.Join(home, ".cache", "pgcloak")
}

// vaultPath is where BuildVault puts the binary.
func vaultPath() string {
	return filepath.Join(CacheDir(), "vault-"+VaultVersion, "vault")
}

// BuildVault builds Vault VaultVersion from the tools/vault module into the
// cache directory and returns the binary's path; an existing binary is
// reused. A lock file makes concurrent callers (test binaries running in
// parallel, tools/buildvault.sh) wait for one build. The first build takes
// about 6 minutes.
func BuildVault(ctx context.Context) (string, error) {
	bin := vaultPath()
	if fileExists(bin) {
		return bin, nil
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if fileExists(bin) { // built while we waited
		return bin, nil
	}
	mod, err := vaultModuleDir()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build Vault: go not in PATH: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin+".tmp", "github.com/hashicorp/vault")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build Vault in %s: %v\n%s", mod, err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// vaultModuleDir finds tools/vault: next to this source file, or above the
// working directory.
func vaultModuleDir() (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok {
		d := filepath.Join(filepath.Dir(file), "..", "..", "tools", "vault")
		if fileExists(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		tried = append(tried, d)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			m := filepath.Join(d, "tools", "vault")
			if fileExists(filepath.Join(m, "go.mod")) {
				return m, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		tried = append(tried, "tools/vault above "+wd)
	}
	return "", errors.New("build Vault: module tools/vault not found (tried " + strings.Join(tried, ", ") + "); set PGCLOAK_VAULT to a vault " + VaultVersion + " binary")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
