package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
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
// host, method, path, outcome, code, status, rule, policy_revision, latency_us (always written:
// whole microseconds), body_digest, shadow_rule, shadow_code, shadow_outcome, mcp_server,
// mcp_method, mcp_name. A field longer than MaxField (a huge request id or
// path from a direct gRPC caller) is cut, ending with its length and SHA-256: the decision is
// recorded whatever its size. An error is a *WriteError.
//
// The line is the one log/slog's JSON handler writes for these fields (TestDecisionLineIsSlogs,
// FuzzDecisionLine), written directly: a decision log on by default must cost its server little.
func (l *Log) Decision(d Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.addDecision(d); err != nil {
		return err
	}
	if n, err := l.flush(); err != nil {
		return l.fail("decision", ReasonOf(err), err, n)
	}
	return nil
}

// addDecision is Decision for a Queue's writer: the record is batched, not written. Called with
// l.mu held.
func (l *Log) addDecision(d Decision) error {
	return l.addRecord("decision", nil, &d)
}

// appendDecision appends the record of d written at t, without its closing brace, to b.
func (l *Log) appendDecision(b []byte, t time.Time, d *Decision) []byte {
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":"decision"`...)
	b = l.appendString(b, "id", d.ID)
	b = l.appendString(b, "request_id", d.RequestID)
	b = l.appendString(b, "agent", d.Agent)
	b = l.appendString(b, "identity_source", d.IdentitySource)
	b = l.appendString(b, "issuer", d.Issuer)
	b = l.appendString(b, "subject", d.Subject)
	b = l.appendString(b, "host", d.Host)
	b = l.appendString(b, "method", d.Method)
	b = l.appendString(b, "path", d.Path)
	b = l.appendString(b, "outcome", d.Outcome)
	b = l.appendString(b, "code", d.Code)
	if d.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(d.Status), 10)
	}
	b = l.appendString(b, "rule", d.Rule)
	b = l.appendString(b, "policy_revision", d.PolicyRevision)
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, d.Latency.Microseconds(), 10)
	b = l.appendString(b, "body_digest", d.BodyDigest)
	b = l.appendString(b, "shadow_rule", d.ShadowRule)
	b = l.appendString(b, "shadow_code", d.ShadowCode)
	b = l.appendString(b, "shadow_outcome", d.ShadowOutcome)
	b = l.appendString(b, "mcp_server", d.MCPServer)
	b = l.appendString(b, "mcp_method", d.MCPMethod)
	b = l.appendString(b, "mcp_name", d.MCPName)
	return b
}

// appendString appends a non-empty string field, bound to MaxField, as `,"key":"value"`.
func (l *Log) appendString(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	if v, cut := bound(value, MaxField); cut {
		value = v
		if l.obs != nil {
			l.obs.Truncated("decision", key)
		}
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	b = appendJSONString(b, value)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s escaped as log/slog's JSON handler escapes strings: quote,
// backslash and control characters escaped (\n, \r, \t, else \u00XX), invalid UTF-8 as
// \ufffd, U+2028 and U+2029 as \u2028 and \u2029, everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}
