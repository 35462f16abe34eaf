package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/jwtsvidtest"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

// The JWT-SVID tests sign their own tokens with keys made here: jwtTrusted is in the bundle of
// acme.internal (the policy's trust domain) and of outsider.example (a trust domain with a
// bundle that the policy does not name); jwtStranger is in no bundle.
const (
	jwtHelpdesk  = jwtsvidtest.Helpdesk
	jwtBI        = jwtsvidtest.BI
	jwtAudience  = jwtsvidtest.Audience
	jwtKeyID     = jwtsvidtest.KeyID
	jwtUpstream  = "SENTINEL-upstream-api-key"
	jwtTicketsOK = "/v1/tickets"
)

// jwtPolicy enables JWT-SVIDs on two hosts (one in authorization, one in a custom header) and
// leaves a third host to X.509 identities only.
const jwtPolicy = jwtsvidtest.Policy

// jwtFixture is a Server deciding from jwtPolicy with a JWT bundle set of self-made keys.
type jwtFixture struct {
	srv      *extauthz.Server
	trusted  *ecdsa.PrivateKey
	stranger *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
}

func newJWTFixture(t *testing.T) *jwtFixture {
	t.Helper()
	f := &jwtFixture{trusted: jwtsvidtest.NewKey(t), stranger: jwtsvidtest.NewKey(t)}
	var err error
	if f.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	acme := jwtbundle.New(spiffeid.RequireTrustDomainFromString("acme.internal"))
	if err := acme.AddJWTAuthority(jwtKeyID, f.trusted.Public()); err != nil {
		t.Fatal(err)
	}
	if err := acme.AddJWTAuthority("acme-rsa-key", f.rsaKey.Public()); err != nil {
		t.Fatal(err)
	}
	outsider := jwtbundle.New(spiffeid.RequireTrustDomainFromString("outsider.example"))
	if err := outsider.AddJWTAuthority(jwtKeyID, f.trusted.Public()); err != nil {
		t.Fatal(err)
	}
	f.srv = extauthz.New(engine.New(engine.Config{
		Store:      jwtStore(t, jwtPolicy),
		JWTBundles: jwtbundle.NewSet(acme, outsider),
		Timeout:    5 * time.Second, // the race detector is slow; deadlines are not under test
	}))
	return f
}

func jwtStore(t *testing.T, text string) *policy.Store {
	t.Helper()
	snap, err := policy.Load([]policy.File{{Name: "jwt.yaml", Data: []byte(text)}}, policy.Options{
		Secrets: func(policy.SecretRef) (string, error) { return jwtUpstream, nil },
	})
	if err != nil {
		t.Fatalf("policy.Load: %v", err)
	}
	store := &policy.Store{}
	store.Swap(snap)
	return store
}

// claims returns the claims of a valid JWT-SVID for the helpdesk agent; tests change them.
func claims() map[string]any { return jwtsvidtest.Claims(jwtHelpdesk, jwtAudience) }

// jwtAnswer is what the tests read from a CheckResponse.
type jwtAnswer struct {
	allow   bool
	status  int
	code    string
	agent   string
	removed []string
	set     map[string]string
}

func readJWTAnswer(t *testing.T, resp *authv3.CheckResponse) jwtAnswer {
	t.Helper()
	meta := resp.GetDynamicMetadata().AsMap()
	a := jwtAnswer{set: map[string]string{}}
	a.code, _ = meta["code"].(string)
	a.agent, _ = meta["agent"].(string)
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.allow, a.status = true, 200
		a.removed = r.OkResponse.GetHeadersToRemove()
		for _, h := range r.OkResponse.GetHeaders() {
			a.set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
		if body := r.DeniedResponse.GetBody(); strings.Contains(body, "eyJ") {
			t.Errorf("the problem body quotes a token: %s", body)
		}
	default:
		t.Fatalf("CheckResponse without http_response: %v", resp)
	}
	return a
}

// jwtCheck asks srv about GET host/path from principal (none when empty) with headers, sent as
// Envoy's headers map.
func jwtCheck(t *testing.T, srv *extauthz.Server, principal, host, path string, headers map[string]string) jwtAnswer {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: path, Headers: headers,
		}},
	}}
	return jwtCheckRequest(t, srv, req)
}

func jwtCheckRequest(t *testing.T, srv *extauthz.Server, req *authv3.CheckRequest) jwtAnswer {
	t.Helper()
	resp, err := srv.Check(context.Background(), req)
	resp = onTheWire(t, resp)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return readJWTAnswer(t, resp)
}

func bearer(token string) map[string]string {
	return map[string]string{"authorization": "Bearer " + token}
}

func (a jwtAnswer) wantDeny(t *testing.T, status int, code string) {
	t.Helper()
	if a.allow || a.status != status || a.code != code {
		t.Errorf("got allow=%v status %d code %q, want a %d %s deny", a.allow, a.status, a.code, status, code)
	}
}

func (a jwtAnswer) wantAllow(t *testing.T, agent string) {
	t.Helper()
	if !a.allow || a.agent != agent {
		t.Fatalf("got allow=%v status %d code %q agent %q, want allowed as %s", a.allow, a.status, a.code, a.agent, agent)
	}
}

func TestJWTSVIDValid(t *testing.T) {
	f := newJWTFixture(t)
	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())

	a := jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(tok))
	a.wantAllow(t, jwtHelpdesk)
	if !slices.Contains(a.removed, "authorization") {
		t.Errorf("headers_to_remove = %q: the JWT-SVID must not reach the upstream", a.removed)
	}
	if !slices.Contains(a.removed, "cookie") {
		t.Errorf("headers_to_remove = %q: the host's own remove_headers are gone", a.removed)
	}
	if a.set["x-api-key"] != jwtUpstream {
		t.Errorf("headers set = %v, want the upstream credential in x-api-key", a.set)
	}

	// The scheme is case-insensitive (RFC 9110), and any one of the configured audiences will do.
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK,
		map[string]string{"authorization": "bearer " + tok}).wantAllow(t, jwtHelpdesk)
	c := claims()
	c["aud"] = []string{"somewhere-else", "tickets"}
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c))).
		wantAllow(t, jwtHelpdesk)
	c = claims()
	c["aud"] = jwtAudience // a single audience may be a string
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c))).
		wantAllow(t, jwtHelpdesk)
	// An RSA key in the bundle works too.
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignRS256(t, f.rsaKey, "acme-rsa-key", claims()))).
		wantAllow(t, jwtHelpdesk)
	// The host is matched case-insensitively, as for X.509 agents.
	jwtCheck(t, f.srv, "", "HELPDESK.acme.internal", jwtTicketsOK, bearer(tok)).wantAllow(t, jwtHelpdesk)

	// The agent identified by the token is then subject to the policy like any other.
	jwtCheck(t, f.srv, "", jwtAudience, "/v1/tickets/1", bearer(tok)).wantDeny(t, 403, "route_unknown")
	c = claims()
	c["sub"] = jwtBI
	bi := jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c)))
	bi.wantDeny(t, 403, "scope_missing")
	if bi.agent != jwtBI {
		t.Errorf("agent = %q, want %s from the token", bi.agent, jwtBI)
	}
	c["sub"] = "spiffe://acme.internal/agent/unlisted"
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c))).
		wantDeny(t, 403, "agent_unknown")
}

func TestJWTSVIDInvalid(t *testing.T) {
	f := newJWTFixture(t)
	now := time.Now()
	with := func(change func(map[string]any)) map[string]any {
		c := claims()
		change(c)
		return c
	}
	valid := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())
	parts := strings.Split(valid, ".")

	der, err := x509.MarshalPKIXPublicKey(f.trusted.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	point, err := f.trusted.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	// Substitute another agent in the payload, keeping the helpdesk agent's signature.
	forgedPayload := jwtsvidtest.SigningInput(t, jwtsvidtest.Header("ES256", jwtKeyID), with(func(c map[string]any) { c["sub"] = jwtBI }))
	forgedPayload = parts[0] + "." + strings.Split(forgedPayload, ".")[1] + "." + parts[2]

	// Flip one character in the middle of the signature (the last one may only carry padding bits).
	sig := []byte(parts[2])
	mid := len(sig) / 2
	if sig[mid] == 'A' {
		sig[mid] = 'B'
	} else {
		sig[mid] = 'A'
	}
	flippedSig := parts[0] + "." + parts[1] + "." + string(sig)

	for _, tc := range []struct {
		name  string
		token string
	}{
		{"expired", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["exp"] = now.Add(-10 * time.Minute).Unix()
			c["iat"] = now.Add(-20 * time.Minute).Unix()
		}))},
		{"not yet valid", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["nbf"] = now.Add(10 * time.Minute).Unix()
		}))},
		{"issued in the future", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["iat"] = now.Add(10 * time.Minute).Unix()
			c["exp"] = now.Add(20 * time.Minute).Unix()
		}))},
		{"no exp", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) { delete(c, "exp") }))},
		{"wrong audience", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["aud"] = []string{"bi.acme.internal"}
		}))},
		{"no audience", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) { delete(c, "aud") }))},
		{"no subject", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) { delete(c, "sub") }))},
		{"subject not a SPIFFE ID", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["sub"] = "helpdesk"
		}))},
		{"unknown kid", jwtsvidtest.SignES256(t, f.trusted, "no-such-key", claims())},
		{"no kid", jwtsvidtest.SignES256(t, f.trusted, "", claims())},
		{"signed by a key the bundle does not hold, under its kid", jwtsvidtest.SignES256(t, f.stranger, jwtKeyID, claims())},
		{"RSA kid with an EC signature", jwtsvidtest.SignES256(t, f.trusted, "acme-rsa-key", claims())},
		{"alg none", jwtsvidtest.SigningInput(t, jwtsvidtest.Header("none", jwtKeyID), claims()) + "."},
		{"alg none, no kid", jwtsvidtest.SigningInput(t, map[string]any{"alg": "none"}, claims()) + "."},
		{"HS256 keyed with the public key (DER)", jwtsvidtest.SignHS256(t, der, jwtKeyID, claims())},
		{"HS256 keyed with the public key (PEM)", jwtsvidtest.SignHS256(t, pemKey, jwtKeyID, claims())},
		{"HS256 keyed with the public key (point)", jwtsvidtest.SignHS256(t, point, jwtKeyID, claims())},
		{"tampered payload", forgedPayload},
		{"tampered signature", flippedSig},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"trust domain without a bundle", jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, with(func(c map[string]any) {
			c["sub"] = "spiffe://evil.example/agent/helpdesk"
		}))},
		{"not a JWT", "not-a-jwt"},
		{"empty", ""},
		{"JWE-shaped", parts[0] + "." + parts[1] + "." + parts[2] + ".x.y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(tc.token))
			a.wantDeny(t, 401, "jwt_svid_invalid")
			if a.agent != "" {
				t.Errorf("agent = %q from an invalid token", a.agent)
			}
		})
	}
}

func TestJWTSVIDTrustDomain(t *testing.T) {
	f := newJWTFixture(t)
	c := claims()
	c["sub"] = "spiffe://outsider.example/agent/helpdesk"
	// The token validates against outsider.example's bundle, but the policy does not trust it.
	jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c))).
		wantDeny(t, 401, "trust_domain_unknown")
}

func TestJWTSVIDHeaderForm(t *testing.T) {
	f := newJWTFixture(t)
	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())
	check := func(headers map[string]string) jwtAnswer {
		return jwtCheck(t, f.srv, "", jwtAudience, jwtTicketsOK, headers)
	}
	for name, value := range map[string]string{
		"no scheme":     tok,
		"Basic":         "Basic " + tok,
		"Bearer alone":  "Bearer",
		"Bearer, space": "Bearer ",
		"tab":           "Bearer\t" + tok,
		"two tokens":    "Bearer " + tok + " " + tok,
		"joined by ,":   "Bearer " + tok + ",Bearer " + tok, // Envoy's headers map joins repeats
	} {
		t.Run(name, func(t *testing.T) {
			check(map[string]string{"authorization": value}).wantDeny(t, 401, "jwt_svid_invalid")
		})
	}

	t.Run("two authorization headers", func(t *testing.T) {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: jwtAudience, Path: jwtTicketsOK,
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "authorization", RawValue: []byte("Bearer " + tok)},
					{Key: "authorization", RawValue: []byte("Bearer " + tok)},
				}},
			}},
		}}
		jwtCheckRequest(t, f.srv, req).wantDeny(t, 401, "jwt_svid_invalid")
		// One header line in header_map is fine.
		req.Attributes.Request.Http.HeaderMap.Headers = req.Attributes.Request.Http.HeaderMap.Headers[:1]
		jwtCheckRequest(t, f.srv, req).wantAllow(t, jwtHelpdesk)
	})

	t.Run("no token", func(t *testing.T) {
		check(nil).wantDeny(t, 401, "identity_missing")
		// Another header is not where this host reads tokens.
		check(map[string]string{"x-jwt-svid": tok}).wantDeny(t, 401, "identity_missing")
	})

	t.Run("custom header", func(t *testing.T) {
		c := claims()
		c["aud"] = []string{"custom.acme.internal"}
		custom := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c)
		a := jwtCheck(t, f.srv, "", "custom.acme.internal", jwtTicketsOK, map[string]string{"x-jwt-svid": custom})
		a.wantAllow(t, jwtHelpdesk)
		if !slices.Contains(a.removed, "x-jwt-svid") {
			t.Errorf("headers_to_remove = %q, want x-jwt-svid", a.removed)
		}
		// The custom header holds the bare token; there an authorization header is not read.
		jwtCheck(t, f.srv, "", "custom.acme.internal", jwtTicketsOK, map[string]string{"x-jwt-svid": "Bearer " + custom}).
			wantDeny(t, 401, "jwt_svid_invalid")
		jwtCheck(t, f.srv, "", "custom.acme.internal", jwtTicketsOK, bearer(custom)).
			wantDeny(t, 401, "identity_missing")
		// A token for another host's audience is refused here.
		jwtCheck(t, f.srv, "", "custom.acme.internal", jwtTicketsOK, map[string]string{"x-jwt-svid": tok}).
			wantDeny(t, 401, "jwt_svid_invalid")
	})
}

// A request with an X.509 identity is never read for a JWT-SVID: a bad token does not refuse
// it, and a good one for another agent does not change who is calling.
func TestJWTSVIDIgnoredWithPrincipal(t *testing.T) {
	f := newJWTFixture(t)
	a := jwtCheck(t, f.srv, jwtHelpdesk, jwtAudience, jwtTicketsOK, bearer("garbage"))
	a.wantAllow(t, jwtHelpdesk)
	if !slices.Contains(a.removed, "authorization") {
		t.Errorf("headers_to_remove = %q: the agent's authorization header must not reach the upstream", a.removed)
	}

	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())
	bi := jwtCheck(t, f.srv, jwtBI, jwtAudience, jwtTicketsOK, bearer(tok))
	bi.wantDeny(t, 403, "scope_missing")
	if bi.agent != jwtBI {
		t.Errorf("agent = %q, want the X.509 identity %s", bi.agent, jwtBI)
	}
}

// On a host without jwt_svid, a bearer token identifies nobody.
func TestJWTSVIDHostWithout(t *testing.T) {
	f := newJWTFixture(t)
	c := claims()
	c["sub"] = jwtBI
	c["aud"] = []string{"reports.acme.internal"}
	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, c)
	jwtCheck(t, f.srv, "", "reports.acme.internal", "/v1/revenue", bearer(tok)).wantDeny(t, 401, "identity_missing")
	a := jwtCheck(t, f.srv, jwtBI, "reports.acme.internal", "/v1/revenue", bearer(tok))
	a.wantAllow(t, jwtBI)
	if !slices.Contains(a.removed, "authorization") {
		t.Errorf("headers_to_remove = %q, want authorization", a.removed)
	}
}

// Without JWT bundles, every token is refused.
func TestJWTSVIDNoBundles(t *testing.T) {
	f := newJWTFixture(t)
	srv := extauthz.New(engine.New(engine.Config{Store: jwtStore(t, jwtPolicy), Timeout: 5 * time.Second}))
	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())
	jwtCheck(t, srv, "", jwtAudience, jwtTicketsOK, bearer(tok)).wantDeny(t, 401, "jwt_svid_invalid")
	jwtCheck(t, srv, jwtHelpdesk, jwtAudience, jwtTicketsOK, bearer(tok)).wantAllow(t, jwtHelpdesk)
}

// The demo policy accepts no JWT-SVIDs: an X.509 agent's bearer token is replaced by the
// upstream's credential, and a bearer token alone identifies nobody.
func TestJWTSVIDDemoPolicy(t *testing.T) {
	store, _ := servertest.DemoStore(t, "SENTINEL-demo-helpdesk-token")
	f := newJWTFixture(t)
	srv := extauthz.New(engine.New(engine.Config{Store: store, JWTBundles: nil, Timeout: 5 * time.Second}))
	tok := jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())

	a := jwtCheck(t, srv, jwtHelpdesk, "helpdesk.acme.internal", "/v1/tickets?limit=5", bearer(tok))
	a.wantAllow(t, jwtHelpdesk)
	if got := a.set["authorization"]; got != "Bearer SENTINEL-demo-helpdesk-token" {
		t.Errorf("authorization set to %q, want the helpdesk API's credential in place of the agent's", got)
	}
	jwtCheck(t, srv, "", "helpdesk.acme.internal", "/v1/tickets?limit=5", bearer(tok)).wantDeny(t, 401, "identity_missing")
}

// A host that reads JWT-SVIDs from authorization and injects the upstream's own authorization
// must send the upstream its credential: Envoy removes headers_to_remove after setting headers,
// so authorization must be replaced, not also removed (Host.inject_headers: "a header both
// removed and injected is replaced").
func TestJWTSVIDInjectedAuthorizationKept(t *testing.T) {
	f := newJWTFixture(t)
	srv := extauthz.New(engine.New(engine.Config{
		Store: jwtStore(t, `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read]
hosts:
  - name: helpdesk.acme.internal
    jwt_svid: {audiences: [helpdesk.acme.internal]}
    inject_headers:
      - {name: authorization, prefix: "Bearer ", env: JWT_TEST_UPSTREAM_KEY}
    routes:
      - {name: list-tickets, method: GET, path: /v1/tickets, scope: tickets:read}
`),
		JWTBundles: f.acmeBundle(t),
		Timeout:    5 * time.Second,
	}))
	a := jwtCheck(t, srv, "", jwtAudience, jwtTicketsOK, bearer(jwtsvidtest.SignES256(t, f.trusted, jwtKeyID, claims())))
	a.wantAllow(t, jwtHelpdesk)
	if a.set["authorization"] != "Bearer "+jwtUpstream {
		t.Errorf("authorization set to %q, want the upstream's credential", a.set["authorization"])
	}
	if slices.Contains(a.removed, "authorization") {
		t.Errorf("headers_to_remove = %q: Envoy would remove the injected credential after setting it", a.removed)
	}
}

func (f *jwtFixture) acmeBundle(t *testing.T) jwtbundle.Source {
	t.Helper()
	b := jwtbundle.New(spiffeid.RequireTrustDomainFromString("acme.internal"))
	if err := b.AddJWTAuthority(jwtKeyID, f.trusted.Public()); err != nil {
		t.Fatal(err)
	}
	return b
}
