package policy

import (
	"errors"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// HeaderLister is implemented by Headers that can list the headers whose names start with a
// prefix (lower case): MCP routes check every Mcp-Param-* header a request carries. Front
// doors' headers implement it; without it, an MCP request with such headers cannot be checked
// and is refused.
type HeaderLister interface {
	// EachWithPrefix calls fn with the name and value of every header line whose name starts
	// with prefix.
	EachWithPrefix(prefix string, fn func(name, value string))
}

// mcpBody reads an MCP route's body as strict JSON; the route's MCP check reads the message
// from the value.
type mcpBody struct{ maxDepth int }

var _ bodySchema = mcpBody{}

func (mcpBody) mediaTypes() []string { return jsonMediaTypes }

func (b mcpBody) check(r *Request, _ *agent) decision.Decision {
	if _, err := r.readJSON(b.maxDepth); err != nil {
		d := malformedJSON(err)
		d.Code = decision.CodeMCPInvalid
		return d
	}
	return allowed()
}

// routeMCP binds a route to the MCP server it serves.
func (c *compiler) routeMCP(src *source, at string, r *policyv1.Route, cr *route) bool {
	srv := c.mcp[r.GetMcp()]
	if srv == nil {
		c.addf(src, at+".mcp", "no MCP server named %q in this policy", r.GetMcp())
		return false
	}
	ok := true
	if r.GetGraphql() != "" {
		c.addf(src, at+".mcp", "a route serves a GraphQL API or an MCP server, not both")
		ok = false
	}
	if r.GetBody() != nil {
		c.addf(src, at+".body", "an MCP route's body is one JSON-RPC message; set its limits on the MCP server (max_bytes, max_depth)")
		ok = false
	}
	if r.GetApproval() != nil {
		c.addf(src, at+".approval", "an MCP route holds calls for approval per tool: set approval on the tool")
		ok = false
	}
	switch r.GetMethod() {
	case "POST":
		cr.body = &bodyRule{maxBytes: srv.maxBytes, maxDepth: srv.maxDepth, schema: mcpBody{maxDepth: srv.maxDepth}}
	case "GET", "DELETE":
		// The session's event stream and its end, in revisions before 2026-07-28: no body.
	default:
		c.addf(src, at+".method", "an MCP route is a POST (messages), or a GET or DELETE (sessions of revisions before 2026-07-28)")
		ok = false
	}
	cr.mcp = srv
	return ok
}

// mcpMessage is the MCP call the policy read, kept on the Request for the approval gate.
type mcpMessage struct {
	name      string
	args      map[string]any
	state     string
	elicitURL bool
}

// MCPToolCall returns the tool name and arguments of the MCP tools/call the policy read from
// the body: what an approval of the call binds and what approvers see, without the JSON-RPC id
// and metadata that change from one identical call to the next. ok is false for any other
// request.
//
// The arguments are shared by every stage: never modify them.
func (r *Request) MCPToolCall() (name string, args map[string]any, ok bool) {
	if r.mcp == nil || r.parsed() == nil {
		return "", nil, false
	}
	return r.mcp.name, r.mcp.args, true
}

// MCPRetry returns, for the MCP tools/call MCPToolCall returns, the requestState the client
// echoed (empty when none), and whether it takes a URL elicitation in an input-required result
// (revision 2026-07-28, with the capability declared).
func (r *Request) MCPRetry() (requestState string, urlElicitation bool) {
	if r.mcp == nil || r.parsed() == nil {
		return "", false
	}
	return r.mcp.state, r.mcp.elicitURL
}

// checkMCP decides one message to an MCP server, after the route's path, query and body
// checks. liveOnly marks a shadow evaluation that reached the server through a live route: it
// decides only calls of shadow tools, and leaves every other decision without a rule (nothing
// to record).
func (rt *route) checkMCP(r *Request, ag *agent, t target.Target, vals *[maxPathParams]string, shadow, liveOnly bool) decision.Decision {
	srv := rt.mcp
	v, _ := r.JSON() // the body check read it
	msg, d := readRPC(v)
	call := &decision.MCPCall{Server: srv.name, Method: msg.method, ID: msg.id}
	if d.Code != "" {
		return rt.mcpDecided(d, call, liveOnly)
	}
	call.Name = msg.name
	if d := checkMCPHeaders(r, &msg, call); d.Code != "" {
		return rt.mcpDecided(d, call, liveOnly)
	}
	switch msg.method {
	case "tools/call":
		tool := srv.tools[msg.name]
		if tool != nil && tool.shadow && !shadow {
			tool = nil
		}
		if tool == nil {
			return rt.mcpDecided(decision.Denied(decision.CodeMCPTool,
				"This MCP server offers you no tool by that name; call tools/list for the tools you may use."), call, liveOnly)
		}
		call.Listed = true
		if liveOnly && !tool.shadow {
			return decision.Decision{}
		}
		d := rt.checkTool(r, ag, t, vals, tool, &msg, shadow)
		d.Rule, d.MCP = tool.rule, call
		return d
	case "resources/read":
		for _, res := range srv.resources {
			if ag.holds(res.scope, shadow) && res.matches(msg.name) {
				call.Name = res.pattern // a label the policy names, not the agent's URI
				return rt.mcpAllowed(call, liveOnly)
			}
		}
		return rt.mcpDecided(decision.Denied(decision.CodeMCPResource,
			"No resource you may read matches this URI; do not retry it."), call, liveOnly)
	case "prompts/get":
		scopes, known := srv.prompts[msg.name]
		call.Listed = known
		if known && holdsAny(ag, scopes, shadow) {
			return rt.mcpAllowed(call, liveOnly)
		}
		return rt.mcpDecided(decision.Denied(decision.CodeMCPPrompt,
			"This MCP server offers you no prompt by that name; call prompts/list for the prompts you may use."), call, liveOnly)
	}
	scopes, known := srv.methods[msg.method]
	call.Listed = known
	if known && holdsAny(ag, scopes, shadow) {
		return rt.mcpAllowed(call, liveOnly)
	}
	return rt.mcpDecided(decision.Denied(decision.CodeMCPMethod,
		"You may not use the JSON-RPC method "+clip(msg.method, 64)+" on this MCP server; do not retry it."), call, liveOnly)
}

// mcpCallOf is the MCP call of a request refused before its message is checked: the id, for
// the answer, when the body is a JSON-RPC message of the server's size and depth.
func (rt *route) mcpCallOf(r *Request) *decision.MCPCall {
	call := &decision.MCPCall{Server: rt.mcp.name}
	if len(r.Body) == 0 || len(r.Body) > rt.mcp.maxBytes {
		return call
	}
	if v, err := r.readJSON(rt.mcp.maxDepth); err == nil {
		if msg, d := readRPC(v); d.Code == "" {
			call.ID, call.Method = msg.id, msg.method
		}
	}
	return call
}

// mcpAllowed allows a message that is not a tool call.
func (rt *route) mcpAllowed(call *decision.MCPCall, liveOnly bool) decision.Decision {
	if liveOnly {
		return decision.Decision{}
	}
	call.Listed = true
	return decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed, Rule: rt.name, Grant: rt.grant, MCP: call}
}

// mcpDecided returns a refusal decided before any tool, on the route.
func (rt *route) mcpDecided(d decision.Decision, call *decision.MCPCall, liveOnly bool) decision.Decision {
	if liveOnly {
		return decision.Decision{}
	}
	d.Rule, d.MCP = rt.name, call
	return d
}

func holdsAny(ag *agent, scopes []int, shadow bool) bool {
	for _, s := range scopes {
		if ag.holds(s, shadow) {
			return true
		}
	}
	return false
}

// checkTool decides a call of a tool the policy lists: scope, mirrored argument headers,
// arguments, approval.
func (rt *route) checkTool(r *Request, ag *agent, t target.Target, vals *[maxPathParams]string, tool *mcpTool, msg *rpcMessage, shadow bool) decision.Decision {
	if !ag.holds(tool.scope, shadow) {
		return decision.Denied(decision.CodeMCPTool,
			"This tool needs scope "+tool.scopeName+", which you do not hold; do not retry it.")
	}
	if r.Token != nil {
		for _, s := range tool.oauthScopes {
			if !r.Token.HasScope(s) {
				d := decision.Denied(decision.CodeOAuthScopeMissing,
					"Your access token does not grant scope "+s+", which this tool needs; ask the authorization server for a token with "+
						strings.Join(tool.oauthScopes, " ")+" and call the tool again.")
				d.Challenge = rt.toolChallenges[tool.name]
				return d
			}
		}
	}
	if d := checkParamHeaders(r, tool, msg); d.Code != "" {
		return d
	}
	schemas := tool.schemas
	if extra := tool.perAgent[ag.id]; len(extra) > 0 {
		schemas = append(schemas[:len(schemas):len(schemas)], extra...)
	}
	for _, sch := range schemas {
		if err := sch.Validate(msg.args); err != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				return decision.Failed(decision.CodeInternal, "The arguments could not be checked; retry later.", err)
			}
			vs := schemaViolations(ve)
			for i := range vs {
				vs[i].Field = "arguments" + strings.TrimPrefix(vs[i].Field, "body")
			}
			return decision.Denied(decision.CodeMCPArguments,
				"The arguments break this tool's schema; fix the listed arguments and call the tool again.", vs...)
		}
	}
	current, _ := r.Headers.Get("mcp-protocol-version")
	r.mcp = &mcpMessage{name: msg.name, args: msg.args, state: msg.state,
		elicitURL: msg.elicitURL && current == mcpRevision20260728}
	if tool.hold != nil && tool.hold.holdsArgs(rt, r, t, vals, msg.args) {
		return decision.Decision{Outcome: decision.Deny, Code: decision.CodeApprovalRequired,
			Detail: "This call needs human approval.", Grant: rt.grant, Hold: tool.hold.hold,
			Response: tool.response.responseTag()} // for the approved call's result
	}
	return decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed, Grant: rt.grant,
		Response: tool.response.responseTag()}
}

// holdsArgs reports whether a tool call must be held: the condition sees what it sees of any
// request on the route (conditionInputs), with the call's arguments as body. A condition that
// cannot be evaluated holds the call.
func (h *holdRule) holdsArgs(rt *route, r *Request, t target.Target, vals *[maxPathParams]string, args map[string]any) bool {
	if h.when == nil {
		return true
	}
	in := rt.conditionInputs(r, t, vals)
	in["body"] = args
	out, _, err := h.when.Eval(in)
	if err != nil {
		return true
	}
	b, ok := out.Value().(bool)
	return !ok || b
}

// headerMismatch refuses a request whose MCP headers disagree with its body.
func headerMismatch(header, msg string) decision.Decision {
	return decision.Denied(decision.CodeMCPHeaderMismatch,
		"The MCP headers of the request must agree with its body; send them as the body says.",
		decision.Violation{Field: "header." + header, Rule: "mismatch", Message: msg})
}

// checkMCPHeaders checks the protocol revision and, against the body, the Mcp-Method and
// Mcp-Name headers. Revision 2026-07-28 requires them; earlier revisions define none, so
// agentauthz never trusts them there, and refuses them when they disagree with the body.
func checkMCPHeaders(r *Request, msg *rpcMessage, call *decision.MCPCall) decision.Decision {
	version, n := r.Headers.Get("mcp-protocol-version")
	switch {
	case n > 1:
		return headerMismatch("mcp-protocol-version", "must be sent once")
	case n == 0 && msg.method != "initialize":
		return mcpInvalid("header.mcp-protocol-version", "required", "is required",
			"Send the MCP-Protocol-Version header ("+mcpRevision20250618+", "+mcpRevision20251125+" or "+mcpRevision20260728+").")
	case n == 1 && version != mcpRevision20250618 && version != mcpRevision20251125 && version != mcpRevision20260728:
		return mcpInvalid("header.mcp-protocol-version", "enum", "is not a supported revision",
			"This gateway supports MCP revisions "+mcpRevision20250618+", "+mcpRevision20251125+" and "+mcpRevision20260728+".")
	}
	call.Version = version
	current := version == mcpRevision20260728
	if v, n := r.Headers.Get("mcp-method"); n > 1 || n == 1 && v != msg.method {
		return headerMismatch("mcp-method", "must be the body's method")
	} else if n == 0 && current {
		return headerMismatch("mcp-method", "is required")
	}
	named := msg.method == "tools/call" || msg.method == "resources/read" || msg.method == "prompts/get"
	v, n := r.Headers.Get("mcp-name")
	switch {
	case n > 1:
		return headerMismatch("mcp-name", "must be sent once")
	case n == 1 && !named:
		return headerMismatch("mcp-name", "names nothing for this method")
	case n == 1:
		if dv, ok := decodeHeaderValue(v); !ok || dv != msg.name {
			return headerMismatch("mcp-name", "must be the body's name or uri")
		}
	case named && current:
		return headerMismatch("mcp-name", "is required")
	}
	if msg.method != "tools/call" {
		// Only a tool call mirrors arguments into headers: one on any other message names
		// something the body does not say.
		var extra string
		if lister, ok := r.Headers.(HeaderLister); ok {
			lister.EachWithPrefix("mcp-param-", func(name, _ string) { extra = name })
		}
		if extra != "" {
			return headerMismatch(extra, "only a tools/call mirrors arguments into headers")
		}
	}
	if current {
		meta, _ := msg.params["_meta"].(map[string]any)
		if pv, _ := meta["io.modelcontextprotocol/protocolVersion"].(string); pv != version {
			return headerMismatch("mcp-protocol-version", "must be the body's _meta protocolVersion")
		}
	}
	return decision.Decision{}
}

// checkParamHeaders checks the Mcp-Param-* headers of a tool call: in revision 2026-07-28,
// exactly the arguments the tool's snapshot annotates with x-mcp-header that the call has, each
// stating its argument; in earlier revisions, none.
func checkParamHeaders(r *Request, tool *mcpTool, msg *rpcMessage) decision.Decision {
	version, _ := r.Headers.Get("mcp-protocol-version")
	lister, canList := r.Headers.(HeaderLister)
	if !canList {
		if version == mcpRevision20260728 && len(tool.headers) > 0 {
			return decision.Failed(decision.CodeInternal, "The request's headers could not be checked; retry later.",
				errors.New("policy: the front door's headers cannot list Mcp-Param-* headers"))
		}
		return decision.Decision{}
	}
	var bad decision.Decision
	counts := make([]int, len(tool.headers))
	lister.EachWithPrefix("mcp-param-", func(name, value string) {
		if bad.Code != "" {
			return
		}
		if version != mcpRevision20260728 {
			bad = headerMismatch(name, "is not defined before revision "+mcpRevision20260728)
			return
		}
		for i, ph := range tool.headers {
			if ph.name != name {
				continue
			}
			counts[i]++
			arg, present := argumentAt(msg.args, ph.path)
			dv, ok := decodeHeaderValue(value)
			if !present || !ok || !headerMatches(ph.kind, dv, arg) {
				bad = headerMismatch(name, "must state the argument "+strings.Join(ph.path, "."))
			}
			return
		}
		bad = headerMismatch(name, "is not an argument header of this tool")
	})
	if bad.Code != "" || version != mcpRevision20260728 {
		return bad
	}
	for i, ph := range tool.headers {
		_, present := argumentAt(msg.args, ph.path)
		if present && counts[i] != 1 || !present && counts[i] != 0 {
			return headerMismatch(ph.name, "must be sent once when the call has the argument "+strings.Join(ph.path, ".")+", and not otherwise")
		}
	}
	return decision.Decision{}
}
