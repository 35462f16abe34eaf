package policy_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const (
	mcpDir      = "testdata/mcp"
	mcpHost     = "mcp.example.org"
	mcpAgent    = "spiffe://example.org/agent/a"
	mcpIntern   = "spiffe://example.org/agent/intern"
	mcpOutsider = "spiffe://example.org/agent/outsider"
)

// mcpHeaders is a policy.Headers and policy.HeaderLister where a header may repeat.
type mcpHeaders [][2]string

func (h mcpHeaders) Get(name string) (string, int) {
	v, n := "", 0
	for _, kv := range h {
		if kv[0] == name {
			if n == 0 {
				v = kv[1]
			}
			n++
		}
	}
	return v, n
}

func (h mcpHeaders) EachWithPrefix(prefix string, fn func(name, value string)) {
	for _, kv := range h {
		if strings.HasPrefix(kv[0], prefix) {
			fn(kv[0], kv[1])
		}
	}
}

func loadMCP(t testing.TB) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join(mcpDir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// rpc is a JSON-RPC body: a request with id 7 unless the method is a notification.
func rpc(method string, params any) string {
	m := map[string]any{"jsonrpc": "2.0", "method": method}
	if !strings.HasPrefix(method, "notifications/") {
		m["id"] = 7
	}
	if params != nil {
		m["params"] = params
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func call(tool string, args map[string]any) string {
	return rpc("tools/call", map[string]any{"name": tool, "arguments": args})
}

// call2026 is a tools/call of revision 2026-07-28, with its _meta.
func call2026(tool string, args map[string]any) string {
	return rpc("tools/call", map[string]any{"name": tool, "arguments": args,
		"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28"}})
}

type mcpCase struct {
	name    string
	agent   string
	method  string // HTTP method; POST when empty
	version string // MCP-Protocol-Version; 2025-11-25 when empty, "-" for none
	headers mcpHeaders
	ctype   string // application/json when empty
	body    string
	want    decision.Code
	rule    string
	field   string // a violation's field the denial must list
}

func mcpRequest(tc mcpCase) *policy.Request {
	agent := tc.agent
	if agent == "" {
		agent = mcpAgent
	}
	method := tc.method
	if method == "" {
		method = "POST"
	}
	h := mcpHeaders{}
	if tc.body != "" {
		ct := tc.ctype
		if ct == "" {
			ct = "application/json"
		}
		h = append(h, [2]string{"content-type", ct})
	}
	switch tc.version {
	case "":
		h = append(h, [2]string{"mcp-protocol-version", "2025-11-25"})
	case "-":
	default:
		h = append(h, [2]string{"mcp-protocol-version", tc.version})
	}
	h = append(h, tc.headers...)
	return &policy.Request{Agent: spiffeid.RequireFromString(agent), Method: method, Host: mcpHost,
		Target: "/mcp", Headers: h, Body: []byte(tc.body)}
}

func b64(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }

func TestMCPDecisions(t *testing.T) {
	snap := loadMCP(t)
	cur := func(name string, extra ...[2]string) mcpHeaders {
		h := mcpHeaders{{"mcp-method", "tools/call"}, {"mcp-name", name}}
		return append(h, extra...)
	}
	cases := []mcpCase{
		{name: "initialize before any revision header", version: "-", body: rpc("initialize", map[string]any{"protocolVersion": "2025-11-25"}), want: decision.CodeAllowed, rule: "docs-mcp"},
		{name: "initialized notification", body: rpc("notifications/initialized", nil), want: decision.CodeAllowed},
		{name: "tools/list", body: rpc("tools/list", nil), want: decision.CodeAllowed, rule: "docs-mcp"},
		{name: "a call within every schema", body: call("search", map[string]any{"query": "vpn", "limit": 10}), want: decision.CodeAllowed, rule: "docs/search"},
		{name: "the policy's tighter schema", body: call("search", map[string]any{"query": "vpn", "limit": 100}), want: decision.CodeMCPArguments, rule: "docs/search", field: "arguments/limit"},
		{name: "the snapshot's schema", body: call("search", map[string]any{"query": "vpn", "limit": 2000}), want: decision.CodeMCPArguments, field: "arguments/limit"},
		{name: "an argument the tool does not take", body: call("search", map[string]any{"query": "vpn", "debug": true}), want: decision.CodeMCPArguments},
		{name: "a required argument missing", body: call("search", map[string]any{}), want: decision.CodeMCPArguments},
		{name: "no arguments at all", body: rpc("tools/call", map[string]any{"name": "search"}), want: decision.CodeMCPArguments},
		{name: "arguments not an object", body: rpc("tools/call", map[string]any{"name": "search", "arguments": []any{"vpn"}}), want: decision.CodeMCPInvalid, field: "body.params.arguments"},
		{name: "a per-agent schema", agent: mcpIntern, body: call("search", map[string]any{"query": "vpn", "region": "us"}), want: decision.CodeMCPArguments, field: "arguments/region"},
		{name: "a per-agent schema met", agent: mcpIntern, body: call("search", map[string]any{"query": "vpn", "region": "eu"}), want: decision.CodeAllowed},
		{name: "the per-agent schema binds no one else", body: call("search", map[string]any{"query": "vpn", "region": "us"}), want: decision.CodeAllowed},
		{name: "an agent without the server's scope", agent: mcpOutsider, body: rpc("tools/list", nil), want: decision.CodeScopeMissing},
		{name: "a tool the server has and the policy does not grant", body: call("admin_reset", map[string]any{}), want: decision.CodeMCPTool},
		{name: "a tool nobody lists", body: call("rm_rf", map[string]any{}), want: decision.CodeMCPTool},
		{name: "a tool whose scope the agent lacks", agent: mcpIntern, body: call("delete_document", map[string]any{"id": "5"}), want: decision.CodeMCPTool, rule: "docs/delete_document"},
		{name: "a batch", body: "[" + rpc("tools/list", nil) + "]", want: decision.CodeMCPInvalid, field: "body"},
		{name: "a response", body: `{"jsonrpc":"2.0","id":1,"result":{}}`, want: decision.CodeMCPInvalid, field: "body.result"},
		{name: "a duplicate key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"admin_reset","arguments":{"query":"x"}}}`, want: decision.CodeMCPInvalid},
		{name: "an unknown member", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","extra":1}`, want: decision.CodeMCPInvalid},
		{name: "jsonrpc 1.0", body: `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, want: decision.CodeMCPInvalid},
		{name: "a null id", body: `{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, want: decision.CodeMCPInvalid},
		{name: "a fractional id", body: `{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}`, want: decision.CodeMCPInvalid},
		{name: "a request without id", body: `{"jsonrpc":"2.0","method":"tools/list"}`, want: decision.CodeMCPInvalid},
		{name: "a notification with an id", body: `{"jsonrpc":"2.0","id":3,"method":"notifications/initialized"}`, want: decision.CodeMCPInvalid},
		{name: "trailing data", body: rpc("tools/list", nil) + rpc("tools/list", nil), want: decision.CodeMCPInvalid},
		{name: "a method not granted", body: rpc("resources/subscribe", map[string]any{"uri": "docs://readme"}), want: decision.CodeMCPMethod},
		{name: "tools/call granted as a method is not", body: rpc("completion/complete", nil), want: decision.CodeMCPMethod},
		{name: "an unsupported revision", version: "2024-11-05", body: rpc("tools/list", nil), want: decision.CodeMCPInvalid},
		{name: "no revision after initialize", version: "-", body: rpc("tools/list", nil), want: decision.CodeMCPInvalid},
		{name: "a repeated revision header", headers: mcpHeaders{{"mcp-protocol-version", "2025-11-25"}}, body: rpc("tools/list", nil), want: decision.CodeMCPHeaderMismatch},
		{name: "not JSON", ctype: "text/plain", body: rpc("tools/list", nil), want: decision.CodeBodyContentType},
		{name: "no body", body: "", want: decision.CodeBodyMissing},

		// Revisions before 2026-07-28 define no Mcp-* headers: never trusted, refused when they
		// disagree.
		{name: "an older client's agreeing Mcp-Method", headers: mcpHeaders{{"mcp-method", "tools/list"}}, body: rpc("tools/list", nil), want: decision.CodeAllowed},
		{name: "an older client's disagreeing Mcp-Method", headers: mcpHeaders{{"mcp-method", "tools/list"}}, body: call("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "an older client's disagreeing Mcp-Name", headers: mcpHeaders{{"mcp-name", "admin_reset"}}, body: call("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "an older client's Mcp-Param header", headers: mcpHeaders{{"mcp-param-region", "eu"}}, body: call("search", map[string]any{"query": "x", "region": "eu"}), want: decision.CodeMCPHeaderMismatch},

		// Revision 2026-07-28: the headers must be there and agree.
		{name: "2026: headers agree", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-region", "eu"}, [2]string{"mcp-param-limit", "10"}), body: call2026("search", map[string]any{"query": "x", "region": "eu", "limit": 10}), want: decision.CodeAllowed},
		{name: "2026: an integer compared as a number", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-limit", "10"}), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"x","limit":10.0},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, want: decision.CodeAllowed},
		{name: "2026: the name in the sentinel form", version: "2026-07-28", headers: cur(b64("search")), body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeAllowed},
		{name: "2026: Mcp-Name names another tool", version: "2026-07-28", headers: cur("admin_reset"), body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch, field: "header.mcp-name"},
		{name: "2026: Mcp-Name missing", version: "2026-07-28", headers: mcpHeaders{{"mcp-method", "tools/call"}}, body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: Mcp-Method missing", version: "2026-07-28", headers: mcpHeaders{{"mcp-name", "search"}}, body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: a broken sentinel", version: "2026-07-28", headers: cur("=?base64?!!!?="), body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: a mirrored argument missing its header", version: "2026-07-28", headers: cur("search"), body: call2026("search", map[string]any{"query": "x", "region": "eu"}), want: decision.CodeMCPHeaderMismatch, field: "header.mcp-param-region"},
		{name: "2026: a mirrored argument's header disagrees", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-region", "us"}), body: call2026("search", map[string]any{"query": "x", "region": "eu"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: a header for an absent argument", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-region", "eu"}), body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: a header twice", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-region", "eu"}, [2]string{"mcp-param-region", "eu"}), body: call2026("search", map[string]any{"query": "x", "region": "eu"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: a header the tool does not define", version: "2026-07-28", headers: cur("search", [2]string{"mcp-param-tenant", "acme"}), body: call2026("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "2026: the body's revision disagrees", version: "2026-07-28", headers: cur("search"), body: call("search", map[string]any{"query": "x"}), want: decision.CodeMCPHeaderMismatch},
		{name: "an argument header on another method", version: "2026-07-28", headers: mcpHeaders{{"mcp-method", "tools/list"}, {"mcp-param-region", "eu"}}, body: rpc("tools/list", map[string]any{"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}), want: decision.CodeMCPHeaderMismatch, field: "header.mcp-param-region"},
		{name: "2026: tools/list", version: "2026-07-28", headers: mcpHeaders{{"mcp-method", "tools/list"}}, body: rpc("tools/list", map[string]any{"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}), want: decision.CodeAllowed},

		{name: "a held call", body: call("delete_document", map[string]any{"id": "5", "reason": "duplicate"}), want: decision.CodeApprovalRequired, rule: "docs/delete_document"},
		{name: "a call the condition does not hold", body: call("delete_document", map[string]any{"id": "1"}), want: decision.CodeAllowed},

		{name: "a resource a pattern matches", body: rpc("resources/read", map[string]any{"uri": "docs://documents/42"}), want: decision.CodeAllowed},
		{name: "a variable never spans a /", body: rpc("resources/read", map[string]any{"uri": "docs://documents/42/../../secrets"}), want: decision.CodeMCPResource},
		{name: "a resource no pattern matches", body: rpc("resources/read", map[string]any{"uri": "file:///etc/passwd"}), want: decision.CodeMCPResource},
		{name: "a resource read without uri", body: rpc("resources/read", map[string]any{}), want: decision.CodeMCPInvalid},
		{name: "a prompt", body: rpc("prompts/get", map[string]any{"name": "summarize"}), want: decision.CodeAllowed},
		{name: "another prompt", body: rpc("prompts/get", map[string]any{"name": "exfiltrate"}), want: decision.CodeMCPPrompt},

		{name: "the session stream", method: "GET", want: decision.CodeAllowed, rule: "docs-mcp-stream"},
		{name: "no session end route", method: "DELETE", want: decision.CodeRouteUnknown},
		{name: "a resumed session stream", method: "GET", headers: mcpHeaders{{"last-event-id", "7"}}, want: decision.CodeMCPInvalid, field: "header.last-event-id"},
		{name: "a message naming a stream to resume", headers: mcpHeaders{{"last-event-id", "7"}}, body: rpc("tools/list", nil), want: decision.CodeMCPInvalid, field: "header.last-event-id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := snap.Decide(mcpRequest(tc))
			if d.Code != tc.want {
				t.Fatalf("code %s (%s %v), want %s", d.Code, d.Detail, d.Violations, tc.want)
			}
			if tc.rule != "" && d.Rule != tc.rule {
				t.Errorf("rule %q, want %q", d.Rule, tc.rule)
			}
			if tc.field != "" && !slices.ContainsFunc(d.Violations, func(v decision.Violation) bool { return v.Field == tc.field }) {
				t.Errorf("violations %v lack %s", d.Violations, tc.field)
			}
			if tc.method == "" && tc.body != "" && tc.want != decision.CodeBodyContentType && tc.want != decision.CodeScopeMissing && d.MCP == nil {
				t.Errorf("no MCP call on the decision of an MCP message")
			}
			if d.Allowed() && (d.Grant == nil || len(d.Grant.Set) != 1) {
				t.Errorf("an allowed MCP call carries grant %+v, want the server's credential", d.Grant)
			}
		})
	}
}

func TestMCPHeldCallBindsArguments(t *testing.T) {
	snap := loadMCP(t)
	r := mcpRequest(mcpCase{body: call("delete_document", map[string]any{"id": "5", "reason": "dup"})})
	d := snap.Decide(r)
	if d.Code != decision.CodeApprovalRequired || d.Hold == nil || !d.Hold.Implicit {
		t.Fatalf("decision %+v, want a hold passed on the identical call", d)
	}
	if d.Hold.Rule != "docs/delete_document" || len(d.Hold.Redact) != 1 {
		t.Errorf("hold %+v", d.Hold)
	}
	name, args, ok := r.MCPToolCall()
	if !ok || name != "delete_document" || args["id"] != "5" {
		t.Errorf("MCPToolCall = %q %v %v", name, args, ok)
	}
	other := mcpRequest(mcpCase{body: rpc("tools/list", nil)})
	snap.Decide(other)
	if _, _, ok := other.MCPToolCall(); ok {
		t.Error("a tools/list has a tool call")
	}
}

func TestMCPAnswers(t *testing.T) {
	snap := loadMCP(t)
	type answer struct {
		ID     any `json:"id"`
		Result *struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Code       string `json:"code"`
				DecisionID string `json:"decision_id"`
			} `json:"data"`
		} `json:"error"`
	}
	cases := []struct {
		name       string
		tc         mcpCase
		status     int
		toolResult bool
		rpcCode    int
	}{
		{"arguments refused: the tool's error result", mcpCase{body: call("search", map[string]any{"query": "x", "limit": 100})}, 200, true, 0},
		{"held: the tool's error result", mcpCase{body: call("delete_document", map[string]any{"id": "5"})}, 200, true, 0},
		{"a tool not granted: a JSON-RPC error", mcpCase{body: call("admin_reset", map[string]any{})}, 403, false, -30403},
		{"a method not granted: a JSON-RPC error", mcpCase{body: rpc("resources/subscribe", nil)}, 403, false, -30403},
		{"a header mismatch: 400 and HeaderMismatch", mcpCase{version: "2026-07-28", body: call2026("search", map[string]any{"query": "x"})}, 400, false, -32020},
		{"a batch: 400 and Invalid Request", mcpCase{body: "[" + rpc("tools/list", nil) + "]"}, 400, false, -32600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := snap.Decide(mcpRequest(c.tc))
			status, body, ok := d.MCPAnswer("dec-1")
			if !ok {
				t.Fatalf("no MCP answer for %s", d.Code)
			}
			if status != c.status {
				t.Errorf("status %d, want %d", status, c.status)
			}
			var a answer
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatalf("answer is not JSON: %v\n%s", err, body)
			}
			if c.toolResult {
				if a.Result == nil || !a.Result.IsError || len(a.Result.Content) != 1 || !strings.Contains(a.Result.Content[0].Text, "dec-1") {
					t.Fatalf("want an error tool result naming the decision: %s", body)
				}
				if a.ID != float64(7) {
					t.Errorf("id %v, want 7", a.ID)
				}
				return
			}
			if a.Error == nil || a.Error.Code != c.rpcCode || a.Error.Data.Code != string(d.Code) || a.Error.Data.DecisionID != "dec-1" {
				t.Fatalf("want JSON-RPC error %d with the problem: %s", c.rpcCode, body)
			}
			if !strings.Contains(a.Error.Message, d.Detail) {
				t.Errorf("message %q does not say what to do (%q)", a.Error.Message, d.Detail)
			}
		})
	}
	allowed := snap.Decide(mcpRequest(mcpCase{body: rpc("tools/list", nil)}))
	if _, _, ok := allowed.MCPAnswer("x"); ok {
		t.Error("an allow has an MCP denial answer")
	}
}

func TestMCPView(t *testing.T) {
	snap := loadMCP(t)
	a := snap.MCPView(spiffeid.RequireFromString(mcpAgent), "docs")
	if ok, schema := a.Tool("search"); !ok || !strings.Contains(string(schema), `"maximum": 50,`) {
		t.Errorf("search: %v %s; want visible with the tightened schema", ok, schema)
	}
	if ok, schema := a.Tool("delete_document"); !ok || schema != nil {
		t.Errorf("delete_document: %v %s; want visible with the server's schema", ok, schema)
	}
	if ok, _ := a.Tool("admin_reset"); ok {
		t.Error("admin_reset is shown though no scope grants it")
	}
	intern := snap.MCPView(spiffeid.RequireFromString(mcpIntern), "docs")
	if ok, _ := intern.Tool("delete_document"); ok {
		t.Error("the intern sees delete_document")
	}
	if !intern.Resource("docs://documents/9") || intern.Resource("docs://other") || !intern.ResourceTemplate("docs://documents/{id}") {
		t.Error("resources shown wrongly")
	}
	if !intern.Prompt("summarize") || intern.Prompt("other") {
		t.Error("prompts shown wrongly")
	}
	for _, v := range []*policy.MCPView{
		snap.MCPView(spiffeid.RequireFromString(mcpOutsider), "docs"),
		snap.MCPView(spiffeid.RequireFromString("spiffe://example.org/agent/nobody"), "docs"),
		snap.MCPView(spiffeid.RequireFromString(mcpAgent), "nosuchserver"),
		nil,
	} {
		if ok, _ := v.Tool("search"); ok || v.Resource("docs://readme") || v.Prompt("summarize") {
			t.Error("a view without grants shows something")
		}
	}
}

func TestMCPLoadProblems(t *testing.T) {
	base := `trust_domains: [example.org]
agents:
  - id: spiffe://example.org/agent/a
    scopes: [s]
`
	cases := []struct {
		name, policy, want string
	}{
		{"a tool the snapshot lacks", `mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - {name: shred, scope: s}
`, `tool "shred" is not in the server's tools snapshot`},
		{"a tool without any schema", `mcp_servers:
  - name: docs
    tools:
      - {name: search, scope: s}
`, `has no schema`},
		{"tools/call as a method", `mcp_servers:
  - name: docs
    methods:
      - {allow: [tools/call], scope: s}
`, `granted per tool`},
		{"a tool twice", `mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - {name: search, scope: s}
      - {name: search, scope: s}
`, `listed twice`},
		{"a route naming no server", `hosts:
  - name: h.example.org
    routes:
      - {name: r, method: POST, path: /mcp, scope: s, mcp: nope}
`, `no MCP server named "nope"`},
		{"an MCP route with a body", `mcp_servers:
  - name: docs
hosts:
  - name: h.example.org
    routes:
      - {name: r, method: POST, path: /mcp, scope: s, mcp: docs, body: {max_bytes: 10}}
`, `set its limits on the MCP server`},
		{"an MCP route with a route approval", `mcp_servers:
  - name: docs
hosts:
  - name: h.example.org
    routes:
      - {name: r, method: POST, path: /mcp, scope: s, mcp: docs, approval: {approvers: ["group:x"]}}
`, `per tool`},
		{"a per-agent schema for an unknown agent", `mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - name: search
        scope: s
        agents:
          - {agents: ["spiffe://example.org/agent/ghost"], arguments_schema: search-tight.schema.json}
`, `is not defined in this policy`},
		{"an ambiguous resource pattern", `mcp_servers:
  - name: docs
    resources:
      - {uri: "docs://{a}{b}", scope: s}
`, `side by side`},
		{"showing a schema that mirrors other arguments", `mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - {name: search, scope: s, arguments_schema: search-intern.schema.json, show_tightened_schema: true}
`, `annotate the same arguments with x-mcp-header`},
		{"showing a tightened schema there is none of", `mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - {name: search, scope: s, show_tightened_schema: true}
`, `only a tool with an arguments_schema`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mcpCopy(t, filepath.Join(mcpDir, "tools.json"), filepath.Join(dir, "tools.json"))
			for _, f := range []string{"search-tight.schema.json", "search-intern.schema.json"} {
				mcpCopy(t, filepath.Join(mcpDir, f), filepath.Join(dir, f))
			}
			mcpWrite(t, filepath.Join(dir, "p.yaml"), base+c.policy)
			files, err := policy.ReadPath(filepath.Join(dir, "p.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = policy.Load(files, policy.Options{Secrets: policy.Placeholders})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("problems %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestMCPSnapshotHeaderAnnotations(t *testing.T) {
	for name, schema := range map[string]string{
		"on the root":       `{"type":"object","x-mcp-header":"A"}`,
		"inside items":      `{"type":"object","properties":{"l":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}`,
		"inside anyOf":      `{"type":"object","anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}`,
		"on a number":       `{"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}`,
		"not a token":       `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}`,
		"twice, any case":   `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}`,
		"not a string name": `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":1}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mcpWrite(t, filepath.Join(dir, "tools.json"), `{"tools":[{"name":"t","inputSchema":`+schema+`}]}`)
			mcpWrite(t, filepath.Join(dir, "p.yaml"), `trust_domains: [example.org]
mcp_servers:
  - name: docs
    tools_snapshot: tools.json
`)
			files, err := policy.ReadPath(filepath.Join(dir, "p.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := policy.Load(files, policy.Options{}); err == nil || !strings.Contains(err.Error(), "x-mcp-header") {
				t.Fatalf("problems %v, want the annotation refused", err)
			}
		})
	}
}

func mcpWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mcpCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	mcpWrite(t, to, string(b))
}

// TestMCPShadowTool: a shadow tool decides nothing; what it would decide is recorded, for the
// tool's own calls only, and tools/list does not show it.
func TestMCPShadowTool(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tools.json", "search-tight.schema.json"} {
		mcpCopy(t, filepath.Join(mcpDir, f), filepath.Join(dir, f))
	}
	mcpWrite(t, filepath.Join(dir, "p.yaml"), `trust_domains: [example.org]
agents:
  - id: spiffe://example.org/agent/a
    scopes: [docs:connect, docs:search, docs:delete]
mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    methods:
      - {allow: [tools/list], scope: docs:connect}
    tools:
      - {name: search, scope: docs:search}
      - {name: delete_document, scope: docs:delete, shadow: true}
hosts:
  - name: mcp.example.org
    routes:
      - {name: docs-mcp, method: POST, path: /mcp, scope: docs:connect, mcp: docs}
`)
	files, err := policy.ReadPath(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := snap.Decide(mcpRequest(mcpCase{body: call("delete_document", map[string]any{"id": "5"})}))
	if d.Code != decision.CodeMCPTool || d.ShadowRule != "docs/delete_document" || d.ShadowOutcome != decision.Allow {
		t.Errorf("a shadow tool's call: %s, shadow %q %s %s; want mcp_tool, and allowed in shadow", d.Code, d.ShadowRule, d.ShadowOutcome, d.ShadowCode)
	}
	d = snap.Decide(mcpRequest(mcpCase{body: call("delete_document", map[string]any{"id": "x y"})}))
	if d.ShadowRule != "docs/delete_document" || d.ShadowCode != decision.CodeMCPArguments {
		t.Errorf("a shadow tool's bad call: shadow %q %s, want mcp_arguments", d.ShadowRule, d.ShadowCode)
	}
	for _, body := range []string{call("search", map[string]any{"query": "x"}), rpc("tools/list", nil)} {
		if d := snap.Decide(mcpRequest(mcpCase{body: body})); !d.Allowed() || d.ShadowRule != "" {
			t.Errorf("%s: %s, shadow %q; want allowed and nothing shadowed", body, d.Code, d.ShadowRule)
		}
	}
	if ok, _ := snap.MCPView(spiffeid.RequireFromString(mcpAgent), "docs").Tool("delete_document"); ok {
		t.Error("tools/list shows a shadow tool")
	}
}
