package tracing_test

import (
	"context"
	"testing"

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
	for _, bc := range []struct {
		name    string
		traced  bool
		headers map[string]string
	}{
		{"off", false, with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		{"on/sampled-parent", true, with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		{"on/unsampled-parent", true, with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")},
		{"on/no-parent", true, headers},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := engine.Config{Store: store}
			if bc.traced {
				cfg.Tracer = p.Tracer()
			}
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
