package main

import (
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/agentauthz/agentauthz/internal/engine"
)

// checkJSON is what `agentauthz check -o json` prints: one object, the decision. Its fields are
// a stable interface for scripts (docs/cli.md): fields are added, never renamed or removed, and
// a field that does not apply is left out rather than set to null, except the ones every
// decision has.
type checkJSON struct {
	// Allowed is true when the request may go through; everything else is a deny.
	Allowed bool `json:"allowed"`
	// Outcome is "allow" or "deny".
	Outcome string `json:"outcome"`
	// Status is the HTTP status the agent gets (200 when allowed).
	Status int `json:"status"`
	// Code is the stable reason code (allowed, scope_missing, approval_required, ...).
	Code string `json:"code"`
	// Route is the route that decided; "" when none matched.
	Route string `json:"route"`
	// Detail is what the agent is told on a deny.
	Detail string `json:"detail,omitempty"`
	// Agent is the agent's SPIFFE ID once established, and AgentSource where it came from
	// (x509, jwt_svid, oauth).
	Agent       string `json:"agent,omitempty"`
	AgentSource string `json:"agent_source,omitempty"`
	// DecisionID identifies the decision, as in the decision log.
	DecisionID string `json:"decision_id"`
	// Revision is the revision of the policy that decided.
	Revision string `json:"revision,omitempty"`
	// HeadersToSet and HeadersToRemove are what Envoy does to the request it forwards; the
	// values of credentials are shown as "[redacted]".
	HeadersToSet    []jsonHeader `json:"headers_to_set,omitempty"`
	HeadersToRemove []string     `json:"headers_to_remove,omitempty"`
	// QueryToRemove are query parameters removed before the request is forwarded.
	QueryToRemove []string `json:"query_to_remove,omitempty"`
	// ResponseRule, on an allow, names the response rule the upstream's answer must pass.
	ResponseRule string `json:"response_rule,omitempty"`
	// Answer is the body agentauthz answers itself with, for a decision that answers the
	// request (a protected resource's metadata).
	Answer string `json:"answer,omitempty"`
	// Violations say which part of the request broke which rule.
	Violations []jsonViolation `json:"violations,omitempty"`
	// Challenge is the WWW-Authenticate header of a 401.
	Challenge string `json:"www_authenticate,omitempty"`
	// Shadow is what a shadow route would have decided (recorded, not enforced).
	Shadow *jsonShadow `json:"shadow,omitempty"`
	// Approval is the held request's approval, for approval_required.
	Approval *jsonApproval `json:"approval,omitempty"`
	// Explain is the policy's reasoning, step by step, with --explain.
	Explain []string `json:"explain,omitempty"`
}

type jsonHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type jsonViolation struct {
	Field   string `json:"field"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

type jsonShadow struct {
	Route   string `json:"route"`
	Outcome string `json:"outcome"`
	Code    string `json:"code"`
}

type jsonApproval struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Expires string `json:"expires,omitempty"`
}

// newCheckJSON turns an engine result into the JSON form of a decision.
func newCheckJSON(res *engine.Result) checkJSON {
	d := &res.Decision
	out := checkJSON{
		Allowed:     d.Allowed(),
		Outcome:     d.Outcome.String(),
		Status:      d.Status(),
		Code:        string(d.Code),
		Route:       d.Rule,
		Detail:      d.Detail,
		Agent:       res.Agent,
		AgentSource: res.Source,
		DecisionID:  res.ID,
		Revision:    res.Revision,
		Challenge:   d.Challenge,
		Explain:     res.Explain,
	}
	if d.Allowed() {
		if g := d.Grant; g != nil {
			for _, h := range g.Set {
				out.HeadersToSet = append(out.HeadersToSet, jsonHeader{Name: h.Name, Value: h.Value.String()})
			}
			out.HeadersToRemove = g.Remove
		}
		out.QueryToRemove = d.RemoveQuery
		out.ResponseRule, _, _ = strings.Cut(d.Response, "@")
	}
	if d.Answer != nil {
		out.Answer = string(d.Answer)
	}
	for _, v := range d.Violations {
		out.Violations = append(out.Violations, jsonViolation(v))
	}
	if d.ShadowRule != "" {
		out.Shadow = &jsonShadow{Route: d.ShadowRule, Outcome: d.ShadowOutcome.String(), Code: string(d.ShadowCode)}
	}
	if a := d.Approval; a != nil {
		out.Approval = &jsonApproval{ID: a.ID, State: a.State}
		if !a.Expires.IsZero() {
			out.Approval.Expires = a.Expires.UTC().Format(time.RFC3339)
		}
	}
	return out
}

func writeCheckJSON(w io.Writer, res *engine.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(newCheckJSON(res))
}
