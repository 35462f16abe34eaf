package audit

import (
	"log/slog"
	"time"
)

// Decision is one decision as the log records it. Bodies and credentials are never in it:
// BodyDigest is the SHA-256 of the body, and Path should have passed through
// redact.Query.Target.
type Decision struct {
	ID, RequestID, Agent, Host, Method, Path, Rule, Outcome, Code, PolicyRevision, BodyDigest string
	// IdentitySource says where Agent came from: x509, jwt_svid or oauth. Issuer and Subject
	// are those of a validated OAuth access token; the token itself is never recorded.
	IdentitySource, Issuer, Subject string
	// Status is the HTTP status of the answer: 200 on allow.
	Status int
	// Latency is how long deciding took.
	Latency time.Duration
	// ShadowRule, ShadowCode and ShadowOutcome are set when a shadow rule was evaluated.
	ShadowRule, ShadowCode, ShadowOutcome string
	// MCPServer, MCPMethod and MCPName are set on a request to an MCP server whose JSON-RPC
	// message was read: the server, the method and the tool or prompt name or resource URI.
	MCPServer, MCPMethod, MCPName string
}

// Decision writes d as a record of kind "decision". Its fields, in this order, each omitted
// when empty (or, for status, zero): id, request_id, agent, identity_source, issuer, subject,
// host, method, path, outcome, code,
// status, rule, policy_revision, latency_us (always written: whole microseconds), body_digest,
// shadow_rule, shadow_code, shadow_outcome, mcp_server, mcp_method, mcp_name. A field longer than MaxField (a huge request id or
// path from a direct gRPC caller) is cut, ending with its length and SHA-256: the decision is
// recorded whatever its size. An error is a *WriteError.
func (l *Log) Decision(d Decision) error {
	var buf [23]slog.Attr
	a := buf[:0]
	a = l.appendString(a, "id", d.ID)
	a = l.appendString(a, "request_id", d.RequestID)
	a = l.appendString(a, "agent", d.Agent)
	a = l.appendString(a, "identity_source", d.IdentitySource)
	a = l.appendString(a, "issuer", d.Issuer)
	a = l.appendString(a, "subject", d.Subject)
	a = l.appendString(a, "host", d.Host)
	a = l.appendString(a, "method", d.Method)
	a = l.appendString(a, "path", d.Path)
	a = l.appendString(a, "outcome", d.Outcome)
	a = l.appendString(a, "code", d.Code)
	if d.Status != 0 {
		a = append(a, slog.Int("status", d.Status))
	}
	a = l.appendString(a, "rule", d.Rule)
	a = l.appendString(a, "policy_revision", d.PolicyRevision)
	a = append(a, slog.Int64("latency_us", d.Latency.Microseconds()))
	a = l.appendString(a, "body_digest", d.BodyDigest)
	a = l.appendString(a, "shadow_rule", d.ShadowRule)
	a = l.appendString(a, "shadow_code", d.ShadowCode)
	a = l.appendString(a, "shadow_outcome", d.ShadowOutcome)
	a = l.appendString(a, "mcp_server", d.MCPServer)
	a = l.appendString(a, "mcp_method", d.MCPMethod)
	a = l.appendString(a, "mcp_name", d.MCPName)
	return l.write("decision", a)
}

// appendString appends a non-empty string field, bound to MaxField.
func (l *Log) appendString(a []slog.Attr, key, value string) []slog.Attr {
	if value == "" {
		return a
	}
	if v, cut := bound(value, MaxField); cut {
		value = v
		if l.obs != nil {
			l.obs.Truncated("decision", key)
		}
	}
	return append(a, slog.String(key, value))
}
