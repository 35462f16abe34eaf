package extauthz_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

const oauthUpstream = "SENTINEL-oauth-upstream-key"

// oauthFixture is the real server deciding from oauthtest.Policy, with keys fetched from a local
// issuer through a cache whose clock the test moves.
type oauthFixture struct {
	iss     *oauthtest.Issuer
	client  authv3.AuthorizationClient
	records *records
	clock   *testClock
	fetched chan bool
}

// records is a decision log in memory.
type records struct {
	mu   sync.Mutex
	recs []audit.Decision
}

func (r *records) Decision(d audit.Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, d)
	return nil
}

func (r *records) All() []audit.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newOAuthFixture(t *testing.T) *oauthFixture {
	t.Helper()
	f := &oauthFixture{iss: oauthtest.Start(t), records: &records{}, clock: &testClock{now: time.Now()}, fetched: make(chan bool, 100)}
	snap, err := policy.Load([]policy.File{{Name: "oauth.yaml", Data: []byte(oauthtest.Policy(f.iss.URL))}}, policy.Options{
		Secrets: func(policy.SecretRef) (string, error) { return oauthUpstream, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := oauthkeys.New(oauthkeys.Config{Clock: f.clock.Now, Observe: func(_ string, ok bool) { f.fetched <- ok }})
	keys.Prepare(snap.OAuthIssuers())
	if !<-f.fetched {
		t.Fatal("the issuer's keys were not fetched")
	}
	srv := servertest.Start(t, server.Config{Store: policy.NewStore(snap), OAuthKeys: keys, Decisions: f.records,
		CheckTimeout: 5 * time.Second}) // the race detector is slow; deadlines are not under test
	f.client = servertest.Client(t, srv)
	return f
}

// check asks about method host target, from principal (none when empty), with the token (none
// when empty) as a Bearer credential.
func (f *oauthFixture) check(t *testing.T, principal, method, host, target, token string) servertest.Answer {
	t.Helper()
	h := map[string]string{"cookie": "session=agent-own"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	return servertest.Check(t, f.client, extauthz.HTTPRequest{Principal: principal, Method: method, Host: host, Path: target, Headers: h}.CheckRequest())
}

func (f *oauthFixture) token(t *testing.T, client, scope string) string {
	return f.iss.Token(t, jose.ES256, f.iss.Claims(client, scope))
}

// An agent with only an access token gets the decisions of the SPIFFE agent the policy maps its
// client to, request for request.
func TestOAuthSameDecisionsAsTheMappedAgent(t *testing.T) {
	f := newOAuthFixture(t)
	for _, agent := range []struct{ id, client string }{{oauthtest.Helpdesk, oauthtest.HelpdeskClient}, {oauthtest.BI, oauthtest.BIClient}} {
		tok := f.token(t, agent.client, "tickets.read tickets.write")
		for _, r := range []struct{ method, target string }{
			{"GET", "/v1/tickets"}, {"GET", "/v1/tickets?status=open"}, {"GET", "/v1/tickets?status=lost"},
			{"GET", "/v1/tickets/42"}, {"GET", "/v1/tickets/x"}, {"POST", "/v1/tickets/42/comments"},
			{"DELETE", "/v1/tickets/42"}, {"GET", "/v1/revenue"}, {"GET", "/v1/%2e%2e/admin"},
		} {
			byCert := f.check(t, agent.id, r.method, "helpdesk.acme.internal", r.target, "")
			byToken := f.check(t, "", r.method, "helpdesk.acme.internal", r.target, tok)
			if byCert.Allow != byToken.Allow || byCert.Status != byToken.Status || byCert.Code != byToken.Code || byCert.Rule != byToken.Rule {
				t.Errorf("%s %s %s: by certificate %d %s %s, by token %d %s %s", agent.id, r.method, r.target,
					byCert.Status, byCert.Code, byCert.Rule, byToken.Status, byToken.Code, byToken.Rule)
			}
			if byToken.Allow {
				if !slices.Contains(byToken.Removed, "authorization") || !slices.Contains(byToken.Removed, "cookie") || byToken.Headers["x-api-key"] != oauthUpstream {
					t.Errorf("%s %s: the upstream gets %v and loses %q", r.method, r.target, byToken.Headers, byToken.Removed)
				}
			}
		}
	}
	allowed := 0
	for _, rec := range f.records.All() {
		if rec.Outcome == "allow" {
			allowed++
		}
	}
	if allowed < 4 {
		t.Errorf("only %d requests allowed: the comparison compared denials only", allowed)
	}
}

func TestOAuthRefusedTokens(t *testing.T) {
	f := newOAuthFixture(t)
	es, rs := f.iss.Key(jose.ES256), f.iss.Key(jose.RS256)
	now := time.Now()
	claims := func(change func(map[string]any)) map[string]any {
		c := f.iss.Claims(oauthtest.HelpdeskClient, "tickets.read")
		if change != nil {
			change(c)
		}
		return c
	}
	good := f.iss.Token(t, jose.ES256, claims(nil))
	parts := strings.Split(good, ".")
	other := oauthtest.Start(t) // an issuer the policy does not trust
	for _, tc := range []struct {
		name, token, description string
	}{
		{"expired", f.iss.Token(t, jose.ES256, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })), "The access token expired"},
		{"not yet valid", f.iss.Token(t, jose.ES256, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), "The access token is not valid yet"},
		{"for another audience", f.iss.Token(t, jose.ES256, claims(func(c map[string]any) { c["aud"] = "https://reports.acme.internal" })), "The access token is for another resource"},
		{"from another issuer", other.Token(t, jose.ES256, other.Claims(oauthtest.HelpdeskClient, "tickets.read")), "The access token is from an issuer this resource does not trust"},
		{"another issuer's key under a kid of ours, claiming our issuer", other.Token(t, jose.ES256, claims(nil)), "The access token signature does not verify"},
		{"a key of no issuer", oauthtest.Sign(t, oauthtest.Stranger(t, "stranger"), oauthtest.Header("ES256", "stranger"), claims(nil)), "The access token is signed with an unknown key"},
		{"tampered", parts[0] + "." + strings.Split(oauthtest.SigningInput(t, oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["client_id"] = oauthtest.BIClient })), ".")[1] + "." + parts[2],
			"The access token signature does not verify"},
		{"HS256 keyed with the published key", oauthtest.SignHS256(t, oauthtest.PublicJWK(t, rs), rs.ID, claims(nil)), "The access token is signed with an algorithm that is not accepted"},
		{"alg none", oauthtest.Unsigned(t, es.ID, claims(nil))[0], "The access token is malformed"},
		{"not a JWT", "opaque-token-value", "The access token is malformed"},
	} {
		a := f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", tc.token)
		want := `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="invalid_token", error_description="` + tc.description + `"`
		if a.Allow || a.Status != 401 || a.Code != "oauth_token_invalid" || a.Headers[extauthz.WWWAuthenticateHeader] != want {
			t.Errorf("%s: %d %s, www-authenticate %q; want 401 oauth_token_invalid, %q", tc.name, a.Status, a.Code, a.Headers[extauthz.WWWAuthenticateHeader], want)
		}
		if strings.Contains(fmt.Sprint(a.Problem), tc.token) {
			t.Errorf("%s: the problem quotes the token", tc.name)
		}
	}
	// No token at all: the challenge without an error, so that a client learns to send one.
	a := f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", "")
	if a.Status != 401 || a.Code != "identity_missing" || a.Headers[extauthz.WWWAuthenticateHeader] != `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource"` {
		t.Errorf("no token: %d %s %q", a.Status, a.Code, a.Headers[extauthz.WWWAuthenticateHeader])
	}
	// A host without oauth challenges no one: its agents use certificates.
	a = f.check(t, "", "GET", "reports.acme.internal", "/v1/revenue", good)
	if a.Status != 401 || a.Code != "identity_missing" || a.Headers[extauthz.WWWAuthenticateHeader] != "" {
		t.Errorf("host without oauth: %d %s %q", a.Status, a.Code, a.Headers[extauthz.WWWAuthenticateHeader])
	}
	// A valid token whose client the issuer's table does not map.
	a = f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, "stranger-client", "tickets.read"))
	if a.Status != 403 || a.Code != "oauth_subject_unknown" {
		t.Errorf("unmapped client: %d %s", a.Status, a.Code)
	}
	for _, rec := range f.records.All() {
		for _, tc := range []string{good, parts[2]} {
			if strings.Contains(fmt.Sprintf("%+v", rec), tc) {
				t.Errorf("the decision record holds a token: %+v", rec)
			}
		}
	}
}

func TestOAuthInsufficientScope(t *testing.T) {
	f := newOAuthFixture(t)
	tok := f.token(t, oauthtest.HelpdeskClient, "tickets.read")
	if a := f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", tok); !a.Allow {
		t.Fatalf("list with tickets.read: %d %s", a.Status, a.Code)
	}
	a := f.check(t, "", "POST", "helpdesk.acme.internal", "/v1/tickets/42/comments", tok)
	want := `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="insufficient_scope", scope="tickets.write"`
	if a.Allow || a.Status != 403 || a.Code != "oauth_scope_missing" || a.Rule != "comment-ticket" || a.Headers[extauthz.WWWAuthenticateHeader] != want {
		t.Errorf("comment with tickets.read only: %d %s %s %q", a.Status, a.Code, a.Rule, a.Headers[extauthz.WWWAuthenticateHeader])
	}
	// After the step-up, the new token passes.
	if a := f.check(t, "", "POST", "helpdesk.acme.internal", "/v1/tickets/42/comments", f.token(t, oauthtest.HelpdeskClient, "tickets.read tickets.write")); !a.Allow {
		t.Errorf("comment with tickets.write: %d %s", a.Status, a.Code)
	}
	// Least privilege on both sides: the token's scope does not stand in for the agent's.
	a = f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/revenue", f.token(t, oauthtest.HelpdeskClient, "reports.read"))
	if a.Status != 403 || a.Code != "scope_missing" {
		t.Errorf("a scope the agent lacks: %d %s", a.Status, a.Code)
	}
}

// The certificate's identity wins; a token for another agent beside it is refused, one for the
// same agent is checked and accepted.
func TestOAuthBesideACertificate(t *testing.T) {
	f := newOAuthFixture(t)
	helpdeskTok := f.token(t, oauthtest.HelpdeskClient, "tickets.read")
	a := f.check(t, oauthtest.BI, "GET", "helpdesk.acme.internal", "/v1/tickets", helpdeskTok)
	if a.Allow || a.Status != 401 || a.Code != "identity_conflict" ||
		a.Headers[extauthz.WWWAuthenticateHeader] != `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="invalid_token", error_description="The access token names another agent than the certificate"` {
		t.Errorf("the BI certificate with the helpdesk token: %d %s %q", a.Status, a.Code, a.Headers[extauthz.WWWAuthenticateHeader])
	}
	if a := f.check(t, oauthtest.Helpdesk, "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, "stranger-client", "")); a.Code != "identity_conflict" {
		t.Errorf("a certificate with an unmapped client's token: %d %s", a.Status, a.Code)
	}
	a = f.check(t, oauthtest.Helpdesk, "GET", "helpdesk.acme.internal", "/v1/tickets", helpdeskTok)
	if !a.Allow || !slices.Contains(a.Removed, "authorization") {
		t.Errorf("certificate and token agree: %d %s, removes %q", a.Status, a.Code, a.Removed)
	}
	// The token beside the certificate is checked like any: an expired one is refused.
	c := f.iss.Claims(oauthtest.HelpdeskClient, "tickets.read")
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	if a := f.check(t, oauthtest.Helpdesk, "GET", "helpdesk.acme.internal", "/v1/tickets", f.iss.Token(t, jose.ES256, c)); a.Code != "oauth_token_invalid" {
		t.Errorf("certificate with an expired token: %d %s", a.Status, a.Code)
	}
	// And its scopes are checked too.
	if a := f.check(t, oauthtest.Helpdesk, "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, oauthtest.HelpdeskClient, "")); a.Code != "oauth_scope_missing" {
		t.Errorf("certificate with a token without the scope: %d %s", a.Status, a.Code)
	}
	var sources []string
	for _, rec := range f.records.All() {
		sources = append(sources, rec.IdentitySource+" "+rec.Agent+" "+rec.Issuer+" "+rec.Subject)
	}
	want := []string{
		"x509 " + oauthtest.BI + " " + f.iss.URL + " " + oauthtest.HelpdeskClient,
		"x509 " + oauthtest.Helpdesk + " " + f.iss.URL + " stranger-client",
		"x509 " + oauthtest.Helpdesk + " " + f.iss.URL + " " + oauthtest.HelpdeskClient,
		"x509 " + oauthtest.Helpdesk + "  ",
		"x509 " + oauthtest.Helpdesk + " " + f.iss.URL + " " + oauthtest.HelpdeskClient,
	}
	if !slices.Equal(sources, want) {
		t.Errorf("recorded identities:\n%q\nwant\n%q", sources, want)
	}
}

func TestOAuthRecordedIdentity(t *testing.T) {
	f := newOAuthFixture(t)
	f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, oauthtest.HelpdeskClient, "tickets.read"))
	f.check(t, oauthtest.Helpdesk, "GET", "helpdesk.acme.internal", "/v1/tickets/1", "")
	f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", "")
	recs := f.records.All()
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r.IdentitySource != "oauth" || r.Agent != oauthtest.Helpdesk || r.Issuer != f.iss.URL || r.Subject != oauthtest.HelpdeskClient || r.Outcome != "allow" {
		t.Errorf("by token: %+v", r)
	}
	if r := recs[1]; r.IdentitySource != "x509" || r.Issuer != "" || r.Subject != "" {
		t.Errorf("by certificate: %+v", r)
	}
	if r := recs[2]; r.IdentitySource != "" || r.Agent != "" || r.Code != "identity_missing" {
		t.Errorf("no identity: %+v", r)
	}
}

// A key the issuer rotates in is fetched once, by the first token it signs; tokens with invented
// key ids right after fetch nothing; the issuer down with no keys is a failure to decide, not a
// refused token.
func TestOAuthKeyRotation(t *testing.T) {
	f := newOAuthFixture(t)
	f.clock.Advance(oauthkeys.DefaultMinRefresh)
	rotated := f.iss.Rotate(t, jose.ES256, true)
	for range 5 {
		if a := f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, oauthtest.HelpdeskClient, "tickets.read")); !a.Allow {
			t.Fatalf("a token of the rotated key %s: %d %s", rotated.ID, a.Status, a.Code)
		}
	}
	if !<-f.fetched {
		t.Fatal("the rotated key set was not fetched")
	}
	for i := range 20 {
		invented := oauthtest.Stranger(t, fmt.Sprintf("invented-%d", i))
		a := f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets",
			oauthtest.Sign(t, invented, oauthtest.Header("ES256", invented.ID), f.iss.Claims(oauthtest.HelpdeskClient, "tickets.read")))
		if a.Code != "oauth_token_invalid" || !strings.Contains(a.Headers[extauthz.WWWAuthenticateHeader], "unknown key") {
			t.Fatalf("an invented kid: %d %s %q", a.Status, a.Code, a.Headers[extauthz.WWWAuthenticateHeader])
		}
	}
	if n := f.iss.JWKSFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (at load, and once for the rotated key)", n)
	}
}

func TestOAuthKeysUnavailable(t *testing.T) {
	iss := oauthtest.Start(t)
	iss.SetDown(true)
	snap, err := policy.Load([]policy.File{{Name: "oauth.yaml", Data: []byte(oauthtest.Policy(iss.URL))}}, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, server.Config{Store: policy.NewStore(snap), OAuthKeys: oauthkeys.New(oauthkeys.Config{}), CheckTimeout: 5 * time.Second})
	client := servertest.Client(t, srv)
	a := servertest.Check(t, client, extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets",
		Headers: map[string]string{"authorization": "Bearer " + iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read"))}}.CheckRequest())
	if a.Allow || a.Status != 503 || a.Code != "oauth_keys_unavailable" {
		t.Errorf("issuer down: %d %s", a.Status, a.Code)
	}
}

// TestOAuthResourceMetadata: Envoy is told to answer a GET of the host's protected-resource
// metadata itself, with status 200 and the JSON document, whoever asks; other methods and paths
// are decided as usual.
func TestOAuthResourceMetadata(t *testing.T) {
	f := newOAuthFixture(t)
	a := f.check(t, "", "GET", "helpdesk.acme.internal", "/.well-known/oauth-protected-resource", "")
	if a.Allow || a.Status != 200 || a.Code != "oauth_resource_metadata" || a.Headers["content-type"] != "application/json" ||
		a.Headers[extauthz.WWWAuthenticateHeader] != "" || a.DecisionID == "" {
		t.Fatalf("metadata: %+v", a)
	}
	// The body is the document (servertest reads any JSON object of a denial as Problem).
	if a.Problem["resource"] != oauthtest.Audience || a.Problem["code"] != nil {
		t.Errorf("metadata body %v", a.Problem)
	}
	// Public metadata, readable from any origin; nothing more is allowed of another origin.
	if a.Headers["access-control-allow-origin"] != "*" || a.Headers["access-control-allow-methods"] != "" || a.Headers["access-control-allow-credentials"] != "" {
		t.Errorf("metadata's CORS headers: %v", a.Headers)
	}
	// A browser's CORS preflight of that GET: answered by Envoy too, with no body.
	// (Read directly: servertest reads a denial's body as a problem, and this one has none.)
	resp, err := f.client.Check(t.Context(), extauthz.HTTPRequest{Method: "OPTIONS", Host: "helpdesk.acme.internal",
		Path: "/.well-known/oauth-protected-resource", Headers: map[string]string{"origin": "https://app.example",
			"access-control-request-method": "GET", "access-control-request-headers": "mcp-protocol-version"}}.CheckRequest())
	if err != nil {
		t.Fatal(err)
	}
	pre := resp.GetDeniedResponse()
	hs := map[string]string{}
	for _, h := range pre.GetHeaders() {
		hs[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if resp.GetDynamicMetadata().GetFields()["code"].GetStringValue() != "oauth_resource_metadata" || pre.GetStatus().GetCode() != 200 ||
		pre.GetBody() != "" || hs["content-type"] != "" || hs["access-control-allow-origin"] != "*" || hs["access-control-allow-methods"] != "GET" ||
		hs["access-control-allow-headers"] != "mcp-protocol-version" || hs["access-control-max-age"] != "86400" ||
		hs["access-control-allow-credentials"] != "" || hs[extauthz.DecisionIDHeader] == "" {
		t.Errorf("preflight: %v", resp)
	}
	for _, r := range [][2]string{{"POST", "/.well-known/oauth-protected-resource"}, {"GET", "/.well-known/oauth-protected-resource?x=1"}, {"OPTIONS", "/v1/tickets"}} {
		if a := f.check(t, "", r[0], "helpdesk.acme.internal", r[1], ""); a.Status != 401 || a.Code != "identity_missing" {
			t.Errorf("%s %s: %d %s", r[0], r[1], a.Status, a.Code)
		}
	}
	// Every other answer leaves CORS to the API: a denial grants no origin anything.
	for _, a := range []servertest.Answer{
		f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", ""),
		f.check(t, "", "OPTIONS", "helpdesk.acme.internal", "/v1/tickets", ""),
		f.check(t, "", "GET", "helpdesk.acme.internal", "/v1/tickets", f.token(t, oauthtest.HelpdeskClient, "tickets.read")),
	} {
		for k := range a.Headers {
			if strings.HasPrefix(k, "access-control-") {
				t.Errorf("%d %s carries %s", a.Status, a.Code, k)
			}
		}
	}
	if a := f.check(t, "", "GET", "reports.acme.internal", "/.well-known/oauth-protected-resource", ""); a.Code == "oauth_resource_metadata" {
		t.Error("a host without oauth serves metadata")
	}
}
