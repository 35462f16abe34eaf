package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const oauthPolicy = `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read, tickets:write]
  - id: spiffe://acme.internal/agent/bi
    scopes: [reports:read]
oauth_issuers:
  - name: corp-idp
    issuer: https://idp.acme.internal
    jwks_file: corp-idp.jwks.json
    algorithms: [ES256, RS256]
    subject_claim: client_id
    agents:
      - {subject: helpdesk-client, agent: spiffe://acme.internal/agent/helpdesk}
      - {subject: helpdesk-batch, agent: spiffe://acme.internal/agent/helpdesk}
  - name: partner-idp
    issuer: https://partner.example/oauth2
    algorithms: [RS256]
    token_types: [JWT, ""]
    clock_skew: 5s
    agents:
      - {subject: bi-client, agent: spiffe://acme.internal/agent/bi}
hosts:
  - name: helpdesk.acme.internal
    oauth:
      issuers: [corp-idp, partner-idp]
      audiences: [https://helpdesk.acme.internal, helpdesk]
    remove_headers: [cookie]
    routes:
      - {name: list-tickets, method: GET, path: /v1/tickets, scope: tickets:read, oauth_scopes: [tickets.read]}
      - {name: close-ticket, method: POST, path: /v1/tickets/close, scope: tickets:write, oauth_scopes: [tickets.read, tickets.write]}
      - {name: reports-here, method: GET, path: /v1/reports, scope: reports:read}
  - name: injected.acme.internal
    oauth:
      issuers: [corp-idp]
      audiences: [https://injected.acme.internal]
    inject_headers:
      - {name: authorization, prefix: "Bearer ", env: UPSTREAM}
    routes:
      - {name: injected-tickets, method: GET, path: /v1/tickets, scope: tickets:read}
  - name: reports.acme.internal
    routes:
      - {name: revenue, method: GET, path: /v1/revenue, scope: reports:read}
`

func loadOAuthPolicy(t *testing.T) (*Snapshot, *oauthtest.Issuer) {
	t.Helper()
	iss := oauthtest.Start(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), oauthPolicy)
	iss.WriteJWKS(t, filepath.Join(dir, "corp-idp.jwks.json"))
	files, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Load(files, Options{Secrets: Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap, iss
}

func TestOAuthCompiled(t *testing.T) {
	snap, iss := loadOAuthPolicy(t)
	issuers := snap.OAuthIssuers()
	if len(issuers) != 2 {
		t.Fatalf("%d issuers", len(issuers))
	}
	corp, partner := issuers[0], issuers[1]
	if corp.Keys.Len() != 2 || corp.Keys.Get(iss.Key("ES256").ID) == nil || corp.SubjectClaim != "client_id" ||
		corp.ScopeClaim != "scope" || corp.Skew != accesstoken.DefaultSkew || len(corp.Types) != 1 || corp.Types[0] != "at+jwt" {
		t.Errorf("corp-idp: %+v", corp)
	}
	if partner.Keys != nil || partner.JWKSURL != "" || partner.SubjectClaim != "sub" || partner.Skew.Seconds() != 5 ||
		len(partner.Types) != 2 || partner.Types[0] != "jwt" || partner.Types[1] != "" {
		t.Errorf("partner-idp: %+v", partner)
	}
	helpdesk := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	for _, sub := range []string{"helpdesk-client", "helpdesk-batch"} {
		if id, ok := snap.OAuthAgent(corp, sub); !ok || id != helpdesk {
			t.Errorf("corp-idp %s: %v %v", sub, id, ok)
		}
	}
	if _, ok := snap.OAuthAgent(partner, "helpdesk-client"); ok {
		t.Error("a subject of one issuer is mapped for another")
	}
	if _, ok := snap.OAuthAgent(corp, "Helpdesk-Client"); ok {
		t.Error("subjects are matched without case")
	}
	oc := snap.OAuth("HELPDESK.acme.internal")
	if oc == nil || len(oc.Validator.Audiences()) != 2 {
		t.Fatalf("helpdesk's OAuth: %+v", oc)
	}
	if snap.OAuth("reports.acme.internal") != nil || snap.OAuth("helpdesk.acme.internal:443") != nil {
		t.Error("OAuth on a host without it")
	}
	if got := oc.Challenge("", ""); got != `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource"` {
		t.Errorf("challenge %q", got)
	}
	if got, want := oc.Challenge("invalid_token", "The access token expired"), `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="invalid_token", error_description="The access token expired"`; got != want {
		t.Errorf("challenge %q, want %q", got, want)
	}
}

func TestOAuthDecide(t *testing.T) {
	snap, _ := loadOAuthPolicy(t)
	helpdesk := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	corp := snap.OAuthIssuers()[0]
	req := func(method, host, path string, scopes ...string) *Request {
		r := &Request{Agent: helpdesk, Method: method, Host: host, Target: path, Headers: headers{}}
		if scopes != nil {
			r.Token = &accesstoken.Token{Issuer: corp, Subject: "helpdesk-client", Scopes: scopes}
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		r         *Request
		code      decision.Code
		challenge string
	}{
		{"a token with the scope", req("GET", "helpdesk.acme.internal", "/v1/tickets", "tickets.read"), decision.CodeAllowed, ""},
		{"a token without it", req("GET", "helpdesk.acme.internal", "/v1/tickets", "tickets.write"), decision.CodeOAuthScopeMissing,
			`Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="insufficient_scope", scope="tickets.read"`},
		{"a token with one of two", req("POST", "helpdesk.acme.internal", "/v1/tickets/close", "tickets.read"), decision.CodeOAuthScopeMissing,
			`Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="insufficient_scope", scope="tickets.read tickets.write"`},
		{"a token with both", req("POST", "helpdesk.acme.internal", "/v1/tickets/close", "tickets.write", "tickets.read"), decision.CodeAllowed, ""},
		{"a token with no scopes", req("GET", "helpdesk.acme.internal", "/v1/tickets", []string{}...), decision.CodeOAuthScopeMissing,
			`Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="insufficient_scope", scope="tickets.read"`},
		{"no token: the certificate's agent, policy scopes only", req("GET", "helpdesk.acme.internal", "/v1/tickets"), decision.CodeAllowed, ""},
		{"the agent's own scope first", req("GET", "helpdesk.acme.internal", "/v1/reports", "reports.read"), decision.CodeScopeMissing, ""},
	} {
		d := snap.Decide(tc.r)
		if d.Code != tc.code || d.Challenge != tc.challenge {
			t.Errorf("%s: %s %q (%s), want %s %q", tc.name, d.Code, d.Challenge, d.Detail, tc.code, tc.challenge)
		}
		if d.Allowed() {
			checkRemoves(t, tc.name, d.Grant, "authorization", true)
		}
	}
	d := snap.Decide(req("GET", "injected.acme.internal", "/v1/tickets", "x"))
	if !d.Allowed() {
		t.Fatalf("injected host: %s", d.Code)
	}
	// The injected credential replaces the agent's token; removing the header too would drop it.
	checkRemoves(t, "injected host", d.Grant, "authorization", false)
	if len(d.Grant.Set) != 1 || d.Grant.Set[0].Name != "authorization" {
		t.Errorf("injected host sets %+v", d.Grant.Set)
	}
	_, steps := snap.Explain(req("GET", "helpdesk.acme.internal", "/v1/tickets", "tickets.write"))
	if !strings.Contains(strings.Join(steps, "\n"), "and OAuth scopes tickets.read (not granted); decides deny oauth_scope_missing") {
		t.Errorf("the explanation does not say the OAuth scope is missing: %q", steps)
	}
}

func checkRemoves(t *testing.T, name string, g *decision.Grant, header string, want bool) {
	t.Helper()
	if got := g != nil && contains(g.Remove, header); got != want {
		t.Errorf("%s: removes %s: %v, want %v (%v)", name, header, got, want, g)
	}
}

func TestOAuthKeysFileInRevision(t *testing.T) {
	snap1, _ := loadOAuthPolicy(t)
	snap2, _ := loadOAuthPolicy(t) // another issuer, other keys
	if snap1.Revision() == snap2.Revision() {
		t.Error("the JWKS file does not count in the revision")
	}
}
