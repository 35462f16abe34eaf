package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/stack"
	"github.com/agentauthz/agentauthz/policy"
)

// The MCP server's OAuth resource: its canonical URI, and where its metadata is.
const (
	mcpResource     = "https://" + demoagent.MCPHost + demoagent.MCPPath
	mcpMetadataURL  = "https://" + demoagent.MCPHost + "/.well-known/oauth-protected-resource" + demoagent.MCPPath
	mcpHostMetadata = "https://" + demoagent.MCPHost + "/.well-known/oauth-protected-resource"
	mcpClientSecret = "helpdesk-client-secret-5d1e"
)

// oauthMCPDemo is the demo policy with the MCP server an OAuth resource server: the local
// issuer's tokens for https://mcp.acme.internal/mcp identify the helpdesk agent (client
// helpdesk-client), and the MCP route also needs OAuth scope mcp.tools.
func oauthMCPDemo(t *testing.T, iss *oauthtest.Issuer) []policy.File {
	t.Helper()
	files := stack.DemoFiles(t)
	for i, f := range files {
		if !strings.HasSuffix(f.Name, "acme.yaml") {
			continue
		}
		text := string(f.Data)
		for old, repl := range map[string]string{
			"  - name: mcp.acme.internal\n": "  - name: mcp.acme.internal\n    oauth: {issuers: [test-idp], audiences: [\"" + mcpResource + "\", \"https://" + demoagent.MCPHost + "\"]}\n",
			"        mcp: helpdesk\n":       "        mcp: helpdesk\n        oauth_scopes: [mcp.tools]\n",
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
`
		files[i].Data = []byte(text)
		return files
	}
	t.Fatal("the demo policy has no acme.yaml")
	return nil
}

// viaEnvoy sends requests for the MCP server's host through Envoy (as the shipped front proxy,
// without a client certificate) and every other one, the issuer's, directly.
type viaEnvoy struct{ envoy, direct http.RoundTripper }

func (v viaEnvoy) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Hostname() == demoagent.MCPHost {
		return v.envoy.RoundTrip(r)
	}
	return v.direct.RoundTrip(r)
}

// sendToken is send with token as the only credential (none when empty).
func sendToken(t *testing.T, c *http.Client, method, url, body, token string, headers ...string) answer {
	t.Helper()
	if token != "" {
		headers = append(headers, "Authorization: Bearer "+token)
	}
	return send(t, &http.Client{Transport: noAuthorization{c.Transport}, Timeout: c.Timeout}, method, url, body, headers...)
}

// noAuthorization removes the agent's own credential send sets, unless a token replaced it.
type noAuthorization struct{ base http.RoundTripper }

func (n noAuthorization) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "Bearer "+agentToken {
		r = r.Clone(r.Context())
		r.Header.Del("Authorization")
	}
	return n.base.RoundTrip(r)
}

// TestMCPClientWithOAuth: an MCP client with no certificate and no token, through real Envoy as
// shipped, is answered 401 with a pointer to the MCP server's metadata; the official Go SDK's
// client-credentials handler follows it to the metadata agentauthz serves, then to the local
// issuer's metadata, obtains a token for the MCP server, and lists and calls the helpdesk's
// tools as the helpdesk agent. The MCP server receives the injected credential and never the
// token. A token for the host rather than the MCP server, or without the route's scope, is
// refused with the challenge the MCP authorization spec describes.
func TestMCPClientWithOAuth(t *testing.T) {
	iss := oauthtest.Start(t)
	// The SDK's client-credentials handler names no resource in its token request (RFC 8707),
	// so the client's tokens are for the MCP server by the issuer's configuration, as identity
	// providers let an operator set a client's default audience.
	iss.AddClient(oauthtest.Client{ID: oauthtest.HelpdeskClient, Secret: mcpClientSecret, Resource: mcpResource})
	s := stack.Start(t, stack.Options{})
	s.Authz.Reload(oauthMCPDemo(t, iss))
	tokenOnly := s.ClientWith(nil, "http/1.1")
	client := &http.Client{Transport: viaEnvoy{envoy: tokenOnly.Transport, direct: http.DefaultTransport}, Timeout: 30 * time.Second}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	mcpHeaders := []string{"Accept: application/json, text/event-stream", "MCP-Protocol-Version: 2025-11-25"}

	// Without a token: 401, where the metadata is, and the scope the MCP server needs.
	before := s.Helpdesk.Count()
	a := sendToken(t, tokenOnly, "POST", mcpURL, initialize, "", mcpHeaders...)
	wantDenial(t, s, a, 401, "identity_missing")
	if got, want := a.header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+mcpMetadataURL+`", scope="mcp.tools"`; got != want {
		t.Errorf("no token: WWW-Authenticate %q, want %q", got, want)
	}

	// The metadata, at the path the challenge names and at the host's root, answered by
	// agentauthz through Envoy to a client with no credential at all.
	servers := []any{iss.URL}
	for url, want := range map[string]map[string]any{
		mcpMetadataURL:  {"resource": mcpResource, "authorization_servers": servers, "scopes_supported": []any{"mcp.tools"}, "bearer_methods_supported": []any{"header"}},
		mcpHostMetadata: {"resource": "https://" + demoagent.MCPHost, "authorization_servers": servers, "scopes_supported": []any{"mcp.tools"}, "bearer_methods_supported": []any{"header"}},
	} {
		a := sendToken(t, tokenOnly, "GET", url, "", "")
		var got map[string]any
		if a.status != 200 || !strings.HasPrefix(a.header.Get("content-type"), "application/json") || json.Unmarshal([]byte(a.body), &got) != nil {
			t.Fatalf("GET %s: %d %q %s", url, a.status, a.header.Get("content-type"), a.body)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s:\n got %v\nwant %v", url, got, want)
		}
		if d, ok := s.Authz.Decisions.Find(a.header.Get(extauthz.DecisionIDHeader)); !ok || d.Code != "oauth_resource_metadata" || d.Status != 200 {
			t.Errorf("GET %s recorded as %+v", url, d)
		}
	}
	// A browser-based MCP client reads the metadata from its own origin: the GET allows any
	// origin, and the CORS preflight of a GET with MCP-Protocol-Version is answered through
	// Envoy. The 401 grants no origin anything: CORS on the MCP server is the server's.
	origin := "Origin: https://chat.example"
	if a := sendToken(t, tokenOnly, "GET", mcpMetadataURL, "", "", origin, "MCP-Protocol-Version: 2025-11-25"); a.status != 200 ||
		a.header.Get("Access-Control-Allow-Origin") != "*" || a.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("GET %s from another origin: %d %v", mcpMetadataURL, a.status, a.header)
	}
	for _, url := range []string{mcpMetadataURL, mcpHostMetadata} {
		a := sendToken(t, tokenOnly, "OPTIONS", url, "", "", origin, "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: mcp-protocol-version")
		if a.status != 200 || a.body != "" || a.header.Get("Access-Control-Allow-Origin") != "*" || a.header.Get("Access-Control-Allow-Methods") != "GET" ||
			a.header.Get("Access-Control-Allow-Headers") != "mcp-protocol-version" || a.header.Get("Access-Control-Max-Age") != "86400" {
			t.Errorf("preflight of %s: %d %v %q", url, a.status, a.header, a.body)
		}
		if d, ok := s.Authz.Decisions.Find(a.header.Get(extauthz.DecisionIDHeader)); !ok || d.Code != "oauth_resource_metadata" || d.Method != "OPTIONS" {
			t.Errorf("preflight of %s recorded as %+v", url, d)
		}
	}
	a = sendToken(t, tokenOnly, "POST", mcpURL, initialize, "", append(mcpHeaders, origin)...)
	for k := range a.header {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("the 401 carries %s: %v", k, a.header)
		}
	}
	if s.Helpdesk.Count() != before {
		t.Errorf("the MCP server received %d requests before the client had a token", s.Helpdesk.Count()-before)
	}

	// The SDK's client: 401, metadata, the issuer's metadata, a token, then the tools.
	handler, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
		Credentials: &oauthex.ClientCredentials{ClientID: oauthtest.HelpdeskClient, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: mcpClientSecret}},
		HTTPClient:  client,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mc := mcp.NewClient(&mcp.Implementation{Name: "oauth-agent", Version: "1"}, nil)
	session, err := mc.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, HTTPClient: client, OAuthHandler: handler}, nil)
	if err != nil {
		t.Fatalf("connect with OAuth: %v", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if len(names) == 0 {
		t.Fatal("the helpdesk agent sees no tools")
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "list_tickets", Arguments: map[string]any{"status": "open", "limit": 5}})
	if err != nil || res.IsError {
		t.Fatalf("list_tickets: %v %+v", err, res)
	}
	if n := iss.TokenRequests.Load(); n != 1 {
		t.Errorf("the issuer's token endpoint was asked %d times, want once", n)
	}
	ts, err := handler.TokenSource(ctx)
	if err != nil || ts == nil {
		t.Fatalf("the handler has no token: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	token := tok.AccessToken
	sig := token[strings.LastIndexByte(token, '.')+1:]

	// The MCP server got each message with the injected credential only, never the token; each
	// was decided as the helpdesk agent, identified by the token.
	var messages int
	for _, r := range s.Helpdesk.Received()[before:] {
		if r.URI != demoagent.MCPPath {
			continue
		}
		messages++
		if auth := r.Header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+stack.HelpdeskToken {
			t.Errorf("an MCP message reached the server with Authorization %q", auth)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, sig) {
					t.Errorf("the MCP server received the client's token in %s", k)
				}
			}
		}
		if strings.Contains(string(r.Body), sig) {
			t.Error("the MCP server received the client's token in a body")
		}
	}
	if messages < 3 {
		t.Errorf("the MCP server received %d messages; want initialize, tools/list and tools/call at least", messages)
	}
	var byToken int
	for _, d := range s.Authz.Decisions.All() {
		if d.IdentitySource == "oauth" && d.Outcome == "allow" {
			byToken++
			if d.Agent != stack.HelpdeskAgent || d.Issuer != iss.URL || d.Subject != oauthtest.HelpdeskClient {
				t.Errorf("an MCP message decided as %+v", d)
			}
		}
	}
	if byToken < messages {
		t.Errorf("%d allowed decisions by token for %d messages", byToken, messages)
	}

	// A token for the host, not the MCP server: 401 invalid_token, pointing to the metadata.
	hostTok := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "mcp.tools", "https://"+demoagent.MCPHost))
	a = sendToken(t, tokenOnly, "POST", mcpURL, initialize, hostTok, mcpHeaders...)
	wantDenial(t, s, a, 401, "oauth_token_invalid")
	if got, want := a.header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+mcpMetadataURL+`", error="invalid_token", error_description="The access token is for another resource"`; got != want {
		t.Errorf("a token for the host: WWW-Authenticate %q, want %q", got, want)
	}
	// Without the route's scope: 403 insufficient_scope naming it, for the client to step up.
	narrow := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read", mcpResource))
	a = sendToken(t, tokenOnly, "POST", mcpURL, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, narrow, mcpHeaders...)
	if a.status != 403 || !strings.Contains(a.body, "oauth_scope_missing") {
		t.Errorf("a token without mcp.tools: %d %s", a.status, a.body)
	}
	if got, want := a.header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+mcpMetadataURL+`", error="insufficient_scope", scope="mcp.tools"`; got != want {
		t.Errorf("a token without mcp.tools: WWW-Authenticate %q, want %q", got, want)
	}
}
