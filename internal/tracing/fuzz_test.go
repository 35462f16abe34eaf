package tracing_test

import (
	"context"
	"net/url"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/tracing"
	"github.com/agentauthz/agentauthz/policy"
)

// fuzzHeaders are request headers with a traceparent and a tracestate, as an agent may send
// them.
type fuzzHeaders struct{ traceparent, tracestate string }

func (h fuzzHeaders) Get(name string) (string, int) {
	switch name {
	case "traceparent":
		return h.traceparent, 1
	case "tracestate":
		return h.tracestate, 1
	}
	return "", 0
}

var _ policy.Headers = fuzzHeaders{}

// FuzzTraceContext: whatever trace context a request carries, tracing never panics and never
// changes the decision; a span in a valid trace is recorded for each decision, unless a valid
// parent says it is not sampled.
func FuzzTraceContext(f *testing.F) {
	for _, seed := range [][2]string{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "congo=t61rcWkgMzE"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "a=1,b=2"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01,00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "=,=,"},
		{"", ""}, {"\x00", "\xff"},
	} {
		f.Add(seed[0], seed[1])
	}
	store, _ := servertest.DemoStore(f, credential)
	var ended endedSpans
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&ended))
	f.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	plain := engine.New(engine.Config{Store: store})
	traced := engine.New(engine.Config{Store: store, Tracer: tp.Tracer("fuzz")})
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		req := func() *engine.Request {
			return &engine.Request{Principal: helpdesk, Method: "GET", Host: "helpdesk.acme.internal", Target: "/v1/tickets/4711",
				Headers: fuzzHeaders{traceparent, tracestate}}
		}
		want := plain.Decide(context.Background(), req())
		before := ended.valid.Load()
		got := traced.Decide(context.Background(), req())
		// Recorded unless a valid parent says it is not sampled.
		parent := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
			propagation.MapCarrier{"traceparent": traceparent, "tracestate": tracestate}))
		recorded := !parent.IsValid() || parent.IsSampled()
		if n := ended.valid.Load() - before; (n == 1) != recorded || n > 1 {
			t.Errorf("traceparent %q, tracestate %q: %d spans recorded, want recorded=%v", traceparent, tracestate, n, recorded)
		}
		if got.Decision.Code != want.Decision.Code || got.Decision.Outcome != want.Decision.Outcome {
			t.Errorf("traceparent %q, tracestate %q: traced %s, untraced %s", traceparent, tracestate, got.Decision.Code, want.Decision.Code)
		}
	})
}

// endedSpans counts the spans ended with a valid trace and span id.
type endedSpans struct{ valid atomic.Int64 }

func (*endedSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (e *endedSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanContext().IsValid() {
		e.valid.Add(1)
	}
}

func (*endedSpans) Shutdown(context.Context) error { return nil }

func (*endedSpans) ForceFlush(context.Context) error { return nil }

// FuzzEndpoint: Config.Check never panics, and an endpoint it accepts is an http or https URL
// with a host and no credentials, query or fragment.
func FuzzEndpoint(f *testing.F) {
	for _, seed := range []string{"http://127.0.0.1:4317", "https://collector:4318/v1/traces", "collector:4317",
		"http://u:p@h:1", "http://h:1?q#f", "%zz", "http://[::1]:4317", "http://:80", ""} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, endpoint string, overHTTP bool) {
		c := tracing.Config{Endpoint: endpoint}
		if overHTTP {
			c.Protocol = tracing.ProtocolHTTP
		}
		if c.Check() != nil || endpoint == "" {
			return
		}
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Errorf("Check accepted %q (over HTTP: %v)", endpoint, overHTTP)
		}
	})
}
