// Package decision defines what agentauthz answers: an immutable Decision whose zero value is a
// deny, the stable reason codes shared by responses, logs and metrics, and the RFC 9457 problem
// details an agent reads when it is refused.
package decision

import (
	"time"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Outcome is allow or deny. Its zero value is Deny.
type Outcome uint8

const (
	// Deny refuses the request. It is the zero value: a Decision nobody filled in denies.
	Deny Outcome = iota
	// Allow lets the request through to the upstream.
	Allow
)

func (o Outcome) String() string {
	if o == Allow {
		return "allow"
	}
	return "deny"
}

// Decision is the answer to one request. The zero value denies with CodeInternal.
type Decision struct {
	Outcome Outcome
	// Code is the stable reason code: the same string in the denial, the log and the metrics.
	Code Code
	// Rule is the name of the route that decided, when one matched.
	Rule string
	// Detail is one sentence an agent can act on. Never carries secrets.
	Detail string
	// Violations lists each offending field or parameter of a malformed request.
	Violations []Violation
	// Grant is what the upstream request gets on allow: headers to set and remove. It is shared
	// by every decision of the same route and must not be modified.
	Grant *Grant
	// RemoveQuery lists query parameters to strip before the upstream sees the request.
	RemoveQuery []string

	// ShadowRule names the shadow route that matched the request, if any; ShadowCode and
	// ShadowOutcome are what it would have decided. They are recorded, never enforced.
	ShadowRule    string
	ShadowCode    Code
	ShadowOutcome Outcome

	// Hold, on an approval_required decision from the policy, says how the request must be
	// approved. It is shared by every decision of the same route and must not be modified.
	Hold *Hold
	// Approval, on approval decisions, is the approval the agent is told about.
	Approval *ApprovalRef

	// MCP, on a request to an MCP server whose JSON-RPC message was read, is that message: what
	// the denial's form (MCPAnswer), the record and the metrics follow.
	MCP *MCPCall

	// Response, on an allow, names the response rule the answer must pass ("KEY@REVISION",
	// policy.(*Snapshot).ResponseRule finds it); empty: the answer passes as it is. It comes
	// from the policy and is shared; the agent cannot set it.
	Response string

	// Challenge, on a denial, is the WWW-Authenticate header value the agent gets: a Bearer
	// challenge (RFC 6750) on hosts that accept OAuth access tokens. Empty: none.
	Challenge string

	// Answer, on a decision that answers the request itself (CodeOAuthResourceMetadata), is the
	// JSON body the front door sends with the code's status, in place of a problem. It is shared
	// and must not be modified.
	Answer []byte
	// Preflight, on a CodeOAuthResourceMetadata decision, marks the answer to a CORS preflight
	// (OPTIONS) of the metadata's path: an empty Answer, and the CORS headers that let a browser
	// GET the document from any origin.
	Preflight bool

	// Cause, on a failure to decide, is what went wrong inside agentauthz. It is logged with the
	// decision id for operators and never shown to the agent.
	Cause error
}

// Hold is a route's approval requirement, compiled once.
type Hold struct {
	Rule   string
	Reason string
	// Condition is the rule's approval condition (its when) that held the request; "" when the
	// rule holds every request. Shown to approvers.
	Condition     string
	Approvers     []string // "group:NAME", "user:NAME"
	ApproveWithin time.Duration
	UseWithin     time.Duration
	Notify        []string
	// Redact are the body fields approvers see as "[redacted]".
	Redact []strictjson.Pointer
	// Retry is what an approved retry carries to the upstream: the route's Grant, and the
	// approval header removed too. It is shared and must not be modified.
	Retry *Grant
	// Implicit lets an approved request through when the agent sends it again identically,
	// without the approval header: MCP clients send what the model asks, and cannot add a header
	// to one call. The approval still binds the agent and the exact call, and lets one through.
	Implicit bool
	// MaxPerAgent and MaxPerRule bound the live approvals (pending, or approved and unused) of
	// the agent, across every rule, and of this rule, across every agent, that a new one may
	// join: over either the request is refused (CodeApprovalLimit). Zero bounds nothing.
	MaxPerAgent, MaxPerRule int
}

// ApprovalRef is what a denial tells the agent about its approval.
type ApprovalRef struct {
	ID    string
	State string
	// Expires is when the approval lapses in its current state.
	Expires time.Time
	// URL, when set, is where approvers decide it, and RequestState an integrity-protected token
	// bound to the held call: together they let an MCP client of revision 2026-07-28 show its
	// user where the call is decided and retry it in the protocol's own form (MCPAnswer).
	URL, RequestState string
}

// Allowed reports whether the decision lets the request through.
func (d *Decision) Allowed() bool { return d.Outcome == Allow && d.Code == CodeAllowed }

// Status is the HTTP status of the decision: 200 on allow, the code's status on deny.
func (d *Decision) Status() int {
	if d.Allowed() {
		return 200
	}
	return d.Code.Status()
}

// Violation is one offending part of a request.
type Violation struct {
	// Field locates the offending part: "query.limit", "path.id", "header.x-http-method-override".
	Field string `json:"field"`
	// Rule names the broken rule: "enum", "maximum", "unknown", "repeated", "pattern", ...
	Rule string `json:"rule"`
	// Message says what is wrong in a few words, e.g. "must be at most 100".
	Message string `json:"message"`
}

// Grant is what an allowed request carries to the upstream, compiled once per host.
type Grant struct {
	// Set lists headers to set (replacing any the agent sent).
	Set []Header
	// Remove lists headers to remove from the agent's request.
	Remove []string
}

// Header is one header to set. Its value may be a credential and is never logged.
type Header struct {
	Name  string
	Value Secret
}

// Secret holds a credential. It prints as a placeholder so that it cannot leak into logs.
type Secret string

// Reveal returns the credential itself, for the response to Envoy only.
func (s Secret) Reveal() string { return string(s) }

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "[redacted]" }

// MarshalText keeps secrets out of JSON and text encodings.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Failed returns a deny for a failure to decide: code is a failure code (internal_error and
// the like), detail what the agent is told, cause what the operators' log says.
func Failed(code Code, detail string, cause error) Decision {
	return Decision{Outcome: Deny, Code: code, Detail: detail, Cause: cause}
}

// Denied returns a deny decision with code, detail and violations.
func Denied(code Code, detail string, violations ...Violation) Decision {
	return Decision{Outcome: Deny, Code: code, Detail: detail, Violations: violations}
}
