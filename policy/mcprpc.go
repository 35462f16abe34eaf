package policy

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// rpcMessage is one JSON-RPC message to an MCP server, read from the body strictly. Every fact
// agentauthz decides on comes from the body; headers only have to agree with it.
type rpcMessage struct {
	method string
	// id is the id as JSON text agentauthz wrote from the value it read; empty for a
	// notification.
	id     string
	params map[string]any
	// name is params.name (tools/call, prompts/get) or params.uri (resources/read).
	name string
	// args is params.arguments of a tools/call: an object, empty when absent.
	args map[string]any
	// state is params.requestState: what a revision 2026-07-28 client echoes on the retry of a
	// call answered with an input-required result.
	state string
	// elicitURL says the client declared, in params._meta, that it takes URL elicitations.
	elicitURL bool
}

// Largest method and name an MCP message may carry.
const (
	maxRPCMethod = 128
	maxRPCID     = 256
	maxRPCName   = 2048
)

// mcpInvalid is the refusal of a body that is not one JSON-RPC request or notification.
func mcpInvalid(field, rule, msg, detail string) decision.Decision {
	return decision.Denied(decision.CodeMCPInvalid, detail,
		decision.Violation{Field: field, Rule: rule, Message: msg})
}

// readRPC reads a JSON-RPC request or notification from the body's JSON value. It refuses a
// batch, a response, unknown members, and members of the wrong type, so that agentauthz and the
// server cannot read two different calls from one body. On refusal, m holds what could be read
// (the id, the method) for the answer.
func readRPC(v any) (m rpcMessage, d decision.Decision) {
	obj, ok := v.(map[string]any)
	if !ok {
		if _, batch := v.([]any); batch {
			return m, mcpInvalid("body", "batch", "must be one JSON-RPC message, not a batch",
				"JSON-RPC batches are refused; send each request on its own.")
		}
		return m, mcpInvalid("body", "type", "must be a JSON-RPC request object",
			"The body must be one JSON-RPC 2.0 request or notification.")
	}
	if id, present := obj["id"]; present {
		text, ok := rpcID(id)
		if !ok {
			return m, mcpInvalid("body.id", "type", "must be a string or an integer",
				"The JSON-RPC id must be a string or an integer.")
		}
		m.id = text
	}
	for k := range obj {
		switch k {
		case "jsonrpc", "id", "method", "params":
		case "result", "error":
			return m, mcpInvalid("body."+k, "forbidden", "responses to the server are not accepted",
				"Only JSON-RPC requests and notifications are accepted here, not responses.")
		default:
			return m, mcpInvalid("body."+clip(k, 64), "unknown", "is not a member of a JSON-RPC request",
				"The body has a member JSON-RPC does not define; remove it.")
		}
	}
	if obj["jsonrpc"] != "2.0" {
		return m, mcpInvalid("body.jsonrpc", "const", `must be "2.0"`, `The body must say "jsonrpc": "2.0".`)
	}
	method, ok := obj["method"].(string)
	if !ok || !validMethod(method) {
		return m, mcpInvalid("body.method", "pattern", "must be a method name",
			"The JSON-RPC method is missing or malformed.")
	}
	m.method = method
	notification := strings.HasPrefix(method, "notifications/")
	switch {
	case notification && m.id != "":
		return m, mcpInvalid("body.id", "forbidden", "a notification has no id",
			"A notification carries no id; send it without one.")
	case !notification && m.id == "":
		return m, mcpInvalid("body.id", "required", "is required",
			"A JSON-RPC request needs an id; only notifications/* methods are sent without one.")
	}
	if p, present := obj["params"]; present {
		params, ok := p.(map[string]any)
		if !ok {
			return m, mcpInvalid("body.params", "type", "must be an object", "JSON-RPC params must be an object.")
		}
		m.params = params
	}
	switch method {
	case "tools/call", "prompts/get":
		name, ok := m.params["name"].(string)
		if !ok || name == "" || len(name) > maxRPCName {
			return m, mcpInvalid("body.params.name", "required", "must be a non-empty string",
				"Name the tool or prompt in params.name.")
		}
		m.name = name
		if method == "tools/call" {
			if st, present := m.params["requestState"]; present {
				state, ok := st.(string)
				if !ok || state == "" || len(state) > maxRPCName {
					return m, mcpInvalid("body.params.requestState", "type", "must be the string the gateway gave",
						"Send requestState back exactly as it was given.")
				}
				m.state = state
			}
			if ir, present := m.params["inputResponses"]; present {
				if _, ok := ir.(map[string]any); !ok {
					return m, mcpInvalid("body.params.inputResponses", "type", "must be an object",
						"inputResponses must be an object.")
				}
			}
			meta, _ := m.params["_meta"].(map[string]any)
			caps, _ := meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any)
			elicit, _ := caps["elicitation"].(map[string]any)
			_, m.elicitURL = elicit["url"].(map[string]any)
			switch a := m.params["arguments"].(type) {
			case map[string]any:
				m.args = a
			case nil:
				if _, present := m.params["arguments"]; present {
					return m, mcpInvalid("body.params.arguments", "type", "must be an object",
						"A tool's arguments must be an object.")
				}
				m.args = map[string]any{}
			default:
				return m, mcpInvalid("body.params.arguments", "type", "must be an object",
					"A tool's arguments must be an object.")
			}
		}
	case "resources/read":
		uri, ok := m.params["uri"].(string)
		if !ok || uri == "" || len(uri) > maxRPCName {
			return m, mcpInvalid("body.params.uri", "required", "must be a non-empty string",
				"Name the resource in params.uri.")
		}
		m.name = uri
	}
	return m, decision.Decision{}
}

// rpcID writes a JSON-RPC id as JSON text: a string of at most maxRPCID bytes, or an integer.
// Null and fractional ids are refused: JSON-RPC discourages both, and an answer must carry
// exactly the id the client will match.
func rpcID(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		if len(x) > maxRPCID {
			return "", false
		}
		b, _ := json.Marshal(x) // a string always marshals
		return string(b), true
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err != nil {
			return "", false
		}
		return string(x), true
	}
	return "", false
}

// validMethod reports whether s is a plausible JSON-RPC method name of MCP: printable ASCII
// letters, digits and "/_.-", starting with a letter.
func validMethod(s string) bool {
	if s == "" || len(s) > maxRPCMethod || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '/', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// decodeHeaderValue reads an Mcp-Name or Mcp-Param-* value: plain visible ASCII, or the Base64
// sentinel form =?base64?...?= of any UTF-8 text. ok is false for anything else.
func decodeHeaderValue(v string) (string, bool) {
	if inner, found := strings.CutPrefix(v, "=?base64?"); found {
		inner, found = strings.CutSuffix(inner, "?=")
		if !found {
			return "", false
		}
		b, err := base64.StdEncoding.Strict().DecodeString(inner)
		if err != nil || !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c >= 0x7f {
			return "", false
		}
	}
	return v, true
}

// argumentAt returns the argument at a property path, and whether one is there and not null.
func argumentAt(args map[string]any, path []string) (any, bool) {
	var cur any = args
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = obj[p]
		if !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// headerMatches reports whether a decoded Mcp-Param-* value states the argument v of its kind:
// the same string; the same integer, compared as numbers; true or false.
func headerMatches(kind, header string, v any) bool {
	switch kind {
	case "string":
		s, ok := v.(string)
		return ok && s == header
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		hv, err := strconv.ParseInt(header, 10, 64)
		if err != nil {
			return false
		}
		bv, ok := integral(string(n))
		return ok && bv == hv
	case "boolean":
		b, ok := v.(bool)
		return ok && (b && header == "true" || !b && header == "false")
	}
	return false
}
