package decision

import (
	"strconv"
	"strings"
	"unsafe"
)

// MCPCall is one JSON-RPC message to an MCP server, as its body states it. The policy fills it
// on every decision of an `mcp:` route that got as far as reading the message, so that the
// answer takes the form the agent's MCP client reads, and the record and metrics name the
// method and the tool.
type MCPCall struct {
	// Server is the policy's name of the MCP server.
	Server string
	// Method is the JSON-RPC method, as sent (at most 128 bytes; longer ones are refused).
	Method string
	// Name is the tool (tools/call) or prompt (prompts/get) name, or the resource URI
	// (resources/read), as sent; empty for other methods.
	Name string
	// ID is the JSON-RPC id as JSON text (a string or a number), written by agentauthz from the
	// value it read; empty for a notification or a message whose id could not be read.
	ID string
	// Version is the MCP-Protocol-Version the request declared, when it is one agentauthz
	// supports.
	Version string
	// Listed says Method, and Name when set, are ones the policy names, so that they may label
	// metrics: an agent's arbitrary names never become label values.
	Listed bool
}

// JSON-RPC error codes of MCP denials: JSON-RPC's own for a message that is not a valid request
// and for a failure to decide, MCP's HeaderMismatch, and for a refusal by policy, which neither
// defines, -30000 minus the HTTP status (-30403, -30401, -30428, ...). Those lie outside the
// range -32768..-32000 that JSON-RPC reserves, which MCP and its SDKs use for codes of their own
// (the Go SDK's client reads -32003 as "client is closing" and ends its session). The reason code
// is in error.data.code.
const (
	rpcInvalidRequest = -32600
	rpcInternal       = -32603
	rpcHeaderMismatch = -32020 // MCP 2026-07-28, Streamable HTTP: HeaderMismatch
	rpcRefusedBase    = -30000
)

// MCPAnswer is the answer to an MCP client for a denied request whose decision carries its
// JSON-RPC call (d.MCP): the HTTP status and a JSON body its MCP client reads, and ok. ok is
// false for a decision without d.MCP, which is answered with Problem.
//
// A tools/call held for approval whose approval carries a URL and a request state is answered,
// for a client of revision 2026-07-28 that takes URL elicitations, with an input-required
// result: a URL elicitation of where it is decided, and the request state to send back.
//
// A tools/call refused for its arguments, or held for (or refused by) human approval, is
// otherwise answered as the tool's result marked isError, with status 200: MCP clients hand a tool's
// error result to the model, which can correct its arguments or tell its user about the
// approval. Every other refusal is a JSON-RPC error with the code's HTTP status, whose message
// says what to do and whose data is the problem details: MCP clients read a JSON-RPC error from
// an HTTP error status and keep the session, where a problem+json body would end it. A
// notification has no id to answer: its refusal is a JSON-RPC error without an id.
func (d *Decision) MCPAnswer(decisionID string) (status int, body string, ok bool) {
	call := d.MCP
	if call == nil || d.Allowed() {
		return 0, "", false
	}
	code := d.Code
	if code == "" {
		code = CodeInternal
	}
	status = code.Status()
	problem := d.Problem(decisionID)
	id := call.ID
	if id == "" {
		id = "null"
	}
	b := make([]byte, 0, 256+2*len(problem)+len(id))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	if a := d.Approval; call.ID != "" && call.Method == "tools/call" && code == CodeApprovalRequired &&
		a != nil && a.URL != "" && a.RequestState != "" {
		// Revision 2026-07-28's own retry form: the client shows its user where the call is
		// decided (a URL elicitation) and calls again with the request state once they are done.
		b = append(b, `,"result":{"resultType":"input_required","inputRequests":{"agentauthz_approval":{"method":"elicitation/create","params":{"mode":"url","elicitationId":`...)
		b = appendJSONString(b, a.ID)
		b = append(b, `,"url":`...)
		b = appendJSONString(b, a.URL)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, d.mcpText(code, decisionID))
		b = append(b, `}}},"requestState":`...)
		b = appendJSONString(b, a.RequestState)
		b = append(b, `}}`...)
		return 200, bytesString(b), true
	}
	if call.ID != "" && call.Method == "tools/call" && toolResultCode(code) {
		b = append(b, `,"result":{"content":[{"type":"text","text":`...)
		b = appendJSONString(b, d.mcpText(code, decisionID))
		b = append(b, `}],"isError":true,"_meta":{"agentauthz/problem":`...)
		b = append(b, problem...)
		b = append(b, `}}}`...)
		return 200, bytesString(b), true
	}
	rpc := rpcRefusedBase - status
	switch {
	case code.IsFailure():
		rpc = rpcInternal
	case code == CodeMCPHeaderMismatch:
		rpc = rpcHeaderMismatch
	case status == 400 || status == 413 || status == 415:
		rpc = rpcInvalidRequest
	}
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(rpc), 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, d.mcpText(code, decisionID))
	b = append(b, `,"data":`...)
	b = append(b, problem...)
	b = append(b, `}}`...)
	return status, bytesString(b), true
}

// toolResultCode reports whether a tools/call refused with code is answered as the tool's error
// result rather than as a JSON-RPC error.
func toolResultCode(c Code) bool {
	switch c {
	case CodeMCPArguments, CodeApprovalRequired, CodeApprovalDenied, CodeApprovalUsed,
		CodeApprovalExpired, CodeApprovalLimit:
		return true
	}
	return false
}

// mcpText is what the model reads: the reason, what to do, each violation and the decision id.
func (d *Decision) mcpText(code Code, decisionID string) string {
	var sb strings.Builder
	sb.WriteString("Refused by agentauthz (")
	sb.WriteString(string(code))
	sb.WriteString("): ")
	detail := d.Detail
	if detail == "" {
		detail = "The request was refused."
	}
	sb.WriteString(detail)
	for i, v := range d.Violations {
		if i == 0 {
			sb.WriteString(" Violations:")
		} else {
			sb.WriteByte(';')
		}
		sb.WriteString(" ")
		sb.WriteString(v.Field)
		sb.WriteString(" ")
		sb.WriteString(v.Message)
		sb.WriteString(" (")
		sb.WriteString(v.Rule)
		sb.WriteString(")")
	}
	if decisionID != "" {
		sb.WriteString(" Decision id: ")
		sb.WriteString(decisionID)
		sb.WriteString(".")
	}
	return sb.String()
}

// bytesString returns b as a string without copying; b is never written again.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
