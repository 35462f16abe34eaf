package authzen

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// The types of subject and resource agentauthz decides about.
const (
	// SubjectAgent is the subject type of an agent; its id is the agent's SPIFFE ID.
	SubjectAgent = "agent"
	// SubjectAccessToken is the subject of a request (an HTTP request or an MCP tool call) the
	// PEP has not identified: the agent the OAuth access token in context.headers.authorization
	// names (its id is "authorization"), decided as Envoy's door decides a request with a token
	// and no certificate, on the hosts that accept tokens (Host.oauth).
	SubjectAccessToken = "access_token"
	// ResourceHTTP is an HTTP request; its id is https://HOST/PATH?QUERY, the request's host and
	// raw target, and action.name is its method.
	ResourceHTTP = "http"
	// ResourceMCPTool is an MCP tool call: its id is the tool's name, action.name is tools/call,
	// and its properties name the MCP server's endpoint (server: HOST/PATH) and hold the call's
	// arguments (an object).
	ResourceMCPTool = "mcp_tool"
)

// The members of an evaluation's context that carry the rest of an HTTP request. Other members
// are ignored.
const (
	// ContextHeaders is an object of the request's headers: lower-case names, one string value
	// each (a PEP joins repeated header lines with commas itself, or refuses the request).
	ContextHeaders = "headers"
	// ContextBody is the request body as a string: its exact text.
	ContextBody = "body"
	// ContextBodyBase64 is the request body in standard base64 (RFC 4648, padded): for bodies
	// that are not UTF-8 text. At most one of body and body_base64.
	ContextBodyBase64 = "body_base64"
	// ContextBodyTruncated, true, says the PEP could forward only the first part of the body.
	ContextBodyTruncated = "body_truncated"
)

// partialBodyHeader is Envoy's marker of a cut body, which a PEP says as body_truncated.
const partialBodyHeader = "x-envoy-auth-partial-body"

// headers are context.headers as read: lower-case names, one value each.
type headers map[string]string

func (h headers) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// EachWithPrefix implements policy.HeaderLister.
func (h headers) EachWithPrefix(prefix string, fn func(name, value string)) {
	for k, v := range h {
		if strings.HasPrefix(k, prefix) {
			fn(k, v)
		}
	}
}

var (
	_ policy.Headers      = headers(nil)
	_ policy.HeaderLister = headers(nil)
)

func malformed(detail string) *decision.Decision {
	d := decision.Denied(decision.CodeRequestMalformed, detail)
	return &d
}

// readHTTP reads an evaluation of an HTTP request into the engine's facts: the subject's SPIFFE
// ID as the principal, action.name as the method, resource.id as the host and raw target, and
// the headers and body from the context. An evaluation that does not describe exactly one HTTP
// request is returned with Unreadable set, and the engine refuses and records it as
// request_malformed, as it does a CheckRequest Envoy could not have sent.
func readHTTP(ev *evaluation) engine.Request {
	var r engine.Request
	if ev.subject.typ == SubjectAgent {
		r.Principal = ev.subject.id
	}
	r.Method = ev.action
	if deny := readHTTPParts(ev, &r); deny != nil {
		r.Unreadable = deny
	}
	return r
}

func readHTTPParts(ev *evaluation, r *engine.Request) *decision.Decision {
	host, target, problem := splitResourceID(ev.resource.id)
	r.Host, r.Target = host, target
	if problem != "" {
		return malformed(problem)
	}
	switch {
	case ev.subject.typ == SubjectAccessToken && ev.subject.id != "authorization":
		return malformed(`subject.id must be "authorization" for an access_token subject: the header holding the token.`)
	case ev.subject.typ != SubjectAgent && ev.subject.typ != SubjectAccessToken:
		return malformed(`subject.type must be "agent" (the agent's SPIFFE ID) or "access_token" (the agent the access token in context.headers.authorization names).`)
	}
	if r.Method == "" {
		return malformed("action.name must be the request's method.")
	}
	if raw, ok := ev.context[ContextHeaders]; ok {
		h, problem := readHeaders(raw, host)
		if problem != "" {
			return malformed(problem)
		}
		r.Headers = h
	}
	if v, ok := ev.context[ContextBodyTruncated]; ok {
		b, ok := v.(bool)
		if !ok {
			return malformed("context.body_truncated must be true or false.")
		}
		r.BodyPartial = b
	}
	text, hasText := ev.context[ContextBody]
	encoded, hasEncoded := ev.context[ContextBodyBase64]
	switch {
	case hasText && hasEncoded:
		return malformed("The context carries both body and body_base64; send the body once.")
	case hasText:
		s, ok := text.(string)
		if !ok {
			return malformed("context.body must be a string holding the body's exact text (body_base64 for bytes that are not UTF-8 text).")
		}
		if s != "" {
			r.Body = []byte(s)
		}
	case hasEncoded:
		s, ok := encoded.(string)
		var err error
		if ok {
			r.Body, err = base64.StdEncoding.Strict().DecodeString(s)
		}
		if !ok || err != nil {
			return malformed("context.body_base64 must be a string of standard, padded base64.")
		}
		if len(r.Body) == 0 {
			r.Body = nil
		}
	}
	return nil
}

// splitResourceID reads resource.id, https://HOST/PATH?QUERY, into the host and the raw target
// (path and query as written: nothing is decoded or normalised; the policy reads them once).
// It refuses anything else: another scheme or spelling of it, no host, userinfo, no path, a
// fragment.
func splitResourceID(id string) (host, target, problem string) {
	rest, ok := strings.CutPrefix(id, "https://")
	if !ok {
		return "", "", "resource.id must be an absolute https URL: https://HOST/PATH?QUERY."
	}
	i := strings.IndexAny(rest, "/?#")
	if i < 0 || rest[i] != '/' {
		if i < 0 {
			i = len(rest)
		}
		return rest[:i], "", "resource.id has no path: write https://HOST/PATH?QUERY, the path starting with /."
	}
	host, target = rest[:i], rest[i:]
	switch {
	case host == "":
		return "", target, "resource.id has no host: write https://HOST/PATH?QUERY."
	case strings.Contains(host, "@"):
		return "", target, "resource.id carries userinfo; write https://HOST/PATH?QUERY."
	case strings.Contains(target, "#"):
		return host, target, "resource.id has a fragment, which is never sent in a request; drop it."
	}
	return host, target, ""
}

// readHeaders reads context.headers: an object of lower-case header names to string values.
// Pseudo-headers are refused (the method, host and path are action.name and resource.id), as
// are a host header naming another host and Envoy's partial-body marker (body_truncated says it).
func readHeaders(raw any, host string) (headers, string) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, "context.headers must be an object of header names to string values."
	}
	h := make(headers, len(m))
	for name, v := range m {
		s, ok := v.(string)
		switch {
		case strings.HasPrefix(name, ":"):
			return nil, "context.headers holds the pseudo-header " + name + "; the method, host and path are action.name and resource.id."
		case !isToken(name):
			return nil, "context.headers has a header name that is not a lower-case HTTP token: " + quote(name) + "."
		case !ok:
			return nil, "context.headers." + name + " must be one string; join repeated header lines with commas."
		case !validValue(s):
			return nil, "context.headers." + name + " holds a character a header value may not (CR, LF or NUL)."
		case name == partialBodyHeader:
			return nil, "context.headers holds " + partialBodyHeader + "; say context.body_truncated instead."
		case name == "host" && !target.EqualFoldASCII(s, host):
			return nil, "The host header contradicts resource.id's host."
		}
		h[name] = s
	}
	return h, ""
}

// isToken reports whether name is a non-empty RFC 9110 token without upper-case letters.
func isToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00")
}

// quote shows a name in a message, cut short if long.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// mcpRevision is the MCP revision an MCP tool call of an evaluation is read as: one whose
// headers (Mcp-Method, Mcp-Name) are not mirrored, since the evaluation states the call once.
const mcpRevision = "2025-11-25"

// readMCPTool reads an evaluation of an MCP tool call into the engine's facts: the JSON-RPC
// POST an MCP client sends to the server's endpoint, with the tool's name and arguments, so
// that the policy decides it as the same call through Envoy, with the agent's access token
// from context.headers.authorization, if any. An evaluation that does not describe one tool call
// is returned with Unreadable set.
func readMCPTool(ev *evaluation) engine.Request {
	var r engine.Request
	if ev.subject.typ == SubjectAgent {
		r.Principal = ev.subject.id
	}
	r.Method = "POST"
	if deny := readMCPToolParts(ev, &r); deny != nil {
		r.Unreadable = deny
	}
	return r
}

func readMCPToolParts(ev *evaluation, r *engine.Request) *decision.Decision {
	server, _ := ev.resource.props["server"].(string)
	host, path, ok := strings.Cut(server, "/")
	r.Host, r.Target = host, "/"+path
	switch {
	case ev.subject.typ == SubjectAccessToken && ev.subject.id != "authorization":
		return malformed(`subject.id must be "authorization" for an access_token subject: the header holding the token.`)
	case ev.subject.typ != SubjectAgent && ev.subject.typ != SubjectAccessToken:
		return malformed(`subject.type must be "agent" (the agent's SPIFFE ID) or "access_token" (the agent the access token in context.headers.authorization names).`)
	case ev.action != "tools/call":
		return malformed(`action.name must be "tools/call" for an mcp_tool resource.`)
	case ev.resource.id == "":
		return malformed("resource.id must be the tool's name.")
	case !ok || host == "" || strings.ContainsAny(server, "?#@ ") || strings.Contains(host, ":"):
		return malformed("resource.properties.server must be the MCP endpoint as HOST/PATH, e.g. mcp.acme.internal/mcp.")
	}
	args := map[string]any{}
	if raw, present := ev.resource.props["arguments"]; present {
		a, ok := raw.(map[string]any)
		if !ok {
			return malformed("resource.properties.arguments must be an object: the tool's arguments.")
		}
		args = a
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": ev.resource.id, "arguments": args}})
	if err != nil {
		return malformed("resource.properties.arguments cannot be written as JSON.")
	}
	r.Body = body
	h := headers{"content-type": "application/json", "mcp-protocol-version": mcpRevision,
		"content-length": strconv.Itoa(len(body))}
	// The agent's access token, if the PEP forwards it, as in an http evaluation: it identifies
	// an access_token subject, and must agree with an agent subject's SPIFFE ID. The call's other
	// headers are the tool call's own, above, whatever the context says.
	if raw, ok := ev.context[ContextHeaders]; ok {
		ctx, problem := readHeaders(raw, host)
		if problem != "" {
			return malformed(problem)
		}
		if v, ok := ctx["authorization"]; ok {
			h["authorization"] = v
		}
	}
	r.Headers = h
	return nil
}
