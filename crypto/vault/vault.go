// Package vault is pgcloak's production KMS: HashiCorp Vault's Transit
// secrets engine holds the key-encryption keys (KEKs), and this package wraps
// and unwraps data keys with them through github.com/hashicorp/vault/api.
//
//	Wrap    PUT <mount>/encrypt/<key>  {plaintext: base64(DEK)}  → "vault:vN:…"
//	Unwrap  PUT <mount>/decrypt/<key>  {ciphertext: "vault:vN:…"} → base64(DEK)
//	Rewrap  PUT <mount>/rewrap/<key>   {ciphertext: "vault:vN:…"} → "vault:vM:…" (M newest)
//
// A wrapped key is Transit's ciphertext string as bytes ("vault:v1:…"); its
// prefix names the KEK version that wrapped it, which is what `pgcloak keys
// rewrap` moves forward after an operator rotates the Transit key.
//
// # Authentication
//
// [New] logs in before it returns, so a Vault that cannot be reached or a
// credential that does not work is reported at start, with the address. Then
// a goroutine keeps the token alive: a renewable token is renewed by
// api.LifetimeWatcher before it expires; when it can no longer be renewed
// (its max TTL is near, or renewal fails) the KMS logs in again, retrying
// with exponential backoff (1s doubling to 1m) while Vault is away. A request
// that Vault answers with 403 triggers one immediate login and is retried
// once, which covers a token revoked or expired behind our back.
//
//   - token: VAULT_TOKEN, or token_file (re-read at each login, so a Vault
//     Agent sink that rewrites it is followed).
//   - approle: role_id and the secret id read from secret_id_file, at
//     auth/<mount>/login (mount default "approle").
//   - kubernetes: role and the service account JWT read from jwt_file
//     (default /var/run/secrets/kubernetes.io/serviceaccount/token), at
//     auth/<mount>/login (mount default "kubernetes").
//
// VAULT_ADDR, VAULT_CACERT and VAULT_NAMESPACE are the defaults of the
// matching Config fields (as are the other VAULT_* variables that
// api.DefaultConfig reads, such as VAULT_CLIENT_TIMEOUT).
//
// Tokens, secret ids, JWTs and key bytes are never logged and never appear in
// errors. The plaintext of a data key passes through this process as a base64
// string inside the Vault client's JSON handling, which Go cannot wipe; the
// decoded bytes returned by Unwrap are the caller's to wipe.
package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/vault/api"
	"go.uber.org/zap"
)

// Auth methods.
const (
	MethodToken      = "token"
	MethodAppRole    = "approle"
	MethodKubernetes = "kubernetes"
)

// DefaultJWTFile is where Kubernetes mounts a pod's service account token.
const DefaultJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Config says how to reach Vault and log in. Empty fields take the
// environment's value (VAULT_ADDR, VAULT_CACERT, VAULT_NAMESPACE) or the
// default noted.
type Config struct {
	// Address is Vault's URL, e.g. https://vault.internal:8200.
	Address string
	// TransitMount is the path of the Transit engine (default "transit").
	TransitMount string
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string
	// CACert is a PEM file of CA certificates that verify Vault's TLS
	// certificate.
	CACert string
	// Auth chooses the login method.
	Auth Auth
	// Logger receives renewals (debug) and login trouble (warn). Nil logs
	// nothing.
	Logger *zap.Logger
}

// Auth is a login method and what it needs. Files are read at each login.
type Auth struct {
	Method       string // MethodToken (default), MethodAppRole or MethodKubernetes
	TokenFile    string // token: file holding the token (default: VAULT_TOKEN)
	RoleID       string // approle
	SecretIDFile string // approle: file holding the secret id
	Role         string // kubernetes: the Vault role to log in as
	JWTFile      string // kubernetes: service account token (default DefaultJWTFile)
	Mount        string // approle, kubernetes: auth mount (default: the method name)
}

// KMS is a crypto.KMS over Vault Transit. It is safe for concurrent use.
// Close stops token renewal and revokes a token it obtained by logging in.
type KMS struct {
	client *api.Client
	addr   string
	mount  string
	log    *zap.Logger
	auth   authenticator

	loginMu sync.Mutex    // serialises logins
	gen     atomic.Uint64 // incremented by every successful login
	secrets chan *api.Secret
	stop    context.CancelFunc
	done    chan struct{}
	closed  sync.Once

	logins   atomic.Uint64
	renewals atomic.Uint64
	requests atomic.Uint64
}

// Stats counts what the KMS has done, for metrics and tests.
type Stats struct {
	Logins   uint64 // successful logins, the first included
	Renewals uint64 // successful token renewals
	Requests uint64 // Transit requests (encrypt, decrypt, rewrap, keys)
}

// New connects to Vault, logs in, and starts keeping the token alive. An
// error names the Vault address; nothing is left running after one.
func New(ctx context.Context, cfg Config) (*KMS, error) {
	vc := api.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: %w", vc.Error)
	}
	if cfg.Address != "" {
		vc.Address = cfg.Address
	}
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault at %s: ca_cert %s: %w", vc.Address, cfg.CACert, err)
		}
	}
	client, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %w", vc.Address, err)
	}
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	mount := strings.Trim(cfg.TransitMount, "/")
	if mount == "" {
		mount = "transit"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	k := &KMS{
		client:  client,
		addr:    client.Address(),
		mount:   mount,
		log:     log.With(zap.String("vault", client.Address())),
		secrets: make(chan *api.Secret, 1),
		done:    make(chan struct{}),
	}
	if k.auth, err = newAuthenticator(cfg.Auth, client); err != nil {
		return nil, fmt.Errorf("vault at %s: %w", k.addr, err)
	}
	secret, err := k.login(ctx)
	if err != nil {
		return nil, err
	}
	bg, stop := context.WithCancel(context.Background())
	k.stop = stop
	go k.keepAlive(bg, secret)
	return k, nil
}

// Address is the Vault server's URL.
func (k *KMS) Address() string { return k.addr }

// String describes the KMS without secrets.
func (k *KMS) String() string { return "Vault Transit at " + k.addr + " (mount " + k.mount + ")" }

// Stats returns the counters.
func (k *KMS) Stats() Stats {
	return Stats{Logins: k.logins.Load(), Renewals: k.renewals.Load(), Requests: k.requests.Load()}
}

// Close stops token renewal and, for a token that New obtained by logging
// in, revokes it. It does not wait for Vault longer than ctx allows.
func (k *KMS) Close(ctx context.Context) error {
	var err error
	k.closed.Do(func() {
		k.stop()
		<-k.done
		if k.auth.revocable() {
			if e := k.client.Auth().Token().RevokeSelfWithContext(ctx, ""); e != nil {
				err = k.errorf("revoke token", "", e)
			}
		}
		k.client.ClearToken()
	})
	return err
}

// Wrap encrypts dek under the newest version of the Transit key keyName.
func (k *KMS) Wrap(ctx context.Context, keyName string, dek []byte) ([]byte, error) {
	pt := base64.StdEncoding.EncodeToString(dek)
	ct, err := k.transit(ctx, "encrypt", keyName, map[string]any{"plaintext": pt}, "ciphertext")
	if err != nil {
		return nil, err
	}
	return []byte(ct), nil
}

// Unwrap decrypts a key that Wrap made. The caller must wipe the result.
func (k *KMS) Unwrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	pt, err := k.transit(ctx, "decrypt", keyName, map[string]any{"ciphertext": string(wrapped)}, "plaintext")
	if err != nil {
		return nil, err
	}
	dek, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, k.errorf("decrypt", keyName, errors.New("answer is not base64"))
	}
	return dek, nil
}

// Rewrap re-encrypts a wrapped key under the newest version of keyName inside
// Vault: the data key never leaves it.
func (k *KMS) Rewrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	ct, err := k.transit(ctx, "rewrap", keyName, map[string]any{"ciphertext": string(wrapped)}, "ciphertext")
	if err != nil {
		return nil, err
	}
	return []byte(ct), nil
}

// EnsureKey creates the Transit key keyName (type aes256-gcm96) unless it
// exists, and reports whether it created it. A key that exists must support
// encryption. A token that may not read keys (403) is not an error: the key
// is then assumed to exist, and the first Wrap says otherwise.
func (k *KMS) EnsureKey(ctx context.Context, keyName string) (created bool, err error) {
	path := k.mount + "/keys/" + keyName
	s, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().ReadWithContext(ctx, path) })
	if status(err) == 403 {
		k.log.Warn("cannot read the Transit key (permission denied); assuming it exists", zap.String("transit_key", keyName))
		return false, nil
	}
	if err != nil {
		return false, k.errorf("read key", keyName, err)
	}
	if s != nil {
		if ok, _ := s.Data["supports_encryption"].(bool); !ok {
			return false, k.errorf("read key", keyName, fmt.Errorf("key type %v does not support encryption; use aes256-gcm96", s.Data["type"]))
		}
		return false, nil
	}
	_, err = k.do(ctx, func() (*api.Secret, error) {
		return k.client.Logical().WriteWithContext(ctx, path, map[string]any{"type": "aes256-gcm96"})
	})
	if err != nil {
		return false, k.errorf("create key", keyName, err)
	}
	return true, nil
}

// KEKVersion returns the Transit key version that wrapped a key ("v2" for
// "vault:v2:…"), or "" if wrapped is not Transit ciphertext.
func KEKVersion(wrapped []byte) string {
	s, ok := strings.CutPrefix(string(wrapped), "vault:")
	if !ok {
		return ""
	}
	v, _, ok := strings.Cut(s, ":")
	if !ok || !strings.HasPrefix(v, "v") {
		return ""
	}
	return v
}

// transit calls <mount>/<op>/<key> and returns the string field out of the
// answer's data.
func (k *KMS) transit(ctx context.Context, op, keyName string, body map[string]any, out string) (string, error) {
	if keyName == "" || strings.ContainsAny(keyName, "/?#") {
		return "", k.errorf(op, keyName, errors.New("invalid Transit key name"))
	}
	path := k.mount + "/" + op + "/" + keyName
	s, err := k.do(ctx, func() (*api.Secret, error) { return k.client.Logical().WriteWithContext(ctx, path, body) })
	if err != nil {
		return "", k.errorf(op, keyName, err)
	}
	if s == nil || s.Data == nil {
		return "", k.errorf(op, keyName, errors.New("empty answer"))
	}
	v, ok := s.Data[out].(string)
	if !ok || v == "" {
		return "", k.errorf(op, keyName, fmt.Errorf("answer has no %s", out))
	}
	return v, nil
}

// do runs a request; when Vault answers 403 and the method can log in, it
// logs in once (unless another goroutine did since) and retries.
func (k *KMS) do(ctx context.Context, req func() (*api.Secret, error)) (*api.Secret, error) {
	gen := k.gen.Load()
	k.requests.Add(1)
	s, err := req()
	if status(err) != 403 || !k.auth.canRelogin() {
		return s, err
	}
	if err := k.relogin(ctx, gen); err != nil {
		return nil, err
	}
	k.requests.Add(1)
	return req()
}

// Error is a failed Vault operation. Its message names the Vault address and
// the Transit key; it never holds a token or key bytes.
type Error struct {
	Addr   string // Vault's URL
	Op     string // encrypt, decrypt, rewrap, read key, login, …
	Key    string // Transit key, if the operation had one
	Status int    // HTTP status, 0 if Vault did not answer
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vault at " + e.Addr + ": ")
	if e.Key != "" {
		fmt.Fprintf(&b, "transit key %q: ", e.Key)
	}
	b.WriteString(e.Op + ": ")
	msg := e.Err.Error()
	var re *api.ResponseError
	if errors.As(e.Err, &re) {
		// The client's own text spans several lines and repeats the URL.
		vm := strings.Join(re.Errors, "; ")
		if vm == "" {
			vm = "no message"
		}
		msg = strings.Replace(msg, re.Error(), fmt.Sprintf("HTTP %d: %s", re.StatusCode, vm), 1)
	}
	b.WriteString(msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func (k *KMS) errorf(op, key string, err error) error {
	var ve *Error
	if errors.As(err, &ve) {
		return err // already says where
	}
	return &Error{Addr: k.addr, Op: op, Key: key, Status: status(err), Err: err}
}

// status is the HTTP status of a Vault answer in err, or 0.
func status(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
