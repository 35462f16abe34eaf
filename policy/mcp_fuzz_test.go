package policy_test

import (
	"encoding/json"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// FuzzMCPMessage decides arbitrary bodies and headers on an MCP route. Whatever comes in:
//   - no panic, and every refusal of a read message is answered as JSON-RPC: valid JSON, with
//     the request's id when one was read;
//   - an allowed message is one strict JSON-RPC object whose method the policy grants, and a
//     tool it allows is a tool the policy lists, named by the body itself (and by Mcp-Name,
//     where sent) as encoding/json reads it too.
func FuzzMCPMessage(f *testing.F) {
	snap := loadMCP(f)
	for _, seed := range []struct{ body, version, name, param string }{
		{call("search", map[string]any{"query": "x", "limit": 10}), "2025-11-25", "", ""},
		{call2026("search", map[string]any{"query": "x", "region": "eu"}), "2026-07-28", "search", "eu"},
		{call2026("search", map[string]any{"query": "x"}), "2026-07-28", b64("search"), ""},
		{call("delete_document", map[string]any{"id": "5"}), "2025-06-18", "", ""},
		{rpc("tools/list", nil), "2025-11-25", "", ""},
		{rpc("resources/read", map[string]any{"uri": "docs://documents/1"}), "2025-11-25", "", ""},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, "2025-11-25", "", ""},
		{`{"jsonrpc":"2.0","id":"a\u0000","method":"tools/call","params":{"name":"search","arguments":{"query":"\ud800"}}}`, "2025-11-25", "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"x"}}`, "2025-11-25", "", ""},
	} {
		f.Add(seed.body, seed.version, seed.name, seed.param)
	}
	f.Fuzz(func(t *testing.T, body, version, name, param string) {
		h := mcpHeaders{{"content-type", "application/json"}, {"mcp-protocol-version", version}}
		if version == "2026-07-28" {
			h = append(h, [2]string{"mcp-method", "tools/call"})
		}
		if name != "" {
			h = append(h, [2]string{"mcp-name", name})
		}
		if param != "" {
			h = append(h, [2]string{"mcp-param-region", param})
		}
		r := mcpRequest(mcpCase{body: body, version: "-", headers: h})
		d := snap.Decide(r)
		if status, answer, ok := d.MCPAnswer("dec"); ok {
			var a struct {
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal([]byte(answer), &a); err != nil || status == 0 {
				t.Fatalf("answer %d %q: %v", status, answer, err)
			}
			if d.MCP.ID != "" && string(a.ID) != d.MCP.ID {
				t.Fatalf("answer id %s, want %s", a.ID, d.MCP.ID)
			}
		}
		if !d.Allowed() {
			if d.Code == "" || d.Code == decision.CodeAllowed {
				t.Fatalf("a refusal without a reason: %+v", d)
			}
			return
		}
		if err := strictjson.Check([]byte(body), 64); err != nil {
			t.Fatalf("allowed a body that is not strict JSON: %v", err)
		}
		var m struct {
			JSONRPC string `json:"jsonrpc"`
			Method  string `json:"method"`
			Params  struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil || m.JSONRPC != "2.0" {
			t.Fatalf("allowed %q, which encoding/json reads as %+v (%v)", body, m, err)
		}
		if d.MCP == nil || d.MCP.Method != m.Method {
			t.Fatalf("allowed method %q, the body says %q", d.MCP.Method, m.Method)
		}
		if m.Method == "tools/call" {
			if m.Params.Name != "search" && m.Params.Name != "delete_document" {
				t.Fatalf("allowed tool %q, which the policy does not grant", m.Params.Name)
			}
			if d.Rule != "docs/"+m.Params.Name {
				t.Fatalf("rule %q for tool %q", d.Rule, m.Params.Name)
			}
		}
	})
}
