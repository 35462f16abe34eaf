package tracing_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/tracing"
)

// envoyConfig is an Envoy that traces with OpenTelemetry to the receiver and asks agentauthz
// (ext_authz over gRPC) before answering every request itself.
const envoyConfig = `
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          generate_request_id: true
          tracing:
            random_sampling: {value: 100}
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                service_name: envoy
                grpc_service: {envoy_grpc: {cluster_name: otlp}, timeout: 5s}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "upstream"}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service: {envoy_grpc: {cluster_name: agentauthz}, timeout: 5s}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: agentauthz
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: agentauthz
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
  - name: otlp
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: otlp
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
layered_runtime:
  layers:
  - name: static
    static_layer:
      tracing.opentelemetry.min_flush_spans: 1
      tracing.opentelemetry.flush_interval_ms: 50
`

// Through real Envoy tracing with OpenTelemetry: agentauthz's span is in the request's trace,
// under one of Envoy's spans.
func TestSpansUnderEnvoy(t *testing.T) {
	envoyproc.Binary(t) // skips (or fails under CI) without Envoy
	rcv, endpoint := startGRPCReceiver(t)
	p, err := tracing.Start(context.Background(), tracing.Config{Endpoint: endpoint, BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	store, _ := servertest.DemoStore(t, credential)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store, Tracer: p.Tracer()})

	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	cfg := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, envoyConfig, port(srv.GRPCAddr().String()), port(strings.TrimPrefix(endpoint, "http://"))), 0o600); err != nil {
		t.Fatal(err)
	}
	e := envoyproc.Start(t, envoyproc.Options{Config: cfg})
	// One request without a trace context, one that comes with its caller's.
	const callerTrace, callerSpan = "6cf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
	for _, traceparent := range []string{"", "00-" + callerTrace + "-" + callerSpan + "-01"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+e.ListenerAddr("ingress")+"/v1/tickets/4711", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "helpdesk.acme.internal"
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// No client certificate: agentauthz refuses the request for want of an identity.
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Envoy answered %d, want agentauthz's refusal", resp.StatusCode)
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Envoy exports its spans as they end, the request's after the answer: wait for agentauthz's
	// two and, for each, its parent and its parent's parent.
	for n := 1; ; n++ {
		spans, res := rcv.wait(t, n)
		n = len(spans)
		byID := map[string]*tracepb.Span{}
		var ours []*tracepb.Span
		for i, s := range spans {
			if res[i]["service.name"] == "agentauthz" {
				ours = append(ours, s)
			} else {
				byID[hex.EncodeToString(s.GetSpanId())] = s
			}
		}
		complete := len(ours) == 2
		for _, s := range ours {
			parent := byID[hex.EncodeToString(s.GetParentSpanId())]
			if parent == nil || byID[hex.EncodeToString(parent.GetParentSpanId())] == nil {
				complete = false
			}
		}
		if !complete {
			continue
		}
		traces := map[string]bool{}
		for _, s := range ours {
			parent := byID[hex.EncodeToString(s.GetParentSpanId())]
			ingress := byID[hex.EncodeToString(parent.GetParentSpanId())]
			if s.GetName() != engine.SpanName || !strings.Contains(parent.GetName(), "envoy.service.auth.v3.Authorization.Check") ||
				ingress.GetName() != "ingress" {
				t.Errorf("span %q under %q under %q; want %s under Envoy's ext_authz call under its request", s.GetName(), parent.GetName(), ingress.GetName(), engine.SpanName)
			}
			if tid := hex.EncodeToString(s.GetTraceId()); tid != hex.EncodeToString(parent.GetTraceId()) || tid != hex.EncodeToString(ingress.GetTraceId()) {
				t.Errorf("agentauthz's span in trace %s, Envoy's in %x and %x", tid, parent.GetTraceId(), ingress.GetTraceId())
			}
			traces[hex.EncodeToString(s.GetTraceId())] = true
			if hex.EncodeToString(s.GetTraceId()) == callerTrace && hex.EncodeToString(ingress.GetParentSpanId()) != callerSpan {
				t.Errorf("Envoy's request span in the caller's trace under %x, want %s", ingress.GetParentSpanId(), callerSpan)
			}
		}
		if !traces[callerTrace] || len(traces) != 2 {
			t.Errorf("agentauthz's spans are in traces %v; want the caller's %s and one Envoy started", traces, callerTrace)
		}
		return
	}
}
