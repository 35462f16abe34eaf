package signin

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
)

// oidcIssuer is a stand-in identity provider: discovery, and a JWKS of a fresh RSA key.
type oidcIssuer struct {
	*httptest.Server
	jwksCalls atomic.Int32

	mu  sync.Mutex
	key *rsa.PrivateKey
	kid string
}

func (iss *oidcIssuer) signingKey() (*rsa.PrivateKey, string) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.key, iss.kid
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &oidcIssuer{key: key, kid: "key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss.URL, "jwks_uri": iss.URL + "/keys",
			"authorization_endpoint": iss.URL + "/authorize", "token_endpoint": iss.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "HS256", "none"},
		})
	})
	mux.HandleFunc("GET /error-page/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>\n<body>\n<h1>Bad gateway</h1>\n</body>\n</html>", http.StatusBadGateway)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		iss.jwksCalls.Add(1)
		key, kid := iss.signingKey()
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"},
		}})
	})
	iss.Server = httptest.NewServer(mux)
	t.Cleanup(iss.Close)
	return iss
}

// claims are a valid ID token's claims for alice, for tests to spoil.
func (iss *oidcIssuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss.URL, "aud": "agentauthz", "sub": "00u1alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "alice@example.com", "email_verified": true, "groups": []string{"it-admins", "staff"},
	}
}

func signJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (iss *oidcIssuer) token(t *testing.T, claims map[string]any) string {
	key, kid := iss.signingKey()
	return signJWT(t, jose.RS256, key, kid, claims)
}

func newTestOIDC(t *testing.T, iss *oidcIssuer, c OIDCConfig) *OIDC {
	t.Helper()
	c.Issuer, c.ClientID = iss.URL, "agentauthz"
	o, err := NewOIDC(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/approvals", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestOIDCAcceptsAValidIDToken(t *testing.T) {
	iss := newOIDCIssuer(t)
	o := newTestOIDC(t, iss, OIDCConfig{})
	p, err := o.Authenticate(bearerRequest(iss.token(t, iss.claims())))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "alice@example.com" || strings.Join(p.Groups, ",") != "it-admins,staff" {
		t.Errorf("approver %+v", p)
	}
	if !p.May([]string{"group:it-admins"}) || !p.May([]string{"user:alice@example.com"}) {
		t.Error("May")
	}
}

func TestOIDCClaimsAreConfigurable(t *testing.T) {
	iss := newOIDCIssuer(t)
	o := newTestOIDC(t, iss, OIDCConfig{NameClaim: "preferred_username", GroupsClaim: "roles"})
	c := iss.claims()
	c["preferred_username"], c["roles"] = "alice", "approvers" // a single string is one group
	p, err := o.Authenticate(bearerRequest(iss.token(t, c)))
	if err != nil || p.Name != "alice" || len(p.Groups) != 1 || p.Groups[0] != "approvers" {
		t.Errorf("approver %+v, %v", p, err)
	}
}

func TestOIDCRefusals(t *testing.T) {
	iss := newOIDCIssuer(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spoil := func(f func(c map[string]any)) map[string]any {
		c := iss.claims()
		f(c)
		return c
	}
	b64 := base64.RawURLEncoding.EncodeToString
	key, _ := iss.signingKey()
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	for _, tc := range []struct{ name, token, why string }{
		{"expired", iss.token(t, spoil(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), "expired"},
		{"wrong audience", iss.token(t, spoil(func(c map[string]any) { c["aud"] = "another-app" })), "audience"},
		{"wrong issuer", iss.token(t, spoil(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), "different provider"},
		{"unknown key", signJWT(t, jose.RS256, otherKey, "key-2", iss.claims()), "signature"},
		{"known kid, other key", signJWT(t, jose.RS256, otherKey, "key-1", iss.claims()), "signature"},
		{"HS256 keyed with the public key", signJWT(t, jose.HS256, pub, "key-1", iss.claims()), `"HS256"`},
		{"HS256", signJWT(t, jose.HS256, []byte("a-shared-secret-of-32-bytes!!!!!"), "", iss.claims()), `"HS256"`},
		{"alg none", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(mustJSON(iss.claims())) + ".", `"none"`},
		{"SPIFFE name", iss.token(t, spoil(func(c map[string]any) { c["email"] = "spiffe://example.org/agent/helpdesk" })), "workload identity"},
		{"SPIFFE name, upper case", iss.token(t, spoil(func(c map[string]any) { c["email"] = "SPIFFE://example.org/agent" })), "workload identity"},
		{"no name", iss.token(t, spoil(func(c map[string]any) { delete(c, "email") })), `no "email" claim`},
		{"email not verified", iss.token(t, spoil(func(c map[string]any) { c["email_verified"] = false })), "not verified"},
		{"not a JWT", "a.b.c", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newTestOIDC(t, iss, OIDCConfig{})
			_, err := o.Authenticate(bearerRequest(tc.token))
			if !errors.Is(err, api.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("error %v, want ErrUnauthenticated for %q", err, tc.why)
			}
			// Through the approval API, as an approver would call it: 401.
			a := &api.API{Store: memstore.New(), Auth: Chain{o}}
			mux := http.NewServeMux()
			a.Register(mux)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, bearerRequest(tc.token))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}

// testApproval is a pending approval that alice (group it-admins) may decide.
func testApproval() approval.Approval {
	now := time.Now()
	return approval.Approval{
		ID: approval.NewID(), State: approval.Pending, Agent: "spiffe://example.org/agent/helpdesk", Rule: "reset-password",
		Reason: "Resets a user's password", Method: "POST", Host: "idp.example.com", Path: "/users/42/reset",
		Body: "{\n  \"reason\": \"locked out\"\n}", ContentType: "application/json",
		Approvers: []string{"group:it-admins"},
		CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), UseWithin: 15 * time.Minute,
	}
}

// eventRecorder is an EventLog that keeps what it is given.
type eventRecorder struct {
	mu     sync.Mutex
	events []string
}

func (e *eventRecorder) Write(kind string, attrs ...slog.Attr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := kind
	for _, a := range attrs {
		s += " " + a.String()
	}
	e.events = append(e.events, s)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestOIDCThroughTheAPI(t *testing.T) {
	iss := newOIDCIssuer(t)
	o := newTestOIDC(t, iss, OIDCConfig{})
	tokens := NewTokens(map[string]approval.Approver{"static-token": {Name: "bob", Groups: []string{"it-admins"}}})
	store := memstore.New()
	now := time.Now()
	a := testApproval()
	if _, _, err := store.Hold(context.Background(), a, nil, approval.Limits{}, now); err != nil {
		t.Fatal(err)
	}
	events := &eventRecorder{}
	h := &api.API{Store: store, Auth: Chain{tokens, o}, Events: events}
	mux := http.NewServeMux()
	h.Register(mux)

	// The static token still works beside OIDC.
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, bearerRequest("static-token"))
	if w.Code != http.StatusOK {
		t.Errorf("static token: %d %s", w.Code, w.Body)
	}
	// alice approves with her ID token.
	r := httptest.NewRequest(http.MethodPost, "/v1/approvals/"+a.ID+"/approve", strings.NewReader(`{"comment":"ok"}`))
	r.Header.Set("Authorization", "Bearer "+iss.token(t, iss.claims()))
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("approve: %d %s", w.Code, w.Body)
	}
	got, _ := store.Get(context.Background(), a.ID, now)
	if got.State != approval.Approved || got.DecidedBy != "alice@example.com" {
		t.Errorf("approval %s by %s", got.State, got.DecidedBy)
	}
}

func TestOIDCClock(t *testing.T) {
	iss := newOIDCIssuer(t)
	later := time.Now().Add(2 * time.Hour)
	o := newTestOIDC(t, iss, OIDCConfig{Clock: func() time.Time { return later }})
	if _, err := o.Authenticate(bearerRequest(iss.token(t, iss.claims()))); err == nil {
		t.Error("a token expired by the injected clock was accepted")
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	iss := newOIDCIssuer(t)
	o := newTestOIDC(t, iss, OIDCConfig{})
	if _, err := o.Authenticate(bearerRequest(iss.token(t, iss.claims()))); err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss.mu.Lock()
	iss.key, iss.kid = key, "key-2" // the provider rotates its key
	iss.mu.Unlock()
	if _, err := o.Authenticate(bearerRequest(iss.token(t, iss.claims()))); err != nil {
		t.Errorf("a token signed with the new key: %v", err)
	}
	if n := iss.jwksCalls.Load(); n != 2 {
		t.Errorf("the JWKS was fetched %d times, want 2 (first use, then the new key)", n)
	}
}

func TestOIDCDiscoveryFailures(t *testing.T) {
	iss := newOIDCIssuer(t)
	for name, c := range map[string]OIDCConfig{
		"no discovery document":   {Issuer: iss.URL + "/nowhere", ClientID: "agentauthz"},
		"an error page":           {Issuer: iss.URL + "/error-page", ClientID: "agentauthz"},
		"issuer mismatch":         {Issuer: iss.URL + "/", ClientID: "agentauthz"},
		"unreachable":             {Issuer: "http://127.0.0.1:1", ClientID: "agentauthz"},
		"plain http off loopback": {Issuer: "http://idp.example.com", ClientID: "agentauthz"},
		"no client id":            {Issuer: iss.URL},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := NewOIDC(ctx, c)
		cancel()
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line", name, err)
		}
	}
}
