package policy

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// oauthMCPPolicy serves an MCP server at https://mcp.acme.internal/mcp, an OAuth resource of its
// own beside the host as a whole (https://mcp.acme.internal) and an audience that is no URL.
const oauthMCPPolicy = `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read]
oauth_issuers:
  - name: corp-idp
    issuer: https://idp.acme.internal
    jwks_file: corp-idp.jwks.json
    algorithms: [ES256]
    subject_claim: client_id
    agents:
      - {subject: helpdesk-client, agent: spiffe://acme.internal/agent/helpdesk}
  - name: partner-idp
    issuer: https://partner.example/oauth2
    algorithms: [RS256]
    agents:
      - {subject: p, agent: spiffe://acme.internal/agent/helpdesk}
mcp_servers:
  - name: helpdesk
    methods:
      - {allow: [initialize, notifications/initialized, tools/list], scope: tickets:read}
hosts:
  - name: mcp.acme.internal
    oauth:
      issuers: [partner-idp, corp-idp]
      audiences: [https://mcp.acme.internal/mcp, https://mcp.acme.internal, mcp-internal]
    routes:
      - {name: helpdesk-mcp, method: POST, path: /mcp, scope: tickets:read, mcp: helpdesk, oauth_scopes: [mcp.tools]}
      - {name: status, method: GET, path: /v1/status, scope: tickets:read, oauth_scopes: [status.read]}
`

func loadOAuthMCPPolicy(t *testing.T, text string) (*Snapshot, error) {
	t.Helper()
	iss := oauthtest.Start(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), text)
	iss.WriteJWKS(t, filepath.Join(dir, "corp-idp.jwks.json"))
	writeFile(t, filepath.Join(dir, "helpdesk.tools.json"), `{"tools":[
  {"name":"reset_password","inputSchema":{"type":"object","additionalProperties":false}},
  {"name":"get_ticket","inputSchema":{"type":"object","additionalProperties":false}}]}`)
	files, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Load(files, Options{Secrets: Placeholders})
}

// TestOAuthResourceMetadata: the host serves one metadata document per resource, at the root
// well-known path for the host and with the path appended for the MCP server, each naming its
// resource, the host's issuers and the scopes its routes need; nothing else is answered.
func TestOAuthResourceMetadata(t *testing.T) {
	snap, err := loadOAuthMCPPolicy(t, oauthMCPPolicy)
	if err != nil {
		t.Fatal(err)
	}
	oc := snap.OAuth("mcp.acme.internal")
	servers := []any{"https://partner.example/oauth2", "https://idp.acme.internal"}
	for target, want := range map[string]map[string]any{
		"/.well-known/oauth-protected-resource/mcp": {"resource": "https://mcp.acme.internal/mcp", "authorization_servers": servers,
			"scopes_supported": []any{"mcp.tools"}, "bearer_methods_supported": []any{"header"}},
		"/.well-known/oauth-protected-resource": {"resource": "https://mcp.acme.internal", "authorization_servers": servers,
			"scopes_supported": []any{"mcp.tools", "status.read"}, "bearer_methods_supported": []any{"header"}},
	} {
		d, ok := oc.Metadata("GET", target)
		if !ok || d.Code != decision.CodeOAuthResourceMetadata || d.Status() != 200 || d.Allowed() {
			t.Fatalf("GET %s: %v %s %d", target, ok, d.Code, d.Status())
		}
		var got map[string]any
		if err := json.Unmarshal(d.Answer, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s:\n got %v\nwant %v", target, got, want)
		}
	}
	// The CORS preflight of each document's GET is answered too, without a body.
	for _, target := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		d, ok := oc.Metadata("OPTIONS", target)
		if !ok || d.Code != decision.CodeOAuthResourceMetadata || d.Status() != 200 || !d.Preflight || d.Answer == nil || len(d.Answer) != 0 {
			t.Errorf("OPTIONS %s: %v %s %d preflight %v answer %q", target, ok, d.Code, d.Status(), d.Preflight, d.Answer)
		}
		if d, _ := oc.Metadata("GET", target); d.Preflight {
			t.Errorf("GET %s is answered as a preflight", target)
		}
	}
	for _, r := range [][2]string{
		{"OPTIONS", "/.well-known/oauth-protected-resource/mcp?x=1"},
		{"OPTIONS", "/.well-known/oauth-protected-resource/v1/status"},
		{"OPTIONS", "/.well-known/oauth-authorization-server"},
		{"OPTIONS", "/mcp"},
		{"options", "/.well-known/oauth-protected-resource"},
		{"POST", "/.well-known/oauth-protected-resource/mcp"},
		{"HEAD", "/.well-known/oauth-protected-resource"},
		{"GET", "/.well-known/oauth-protected-resource/mcp?x=1"},
		{"GET", "/.well-known/oauth-protected-resource/"},
		{"GET", "/.well-known/oauth-protected-resource/MCP"},
		{"GET", "/.well-known/oauth-protected-resource/%6dcp"},
		{"GET", "/.well-known/oauth-protected-resource/mcp-internal"},
		{"GET", "/.well-known/oauth-protected-resource/v1/status"},
		{"GET", "/.well-known/oauth-authorization-server"},
	} {
		if d, ok := oc.Metadata(r[0], r[1]); ok {
			t.Errorf("%s %s answered %s", r[0], r[1], d.Code)
		}
	}
	rm := `resource_metadata="https://mcp.acme.internal/.well-known/oauth-protected-resource`
	for target, want := range map[string]string{
		"/mcp": rm + `/mcp", scope="mcp.tools"`, "/mcp?session=1": rm + `/mcp", scope="mcp.tools"`, "/v1/status": rm + `"`, "/mcp/": rm + `"`,
	} {
		if got := oc.For(target).Challenge("", ""); got != "Bearer "+want {
			t.Errorf("challenge at %s: %s, want Bearer %s", target, got, want)
		}
	}
	if got := oc.For("/mcp").Resource(); got != "https://mcp.acme.internal/mcp" {
		t.Errorf("the MCP server's resource: %s", got)
	}
}

// TestOAuthResourceAudience: the MCP server's route takes only tokens for the MCP server; the
// host's other routes take any of the host's audiences.
func TestOAuthResourceAudience(t *testing.T) {
	snap, err := loadOAuthMCPPolicy(t, oauthMCPPolicy)
	if err != nil {
		t.Fatal(err)
	}
	corp := snap.OAuthIssuers()[0]
	helpdesk := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	for _, tc := range []struct {
		name, method, path, body string
		audiences                []string
		code                     decision.Code
		challenge                string
	}{
		{"the MCP server's token at the MCP server", "POST", "/mcp", initialize, []string{"https://mcp.acme.internal/mcp"}, decision.CodeAllowed, ""},
		{"a token for the host at the MCP server", "POST", "/mcp", initialize, []string{"https://mcp.acme.internal"}, decision.CodeOAuthTokenInvalid,
			`Bearer resource_metadata="https://mcp.acme.internal/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="The access token is for another resource"`},
		{"a token for the name at the MCP server", "POST", "/mcp", initialize, []string{"mcp-internal"}, decision.CodeOAuthTokenInvalid,
			`Bearer resource_metadata="https://mcp.acme.internal/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="The access token is for another resource"`},
		{"a token for the MCP server and the host", "POST", "/mcp", initialize, []string{"https://mcp.acme.internal", "https://mcp.acme.internal/mcp"}, decision.CodeAllowed, ""},
		{"the MCP server's token elsewhere on the host", "GET", "/v1/status", "", []string{"https://mcp.acme.internal/mcp"}, decision.CodeAllowed, ""},
		{"a token for the name elsewhere on the host", "GET", "/v1/status", "", []string{"mcp-internal"}, decision.CodeAllowed, ""},
	} {
		r := &Request{Agent: helpdesk, Method: tc.method, Host: "mcp.acme.internal", Target: tc.path,
			Headers: headers{"content-type": "application/json", "accept": "application/json, text/event-stream"},
			Token:   &accesstoken.Token{Issuer: corp, Subject: "helpdesk-client", Scopes: []string{"mcp.tools", "status.read"}, Audiences: tc.audiences}}
		if tc.body != "" {
			r.Body = []byte(tc.body)
		}
		d := snap.Decide(r)
		if d.Code != tc.code || d.Challenge != tc.challenge {
			t.Errorf("%s: %s %q (%s), want %s %q", tc.name, d.Code, d.Challenge, d.Detail, tc.code, tc.challenge)
		}
	}
	// A certificate alone still reaches the MCP server: no token, no audience to check.
	r := &Request{Agent: helpdesk, Method: "POST", Host: "mcp.acme.internal", Target: "/mcp", Body: []byte(initialize),
		Headers: headers{"content-type": "application/json", "accept": "application/json, text/event-stream"}}
	if d := snap.Decide(r); !d.Allowed() {
		t.Errorf("the certificate alone: %s %s", d.Code, d.Detail)
	}
}

// TestOAuthResourceProblems: an MCP server on a host with oauth must be one of its resources.
func TestOAuthResourceProblems(t *testing.T) {
	for name, audiences := range map[string]string{
		"the host only":           "[https://mcp.acme.internal]",
		"a trailing slash":        "[https://mcp.acme.internal/mcp/]",
		"another host":            "[https://other.acme.internal/mcp]",
		"a port":                  "[https://mcp.acme.internal:443/mcp]",
		"http":                    "[http://mcp.acme.internal/mcp]",
		"upper case":              "[https://MCP.acme.internal/mcp]",
		"percent-encoded":         "[https://mcp.acme.internal/%6dcp]",
		"a name, not a URL":       "[helpdesk-mcp]",
		"the path with a query":   `["https://mcp.acme.internal/mcp?x"]`,
		"a dot segment before it": "[https://mcp.acme.internal/./mcp]",
	} {
		text := strings.Replace(oauthMCPPolicy, "[https://mcp.acme.internal/mcp, https://mcp.acme.internal, mcp-internal]", audiences, 1)
		_, err := loadOAuthMCPPolicy(t, text)
		if err == nil || !strings.Contains(err.Error(), "list the MCP server's resource identifier https://mcp.acme.internal/mcp among its oauth.audiences") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestOAuthToolScopes: a tool may need OAuth scopes of its own, besides the route's: a token
// without them is refused with insufficient_scope naming the route's and the tool's; other
// tools, and a certificate without a token, are not affected; the metadata lists them; a host
// without OAuth cannot serve such a tool.
func TestOAuthToolScopes(t *testing.T) {
	text := strings.Replace(oauthMCPPolicy, `      - {allow: [initialize, notifications/initialized, tools/list], scope: tickets:read}
`, `      - {allow: [initialize, notifications/initialized, tools/list], scope: tickets:read}
    tools_snapshot: helpdesk.tools.json
    tools:
      - {name: reset_password, scope: tickets:read, oauth_scopes: [tickets.admin]}
      - {name: get_ticket, scope: tickets:read}
`, 1)
	snap, err := loadOAuthMCPPolicy(t, text)
	if err != nil {
		t.Fatal(err)
	}
	corp := snap.OAuthIssuers()[0]
	helpdesk := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	call := func(tool string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`)
	}
	for _, tc := range []struct {
		name, tool string
		scopes     []string // nil: no token
		code       decision.Code
		challenge  string
	}{
		{"a token without the tool's scope", "reset_password", []string{"mcp.tools"}, decision.CodeOAuthScopeMissing,
			`Bearer resource_metadata="https://mcp.acme.internal/.well-known/oauth-protected-resource/mcp", error="insufficient_scope", scope="mcp.tools tickets.admin"`},
		{"a token with it", "reset_password", []string{"mcp.tools", "tickets.admin"}, decision.CodeAllowed, ""},
		{"another tool", "get_ticket", []string{"mcp.tools"}, decision.CodeAllowed, ""},
		{"a certificate without a token", "reset_password", nil, decision.CodeAllowed, ""},
	} {
		r := &Request{Agent: helpdesk, Method: "POST", Host: "mcp.acme.internal", Target: "/mcp", Body: call(tc.tool),
			Headers: headers{"content-type": "application/json", "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}}
		if tc.scopes != nil {
			r.Token = &accesstoken.Token{Issuer: corp, Subject: "helpdesk-client", Scopes: tc.scopes, Audiences: []string{"https://mcp.acme.internal/mcp"}}
		}
		d := snap.Decide(r)
		if d.Code != tc.code || d.Challenge != tc.challenge {
			t.Errorf("%s: %s %q (%s), want %s %q", tc.name, d.Code, d.Challenge, d.Detail, tc.code, tc.challenge)
		}
		if d.Code == decision.CodeOAuthScopeMissing && (d.MCP == nil || d.Rule != "helpdesk/reset_password") {
			t.Errorf("%s: rule %q, MCP call %+v; want the tool's, answered as JSON-RPC", tc.name, d.Rule, d.MCP)
		}
	}
	d, _ := snap.OAuth("mcp.acme.internal").Metadata("GET", "/.well-known/oauth-protected-resource/mcp")
	var md struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal(d.Answer, &md); err != nil || !reflect.DeepEqual(md.Scopes, []string{"mcp.tools", "tickets.admin"}) {
		t.Errorf("the MCP server's metadata lists scopes %v (%v), want the route's and the tool's", md.Scopes, err)
	}

	noOAuth := strings.Replace(text, `    oauth:
      issuers: [partner-idp, corp-idp]
      audiences: [https://mcp.acme.internal/mcp, https://mcp.acme.internal, mcp-internal]
`, "", 1)
	noOAuth = strings.Replace(noOAuth, ", oauth_scopes: [mcp.tools]}", "}", 1)
	noOAuth = strings.Replace(noOAuth, ", oauth_scopes: [status.read]}", "}", 1)
	if _, err := loadOAuthMCPPolicy(t, noOAuth); err == nil || !strings.Contains(err.Error(), "tool reset_password of MCP server helpdesk needs OAuth scopes") {
		t.Errorf("a tool with OAuth scopes on a host without OAuth: %v", err)
	}
}

// FuzzResourcePath: an audience read as a resource of the host is exactly https://host and the
// path, and the path is one plain spelling: no empty, dot or encoded segment, no trailing slash.
func FuzzResourcePath(f *testing.F) {
	for _, s := range []string{"https://mcp.acme.internal", "https://mcp.acme.internal/mcp", "https://mcp.acme.internal/a/b",
		"https://mcp.acme.internal/", "https://mcp.acme.internal//mcp", "https://mcp.acme.internal/./mcp", "https://mcp.acme.internal/%6dcp",
		"https://mcp.acme.internal:443/mcp", "https://mcp.acme.internal.evil/mcp", "https://mcp.acme.internal@evil/mcp", "helpdesk"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, aud string) {
		path, ok := resourcePath("mcp.acme.internal", aud)
		if !ok {
			return
		}
		if "https://mcp.acme.internal"+path != aud {
			t.Fatalf("%q read as path %q", aud, path)
		}
		if path == "" {
			return
		}
		if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "//") ||
			strings.ContainsAny(path, "?#%\\ ") {
			t.Fatalf("%q: path %q is not one plain spelling", aud, path)
		}
		for _, seg := range strings.Split(path[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: dot segment in %q", aud, path)
			}
		}
	})
}
