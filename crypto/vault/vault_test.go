package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeVault is a scripted Vault: Kubernetes login and Transit encrypt and
// decrypt (reversible "vault:v1:" + base64), with tokens that can be
// revoked to provoke a 403. Real-server behaviour is tested in integration/.
type fakeVault struct {
	mu      sync.Mutex
	tokens  map[string]bool // valid tokens
	issued  int
	logins  []map[string]any
	revoked []string
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path == "/v1/auth/kubernetes/login" {
		if r.Header.Get("X-Vault-Token") != "" {
			reply(400, map[string]any{"errors": []string{"login sent a token"}})
			return
		}
		f.logins = append(f.logins, body)
		f.issued++
		tok := "s.token" + string(rune('0'+f.issued))
		f.tokens[tok] = true
		reply(200, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 0, "renewable": false}})
		return
	}
	tok := r.Header.Get("X-Vault-Token")
	if !f.tokens[tok] {
		reply(403, map[string]any{"errors": []string{"permission denied"}})
		return
	}
	switch {
	case r.URL.Path == "/v1/auth/token/revoke-self":
		f.revoked = append(f.revoked, tok)
		delete(f.tokens, tok)
		w.WriteHeader(204)
	case r.URL.Path == "/v1/transit/encrypt/k":
		reply(200, map[string]any{"data": map[string]any{"ciphertext": "vault:v1:" + body["plaintext"].(string)}})
	case r.URL.Path == "/v1/transit/decrypt/k":
		ct, _ := body["ciphertext"].(string)
		pt, ok := strings.CutPrefix(ct, "vault:v1:")
		if !ok {
			reply(400, map[string]any{"errors": []string{"invalid ciphertext"}})
			return
		}
		reply(200, map[string]any{"data": map[string]any{"plaintext": pt}})
	default:
		reply(404, map[string]any{"errors": []string{}})
	}
}

func startFake(t *testing.T) (*fakeVault, *httptest.Server) {
	f := &fakeVault{tokens: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestKubernetesLoginAndRelogin(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "s.from-env")
	f, srv := startFake(t)
	jwt := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(jwt, []byte("header.payload.sig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := New(ctx, Config{Address: srv.URL, Auth: Auth{Method: MethodKubernetes, Role: "pgcloak", JWTFile: jwt}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.logins; len(got) != 1 || got[0]["role"] != "pgcloak" || got[0]["jwt"] != "header.payload.sig" {
		t.Fatalf("login bodies %v", got)
	}

	dek := bytes.Repeat([]byte{7}, 32)
	w, err := k.Wrap(ctx, "k", dek)
	if err != nil || string(w) != "vault:v1:"+base64.StdEncoding.EncodeToString(dek) {
		t.Fatalf("Wrap = %q, %v", w, err)
	}
	if KEKVersion(w) != "v1" {
		t.Errorf("KEKVersion(%q) = %q", w, KEKVersion(w))
	}

	// The token dies behind our back: the next request is refused once,
	// the KMS logs in again and the request succeeds.
	f.mu.Lock()
	clear(f.tokens)
	f.mu.Unlock()
	back, err := k.Unwrap(ctx, "k", w)
	if err != nil || !bytes.Equal(back, dek) {
		t.Fatalf("Unwrap after the token died = %x, %v", back, err)
	}
	if st := k.Stats(); st.Logins != 2 || st.Requests != 3 {
		t.Errorf("stats %+v, want 2 logins and 3 requests (wrap, refused unwrap, unwrap)", st)
	}

	// Errors name the address and the key, never a token.
	_, err = k.Unwrap(ctx, "k", []byte("garbage"))
	want := `vault at ` + srv.URL + `: transit key "k": decrypt: `
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "HTTP 400: invalid ciphertext") {
		t.Errorf("error %q, want it to start %q and hold Vault's message", err, want)
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.Status != 400 || ve.Key != "k" || ve.Op != "decrypt" {
		t.Errorf("error %#v is not a matching *Error", err)
	}
	if strings.Contains(err.Error(), "s.token") {
		t.Errorf("error %q holds a token", err)
	}

	// Close revokes the token the KMS obtained.
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.revoked) != 1 || f.revoked[0] != "s.token2" {
		t.Errorf("revoked %v, want [s.token2]", f.revoked)
	}
}

func TestNewErrors(t *testing.T) {
	_, srv := startFake(t)
	ctx := context.Background()
	t.Setenv("VAULT_TOKEN", "")
	for _, tc := range []struct {
		auth Auth
		addr string
		want string
	}{
		{Auth{}, srv.URL, "vault at " + srv.URL + ": auth method token: set VAULT_TOKEN or auth.token_file"},
		{Auth{Method: MethodAppRole, RoleID: "r"}, srv.URL, "auth method approle needs role_id and secret_id_file"},
		{Auth{Method: MethodKubernetes}, srv.URL, "auth method kubernetes needs role"},
		{Auth{Method: "ldap"}, srv.URL, `unknown auth method "ldap"`},
		{Auth{Method: MethodKubernetes, Role: "r", JWTFile: "/nonexistent/jwt"}, srv.URL,
			"vault at " + srv.URL + ": login: jwt_file: open /nonexistent/jwt: no such file or directory"},
		{Auth{TokenFile: writeTemp(t, "s.nope")}, srv.URL,
			"vault at " + srv.URL + ": login: look up the token (auth/token/lookup-self; the token needs the default policy): HTTP 403: permission denied"},
		{Auth{TokenFile: writeTemp(t, "s.nope")}, "http://127.0.0.1:1", "vault at http://127.0.0.1:1: login: look up the token"},
	} {
		t.Setenv("VAULT_MAX_RETRIES", "0")
		_, err := New(ctx, Config{Address: tc.addr, Auth: tc.auth})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.auth, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s.nope") {
			t.Errorf("error %q holds the token", err)
		}
	}
}

func TestKEKVersion(t *testing.T) {
	for in, want := range map[string]string{"vault:v1:abc": "v1", "vault:v12:x": "v12", "vault:x": "", "local": "", "vault:1:x": ""} {
		if got := KEKVersion([]byte(in)); got != want {
			t.Errorf("KEKVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeTemp(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
