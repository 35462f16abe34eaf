package engine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// SpanName is the name of the span of one decision.
const SpanName = "agentauthz.decide"

// The attributes of a decision's span: what the decision log records of it, never a header
// value, a token or a body.
const (
	AttrDecision   = "agentauthz.decision"    // allow or deny
	AttrReason     = "agentauthz.reason"      // the reason code
	AttrRoute      = "agentauthz.route"       // the rule that decided, when one did
	AttrAgent      = "agentauthz.agent"       // the agent's SPIFFE ID, once established
	AttrDecisionID = "agentauthz.decision_id" // the decision id of the answer and the log
	AttrRevision   = "agentauthz.policy_revision"
	AttrMethod     = "http.request.method"
	AttrHost       = "server.address"
)

// traceContext reads the W3C trace context (traceparent, tracestate) the proxy forwards.
var traceContext propagation.TraceContext

// startSpan starts the span of one decision, a child of the span in ctx when the front door's
// transport carried one (Envoy's ext_authz call, when Envoy traces), or else of the trace
// context in the request's headers (the traceparent the agent's request came with). A missing,
// repeated or malformed traceparent starts a new trace: the trace context is a hint for
// operators and never changes a decision.
func (e *Engine) startSpan(ctx context.Context, r *Request) (context.Context, trace.Span) {
	if r.Headers != nil && !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = traceContext.Extract(ctx, traceCarrier{r.Headers})
	}
	return e.cfg.Tracer.Start(ctx, SpanName, trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan records the answer on the span and ends it.
func endSpan(span trace.Span, r *Request, res *Result) {
	if !span.IsRecording() {
		span.End()
		return
	}
	d := &res.Decision
	code := string(d.Code)
	if code == "" {
		code = string(decision.CodeInternal)
	}
	attrs := []attribute.KeyValue{
		attribute.String(AttrDecision, d.Outcome.String()),
		attribute.String(AttrReason, code),
		attribute.String(AttrDecisionID, res.ID),
		attribute.String(AttrMethod, r.Method),
		attribute.String(AttrHost, r.Host),
	}
	if d.Rule != "" {
		attrs = append(attrs, attribute.String(AttrRoute, d.Rule))
	}
	if res.Agent != "" {
		attrs = append(attrs, attribute.String(AttrAgent, res.Agent))
	}
	if res.Revision != "" {
		attrs = append(attrs, attribute.String(AttrRevision, res.Revision))
	}
	span.SetAttributes(attrs...)
	if d.Code == "" || d.Code.IsFailure() {
		// A failure to decide, answered with a fail-closed deny: the span says which, never
		// the cause's text, which may quote the request.
		span.SetStatus(codes.Error, code)
	}
	span.End()
}

// traceCarrier reads the trace context from request headers. A header sent more than once is
// ambiguous and read as absent.
type traceCarrier struct{ h policy.Headers }

func (c traceCarrier) Get(key string) string {
	v, n := c.h.Get(key)
	if n != 1 {
		return ""
	}
	return v
}

func (traceCarrier) Set(string, string) {}

func (traceCarrier) Keys() []string { return nil }
