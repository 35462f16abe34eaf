package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/stack"
	"github.com/agentauthz/agentauthz/policy"
)

// oauthDemo is the demo policy with a local issuer's access tokens accepted on the helpdesk
// host: its client helpdesk-client is the helpdesk agent, bi-client the BI agent, and
// commenting on a ticket needs OAuth scope tickets.write besides the agent's tickets:comment.
func oauthDemo(t *testing.T, iss *oauthtest.Issuer) []policy.File {
	t.Helper()
	files := stack.DemoFiles(t)
	for i, f := range files {
		if !strings.HasSuffix(f.Name, "acme.yaml") {
			continue
		}
		text := string(f.Data)
		for old, repl := range map[string]string{
			"  - name: helpdesk.acme.internal\n": "  - name: helpdesk.acme.internal\n    oauth: {issuers: [test-idp], audiences: [\"" + oauthtest.Audience + "\"]}\n",
			"          scope: tickets:comment\n": "          scope: tickets:comment\n          oauth_scopes: [tickets.write]\n",
		} {
			if strings.Count(text, old) != 1 {
				t.Fatalf("the demo policy no longer has %q once", old)
			}
			text = strings.Replace(text, old, repl, 1)
		}
		text += `
oauth_issuers:
  - name: test-idp
    issuer: ` + iss.URL + `
    algorithms: [ES256, RS256]
    subject_claim: client_id
    agents:
      - {subject: helpdesk-client, agent: spiffe://acme.internal/agent/helpdesk}
      - {subject: bi-client, agent: spiffe://acme.internal/agent/bi}
`
		files[i].Data = []byte(text)
		return files
	}
	t.Fatal("the demo policy has no acme.yaml")
	return nil
}

// sendBearer makes one request through Envoy with token as its Bearer credential (none when
// empty).
func sendBearer(t *testing.T, c *http.Client, method, url, body, token string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.Header.Get("content-type") == "application/problem+json" {
		if err := json.Unmarshal(b, &a.problem); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return a
}

// TestOAuthAgentThroughEnvoy: an agent with only an access token, through real Envoy as shipped
// (front-proxy.yaml lets clients without certificates reach the hosts that accept tokens), is
// decided as the agent its client maps to; it is refused with
// the challenges RFC 6750 describes; and the helpdesk API never sees its token, only the
// credential agentauthz injects.
func TestOAuthAgentThroughEnvoy(t *testing.T) {
	iss := oauthtest.Start(t)
	s := stack.Start(t, stack.Options{})
	s.Authz.Reload(oauthDemo(t, iss))
	tokenOnly := s.ClientWith(nil, "http/1.1")
	h2TokenOnly := s.ClientWith(nil, "h2")
	readTok := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read"))
	writeTok := iss.Token(t, jose.RS256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read tickets.write"))
	var tokens = []string{readTok, writeTok}

	// Allowed with the token alone, over HTTP/1.1 and HTTP/2; the API gets the injected
	// credential and nothing of the token.
	for _, c := range []*http.Client{tokenOnly, h2TokenOnly} {
		before := s.Helpdesk.Count()
		if a := sendBearer(t, c, "GET", helpdesk+"/v1/tickets", "", readTok); a.status != 200 {
			t.Fatalf("list tickets with a token: %d %s", a.status, a.body)
		}
		got := s.Helpdesk.Received()
		if len(got) != before+1 {
			t.Fatalf("the API received %d requests", len(got)-before)
		}
		r := got[before]
		if auth := r.Header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+stack.HelpdeskToken {
			t.Errorf("the API received Authorization %q, want only the injected credential", auth)
		}
		id := allowedID(t, s, r.Header, "list-tickets")
		if d, _ := s.Authz.Decisions.Find(id); d.IdentitySource != "oauth" || d.Agent != stack.HelpdeskAgent || d.Issuer != iss.URL || d.Subject != oauthtest.HelpdeskClient {
			t.Errorf("recorded as %+v", d)
		}
	}

	// The same answers as the helpdesk agent's certificate gets.
	cert := s.Client(stack.HelpdeskAgent)
	for _, r := range []struct{ method, target, body string }{
		{"GET", "/v1/tickets/4711", ""}, {"GET", "/v1/tickets?status=lost", ""},
		{"DELETE", "/v1/tickets/4711", ""}, {"GET", "/v1/users", ""},
	} {
		byCert := sendBearer(t, cert, r.method, helpdesk+r.target, r.body, "")
		byToken := sendBearer(t, tokenOnly, r.method, helpdesk+r.target, r.body, readTok)
		if byCert.status != byToken.status || byCert.str("code") != byToken.str("code") {
			t.Errorf("%s %s: certificate %d %s, token %d %s", r.method, r.target, byCert.status, byCert.str("code"), byToken.status, byToken.str("code"))
		}
	}

	// No token: 401 with a Bearer challenge, so that a client learns to get one.
	a := sendBearer(t, tokenOnly, "GET", helpdesk+"/v1/tickets", "", "")
	wantDenial(t, s, a, 401, "identity_missing")
	if got := a.header.Get("WWW-Authenticate"); got != `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource"` {
		t.Errorf("no token: WWW-Authenticate %q", got)
	}
	// Expired, for another resource, or tampered: 401 invalid_token.
	expired := iss.Claims(oauthtest.HelpdeskClient, "tickets.read")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	other := iss.Claims(oauthtest.HelpdeskClient, "tickets.read", "https://bi.acme.internal")
	parts := strings.Split(readTok, ".")
	tampered := parts[0] + "." + strings.Split(oauthtest.SigningInput(t, oauthtest.Header("ES256", "x"), iss.Claims(oauthtest.BIClient, "tickets.read")), ".")[1] + "." + parts[2]
	for name, tok := range map[string]string{
		"expired":              iss.Token(t, jose.ES256, expired),
		"for another resource": iss.Token(t, jose.ES256, other),
		"tampered":             tampered,
	} {
		tokens = append(tokens, tok)
		a := sendBearer(t, tokenOnly, "GET", helpdesk+"/v1/tickets", "", tok)
		wantDenial(t, s, a, 401, "oauth_token_invalid")
		if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="invalid_token", error_description="`) {
			t.Errorf("%s: WWW-Authenticate %q", name, got)
		}
	}

	// Step-up: commenting needs tickets.write; the challenge names it; the new token passes.
	comment := `{"body":"Restarted the print spooler."}`
	a = sendBearer(t, tokenOnly, "POST", helpdesk+"/v1/tickets/4711/comments", comment, readTok)
	wantDenial(t, s, a, 403, "oauth_scope_missing")
	if got, want := a.header.Get("WWW-Authenticate"), `Bearer resource_metadata="https://helpdesk.acme.internal/.well-known/oauth-protected-resource", error="insufficient_scope", scope="tickets.write"`; got != want {
		t.Errorf("insufficient scope: WWW-Authenticate %q, want %q", got, want)
	}
	if a := sendBearer(t, h2TokenOnly, "POST", helpdesk+"/v1/tickets/4711/comments", comment, writeTok); a.status != 201 {
		t.Errorf("comment with tickets.write: %d %s", a.status, a.body)
	}

	// A certificate and a token: the same agent is allowed, another is refused.
	if a := sendBearer(t, cert, "GET", helpdesk+"/v1/tickets", "", readTok); a.status != 200 {
		t.Errorf("the helpdesk certificate with the helpdesk token: %d %s", a.status, a.body)
	}
	a = sendBearer(t, s.Client(stack.BIAgent), "GET", helpdesk+"/v1/tickets", "", readTok)
	wantDenial(t, s, a, 401, "identity_conflict")

	// A host without oauth still wants certificates: Envoy refuses the handshake.
	req, err := http.NewRequest("POST", "https://"+demoagent.BIHost+"/graphql", strings.NewReader(`{"query":"{ revenue { total } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readTok)
	if resp, err := s.ClientWith(nil, "http/1.1").Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a host without oauth answered a client without a certificate: %d", resp.StatusCode)
	}

	// Nothing that reached an API carried a token the agents sent; no decision recorded one.
	for _, r := range append(s.Helpdesk.Received(), s.BI.Received()...) {
		for k, vs := range r.Header {
			for _, v := range vs {
				for _, tok := range tokens {
					if strings.Contains(v, parts[2]) || strings.Contains(v, tok) || strings.Contains(v, strings.Split(tok, ".")[2]) {
						t.Errorf("%s %s reached the API with the agent's token in %s", r.Method, r.URI, k)
					}
				}
			}
		}
	}
	for _, d := range s.Authz.Decisions.All() {
		for _, tok := range tokens {
			if strings.Contains(strings.Join([]string{d.Agent, d.Issuer, d.Subject, d.Path}, " "), strings.Split(tok, ".")[2]) {
				t.Errorf("a decision record holds a token: %+v", d)
			}
		}
	}
}
