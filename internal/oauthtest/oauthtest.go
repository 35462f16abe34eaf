// Package oauthtest is a local OAuth 2.0 authorization server for tests: it serves its metadata
// (OpenID Connect discovery and RFC 8414) and its JWKS over HTTP on loopback, counts how often
// each is fetched, rotates its keys on demand, and mints access tokens (ES256 and RS256) with the
// header and claims a test chooses, hostile ones included (HS256 keyed with the public key,
// alg none). Its token endpoint grants client credentials (RFC 6749 §4.4) to the clients a test
// registers, for the resource the client names (RFC 8707) or the client's default one.
package oauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Audience is the resource identifier tokens are minted for unless a test says otherwise.
const Audience = "https://helpdesk.acme.internal"

// Issuer is a running authorization server. Its URL is its issuer identifier.
type Issuer struct {
	*httptest.Server
	// JWKSFetches and MetadataFetches count the requests for the JWKS and for either metadata
	// document.
	JWKSFetches, MetadataFetches atomic.Int32

	// TokenRequests counts the token endpoint's requests.
	TokenRequests atomic.Int32

	mu      sync.Mutex
	clients map[string]Client
	keys    []*SigningKey // published, the newest of each algorithm signing
	down    bool
	gen     int
	block   chan struct{} // JWKS requests wait for it to close, when set
}

// SigningKey is one key of the issuer.
type SigningKey struct {
	ID     string
	Alg    jose.SignatureAlgorithm
	Signer crypto.Signer
}

// Public is the key's public half.
func (k *SigningKey) Public() crypto.PublicKey { return k.Signer.Public() }

// Start starts an issuer publishing one ES256 and one RS256 key; it stops when the test ends.
func Start(tb testing.TB) *Issuer {
	tb.Helper()
	iss := &Issuer{}
	iss.keys = []*SigningKey{iss.newKey(tb, jose.ES256), iss.newKey(tb, jose.RS256)}
	mux := http.NewServeMux()
	metadata := func(w http.ResponseWriter, r *http.Request) {
		iss.MetadataFetches.Add(1)
		if iss.isDown() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss.URL, "jwks_uri": iss.URL + "/jwks",
			"authorization_endpoint": iss.URL + "/authorize", "token_endpoint": iss.URL + "/token",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"grant_types_supported":                 []string{"client_credentials"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
			"id_token_signing_alg_values_supported": []string{"ES256", "RS256"},
		})
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", metadata)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", metadata)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.JWKSFetches.Add(1)
		iss.mu.Lock()
		block := iss.block
		iss.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		if iss.isDown() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(iss.JWKS())
	})
	mux.HandleFunc("POST /token", iss.token)
	iss.Server = httptest.NewServer(mux)
	tb.Cleanup(iss.Close)
	return iss
}

func (iss *Issuer) newKey(tb testing.TB, alg jose.SignatureAlgorithm) *SigningKey {
	tb.Helper()
	iss.gen++
	k := &SigningKey{Alg: alg}
	var err error
	switch alg {
	case jose.ES256:
		k.ID = "es256-" + strconv.Itoa(iss.gen)
		k.Signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		k.ID = "rs256-" + strconv.Itoa(iss.gen)
		k.Signer, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		tb.Fatalf("oauthtest: no keys for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func (iss *Issuer) isDown() bool {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.down
}

// SetDown makes the metadata and JWKS answer 503 (true) or serve again (false).
func (iss *Issuer) SetDown(down bool) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.down = down
}

// Block makes JWKS requests wait until release is called, as a slow issuer would.
func (iss *Issuer) Block() (release func()) {
	ch := make(chan struct{})
	iss.mu.Lock()
	iss.block = ch
	iss.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			iss.mu.Lock()
			iss.block = nil
			iss.mu.Unlock()
			close(ch)
		})
	}
}

// Key returns the key signing alg's tokens now.
func (iss *Issuer) Key(alg jose.SignatureAlgorithm) *SigningKey {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for i := len(iss.keys) - 1; i >= 0; i-- {
		if iss.keys[i].Alg == alg {
			return iss.keys[i]
		}
	}
	return nil
}

// Rotate publishes a new key for alg, which signs from now on; the old one stays published
// unless retire is set.
func (iss *Issuer) Rotate(tb testing.TB, alg jose.SignatureAlgorithm, retire bool) *SigningKey {
	tb.Helper()
	iss.mu.Lock()
	defer iss.mu.Unlock()
	k := iss.newKey(tb, alg)
	if retire {
		kept := iss.keys[:0]
		for _, old := range iss.keys {
			if old.Alg != alg {
				kept = append(kept, old)
			}
		}
		iss.keys = kept
	}
	iss.keys = append(iss.keys, k)
	return k
}

// JWKS is the published key set.
func (iss *Issuer) JWKS() []byte {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for _, k := range iss.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
	}
	data, _ := json.Marshal(set)
	return data
}

// WriteJWKS writes the published key set to path, as a policy's jwks_file.
func (iss *Issuer) WriteJWKS(tb testing.TB, path string) {
	tb.Helper()
	if err := os.WriteFile(path, iss.JWKS(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Claims are an access token's claims for client_id (also its subject), for aud, granting
// scope, valid for five minutes from now; tests change them.
func (iss *Issuer) Claims(clientID, scope string, aud ...string) map[string]any {
	if len(aud) == 0 {
		aud = []string{Audience}
	}
	now := time.Now()
	return map[string]any{
		"iss": iss.URL, "sub": clientID, "client_id": clientID, "aud": aud, "scope": scope,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": strconv.FormatInt(now.UnixNano(), 36),
	}
}

// Token signs claims with the issuer's current key for alg, typ at+jwt.
func (iss *Issuer) Token(tb testing.TB, alg jose.SignatureAlgorithm, claims map[string]any) string {
	tb.Helper()
	k := iss.Key(alg)
	if k == nil {
		tb.Fatalf("oauthtest: the issuer has no %s key", alg)
	}
	return Sign(tb, k, Header(string(alg), k.ID), claims)
}

// Header is a JWS header for alg naming kid (none when empty), typ at+jwt.
func Header(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

var b64 = base64.RawURLEncoding

// SigningInput is the first two parts of a compact JWS.
func SigningInput(tb testing.TB, header, claims map[string]any) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(c)
}

// Sign signs header and claims with k, whatever alg the header says: a header naming another
// algorithm than k's makes a token that must not verify.
func Sign(tb testing.TB, k *SigningKey, header, claims map[string]any) string {
	tb.Helper()
	tok, err := signJWS(k, SigningInput(tb, header, claims))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// signJWS signs a JWS signing input with k.
func signJWS(k *SigningKey, in string) (string, error) {
	sum := sha256.Sum256([]byte(in))
	var sig []byte
	switch s := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, s, sum[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, s, crypto.SHA256, sum[:]); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("oauthtest: cannot sign with %T", k.Signer)
	}
	return in + "." + b64.EncodeToString(sig), nil
}

// SignHS256 signs with HMAC-SHA256 keyed with secret: keyed with a published public key, the
// algorithm-confusion attack on verifiers that let a token choose its algorithm.
func SignHS256(tb testing.TB, secret []byte, kid string, claims map[string]any) string {
	tb.Helper()
	in := SigningInput(tb, Header("HS256", kid), claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(in))
	return in + "." + b64.EncodeToString(mac.Sum(nil))
}

// Unsigned is a token with alg none and an empty signature part, as such tokens are written,
// and the same with a junk signature.
func Unsigned(tb testing.TB, kid string, claims map[string]any) []string {
	tb.Helper()
	in := SigningInput(tb, Header("none", kid), claims)
	return []string{in + ".", in + ".c2ln"}
}

// PublicJWK is k's public key as its JWK JSON, the bytes an HS256 confusion attack keys with.
func PublicJWK(tb testing.TB, k *SigningKey) []byte {
	tb.Helper()
	data, err := json.Marshal(jose.JSONWebKey{Key: k.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// Stranger is an ES256 key no issuer publishes, with kid.
func Stranger(tb testing.TB, kid string) *SigningKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return &SigningKey{ID: kid, Alg: jose.ES256, Signer: k}
}

// The agents, clients and upstream credential of Policy.
const (
	Helpdesk       = "spiffe://acme.internal/agent/helpdesk"
	BI             = "spiffe://acme.internal/agent/bi"
	HelpdeskClient = "helpdesk-client"
	BIClient       = "bi-client"
	// UpstreamEnv names the upstream credential Policy injects on helpdesk.acme.internal.
	UpstreamEnv = "OAUTH_TEST_UPSTREAM_KEY"
)

// Policy is a policy trusting issuer (its keys fetched from its metadata): its tokens for
// client_id helpdesk-client are the helpdesk agent's, for bi-client the BI agent's.
// helpdesk.acme.internal (audience Audience) accepts them; reports.acme.internal does not. The
// helpdesk agent may list tickets (OAuth scope tickets.read too), read one, and comment on one
// (OAuth scope tickets.write too); the BI agent may read revenue.
func Policy(issuer string) string {
	return `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read, tickets:comment]
  - id: spiffe://acme.internal/agent/bi
    scopes: [reports:read]
oauth_issuers:
  - name: test-idp
    issuer: ` + issuer + `
    algorithms: [ES256, RS256]
    subject_claim: client_id
    agents:
      - {subject: helpdesk-client, agent: spiffe://acme.internal/agent/helpdesk}
      - {subject: bi-client, agent: spiffe://acme.internal/agent/bi}
hosts:
  - name: helpdesk.acme.internal
    oauth:
      issuers: [test-idp]
      audiences: [` + Audience + `]
    remove_headers: [cookie]
    inject_headers:
      - {name: x-api-key, env: OAUTH_TEST_UPSTREAM_KEY}
    routes:
      - {name: list-tickets, method: GET, path: /v1/tickets, scope: tickets:read, oauth_scopes: [tickets.read],
         query: {status: {type: string, enum: [open, closed]}}}
      - {name: get-ticket, method: GET, path: "/v1/tickets/{id}", scope: tickets:read, params: {id: {type: integer}}}
      - {name: comment-ticket, method: POST, path: "/v1/tickets/{id}/comments", scope: tickets:comment,
         oauth_scopes: [tickets.write], params: {id: {type: integer}}}
      - {name: revenue-here, method: GET, path: /v1/revenue, scope: reports:read}
  - name: reports.acme.internal
    routes:
      - {name: revenue, method: GET, path: /v1/revenue, scope: reports:read}
`
}

// Client is a confidential client of the issuer's token endpoint.
type Client struct {
	ID, Secret string
	// Resource is the audience of its tokens when a token request names none.
	Resource string
	// Alg signs its tokens: ES256 unless set.
	Alg jose.SignatureAlgorithm
}

// AddClient registers a client for the client credentials grant.
func (iss *Issuer) AddClient(c Client) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.clients == nil {
		iss.clients = map[string]Client{}
	}
	if c.Alg == "" {
		c.Alg = jose.ES256
	}
	iss.clients[c.ID] = c
}

// token is the token endpoint: the client credentials grant, the client authenticated by HTTP
// Basic or in the form, the token's client_id and subject the client, its scope what was asked,
// its audience the resource asked for (one) or the client's.
func (iss *Issuer) token(w http.ResponseWriter, r *http.Request) {
	iss.TokenRequests.Add(1)
	fail := func(status int, code string) {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	iss.mu.Lock()
	c, known := iss.clients[id]
	iss.mu.Unlock()
	if !known || secret == "" || !hmac.Equal([]byte(secret), []byte(c.Secret)) {
		fail(http.StatusUnauthorized, "invalid_client")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	aud := c.Resource
	switch rs := r.PostForm["resource"]; len(rs) {
	case 0:
	case 1:
		aud = rs[0]
	default:
		fail(http.StatusBadRequest, "invalid_target")
		return
	}
	claims := iss.Claims(c.ID, r.PostForm.Get("scope"), aud)
	k := iss.Key(c.Alg)
	header, _ := json.Marshal(Header(string(c.Alg), k.ID))
	body, _ := json.Marshal(claims)
	tok, err := signJWS(k, b64.EncodeToString(header)+"."+b64.EncodeToString(body))
	if err != nil {
		fail(http.StatusInternalServerError, "server_error")
		return
	}
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "token_type": "Bearer", "expires_in": 300, "scope": r.PostForm.Get("scope"),
	})
}
