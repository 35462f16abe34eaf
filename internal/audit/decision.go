package audit

import (
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Decision is one decision as the log records it. Bodies and credentials are never in it:
// BodyDigest is the SHA-256 of the body, and Path should have passed through RedactQuery.
type Decision struct {
	ID, RequestID, Agent, Host, Method, Path, Rule, Outcome, Code, PolicyRevision, BodyDigest string
	// Status is the HTTP status of the answer: 200 on allow.
	Status int
	// Latency is how long deciding took.
	Latency time.Duration
	// ShadowRule, ShadowCode and ShadowOutcome are set when a shadow rule was evaluated.
	ShadowRule, ShadowCode, ShadowOutcome string
}

// Decision writes d as a record of kind "decision". Its fields, in this order, each omitted
// when empty (or, for status, zero): id, request_id, agent, host, method, path, outcome, code,
// status, rule, policy_revision, latency_us (always written: whole microseconds), body_digest,
// shadow_rule, shadow_code, shadow_outcome.
func (l *Log) Decision(d Decision) error {
	var buf [16]slog.Attr
	a := buf[:0]
	a = appendString(a, "id", d.ID)
	a = appendString(a, "request_id", d.RequestID)
	a = appendString(a, "agent", d.Agent)
	a = appendString(a, "host", d.Host)
	a = appendString(a, "method", d.Method)
	a = appendString(a, "path", d.Path)
	a = appendString(a, "outcome", d.Outcome)
	a = appendString(a, "code", d.Code)
	if d.Status != 0 {
		a = append(a, slog.Int("status", d.Status))
	}
	a = appendString(a, "rule", d.Rule)
	a = appendString(a, "policy_revision", d.PolicyRevision)
	a = append(a, slog.Int64("latency_us", d.Latency.Microseconds()))
	a = appendString(a, "body_digest", d.BodyDigest)
	a = appendString(a, "shadow_rule", d.ShadowRule)
	a = appendString(a, "shadow_code", d.ShadowCode)
	a = appendString(a, "shadow_outcome", d.ShadowOutcome)
	return l.write("decision", a)
}

func appendString(a []slog.Attr, key, value string) []slog.Attr {
	if value == "" {
		return a
	}
	return append(a, slog.String(key, value))
}

// Redacted replaces the value of a query parameter RedactQuery redacts.
const Redacted = "[redacted]"

// RedactQuery returns path with the values of the named query parameters replaced by
// "[redacted]"; the raw query is otherwise kept as sent. A parameter's name matches if it is
// one of names as sent or once percent-decoded (or decoded repeatedly, so that an encoded name
// cannot slip a credential into the log). Names are case-sensitive.
func RedactQuery(path string, names map[string]bool) string {
	q := strings.IndexByte(path, '?')
	if q < 0 || len(names) == 0 {
		return path
	}
	var b strings.Builder
	done := 0 // path[:done] is in b, once b is in use
	for i := q + 1; i <= len(path); {
		end := strings.IndexByte(path[i:], '&')
		if end < 0 {
			end = len(path)
		} else {
			end += i
		}
		pair := path[i:end]
		if eq := strings.IndexByte(pair, '='); eq >= 0 && eq < len(pair)-1 && redacted(pair[:eq], names) {
			if b.Len() == 0 {
				b.Grow(len(path))
			}
			b.WriteString(path[done : i+eq+1])
			b.WriteString(Redacted)
			done = end
		}
		i = end + 1
	}
	if b.Len() == 0 {
		return path
	}
	b.WriteString(path[done:])
	return b.String()
}

// redacted reports whether a raw parameter name is one of names, as sent or decoded.
func redacted(name string, names map[string]bool) bool {
	for range 4 {
		if names[name] {
			return true
		}
		if !strings.ContainsAny(name, "%+") {
			return false
		}
		dec, err := url.QueryUnescape(name)
		if err != nil || dec == name {
			return false
		}
		name = dec
	}
	return names[name]
}
