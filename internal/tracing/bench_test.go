package tracing_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/tracing"
)

// BenchmarkCheckTracing measures one in-process Check (as extauthz's BenchmarkCheck does, the
// helpdesk agent reading a ticket) with tracing off, and on with spans exported over OTLP/gRPC
// to a receiver on loopback: under a sampled traceparent, under an unsampled one (the span is
// not recorded), and without one (a new trace, sampled).
func BenchmarkCheckTracing(b *testing.B) {
	store, _ := servertest.DemoStore(b, credential)
	_, endpoint := startGRPCReceiverTB(b)
	p, err := tracing.Start(context.Background(), tracing.Config{Endpoint: endpoint})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	headers := map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}
	with := func(tp string) map[string]string {
		h := map[string]string{"traceparent": tp}
		for k, v := range headers {
			h[k] = v
		}
		return h
	}
	// The same spans batched and dropped instead of exported: the cost on the decision's path,
	// without the exporter's work competing for the CPU.
	discard := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { _ = discard.Shutdown(context.Background()) })
	for _, bc := range []struct {
		name    string
		tracer  trace.Tracer
		headers map[string]string
	}{
		{"off", nil, with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		{"on/sampled-parent", p.Tracer(), with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		{"on/unsampled-parent", p.Tracer(), with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")},
		{"on/no-parent", p.Tracer(), headers},
		{"on/sampled-parent/not-exported", discard.Tracer(tracing.InstrumentationName), with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := engine.Config{Store: store, Tracer: bc.tracer}
			srv := extauthz.New(engine.New(cfg))
			cr := ticket(helpdesk, bc.headers)
			ctx := context.Background()
			if resp, err := srv.Check(ctx, cr); err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("Check = %v, %v; want allow", resp, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = srv.Check(ctx, cr)
			}
		})
	}
}

// discardExporter drops every span.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }

func (discardExporter) Shutdown(context.Context) error { return nil }
