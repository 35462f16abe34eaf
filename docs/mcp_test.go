package docs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

const mcpFile = "mcp.md"

// mcpRouteCodes are the codes outside mcp_* and approval_* that a route serving an MCP server
// answers in JSON-RPC: the route's scope and its body rule, decided before the message is
// checked but once the route is known to be an MCP endpoint, and the gate's failure to decide.
var mcpRouteCodes = map[decision.Code]bool{
	decision.CodeScopeMissing:     true,
	decision.CodeRequestMalformed: true, decision.CodeBodyMissing: true, decision.CodeBodyTooLarge: true,
	decision.CodeBodyTruncated: true, decision.CodeBodyContentType: true, decision.CodeBodyEncoding: true,
	decision.CodeBodyUnavailable: true, decision.CodeInternal: true,
}

// TestMCPAnswerTable: the table in mcp.md of what an MCP client gets for each refusal is what
// decision.(*Decision).MCPAnswer writes for a tools/call refused with that code, and says what
// the MCP Go SDK's client returns for that form of answer.
func TestMCPAnswerTable(t *testing.T) {
	var b strings.Builder
	b.WriteString("| code | HTTP status | the answer | what the Go SDK client's `CallTool` returns |\n|---|---|---|---|\n")
	for _, c := range decision.Codes() {
		name := string(c.Code)
		if c.Code == decision.CodeAllowed || !strings.HasPrefix(name, "mcp_") && !strings.HasPrefix(name, "approval_") && !mcpRouteCodes[c.Code] {
			continue
		}
		d := decision.Decision{Outcome: decision.Deny, Code: c.Code, Detail: "Refused.",
			MCP: &decision.MCPCall{Server: "erp", Method: "tools/call", Name: "search_invoices", ID: "7", Listed: true}}
		status, body, ok := d.MCPAnswer("dec")
		if !ok {
			t.Fatalf("%s: no MCP answer", c.Code)
		}
		var answer struct {
			ID     json.RawMessage `json:"id"`
			Result *struct {
				IsError bool `json:"isError"`
			} `json:"result"`
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatalf("%s: the answer is not JSON: %v\n%s", c.Code, err, body)
		}
		if string(answer.ID) != "7" || (answer.Result == nil) == (answer.Error == nil) {
			t.Fatalf("%s: the answer is not one JSON-RPC response to id 7: %s", c.Code, body)
		}
		form, rpc := "the tool's result, `isError`", 0
		if answer.Result == nil {
			rpc = answer.Error.Code
			form = fmt.Sprintf("JSON-RPC error `%d`", rpc)
		} else if !answer.Result.IsError {
			t.Fatalf("%s: a result that is not an error: %s", c.Code, body)
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s |\n", c.Code, status, form, sdkReturns(status, answer.Result != nil, rpc))
	}
	compareSection(t, mcpFile, b.String())
}

// sdkReturns is what CallTool of the MCP Go SDK's client (v1.8.0) returns for an answer, as
// measured with each form and status: a tool's error result is a result; a JSON-RPC error is an
// error holding it, except at status 5xx, whose body the client does not read, and with code
// -32003, which the client takes for its own "client is closing" (no answer uses it now; the
// line keeps the table true if one did). The session goes on in every case.
func sdkReturns(status int, toolResult bool, rpc int) string {
	switch {
	case toolResult:
		return "the result, `IsError` set, and no error: the model reads the text"
	case status >= 500:
		return "its own error `-32005` (`rejected by transport ... Service Unavailable`); the answer is not read"
	case rpc == -32003:
		return "an error wrapping `mcp.ErrConnectionClosed`, with agentauthz's message but not its code or data"
	default:
		return "an error holding the `*jsonrpc.Error`: code, message and data"
	}
}
