package authzen

import (
	"encoding/json"
	"strings"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// allowContext is the context of a permit: which decision and rule, and what the PEP must take
// off the request before it goes upstream. The credentials the policy injects are never sent
// over this API.
type allowContext struct {
	DecisionID    string   `json:"decision_id"`
	Code          string   `json:"code"`
	Rule          string   `json:"rule,omitempty"`
	RemoveHeaders []string `json:"remove_headers,omitempty"`
	RemoveQuery   []string `json:"remove_query,omitempty"`
}

// appendResult appends the AuthZEN Decision of the engine's result to b:
//
//	{"decision":true,"context":{"decision_id":"...","code":"allowed","rule":"list-tickets",...}}
//	{"decision":false,"context":PROBLEM}
//
// where PROBLEM is the RFC 9457 problem details Envoy would answer the agent with (code,
// status, detail, decision_id, rule, violations, and approval_id and approval_state for a held
// request).
func appendResult(b []byte, res *engine.Result) []byte {
	d := &res.Decision
	if !d.Allowed() {
		b = append(b, `{"decision":false,"context":`...)
		p := d.Problem(res.ID)
		if d.Challenge != "" && strings.HasSuffix(p, "}") {
			// What Envoy's door would answer in WWW-Authenticate, for the PEP to answer with:
			// the challenge of a refused or missing access token, or of a missing OAuth scope.
			ch, _ := json.Marshal(d.Challenge) // a string always marshals
			b = append(b, p[:len(p)-1]...)
			b = append(b, `,"www_authenticate":`...)
			b = append(b, ch...)
			return append(b, "}}"...)
		}
		b = append(b, p...)
		return append(b, '}')
	}
	c := allowContext{DecisionID: res.ID, Code: string(decision.CodeAllowed), Rule: d.Rule, RemoveQuery: d.RemoveQuery}
	if d.Grant != nil {
		c.RemoveHeaders = d.Grant.Remove
	}
	data, err := json.Marshal(c)
	if err != nil { // strings and string slices always marshal
		return append(b, `{"decision":false}`...)
	}
	b = append(b, `{"decision":true,"context":`...)
	b = append(b, data...)
	return append(b, '}')
}

// errorContext is the context of an evaluation that could not be decided: a deny carrying the
// error, as the specification shows.
type errorContext struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"error"`
}

// appendError appends a deny with the error status and message in its context to b.
func appendError(b []byte, status int, message string) []byte {
	var c errorContext
	c.Error.Status, c.Error.Message = status, message
	data, err := json.Marshal(c)
	if err != nil { // an int and a string always marshal
		return append(b, `{"decision":false}`...)
	}
	b = append(b, `{"decision":false,"context":`...)
	b = append(b, data...)
	return append(b, '}')
}
