// Package jwtsvidtest mints JWT-SVIDs for tests: signing keys, JWT bundles (as values and as the
// JWKS files --jwt-bundle reads), and compact tokens with the claims, header and algorithm a test
// chooses, hostile ones included. Policy is a policy whose hosts accept JWT-SVIDs.
package jwtsvidtest

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
	"os"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The agents, audience and key id of Policy's tokens.
const (
	TrustDomain = "acme.internal"
	Helpdesk    = "spiffe://acme.internal/agent/helpdesk"
	BI          = "spiffe://acme.internal/agent/bi"
	Audience    = "helpdesk.acme.internal"
	KeyID       = "acme-jwt-key-1"
	// UpstreamEnv names the upstream credential Policy injects on helpdesk.acme.internal.
	UpstreamEnv = "JWT_TEST_UPSTREAM_KEY"
)

// Policy accepts JWT-SVIDs on two hosts (helpdesk.acme.internal in authorization, for audience
// Audience or "tickets"; custom.acme.internal in x-jwt-svid) and leaves reports.acme.internal to
// X.509 identities only. The helpdesk agent may GET /v1/tickets; the BI agent /v1/revenue.
const Policy = `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read]
  - id: spiffe://acme.internal/agent/bi
    scopes: [reports:read]
hosts:
  - name: helpdesk.acme.internal
    jwt_svid:
      audiences: [helpdesk.acme.internal, tickets]
    remove_headers: [cookie]
    inject_headers:
      - {name: x-api-key, env: JWT_TEST_UPSTREAM_KEY}
    routes:
      - {name: list-tickets, method: GET, path: /v1/tickets, scope: tickets:read}
  - name: custom.acme.internal
    jwt_svid:
      audiences: [custom.acme.internal]
      header: x-jwt-svid
    routes:
      - {name: custom-tickets, method: GET, path: /v1/tickets, scope: tickets:read}
  - name: reports.acme.internal
    remove_headers: [authorization]
    routes:
      - {name: revenue, method: GET, path: /v1/revenue, scope: reports:read}
`

// NewKey returns a new P-256 signing key.
func NewKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Bundle returns the JWT bundle of trust domain td holding key under kid.
func Bundle(tb testing.TB, td, kid string, key crypto.PublicKey) *jwtbundle.Bundle {
	tb.Helper()
	b := jwtbundle.New(spiffeid.RequireTrustDomainFromString(td))
	if err := b.AddJWTAuthority(kid, key); err != nil {
		tb.Fatal(err)
	}
	return b
}

// WriteBundle writes b to path as a JWKS document, the form jwtbundle.Load and --jwt-bundle read.
func WriteBundle(tb testing.TB, path string, b *jwtbundle.Bundle) {
	tb.Helper()
	data, err := b.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Claims returns the claims of a token for sub and the audiences, valid for five minutes from
// now; tests change them.
func Claims(sub string, aud ...string) map[string]any {
	now := time.Now()
	return map[string]any{
		"sub": sub,
		"aud": aud,
		"exp": now.Add(5 * time.Minute).Unix(),
		"iat": now.Unix(),
	}
}

// Expired returns c as a token that expired ten minutes ago.
func Expired(c map[string]any) map[string]any {
	now := time.Now()
	c["exp"] = now.Add(-10 * time.Minute).Unix()
	c["iat"] = now.Add(-20 * time.Minute).Unix()
	return c
}

// Header returns a JWS header for alg, naming kid unless it is empty.
func Header(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "JWT"}
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

// SignES256 signs a token with key as a JWS ES256 signature (r || s, 32 bytes each).
func SignES256(tb testing.TB, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	tb.Helper()
	in := SigningInput(tb, Header("ES256", kid), claims)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b64.EncodeToString(sig)
}

// SignRS256 signs a token with an RSA key (PKCS #1 v1.5, SHA-256).
func SignRS256(tb testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	tb.Helper()
	in := SigningInput(tb, Header("RS256", kid), claims)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	return in + "." + b64.EncodeToString(sig)
}

// SignHS256 signs a token with an HMAC secret: with a bundle's public key as the secret, this is
// the algorithm-confusion attack on verifiers that let the token choose the algorithm.
func SignHS256(tb testing.TB, secret []byte, kid string, claims map[string]any) string {
	tb.Helper()
	in := SigningInput(tb, Header("HS256", kid), claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(in))
	return in + "." + b64.EncodeToString(mac.Sum(nil))
}
