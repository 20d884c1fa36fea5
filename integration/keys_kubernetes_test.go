package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgcloak/pgcloak/crypto/vault"
)

// TestKeysKubernetesShortTTL logs in to a real Vault with its Kubernetes
// auth method, as a pod does, with tokens that live 2s and can be renewed up
// to 4s, and keeps wrapping and unwrapping for 8s: the KMS must renew and
// log in again without a failed request, also after the service account
// token was rotated (the file is read anew at each login). The Kubernetes API server cannot run here, so its one
// endpoint Vault calls, TokenReview, is scripted: it accepts exactly the
// service account token the test wrote, as the API server would.
func TestKeysKubernetesShortTTL(t *testing.T) {
	e := newKeysEnv(t, keysConfigOpts{})
	v := e.vault
	const ns, sa, uid = "shop", "pgcloak", "7e1f3c2a-0000-4000-8000-000000000001"
	jwt := serviceAccountJWT(t, ns, sa, uid)
	// rotated is the token the test writes after a second, as Kubernetes rotates
	// projected tokens; the old one stays valid too, as it does until its
	// expiry.
	var rotated atomic.Pointer[string]
	rotated.Store(new(string))

	var reviews, newReviews atomic.Int64
	k8s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.NotFound(w, r)
			return
		}
		var review struct {
			Spec struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reviews.Add(1)
		status := map[string]any{"authenticated": false}
		if tok := review.Spec.Token; tok == jwt || tok == *rotated.Load() {
			if tok != jwt {
				newReviews.Add(1)
			}
			status = map[string]any{"authenticated": true, "user": map[string]any{
				"username": "system:serviceaccount:" + ns + ":" + sa, "uid": uid,
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
	}))
	t.Cleanup(k8s.Close)

	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"sys/auth/kubernetes", map[string]any{"type": "kubernetes"}},
		{"auth/kubernetes/config", map[string]any{"kubernetes_host": k8s.URL, "disable_local_ca_jwt": true,
			"kubernetes_ca_cert": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k8s.Certificate().Raw}))}},
		{"transit/keys/pgcloak-pii", map[string]any{}},
		{"transit/keys/pgcloak-cards", map[string]any{}},
		{"sys/policies/acl/pgcloak", map[string]any{"policy": `
path "transit/encrypt/pgcloak-*" { capabilities = ["update"] }
path "transit/decrypt/pgcloak-*" { capabilities = ["update"] }
path "transit/rewrap/pgcloak-*"  { capabilities = ["update"] }
`}},
		{"auth/kubernetes/role/pgcloak", map[string]any{
			"bound_service_account_names": sa, "bound_service_account_namespaces": ns,
			"token_policies": "pgcloak", "token_ttl": "2s", "token_max_ttl": "4s"}},
	} {
		if err := v.Call("POST", c.path, c.body, nil); err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
	}
	// The CLI reads sa-token, the KMS under test its own copy, which the
	// test rotates.
	tokenFile := filepath.Join(e.dir, "kms-token")
	for _, f := range []string{filepath.Join(e.dir, "sa-token"), tokenFile} {
		if err := os.WriteFile(f, []byte(jwt+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A service account the role is not bound to is refused by Vault.
	other := filepath.Join(e.dir, "other-token")
	if err := os.WriteFile(other, []byte(serviceAccountJWT(t, ns, "intruder", uid)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := vault.New(ctx, vault.Config{Address: v.Addr, Logger: zaptest.NewLogger(t),
		Auth: vault.Auth{Method: vault.MethodKubernetes, Role: "pgcloak", JWTFile: other}}); err == nil ||
		!strings.Contains(err.Error(), "kubernetes login at auth/kubernetes") {
		t.Fatalf("login as an unbound service account: %v; want a kubernetes login error", err)
	}

	// The CLI and an instance as serve loads it, through the config file.
	e.writeConfig(keysConfigOpts{auth: "{method: kubernetes, role: pgcloak, jwt_file: sa-token}"})
	e.mustKeys("init")
	inst := e.instance(nil)

	kms, err := vault.New(ctx, vault.Config{Address: v.Addr, Logger: zaptest.NewLogger(t),
		Auth: vault.Auth{Method: vault.MethodKubernetes, Role: "pgcloak", JWTFile: tokenFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kms.Close(context.Background()) })
	st := e.keepUsing(kms, inst, 8*time.Second, func(i int) {
		if i == 5 { // about 1s in, before the token's max TTL: the cluster rotates the token
			next := serviceAccountJWT(t, ns, sa, uid)
			rotated.Store(&next)
			if err := os.WriteFile(tokenFile, []byte(next+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Logf("Kubernetes KMS over 8s: %+v; %d token reviews, %d of the rotated token", st, reviews.Load(), newReviews.Load())
	if reviews.Load() < int64(st.Logins) {
		t.Errorf("%d token reviews for %d logins: Vault did not check the service account token", reviews.Load(), st.Logins)
	}
	if newReviews.Load() == 0 {
		t.Error("no login with the rotated service account token: the token file is not read anew")
	}
}

// serviceAccountJWT makes a Kubernetes service account token (the legacy
// secret-based form, whose claims Vault reads to match the role) signed by
// a throwaway key: Vault has no key to check it against and relies on the
// TokenReview, as it does with a real cluster unless pem_keys is set.
func serviceAccountJWT(t *testing.T, ns, sa, uid string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss":                                    "kubernetes/serviceaccount",
		"sub":                                    "system:serviceaccount:" + ns + ":" + sa,
		"kubernetes.io/serviceaccount/namespace": ns,
		"kubernetes.io/serviceaccount/service-account.name": sa,
		"kubernetes.io/serviceaccount/service-account.uid":  uid,
		"kubernetes.io/serviceaccount/secret.name":          sa + "-token",
	})
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
