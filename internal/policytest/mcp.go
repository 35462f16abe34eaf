package policytest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agentauthz/agentauthz/extauthz"
)

// MCP is an MCP message a test case or `agentauthz check` sends to an MCP route, written as a
// tool call or a method: the request's method, content type, protocol revision headers and
// JSON-RPC body are built from it.
//
//   - name: helpdesk adds a comment over MCP
//     principal: spiffe://acme.internal/agent/helpdesk
//     host: mcp.acme.internal
//     path: /mcp
//     mcp: {tool: add_comment, arguments: {ticket_id: "4711", body: "Fixed."}}
//     want: allow
type MCP struct {
	// Method is the JSON-RPC method; tools/call when Tool is set.
	Method string `yaml:"method" json:"method"`
	// Tool and Arguments are a tools/call's params.name and params.arguments.
	Tool      string         `yaml:"tool" json:"tool"`
	Arguments map[string]any `yaml:"arguments" json:"arguments"`
	// Params are the params of another method (resources/read's uri, prompts/get's name).
	Params map[string]any `yaml:"params" json:"params"`
	// Version is the MCP-Protocol-Version: 2025-06-18, 2025-11-25 (the default) or 2026-07-28,
	// for which the Mcp-Method and Mcp-Name headers and the body's _meta revision are added too.
	// Mcp-Param-* headers, which depend on the tool's schema, go in the request's headers.
	Version string `yaml:"version" json:"version"`
}

// Apply makes r carry the message: method POST, content-type application/json, the revision
// headers and the JSON-RPC body (id 1, or none for a notification). Mcp-Method and Mcp-Name
// headers r has already are kept, so that a case can send ones that disagree with the body.
func (m MCP) Apply(r *extauthz.HTTPRequest) error {
	method := m.Method
	switch {
	case m.Tool != "" && method == "":
		method = "tools/call"
	case m.Tool != "" && method != "tools/call":
		return fmt.Errorf("mcp: tool is for tools/call, not %s", method)
	case method == "":
		return fmt.Errorf("mcp: give a tool, or a method")
	case m.Arguments != nil:
		return fmt.Errorf("mcp: arguments are a tool's; give params for %s", method)
	}
	version := m.Version
	if version == "" {
		version = "2025-11-25"
	}
	params := map[string]any{}
	for k, v := range m.Params {
		params[k] = v
	}
	if m.Tool != "" {
		params["name"] = m.Tool
		args := m.Arguments
		if args == nil {
			args = map[string]any{}
		}
		params["arguments"] = args
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	r.Headers["content-type"] = "application/json"
	r.Headers["mcp-protocol-version"] = version
	if version == "2026-07-28" {
		params["_meta"] = map[string]any{"io.modelcontextprotocol/protocolVersion": version}
		// Headers the request gives already stay: a case may send ones that disagree.
		if _, set := r.Headers["mcp-method"]; !set {
			r.Headers["mcp-method"] = method
		}
		name, _ := params["name"].(string)
		if method == "resources/read" {
			name, _ = params["uri"].(string)
		}
		if _, set := r.Headers["mcp-name"]; !set && name != "" {
			r.Headers["mcp-name"] = headerSafe(name)
		}
	}
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if !strings.HasPrefix(method, "notifications/") {
		msg["id"] = 1
	}
	if len(params) > 0 {
		msg["params"] = params
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("mcp: %v", err)
	}
	r.Method, r.Body = "POST", string(body)
	return nil
}

// headerSafe is s as an Mcp-Name value: as it is when it is plain visible ASCII, in the Base64
// sentinel form otherwise.
func headerSafe(s string) string {
	plain := s != "" && s == strings.TrimSpace(s) && !(strings.HasPrefix(s, "=?base64?") && strings.HasSuffix(s, "?="))
	for i := 0; plain && i < len(s); i++ {
		plain = s[i] >= 0x20 && s[i] < 0x7f
	}
	if plain {
		return s
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
}
