package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/response"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// responseRules are the response rules of one route or MCP tool: the rule, and the rules of
// some agents, compiled at load.
type responseRules struct {
	key    string // "route:NAME" or "mcp:SERVER/TOOL"
	base   *response.Rule
	agents []agentResponse
	// tag names the rules and the policy revision they belong to, "KEY@REVISION": what an
	// allowed request's decision carries (decision.Decision.Response) for the response's filter
	// to find them, and to refuse to apply another revision's.
	tag string
}

type agentResponse struct {
	ids  map[spiffeid.ID]struct{}
	rule *response.Rule
}

// ErrResponseRule is returned by Snapshot.ResponseRule for a tag that names no rule of the
// snapshot: another revision's, or none.
var ErrResponseRule = errors.New("policy: the response rule is not in the policy in force")

// ResponseRule returns the response rule a decision's tag (decision.Decision.Response) names,
// for agent: the first agent rule naming the agent, else the rule. A tag of another policy
// revision names nothing: the policy was reloaded between the request and its response, and
// applying the new revision's rule to an answer checked under the old one is refused.
func (s *Snapshot) ResponseRule(tag string, agent spiffeid.ID) (*response.Rule, error) {
	key, rev, ok := strings.Cut(tag, "@")
	if !ok || rev != s.revision {
		return nil, fmt.Errorf("%w (%s)", ErrResponseRule, tag)
	}
	rr := s.responses[key]
	if rr == nil {
		return nil, fmt.Errorf("%w (%s)", ErrResponseRule, tag)
	}
	for _, a := range rr.agents {
		if _, ok := a.ids[agent]; ok {
			return a.rule, nil
		}
	}
	return rr.base, nil
}

// ResponseRuleByName returns the rule of a route (by its name) or an MCP tool ("SERVER/TOOL"),
// for agent, for offline checks: nil, false when it has none.
func (s *Snapshot) ResponseRuleByName(name string, agent spiffeid.ID) (*response.Rule, bool) {
	for _, key := range []string{"route:" + name, "mcp:" + name} {
		if rr := s.responses[key]; rr != nil {
			r, err := s.ResponseRule(rr.tag, agent)
			return r, err == nil
		}
	}
	return nil, false
}

// responseTag is what an allowed decision of the route carries: "" without a rule.
func (rr *responseRules) responseTag() string {
	if rr == nil {
		return ""
	}
	return rr.tag
}

// responseRule compiles a response rule of a route or tool at at, named key.
func (c *compiler) responseRule(src *source, at, key string, r *policyv1.ResponseRule, mcp bool) *responseRules {
	rr := &responseRules{key: key}
	ok := true
	rr.base, ok = c.compileResponse(src, at, key, responseSpec{
		maxBytes: r.GetMaxBytes(), allow: r.GetAllow(), schema: r.GetJsonSchema(), redact: r.GetRedact(),
		onMismatch: r.GetOnMismatch(), shadow: r.GetShadow() || src.policy.GetShadow(), mcp: mcp,
	})
	named := map[spiffeid.ID]string{}
	for i, a := range r.GetAgents() {
		aat := fmt.Sprintf("%s.agents[%d]", at, i)
		spec := responseSpec{maxBytes: r.GetMaxBytes(), allow: a.GetAllow(), schema: a.GetJsonSchema(), redact: a.GetRedact(),
			onMismatch: r.GetOnMismatch(), shadow: r.GetShadow() || src.policy.GetShadow(), mcp: mcp}
		if a.MaxBytes != nil {
			spec.maxBytes = a.GetMaxBytes()
		}
		if a.GetOnMismatch() != "" {
			spec.onMismatch = a.GetOnMismatch()
		}
		if a.Shadow != nil {
			spec.shadow = a.GetShadow() || src.policy.GetShadow()
		}
		rule, rok := c.compileResponse(src, aat, key, spec)
		ok = ok && rok
		ar := agentResponse{ids: map[spiffeid.ID]struct{}{}, rule: rule}
		for k, s := range a.GetAgents() {
			id, err := spiffeid.FromString(s)
			switch {
			case err != nil:
				c.addf(src, fmt.Sprintf("%s.agents[%d]", aat, k), "not a SPIFFE ID: %v", err)
				ok = false
				continue
			case c.snap.agents[id] == nil:
				c.addf(src, fmt.Sprintf("%s.agents[%d]", aat, k), "agent %s is not defined in this policy", id)
				ok = false
				continue
			}
			if first, dup := named[id]; dup {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", aat, k), "agent %s already has a response rule at %s: an agent has one", id, first)
				ok = false
				continue
			}
			named[id] = aat
			ar.ids[id] = struct{}{}
		}
		rr.agents = append(rr.agents, ar)
	}
	if !ok {
		return nil
	}
	if c.snap.responses == nil {
		c.snap.responses = map[string]*responseRules{}
	}
	c.snap.responses[key] = rr
	return rr
}

type responseSpec struct {
	maxBytes   uint32
	allow      []string
	schema     string
	redact     []*policyv1.ResponseRedaction
	onMismatch string
	shadow     bool
	mcp        bool
}

// compileResponse compiles one rule; its problems are reported at their fields under at.
func (c *compiler) compileResponse(src *source, at, key string, s responseSpec) (*response.Rule, bool) {
	spec := response.Spec{MaxBytes: int(s.maxBytes), Allow: s.allow, Reduce: s.onMismatch != "refuse",
		Shadow: s.shadow, MCP: s.mcp}
	for _, r := range s.redact {
		spec.Redact = append(spec.Redact, response.Redaction{Pointer: r.GetPointer(), Remove: r.GetAction() == "remove"})
	}
	if s.schema != "" && len(s.allow) > 0 {
		c.addf(src, at+".json_schema", "set allow or json_schema, not both: which one decides would be unclear")
		return nil, false
	}
	if s.schema != "" {
		sch, _, err := c.compileArgumentsSchema(src, s.schema)
		if err != nil {
			c.addf(src, at+".json_schema", "%v", err)
			return nil, false
		}
		spec.Schema = sch
	}
	rule, err := response.Compile(key, spec)
	var problems response.Problems
	switch {
	case err == nil:
		return rule, true
	case errors.As(err, &problems):
		for _, p := range problems {
			field := p.Field
			if field == "schema" {
				field = "json_schema"
			}
			c.addf(src, at+"."+field, "%s", p.Message)
		}
	default:
		c.addf(src, at, "%v", err)
	}
	return nil, false
}

// responseTags gives every response rule its tag, once the revision is known.
func (s *Snapshot) responseTags() {
	for key, rr := range s.responses {
		rr.tag = key + "@" + s.revision
	}
}
