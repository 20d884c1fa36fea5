package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"go.uber.org/zap"
)

// authenticator obtains a token. login returns a secret whose Auth holds the
// token, its TTL and whether it is renewable; it does not install the token.
type authenticator interface {
	login(ctx context.Context) (*api.Secret, error)
	// canRelogin is false when logging in again cannot give a new token
	// (a token from VAULT_TOKEN).
	canRelogin() bool
	// revocable is true for tokens that pgcloak obtained and so should
	// revoke when done with them.
	revocable() bool
}

func newAuthenticator(a Auth, client *api.Client) (authenticator, error) {
	// Logins go through a clone without a token, so a stale token is never
	// sent with a login request.
	lc, err := client.CloneWithHeaders()
	if err != nil {
		return nil, err
	}
	lc.ClearToken()
	switch a.Method {
	case "", MethodToken:
		t := &tokenAuth{file: a.TokenFile, client: client}
		if t.file == "" {
			t.env = os.Getenv(api.EnvVaultToken)
			if t.env == "" {
				return nil, errors.New("auth method token: set VAULT_TOKEN or auth.token_file")
			}
		}
		return t, nil
	case MethodAppRole:
		if a.RoleID == "" || a.SecretIDFile == "" {
			return nil, errors.New("auth method approle needs role_id and secret_id_file")
		}
		return &loginAuth{method: MethodAppRole, mount: mountOr(a.Mount, MethodAppRole), client: lc,
			body: func() (map[string]any, error) {
				id, err := readSecret(a.SecretIDFile, "secret_id_file")
				return map[string]any{"role_id": a.RoleID, "secret_id": id}, err
			}}, nil
	case MethodKubernetes:
		if a.Role == "" {
			return nil, errors.New("auth method kubernetes needs role")
		}
		file := a.JWTFile
		if file == "" {
			file = DefaultJWTFile
		}
		return &loginAuth{method: MethodKubernetes, mount: mountOr(a.Mount, MethodKubernetes), client: lc,
			body: func() (map[string]any, error) {
				jwt, err := readSecret(file, "jwt_file")
				return map[string]any{"role": a.Role, "jwt": jwt}, err
			}}, nil
	}
	return nil, fmt.Errorf("unknown auth method %q; use token, approle or kubernetes", a.Method)
}

func mountOr(mount, def string) string {
	if m := strings.Trim(mount, "/"); m != "" {
		return m
	}
	return def
}

// readSecret reads a credential file; errors name the file, never its content.
func readSecret(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	clear(b)
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

// tokenAuth uses a given token. "Logging in" reads it again (from its file,
// which an agent may have rewritten) and looks it up to learn its TTL.
type tokenAuth struct {
	file   string
	env    string
	client *api.Client
}

func (t *tokenAuth) canRelogin() bool { return t.file != "" }
func (t *tokenAuth) revocable() bool  { return false }

func (t *tokenAuth) login(ctx context.Context) (*api.Secret, error) {
	token := t.env
	if t.file != "" {
		var err error
		if token, err = readSecret(t.file, "token_file"); err != nil {
			return nil, err
		}
	}
	// lookup-self needs the token installed; KMS.login installs it again.
	c, err := t.client.CloneWithHeaders()
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up the token (auth/token/lookup-self; the token needs the default policy): %w", err)
	}
	ttl, _ := s.TokenTTL()
	renewable, _ := s.TokenIsRenewable()
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   token,
		Renewable:     renewable,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// loginAuth logs in at auth/<mount>/login (AppRole, Kubernetes).
type loginAuth struct {
	method string
	mount  string
	client *api.Client
	body   func() (map[string]any, error)
}

func (l *loginAuth) canRelogin() bool { return true }
func (l *loginAuth) revocable() bool  { return true }

func (l *loginAuth) login(ctx context.Context) (*api.Secret, error) {
	body, err := l.body()
	if err != nil {
		return nil, err
	}
	s, err := l.client.Logical().WriteWithContext(ctx, "auth/"+l.mount+"/login", body)
	clear(body)
	if err != nil {
		return nil, fmt.Errorf("%s login at auth/%s: %w", l.method, l.mount, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s login at auth/%s: answer holds no token", l.method, l.mount)
	}
	return s, nil
}

// login obtains a token and installs it.
func (k *KMS) login(ctx context.Context) (*api.Secret, error) {
	k.loginMu.Lock()
	defer k.loginMu.Unlock()
	return k.loginLocked(ctx)
}

func (k *KMS) loginLocked(ctx context.Context) (*api.Secret, error) {
	s, err := k.auth.login(ctx)
	if err != nil {
		return nil, k.errorf("login", "", err)
	}
	k.client.SetToken(s.Auth.ClientToken)
	k.gen.Add(1)
	k.logins.Add(1)
	k.log.Debug("logged in to Vault", zap.Duration("ttl", time.Duration(s.Auth.LeaseDuration)*time.Second),
		zap.Bool("renewable", s.Auth.Renewable))
	return s, nil
}

// relogin logs in again after a request was refused with the token of
// generation gen, unless another goroutine has logged in since. The new
// token is handed to keepAlive, which renews it from then on.
func (k *KMS) relogin(ctx context.Context, gen uint64) error {
	k.loginMu.Lock()
	defer k.loginMu.Unlock()
	if k.gen.Load() != gen {
		return nil
	}
	k.log.Warn("Vault refused the token (403); logging in again")
	s, err := k.loginLocked(ctx)
	if err != nil {
		return err
	}
	select {
	case <-k.secrets: // replace a token keepAlive has not taken yet
	default:
	}
	k.secrets <- s
	return nil
}

// keepAlive renews the token while it can and logs in again when it cannot,
// until Close.
func (k *KMS) keepAlive(ctx context.Context, s *api.Secret) {
	defer close(k.done)
	for {
		next := k.watch(ctx, s)
		if ctx.Err() != nil {
			return
		}
		if next == nil {
			next = k.loginRetry(ctx)
			if next == nil {
				return
			}
		}
		s = next
	}
}

// watch keeps s alive until it needs replacing. It returns a token obtained
// meanwhile by relogin, or nil when keepAlive must log in.
func (k *KMS) watch(ctx context.Context, s *api.Secret) *api.Secret {
	ttl := time.Duration(s.Auth.LeaseDuration) * time.Second
	switch {
	case ttl <= 0: // never expires (a root token)
		select {
		case <-ctx.Done():
			return nil
		case n := <-k.secrets:
			return n
		}
	case !s.Auth.Renewable:
		t := time.NewTimer(ttl * 2 / 3)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil
		case n := <-k.secrets:
			return n
		case <-t.C:
			k.log.Debug("token is not renewable and two thirds of its TTL have passed; logging in again")
			return nil
		}
	}
	w, err := k.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: s})
	if err != nil {
		k.log.Warn("cannot watch the token; logging in again", zap.Error(err))
		return nil
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-k.secrets:
			return n
		case r := <-w.RenewCh():
			k.renewals.Add(1)
			if r.Secret != nil && r.Secret.Auth != nil {
				k.log.Debug("renewed the Vault token", zap.Int("ttl_seconds", r.Secret.Auth.LeaseDuration))
			}
		case err := <-w.DoneCh():
			if err != nil {
				k.log.Warn("cannot renew the Vault token; logging in again", zap.Error(k.errorf("renew token", "", err)))
			} else {
				k.log.Debug("the Vault token is near its max TTL; logging in again")
			}
			return nil
		}
	}
}

// Backoff bounds for logging in again while Vault is away.
const (
	loginRetryMin = time.Second
	loginRetryMax = time.Minute
)

// loginRetry logs in, retrying with exponential backoff and jitter until it
// succeeds or ctx ends (nil).
func (k *KMS) loginRetry(ctx context.Context) *api.Secret {
	wait := loginRetryMin
	for {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := k.login(lctx)
		cancel()
		if err == nil {
			return s
		}
		if ctx.Err() != nil {
			return nil
		}
		d := wait/2 + rand.N(wait/2+1)
		k.log.Warn("cannot log in to Vault; retrying", zap.Error(err), zap.Duration("retry_in", d))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, loginRetryMax)
	}
}
