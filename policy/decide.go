package policy

import (
	"math"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// Headers gives read access to the request headers, by lower-case name.
type Headers interface {
	// Get returns the first value of a header and how many times the header appears.
	Get(name string) (value string, n int)
}

// Request is what the policy decides on. The edge fills it from Envoy's CheckRequest.
type Request struct {
	// Agent is the caller's SPIFFE ID, authenticated at the edge. The zero ID is no identity.
	Agent spiffeid.ID
	// Method is the HTTP method, exact.
	Method string
	// Host is the :authority, as sent.
	Host string
	// Target is the raw, undecoded path with its query.
	Target string
	// Headers are the request headers. Never nil.
	Headers Headers
	// Body is the request body as Envoy forwarded it, if it did. It may share memory with the
	// CheckRequest and must never be written to.
	Body []byte
	// BodyPartial is set when Envoy cut the body short (x-envoy-auth-partial-body: true).
	BodyPartial bool
	// Token is the validated OAuth access token that identified the agent, or that agreed with
	// its certificate; nil when the request carried none. Routes' oauth_scopes are checked
	// against it.
	Token *accesstoken.Token

	// body is Body read as strict JSON by the first stage that needed it (see JSON).
	body *parsedBody
	// mcp is the MCP tool call an MCP route read from the body (see MCPToolCall).
	mcp *mcpMessage
}

func isMethodOverrideParam(name string) bool {
	switch strings.ToLower(name) {
	case "_method", "x-http-method-override", "x-http-method", "x-method-override":
		return true
	}
	return false
}

// Decide decides one request. It never fails: what it cannot allow, it denies with a reason.
// When a shadow route matches the request, what it would have decided is recorded in the
// decision's Shadow fields; it never changes the outcome.
func (s *Snapshot) Decide(r *Request) decision.Decision {
	d := s.decide(r, false)
	if s.hasShadow {
		if sd := s.decide(r, true); sd.Rule != "" {
			d.ShadowRule, d.ShadowCode, d.ShadowOutcome = sd.Rule, sd.Code, sd.Outcome
		}
	}
	return d
}

// decide decides with the ordinary routes and agents, or with the shadow ones.
func (s *Snapshot) decide(r *Request, shadow bool) decision.Decision {
	if r.Agent.IsZero() {
		return decision.Denied(decision.CodeIdentityMissing,
			"The request carries no agent identity; call through the mesh with your SPIFFE certificate.")
	}
	if !s.trusts(r.Agent.TrustDomain(), shadow) {
		return decision.Denied(decision.CodeTrustDomainUnknown,
			"Your SPIFFE trust domain is not accepted here; do not retry.")
	}
	ag := s.agents[r.Agent]
	if ag == nil || !(ag.live || shadow) {
		return decision.Denied(decision.CodeAgentUnknown,
			"Your SPIFFE ID is not a registered agent; do not retry, ask an operator to register it.")
	}
	if r.Method == "" || r.Host == "" || r.Target == "" {
		return decision.Denied(decision.CodeRequestMalformed, "The request lacks a method, host or path.")
	}
	if d := refuseOverrides(r); d.Code != "" {
		return d
	}
	t, err := target.Parse(r.Target)
	if err != nil {
		return targetDenied(err.(*target.Error))
	}
	h := s.hosts[hostKey(r.Host)]
	if h == nil || !(h.live || shadow) {
		return decision.Denied(decision.CodeHostUnknown,
			"No agent may call this host; check the host name, without port.")
	}
	if d := h.refuseHostHeaders(r); d.Code != "" {
		return d
	}
	var vals [maxPathParams]string
	tree := h.root
	if shadow {
		tree = h.shadowRoot
	}
	rt := tree.match(r.Method, t.Path, &vals, 0)
	// A shadow tool of an MCP server is reached through the server's live route.
	liveOnly := false
	if rt == nil && shadow {
		if lr := h.root.match(r.Method, t.Path, &vals, 0); lr != nil && lr != ambiguousRoute && lr.mcp != nil && lr.mcp.hasShadow {
			rt, liveOnly = lr, true
		}
	}
	if rt == ambiguousRoute {
		return decision.Denied(decision.CodePathAmbiguous,
			"The path is ambiguous or malformed; send the plain, normalised path.",
			decision.Violation{Field: "path", Rule: "encoded_literal", Message: "percent-encodes a segment that names a route"})
	}
	if rt == nil {
		return decision.Denied(decision.CodeRouteUnknown,
			"No route allows this method and path; do not retry it, use a documented endpoint.")
	}
	if r.Token != nil && rt.oauthResource != "" && !r.Token.HasAudience(rt.oauthResource) {
		// A token for another resource of the same host (the host as a whole, say) does not
		// open this one: the MCP server accepts only tokens issued for itself.
		if liveOnly {
			return decision.Decision{}
		}
		d := decision.Denied(decision.CodeOAuthTokenInvalid,
			audienceDescription+"; obtain an access token for "+rt.oauthResource+" and retry.")
		d.Rule, d.Challenge = rt.name, rt.audienceChallenge
		return d
	}
	if !ag.holds(rt.scope, shadow) {
		if liveOnly {
			return decision.Decision{}
		}
		d := decision.Denied(decision.CodeScopeMissing,
			"This route needs scope "+s.scopeNames[rt.scope]+", which you do not hold; do not retry.")
		d.Rule = rt.name
		if rt.mcp != nil {
			d.MCP = rt.mcpCallOf(r)
		}
		return d
	}
	if r.Token != nil && len(rt.oauthScopes) > 0 {
		if missing := rt.missingOAuthScopes(r.Token); missing != "" {
			if liveOnly {
				return decision.Decision{}
			}
			d := decision.Denied(decision.CodeOAuthScopeMissing,
				"Your access token does not grant scope "+missing+", which this route needs; ask the authorization server for a token with "+strings.Join(rt.oauthScopes, " ")+" and retry.")
			d.Rule, d.Challenge = rt.name, rt.scopeChallenge
			if rt.mcp != nil {
				d.MCP = rt.mcpCallOf(r)
			}
			return d
		}
	}
	d := rt.check(r, ag, t, &vals, shadow, liveOnly)
	if rt.mcp == nil || d.Rule == "" && !liveOnly {
		d.Rule = rt.name
	}
	return d
}

// missingOAuthScopes returns the first of the route's OAuth scopes the token does not grant,
// or "".
func (rt *route) missingOAuthScopes(tok *accesstoken.Token) string {
	for _, s := range rt.oauthScopes {
		if !tok.HasScope(s) {
			return s
		}
	}
	return ""
}

// check validates what the route types: path parameters, query, body.
func (rt *route) check(r *Request, ag *agent, t target.Target, vals *[maxPathParams]string, shadow, liveOnly bool) decision.Decision {
	if rt.mcp != nil {
		if _, n := r.Headers.Get("last-event-id"); n > 0 {
			// A resumed stream replays what the server sent before, and answers replayed
			// on a GET never pass the checks of responses (list filtering, response rules)
			// that the request they answer went through.
			if liveOnly {
				return decision.Decision{}
			}
			d := decision.Denied(decision.CodeMCPInvalid,
				"agentauthz does not resume MCP streams (Last-Event-ID); send the request again without it.",
				decision.Violation{Field: "header.last-event-id", Rule: "forbidden", Message: "must be absent"})
			d.MCP = rt.mcpCallOf(r)
			return d
		}
	}
	var violations []decision.Violation
	for i, p := range rt.params {
		if v, ok := p.checkPath(vals[i]); !ok {
			violations = append(violations, v)
		}
	}
	if len(violations) > 0 {
		return decision.Denied(decision.CodePathParamInvalid,
			"A path parameter is invalid; fix it as the violations say.", violations...)
	}
	if rt.graphqlGET != nil {
		if hasBody(r) {
			return decision.Denied(decision.CodeBodyNotAllowed,
				"A GraphQL GET takes no body; send the request in the query string.",
				decision.Violation{Field: "body", Rule: "forbidden", Message: "must be empty"})
		}
		if d := rt.checkGraphQLQuery(t.Query, ag); d.Code != "" {
			return d
		}
		return rt.allowOrHold(r, t, vals, nil)
	}
	var strip []string
	violations, strip = rt.checkQuery(t.Query)
	if len(violations) > 0 {
		code := decision.CodeQueryInvalid
		detail := "The query is invalid; fix the listed parameters and retry."
		for _, v := range violations {
			if v.Rule == "method_override" {
				code, detail = decision.CodeMethodOverride, "Method override parameters are refused; send the request with the method you mean."
			}
		}
		return decision.Denied(code, detail, violations...)
	}
	switch {
	case rt.body != nil:
		if d := rt.body.check(r, ag); d.Code != "" {
			if rt.mcp != nil {
				if liveOnly {
					return decision.Decision{}
				}
				// Not a message to read an id from: answered as JSON-RPC without one.
				d.MCP = &decision.MCPCall{Server: rt.mcp.name}
			}
			return d
		}
		if rt.mcp != nil {
			return rt.checkMCP(r, ag, t, vals, shadow, liveOnly)
		}
	case hasBody(r):
		return decision.Denied(decision.CodeBodyNotAllowed,
			"This route takes no request body; send the request without one.",
			decision.Violation{Field: "body", Rule: "forbidden", Message: "must be empty"})
	}
	return rt.allowOrHold(r, t, vals, strip)
}

// allowOrHold allows a request that passed every check of the route, or holds it for approval.
func (rt *route) allowOrHold(r *Request, t target.Target, vals *[maxPathParams]string, strip []string) decision.Decision {
	if rt.hold != nil && rt.hold.holds(rt, r, t, vals) {
		return decision.Decision{Outcome: decision.Deny, Code: decision.CodeApprovalRequired,
			Detail: "This request needs human approval.", Grant: rt.grant, RemoveQuery: strip, Hold: rt.hold.hold,
			Response: rt.response.responseTag()} // for the approved request's answer
	}
	return decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed, Grant: rt.grant, RemoveQuery: strip,
		Response: rt.response.responseTag()}
}

// maxViolations bounds what one denial lists.
const maxViolations = 16

// checkQuery checks every parameter of a query that target.Parse accepted.
func (rt *route) checkQuery(q string) (violations []decision.Violation, strip []string) {
	return rt.checkParams(q, "query.")
}

// checkParams checks every parameter of a query, or of a form body, that target accepted;
// prefix names the part in violations about names the route does not declare.
func (rt *route) checkParams(q, prefix string) (violations []decision.Violation, strip []string) {
	var counts [maxQueryParams]uint16 // by param.index
	var seen []string                 // the items of repeated parameters whose items must be unique
	add := func(v decision.Violation) {
		if len(violations) < maxViolations {
			violations = append(violations, v)
		}
	}
	for rest := q; rest != ""; {
		var rawName, rawValue string
		rawName, rawValue, rest, _ = target.NextParam(rest)
		name := target.Unescape(rawName)
		if isMethodOverrideParam(name) {
			add(decision.Violation{Field: prefix + name, Rule: "method_override", Message: "must not be sent"})
			continue
		}
		p := rt.query.get(name)
		if p == nil {
			if rt.strip && rawName == name && !rt.query.declaredFold(name) {
				if !contains(strip, name) {
					strip = append(strip, name)
				}
				continue
			}
			add(decision.Violation{Field: prefix + name, Rule: "unknown", Message: "is not a parameter of this route"})
			continue
		}
		if counts[p.index] < math.MaxUint16 {
			counts[p.index]++
		}
		if counts[p.index] == 2 && !p.repeatable {
			add(decision.Violation{Field: p.field, Rule: "repeated", Message: "must be given at most once"})
		}
		if v, ok := p.checkQueryValue(rawValue); !ok {
			add(v)
		} else if p.repeatable && p.list != nil && p.list.unique {
			k := p.field + "\x00" + p.itemKey(target.Unescape(rawValue))
			if contains(seen, k) {
				add(decision.Violation{Field: p.field, Rule: "unique_items", Message: "must not repeat an item"})
			}
			seen = append(seen, k)
		}
	}
	for _, p := range rt.required {
		if counts[p.index] == 0 {
			add(decision.Violation{Field: p.field, Rule: "required", Message: "is required"})
		}
	}
	// Arrays given once per item: their number of items.
	for _, p := range rt.lists {
		switch n := int(counts[p.index]); {
		case n == 0:
		case n > p.list.max:
			add(decision.Violation{Field: p.field, Rule: "max_items", Message: p.list.msgMax})
		case n < p.list.min:
			add(decision.Violation{Field: p.field, Rule: "min_items", Message: p.list.msgMin})
		}
	}
	return violations, strip
}

// hasBody reports whether the request carries a body, forwarded or only announced.
func hasBody(r *Request) bool {
	if len(r.Body) > 0 || r.BodyPartial {
		return true
	}
	if v, n := r.Headers.Get("content-length"); n > 0 && v != "0" {
		return true
	}
	_, n := r.Headers.Get("transfer-encoding")
	return n > 0
}

// hostKey lower-cases an ASCII host; a host with any other byte matches no host.
func hostKey(h string) string {
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 || h[i] <= 0x20 {
			return ""
		}
	}
	return asciiLower(h)
}

func targetDenied(e *target.Error) decision.Decision {
	if e.Part == "query" {
		return decision.Denied(decision.CodeQueryInvalid,
			"The query string is malformed or ambiguous; encode it plainly and retry.",
			decision.Violation{Field: "query", Rule: e.Rule, Message: e.Message})
	}
	return decision.Denied(decision.CodePathAmbiguous,
		"The path is ambiguous or malformed; send the plain, normalised path.",
		decision.Violation{Field: "path", Rule: e.Rule, Message: e.Message})
}
