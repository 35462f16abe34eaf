package helpdeskmcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
)

const addComment = `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add_comment","arguments":{"ticket_id":"4711","body":"should never land"}}}`

// Without the injected credential nothing reaches the MCP server: 401, and no tool runs.
func TestCredentialRequired(t *testing.T) {
	s := start(t)
	for _, auth := range []string{"", "Bearer agent-own-token-must-never-reach-an-api", "Bearer " + token + "x", "bearer " + token, token} {
		a := s.post(t, auth, "2025-11-25", addComment)
		if a.status != http.StatusUnauthorized || a.header.Get("Www-Authenticate") != `Bearer realm="helpdesk"` ||
			!strings.Contains(string(a.raw), `"code":"unauthenticated"`) {
			t.Errorf("Authorization %q: %d %s, want 401 unauthenticated", auth, a.status, a.raw)
		}
	}
	if tk, _ := s.api.Ticket("4711"); len(tk.Comments) != 0 {
		t.Errorf("a refused request added a comment: %+v", tk.Comments)
	}
	if strings.Contains(s.logs.String(), "tool call") || strings.Contains(s.logs.String(), token) {
		t.Errorf("a tool ran, or the log shows the token:\n%s", s.logs)
	}
	for _, want := range []string{`"path":"/mcp","query":"","credential":"missing","status":401`, `"credential":"wrong","status":401`} {
		if !strings.Contains(s.logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, s.logs)
		}
	}
	if a := s.post(t, "Bearer "+token, "2025-11-25", addComment); a.status != http.StatusOK {
		t.Errorf("the injected credential: %d %s", a.status, a.raw)
	}
}

func TestUnknownToolIsAProtocolError(t *testing.T) {
	s := start(t)
	a := s.post(t, "Bearer "+token, "2025-11-25", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_ticket","arguments":{"id":"4711"}}}`)
	if a.status != http.StatusOK || a.msg.Error == nil || a.msg.Error.Code != -32602 || a.msg.Error.Message != `unknown tool "delete_ticket"` {
		t.Errorf("%d %s", a.status, a.raw)
	}
	if _, ok := s.api.Ticket("4711"); !ok {
		t.Error("the ticket is gone")
	}
}

// /mcp is the MCP server; every other path is the REST API, both behind the one credential.
func TestRoutes(t *testing.T) {
	s := start(t)
	var list struct {
		Tickets []json.RawMessage `json:"tickets"`
	}
	if status := s.rest(t, "GET", "/v1/tickets?status=open", "", &list); status != 200 || len(list.Tickets) != 3 {
		t.Errorf("REST beside MCP: %d, %d tickets", status, len(list.Tickets))
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/mcp", http.StatusMethodNotAllowed},    // stateless: no stream to open
		{"DELETE", "/mcp", http.StatusMethodNotAllowed}, // and no session to end
		{"POST", "/mcp/", http.StatusNotFound},          // the REST API's, not the MCP server's
	} {
		req, _ := http.NewRequest(c.method, s.url+c.path, nil)
		req.Host = helpdeskmcp.Host
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// The initialize handshake answers each revision before 2026-07-28 with itself, and
// server/discover (2026-07-28) lists every revision the SDK supports. The server is
// stateless: no Mcp-Session-Id.
func TestProtocolRevisions(t *testing.T) {
	s := start(t)
	for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"} {
		a := s.post(t, "Bearer "+token, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+v+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		var res struct {
			ProtocolVersion string `json:"protocolVersion"`
			ServerInfo      struct{ Name string }
		}
		if err := json.Unmarshal(a.msg.Result, &res); err != nil || res.ProtocolVersion != v || res.ServerInfo.Name != helpdeskmcp.Name {
			t.Errorf("initialize %s: %d %s", v, a.status, a.raw)
		}
		if a.header.Get("Mcp-Session-Id") != "" {
			t.Errorf("initialize %s: a session id", v)
		}
	}
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	a := s.post(t, "Bearer "+token, "2026-07-28", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{`+meta+`}}`, "Mcp-Method", "server/discover")
	var disc struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(a.msg.Result, &disc); err != nil || !slices.Equal(disc.SupportedVersions, mcp.SupportedProtocolVersions()) {
		t.Errorf("server/discover: %d %s", a.status, a.raw)
	}

	// 2026-07-28 (SEP-2243): the server itself refuses a call whose Mcp-Name header names
	// another tool than its body, or that lacks the header, with HTTP 400 and JSON-RPC error
	// -32020.
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_tickets","arguments":{},` + meta + `}}`
	for _, h := range [][]string{
		{"Mcp-Method", "tools/call", "Mcp-Name", "get_ticket"},
		{"Mcp-Method", "tools/call"},
		{"Mcp-Method", "tools/list", "Mcp-Name", "list_tickets"},
	} {
		a := s.post(t, "Bearer "+token, "2026-07-28", call, h...)
		if a.status != http.StatusBadRequest || a.msg.Error == nil || a.msg.Error.Code != -32020 {
			t.Errorf("headers %v: %d %s, want 400 with JSON-RPC error -32020 (header mismatch)", h, a.status, a.raw)
		}
	}
	a = s.post(t, "Bearer "+token, "2026-07-28", call, "Mcp-Method", "tools/call", "Mcp-Name", "list_tickets")
	if a.status != http.StatusOK || a.msg.Error != nil {
		t.Errorf("matching headers: %d %s", a.status, a.raw)
	}
}

// injector plays agentauthz in front of the server: it sets the injected credential.
type injector struct{ base http.RoundTripper }

func (i injector) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+token)
	r.Host = helpdeskmcp.Host
	return i.base.RoundTrip(r)
}

// The SDK's own client speaks to the server at every revision it supports, the default
// (2026-07-28, server/discover) included.
func TestSDKClient(t *testing.T) {
	s := start(t)
	for _, v := range []string{"", "2025-06-18", "2025-11-25", "2026-07-28"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
			Endpoint:   s.url + helpdeskmcp.Path,
			HTTPClient: &http.Client{Transport: injector{http.DefaultTransport}},
		}, &mcp.ClientSessionOptions{ProtocolVersion: v})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		want := v
		if v == "" {
			want = "2026-07-28"
		}
		if got := cs.InitializeResult().ProtocolVersion; got != want {
			t.Errorf("%q: negotiated %s", v, got)
		}
		tools, err := cs.ListTools(ctx, nil)
		if err != nil || len(tools.Tools) != 4 {
			t.Fatalf("%q: tools %v, %v", v, tools, err)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "add_comment", Arguments: map[string]any{"ticket_id": "4715", "body": "Revision " + want}})
		if err != nil || res.IsError {
			t.Fatalf("%q: %+v %v", v, res, err)
		}
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_tickets", Arguments: map[string]any{"limit": 5000}})
		if err != nil || !res.IsError {
			t.Errorf("%q: limit 5000: %+v %v, want a tool error", v, res, err)
		}
		cs.Close()
		cancel()
	}
	if tk, _ := s.api.Ticket("4715"); len(tk.Comments) != 4 {
		t.Errorf("comments %+v", tk.Comments)
	}
}

// The log has one line per request and one per tool call, not the SDK's per-request session
// chatter.
func TestLogLines(t *testing.T) {
	s := start(t)
	s.callTool(t, "get_ticket", `{"id":"4711"}`)
	lines := strings.Split(strings.TrimSpace(s.logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"tool call","tool":"get_ticket","outcome":"ok"`) ||
		!strings.Contains(lines[1], `"msg":"request","method":"POST","path":"/mcp"`) {
		t.Errorf("log:\n%s", s.logs)
	}
}
