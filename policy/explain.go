package policy

import (
	"fmt"
	"strings"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// Explain decides r like Decide and says, step by step, which rules were considered and why
// each matched or not. It is for people (agentauthz check --explain), not the request path.
func (s *Snapshot) Explain(r *Request) (decision.Decision, []string) {
	d := s.Decide(r)
	var steps []string
	add := func(format string, args ...any) { steps = append(steps, fmt.Sprintf(format, args...)) }

	if r.Agent.IsZero() {
		add("identity: none")
		return d, steps
	}
	_, tdOK := s.trustDomains[r.Agent.TrustDomain()]
	add("identity: %s (trust domain %s %s)", r.Agent, r.Agent.TrustDomain().Name(), accepted(tdOK))
	ag := s.agents[r.Agent]
	switch {
	case !tdOK:
		return d, steps
	case ag == nil:
		add("agent: not in the policy")
		return d, steps
	case !ag.live:
		add("agent: defined only in shadow files")
	default:
		add("agent: holds %s", strings.Join(s.scopeList(ag.scopes), ", "))
	}
	t, err := target.Parse(r.Target)
	if err != nil {
		add("path: refused before any rule: %v", err)
		return d, steps
	}
	h := s.hosts[hostKey(r.Host)]
	if h == nil {
		add("host %q: not in the policy", r.Host)
		return d, steps
	}
	if h.live {
		add("host %s: %d route(s)", h.name, len(h.routes))
	} else {
		add("host %s: defined only in shadow files; %d shadow route(s)", h.name, len(h.routes))
	}
	for _, rt := range h.routes {
		kind := "route"
		if rt.shadow {
			kind = "shadow route"
		}
		switch {
		case rt.method != r.Method:
			add("  %s %s (%s %s): skipped, method is %s", kind, rt.name, rt.method, rt.template, r.Method)
		case !rt.matchesPath(t.Path):
			add("  %s %s (%s %s): skipped, path does not match", kind, rt.name, rt.method, rt.template)
		case rt.shadow && d.ShadowRule == rt.name:
			add("  %s %s (%s %s): matched; would decide %s %s (recorded, not enforced)", kind, rt.name, rt.method, rt.template, d.ShadowOutcome, d.ShadowCode)
		case d.Rule == rt.name:
			add("  %s %s (%s %s): matched; needs scope %s (%s)%s; decides %s %s", kind, rt.name, rt.method, rt.template,
				s.scopeNames[rt.scope], held(ag.holds(rt.scope, rt.shadow)), rt.explainOAuthScopes(r.Token), d.Outcome, d.Code)
			s.explainRouteWhen(h, rt, r, t, &d, add)
		case rt.mcp != nil && d.MCP != nil && d.MCP.Server == rt.mcp.name && !rt.shadow:
			// An MCP route: the tool the message calls decided, under the route.
			add("  %s %s (%s %s): matched; needs scope %s (%s); MCP server %s", kind, rt.name, rt.method, rt.template,
				s.scopeNames[rt.scope], held(ag.holds(rt.scope, false)), rt.mcp.name)
			toolInputs := func(args map[string]any) map[string]any {
				var vals [maxPathParams]string
				h.root.match(r.Method, t.Path, &vals, 0)
				in := rt.conditionInputs(r, t, &vals)
				in["body"] = args
				return in
			}
			s.explainMCP(rt.mcp, ag, r, &d, toolInputs, add)
		case rt.shadow && d.ShadowRule == "", !rt.shadow && d.Rule == "":
			// No route of its kind decided: the request was refused before routes were looked at.
			add("  %s %s (%s %s): matches, but the request was refused before a route could decide", kind, rt.name, rt.method, rt.template)
		default:
			add("  %s %s (%s %s): matches, but a route with more literal segments takes precedence", kind, rt.name, rt.method, rt.template)
		}
	}
	if d.Rule == "" {
		add("no route decided: %s", d.Code)
	}
	return d, steps
}

// explainOAuthScopes says what the route needs of an access token, and whether tok grants it.
func (rt *route) explainOAuthScopes(tok *accesstoken.Token) string {
	switch {
	case len(rt.oauthScopes) == 0:
		return ""
	case tok == nil:
		return " and OAuth scopes " + strings.Join(rt.oauthScopes, " ") + " of a token (no token: not checked)"
	case rt.missingOAuthScopes(tok) != "":
		return " and OAuth scopes " + strings.Join(rt.oauthScopes, " ") + " (not granted)"
	}
	return " and OAuth scopes " + strings.Join(rt.oauthScopes, " ") + " (granted)"
}

func accepted(ok bool) string {
	if ok {
		return "accepted"
	}
	return "not accepted"
}

func held(ok bool) string {
	if ok {
		return "held"
	}
	return "not held"
}

func (s *Snapshot) scopeList(set []uint64) []string {
	var out []string
	for i, name := range s.scopeNames {
		if w := i / 64; w < len(set) && set[w]&(1<<(i%64)) != 0 {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"no scopes"}
	}
	return out
}

// matchesPath reports whether the route's template fits path, segment by segment.
func (rt *route) matchesPath(path string) bool {
	rest := path
	for _, want := range rt.segments {
		seg, next, ok := target.NextSegment(rest)
		if !ok || (!isParamSegment(want) && seg != want) {
			return false
		}
		rest = next
	}
	_, _, more := target.NextSegment(rest)
	return !more
}

// explainMCP says what decided an MCP message: its method, and the tool, resource or prompt.
func (s *Snapshot) explainMCP(srv *mcpServer, ag *agent, r *Request, d *decision.Decision, inputs func(map[string]any) map[string]any, add func(string, ...any)) {
	c := d.MCP
	switch {
	case c.Method == "":
		add("    message: not read (%s)", d.Code)
	case c.Method == "tools/call":
		t := srv.tools[c.Name]
		switch {
		case t == nil || t.shadow:
			add("    tools/call %s: the policy lists no such tool; decides %s %s", clip(c.Name, 64), d.Outcome, d.Code)
		default:
			add("    tools/call %s: rule %s; needs scope %s (%s); checked against %d schema(s); decides %s %s", c.Name, t.rule,
				t.scopeName, held(ag.holds(t.scope, false)), len(t.schemas)+len(t.perAgent[ag.id]), d.Outcome, d.Code)
			explainToolWhen(t.hold, r, d, inputs, add)
		}
	default:
		add("    %s: decides %s %s", clip(c.Method, 64), d.Outcome, d.Code)
	}
}
