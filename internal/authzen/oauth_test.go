package authzen_test

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy"
)

// withOAuth decides from oauthtest's policy, the issuer's keys fetched as serve fetches them.
func withOAuth(t testing.TB, iss *oauthtest.Issuer) option {
	return func(cfg *serverConfig, _ *pdp) {
		snap, err := policy.Load([]policy.File{{Name: "oauth.yaml", Data: []byte(oauthtest.Policy(iss.URL))}}, policy.Options{
			Secrets: func(policy.SecretRef) (string, error) { return credential, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = policy.NewStore(snap)
		cfg.OAuthKeys = oauthkeys.New(oauthkeys.Config{})
	}
}

// tokenEval is the evaluation of an HTTP request by the agent its access token names.
func tokenEval(method, url, token string) map[string]any {
	ev := httpEval("", method, url, nil)
	ev["subject"] = map[string]any{"type": authzen.SubjectAccessToken, "id": "authorization"}
	if token != "" {
		ev["context"] = map[string]any{"headers": map[string]any{"authorization": "Bearer " + token}}
	}
	return ev
}

// TestOAuthSubject: a PEP asks about a request it has not identified, by the access token it
// carries: decided as the agent the token names, as through Envoy's door; without a token, or
// without the route's OAuth scope, the denial carries the challenge Envoy would answer with.
func TestOAuthSubject(t *testing.T) {
	iss := oauthtest.Start(t)
	p := startPDP(t, withOAuth(t, iss))
	const list = "https://helpdesk.acme.internal/v1/tickets"
	rm := `Bearer resource_metadata="` + oauthtest.Audience + `/.well-known/oauth-protected-resource"`
	read := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read"))
	if v := p.evaluation(t, tokenEval("GET", list, read)); !v.Decision || v.Rule != "list-tickets" {
		t.Errorf("a token with tickets.read: %+v", v)
	}
	recs := p.decisions.records()
	if d := recs[len(recs)-1]; d.IdentitySource != "oauth" || d.Agent != oauthtest.Helpdesk || d.Subject != oauthtest.HelpdeskClient {
		t.Errorf("recorded as %+v", d)
	}
	v := p.evaluation(t, tokenEval("GET", list, ""))
	if v.Decision || v.Code != "identity_missing" || v.Status != 401 || v.Context["www_authenticate"] != rm {
		t.Errorf("no token: %+v", v)
	}
	v = p.evaluation(t, tokenEval("POST", "https://helpdesk.acme.internal/v1/tickets/4711/comments", read))
	if want := rm + `, error="insufficient_scope", scope="tickets.write"`; v.Decision || v.Code != "oauth_scope_missing" || v.Context["www_authenticate"] != want {
		t.Errorf("without tickets.write: %+v, want www_authenticate %s", v, want)
	}
	// A host without oauth has no token to go by.
	if v := p.evaluation(t, tokenEval("GET", "https://reports.acme.internal/v1/revenue", read)); v.Decision || v.Code != "identity_missing" || v.Context["www_authenticate"] != nil {
		t.Errorf("a host without oauth: %+v", v)
	}
	bad := tokenEval("GET", list, read)
	bad["subject"] = map[string]any{"type": authzen.SubjectAccessToken, "id": "x-token"}
	if v := p.evaluation(t, bad); v.Decision || v.Code != "request_malformed" || !strings.Contains(v.Context["detail"].(string), `"authorization"`) {
		t.Errorf("an access_token subject naming another header: %+v", v)
	}
}

// mcpResource is the demo's MCP server as an OAuth resource, in withOAuthMCP's policy.
const mcpResource = "https://mcp.acme.internal/mcp"

// withOAuthMCP decides from the demo policy with the MCP server's host accepting the issuer's
// access tokens for the MCP server (mcp.tools on its route), the helpdesk client mapped to the
// helpdesk agent.
func withOAuthMCP(t testing.TB, iss *oauthtest.Issuer) option {
	return func(cfg *serverConfig, _ *pdp) {
		files, err := policy.ReadFS(demo.Files, demo.Dir)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for i, f := range files {
			if !strings.HasSuffix(f.Name, "acme.yaml") {
				continue
			}
			text := string(f.Data)
			for old, repl := range map[string]string{
				"  - name: mcp.acme.internal\n": "  - name: mcp.acme.internal\n    oauth: {issuers: [test-idp], audiences: [\"" + mcpResource + "\"]}\n",
				"        mcp: helpdesk\n":       "        mcp: helpdesk\n        oauth_scopes: [mcp.tools]\n",
			} {
				if strings.Count(text, old) != 1 {
					t.Fatalf("the demo policy no longer has %q once", old)
				}
				text = strings.Replace(text, old, repl, 1)
			}
			files[i].Data = []byte(text + `
oauth_issuers:
  - name: test-idp
    issuer: ` + iss.URL + `
    algorithms: [ES256]
    subject_claim: client_id
    agents:
      - {subject: ` + oauthtest.HelpdeskClient + `, agent: ` + helpdesk + `}
`)
			found = true
		}
		if !found {
			t.Fatal("the demo policy has no acme.yaml")
		}
		snap, err := policy.Load(files, policy.Options{Secrets: func(policy.SecretRef) (string, error) { return credential, nil }})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = policy.NewStore(snap)
		cfg.OAuthKeys = oauthkeys.New(oauthkeys.Config{})
	}
}

// toolEval is the evaluation of a call of the demo MCP server's tool by subject.
func toolEval(subject map[string]any, tool string, args map[string]any, token string) map[string]any {
	ev := map[string]any{
		"subject": subject,
		"action":  map[string]any{"name": "tools/call"},
		"resource": map[string]any{"type": authzen.ResourceMCPTool, "id": tool,
			"properties": map[string]any{"server": "mcp.acme.internal/mcp", "arguments": args}},
	}
	if token != "" {
		ev["context"] = map[string]any{"headers": map[string]any{"authorization": "Bearer " + token}}
	}
	return ev
}

// TestOAuthSubjectMCPTool: an MCP tool call of an agent a PEP knows only by its access token is
// decided as the agent the token names, as the same tool call of that agent's certificate; no
// token, a token for another resource or without the MCP server's scope are refused with the
// challenge Envoy would answer with.
func TestOAuthSubjectMCPTool(t *testing.T) {
	iss := oauthtest.Start(t)
	p := startPDP(t, withOAuthMCP(t, iss))
	byToken := map[string]any{"type": authzen.SubjectAccessToken, "id": "authorization"}
	byCert := map[string]any{"type": authzen.SubjectAgent, "id": helpdesk}
	tok := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "mcp.tools", mcpResource))
	rm := `Bearer resource_metadata="https://mcp.acme.internal/.well-known/oauth-protected-resource/mcp"`

	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"list_tickets", map[string]any{"status": "open", "limit": 5}},
		{"list_tickets", map[string]any{"limit": 5000}},
		{"delete_ticket", map[string]any{"id": "4711"}},
	} {
		want := p.evaluation(t, toolEval(byCert, c.tool, c.args, tok))
		got := p.evaluation(t, toolEval(byToken, c.tool, c.args, tok))
		if got.Decision != want.Decision || got.Code != want.Code || got.Rule != want.Rule {
			t.Errorf("%s %v: by token %v %s %q, by certificate %v %s %q", c.tool, c.args, got.Decision, got.Code, got.Rule, want.Decision, want.Code, want.Rule)
		}
		recs := p.decisions.records()
		if d := recs[len(recs)-1]; d.IdentitySource != "oauth" || d.Agent != helpdesk || d.Subject != oauthtest.HelpdeskClient || d.MCPName != c.tool {
			t.Errorf("%s by token recorded as %+v", c.tool, d)
		}
	}
	if v := p.evaluation(t, toolEval(byToken, "list_tickets", map[string]any{"limit": 5}, tok)); !v.Decision || v.Rule != "helpdesk/list_tickets" {
		t.Errorf("list_tickets by token: %+v", v)
	}

	for name, c := range map[string]struct {
		token, code, challenge string
		status                 int
	}{
		"no token":             {"", "identity_missing", rm + `, scope="mcp.tools"`, 401},
		"for another resource": {iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "mcp.tools", "https://mcp.acme.internal")), "oauth_token_invalid", rm + `, error="invalid_token", error_description="The access token is for another resource"`, 401},
		"without mcp.tools":    {iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read", mcpResource)), "oauth_scope_missing", rm + `, error="insufficient_scope", scope="mcp.tools"`, 403},
	} {
		v := p.evaluation(t, toolEval(byToken, "list_tickets", map[string]any{"limit": 5}, c.token))
		if v.Decision || v.Code != c.code || v.Status != c.status || v.Context["www_authenticate"] != c.challenge {
			t.Errorf("%s: %+v, want %d %s with %s", name, v, c.status, c.code, c.challenge)
		}
	}

	// Another agent's certificate with the helpdesk's token: the two disagree.
	if v := p.evaluation(t, toolEval(map[string]any{"type": authzen.SubjectAgent, "id": bi}, "list_tickets", map[string]any{"limit": 5}, tok)); v.Decision || v.Code != "identity_conflict" {
		t.Errorf("the BI agent with the helpdesk's token: %+v", v)
	}
	bad := toolEval(map[string]any{"type": authzen.SubjectAccessToken, "id": "x-token"}, "list_tickets", nil, tok)
	if v := p.evaluation(t, bad); v.Decision || v.Code != "request_malformed" || !strings.Contains(v.Context["detail"].(string), `"authorization"`) {
		t.Errorf("an access_token subject naming another header: %+v", v)
	}
	bad = toolEval(byToken, "list_tickets", nil, "")
	bad["context"] = map[string]any{"headers": map[string]any{"Authorization": "Bearer " + tok}}
	if v := p.evaluation(t, bad); v.Decision || v.Code != "request_malformed" {
		t.Errorf("a header name that is not lower case: %+v", v)
	}
}
