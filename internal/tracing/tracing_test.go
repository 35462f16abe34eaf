package tracing_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/tracing"
)

func headerValue(k, v string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: k, RawValue: []byte(v)}
}

const (
	helpdesk = "spiffe://acme.internal/agent/helpdesk"
	bi       = "spiffe://acme.internal/agent/bi"
	// credential stands in for the upstream credential the demo policy injects; agentSecret is
	// a header value of the agent's: neither may appear in a span.
	credential  = "SENTINEL-upstream-7f3a"
	agentSecret = "SENTINEL-agent-header-91c2"
)

// receiver is an OTLP trace receiver: the collector's TraceService over gRPC, or OTLP/HTTP.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []map[string]string // each span's resource attributes
	got   chan struct{}
}

func newReceiver() *receiver { return &receiver{got: make(chan struct{}, 1)} }

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) add(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s)
				r.res = append(r.res, res)
			}
		}
	}
	select {
	case r.got <- struct{}{}:
	default:
	}
}

// wait returns the spans once there are at least n, failing the test after 10 seconds.
func (r *receiver) wait(t *testing.T, n int) ([]*tracepb.Span, []map[string]string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.spans) >= n {
			defer r.mu.Unlock()
			return r.spans, r.res
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("the receiver got %d spans, want %d", len(r.spans), n)
		}
	}
}

// attrs are key-values as strings (every attribute agentauthz sets is a string).
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// startGRPCReceiver serves a receiver's TraceService on loopback.
func startGRPCReceiver(t *testing.T) (*receiver, string) { return startGRPCReceiverTB(t) }

func startGRPCReceiverTB(t testing.TB) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver()
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return r, "http://" + lis.Addr().String()
}

// startTraced starts tracing to endpoint and a server deciding with the demo policy under it.
func startTraced(t *testing.T, c tracing.Config) (*tracing.Provider, authv3.AuthorizationClient) {
	t.Helper()
	c.BatchTimeout = 10 * time.Millisecond
	p, err := tracing.Start(context.Background(), c)
	if err != nil {
		t.Fatalf("tracing.Start: %v", err)
	}
	if p == nil {
		t.Fatal("tracing.Start with an endpoint returned no provider")
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	store, _ := servertest.DemoStore(t, credential)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store, Tracer: p.Tracer()})
	return p, servertest.Client(t, srv)
}

func ticket(principal string, headers map[string]string) *authv3.CheckRequest {
	return extauthz.HTTPRequest{Principal: principal, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: headers}.CheckRequest()
}

// Each decision is one span, a child of the traceparent Envoy forwards, carrying the decision
// and nothing of the request's headers; a malformed or repeated traceparent starts a new trace.
func TestSpansOverGRPC(t *testing.T) {
	rcv, endpoint := startGRPCReceiver(t)
	p, client := startTraced(t, tracing.Config{Endpoint: endpoint})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	allow := servertest.Check(t, client, ticket(helpdesk, map[string]string{
		"traceparent": "00-" + traceID + "-" + parentID + "-01", "x-agent-secret": agentSecret}))
	deny := servertest.Check(t, client, ticket(bi, map[string]string{
		"traceparent": "00-" + traceID + "-" + parentID + "-01"}))
	malformed := servertest.Check(t, client, ticket(helpdesk, map[string]string{"traceparent": "00-not-a-trace-01"}))
	if !allow.Allow || deny.Allow || !malformed.Allow {
		t.Fatalf("answers: %+v, %+v, %+v; want allow, deny, allow (a malformed traceparent changes nothing)", allow, deny, malformed)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	spans, res := rcv.wait(t, 3)
	if len(spans) != 3 {
		t.Fatalf("%d spans, want one per decision (3)", len(spans))
	}
	byID := map[string]*tracepb.Span{}
	for i, s := range spans {
		a := attrs(s.GetAttributes())
		byID[a[engine.AttrDecisionID]] = s
		if s.GetName() != engine.SpanName || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %q of kind %v, want %q, server", s.GetName(), s.GetKind(), engine.SpanName)
		}
		if res[i]["service.name"] != "agentauthz" {
			t.Errorf("resource service.name %q, want agentauthz", res[i]["service.name"])
		}
		for k, v := range a {
			if strings.Contains(v, "SENTINEL") {
				t.Errorf("span attribute %s = %q: a header value or credential in a span", k, v)
			}
		}
	}

	want := []struct {
		answer                         servertest.Answer
		decision, reason, route, agent string
		parent                         bool
	}{
		{allow, "allow", "allowed", "get-ticket", helpdesk, true},
		{deny, "deny", "scope_missing", "get-ticket", bi, true},
		{malformed, "allow", "allowed", "get-ticket", helpdesk, false},
	}
	for _, w := range want {
		s := byID[w.answer.DecisionID]
		if s == nil {
			t.Errorf("no span for decision %s", w.answer.DecisionID)
			continue
		}
		a := attrs(s.GetAttributes())
		got := [4]string{a[engine.AttrDecision], a[engine.AttrReason], a[engine.AttrRoute], a[engine.AttrAgent]}
		if exp := [4]string{w.decision, w.reason, w.route, w.agent}; got != exp {
			t.Errorf("decision %s: span says decision, reason, route, agent = %q, want %q", w.answer.DecisionID, got, exp)
		}
		if a[engine.AttrRevision] == "" || a[engine.AttrMethod] != "GET" || a[engine.AttrHost] != "helpdesk.acme.internal" {
			t.Errorf("decision %s: span attributes %v lack the revision, method or host", w.answer.DecisionID, a)
		}
		tid, pid := hex.EncodeToString(s.GetTraceId()), hex.EncodeToString(s.GetParentSpanId())
		switch {
		case w.parent && (tid != traceID || pid != parentID):
			t.Errorf("decision %s: span in trace %s under %s, want trace %s under %s", w.answer.DecisionID, tid, pid, traceID, parentID)
		case !w.parent && (tid == traceID || len(s.GetParentSpanId()) != 0 || len(s.GetTraceId()) != 16):
			t.Errorf("decision %s (malformed traceparent): span in trace %s under %q, want a new root", w.answer.DecisionID, tid, pid)
		}
	}
}

// OTLP over HTTP: the same spans, posted as protobuf to /v1/traces.
func TestSpansOverHTTP(t *testing.T) {
	rcv := newReceiver()
	var paths sync.Map
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		paths.Store(req.URL.Path, req.Header.Get("Content-Type"))
		body, err := io.ReadAll(req.Body)
		var msg collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.add(&msg)
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = io.Copy(w, bytes.NewReader(out))
	}))
	t.Cleanup(ts.Close)
	p, client := startTraced(t, tracing.Config{Endpoint: ts.URL, Protocol: tracing.ProtocolHTTP})
	a := servertest.Check(t, client, ticket(helpdesk, map[string]string{
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	spans, _ := rcv.wait(t, 1)
	if len(spans) != 1 || attrs(spans[0].GetAttributes())[engine.AttrDecisionID] != a.DecisionID ||
		hex.EncodeToString(spans[0].GetTraceId()) != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("spans %v, want the one of decision %s in the request's trace", spans, a.DecisionID)
	}
	if ct, ok := paths.Load("/v1/traces"); !ok || ct != "application/x-protobuf" {
		t.Errorf("spans not posted as protobuf to /v1/traces")
	}
}

// A traceparent that is not one, or is sent twice, starts a new trace and never fails the check.
func TestUnusableTraceparent(t *testing.T) {
	rcv, endpoint := startGRPCReceiver(t)
	p, client := startTraced(t, tracing.Config{Endpoint: endpoint})
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	bad := []string{
		"", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", // too short
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
		good + "," + good, // repeated, as Envoy joins a header sent twice
	}
	for _, tp := range bad {
		a := servertest.Check(t, client, ticket(helpdesk, map[string]string{"traceparent": tp}))
		if !a.Allow {
			t.Errorf("traceparent %q: %+v, want the allow it gets without one", tp, a)
		}
	}
	// Sent twice as two header lines.
	req := ticket(helpdesk, nil)
	hm := req.GetAttributes().GetRequest().GetHttp().GetHeaderMap()
	if hm == nil {
		t.Fatal("the built CheckRequest has no header_map")
	}
	hm.Headers = append(hm.Headers, headerValue("traceparent", good), headerValue("traceparent", good))
	if a := servertest.Check(t, client, req); !a.Allow {
		t.Errorf("traceparent sent twice: %+v, want allow", a)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	spans, _ := rcv.wait(t, len(bad)+1)
	for _, s := range spans {
		if len(s.GetParentSpanId()) != 0 || hex.EncodeToString(s.GetTraceId()) == "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("span of decision %s has parent %x in trace %x, want a new root",
				attrs(s.GetAttributes())[engine.AttrDecisionID], s.GetParentSpanId(), s.GetTraceId())
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []tracing.Config{
		{},
		{Endpoint: "http://127.0.0.1:4317"},
		{Endpoint: "https://collector.example:4317", Protocol: tracing.ProtocolGRPC},
		{Endpoint: "http://collector.example:4318", Protocol: tracing.ProtocolHTTP},
		{Endpoint: "https://collector.example/otlp/v1/traces", Protocol: tracing.ProtocolHTTP},
	} {
		if err := c.Check(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []tracing.Config{
		{Protocol: "thrift"},
		{Endpoint: "collector:4317"},
		{Endpoint: "grpc://collector:4317"},
		{Endpoint: "http://"},
		{Endpoint: "http://:4317"},
		{Endpoint: "http://user:pass@collector:4317"},
		{Endpoint: "http://collector:4317?x=1"},
		{Endpoint: "http://collector:4317/v1/traces"},
		{Endpoint: "http://collector:4318", Protocol: "http/json"},
		{Endpoint: "%zz"},
	} {
		err := c.Check()
		if err == nil || !strings.HasPrefix(err.Error(), "tracing: ") {
			t.Errorf("%+v: %v, want a tracing: error", c, err)
		}
		if strings.Contains(fmtErr(err), "pass") {
			t.Errorf("%+v: the error %q quotes the password", c, err)
		}
		if p, err := tracing.Start(context.Background(), c); err == nil || p != nil {
			t.Errorf("Start(%+v) = %v, %v; want an error", c, p, err)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Tracing off: no provider, no tracer, and shutting it down does nothing.
func TestOff(t *testing.T) {
	p, err := tracing.Start(context.Background(), tracing.Config{})
	if err != nil || p != nil {
		t.Fatalf("Start with no endpoint = %v, %v; want nil, nil", p, err)
	}
	if p.Tracer() != nil {
		t.Error("tracing off has a tracer")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// An AuthZEN evaluation is decided by the same engine: its span is a child of the traceparent
// among the evaluated request's headers (context.headers), as Envoy forwards them.
func TestSpansOfAuthZEN(t *testing.T) {
	rcv, endpoint := startGRPCReceiver(t)
	p, err := tracing.Start(context.Background(), tracing.Config{Endpoint: endpoint, BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	store, _ := servertest.DemoStore(t, credential)
	const pepToken = "tracing-test-pep-token"
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store, Tracer: p.Tracer(),
		AuthZEN: &authzen.Config{Tokens: authzen.NewTokens(map[string]string{pepToken: "test-pep"})}})
	const traceID, parentID = "5af7651916cd43dd8448eb211c80319c", "a7ad6b7169203331"
	body := `{"subject": {"type": "agent", "id": "` + helpdesk + `"}, "action": {"name": "GET"},
		"resource": {"type": "http", "id": "https://helpdesk.acme.internal/v1/tickets/4711"},
		"context": {"headers": {"traceparent": "00-` + traceID + `-` + parentID + `-01"}}}`
	req, err := http.NewRequest(http.MethodPost, "http://"+srv.HTTPAddr().String()+"/access/v1/evaluation", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pepToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Decision bool `json:"decision"`
		Context  struct {
			DecisionID string `json:"decision_id"`
		} `json:"context"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || !out.Decision || out.Context.DecisionID == "" {
		t.Fatalf("evaluation: %+v, %v; want a permit with its decision id", out, err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, _ := rcv.wait(t, 1)
	a := attrs(spans[0].GetAttributes())
	if len(spans) != 1 || a[engine.AttrDecisionID] != out.Context.DecisionID || a[engine.AttrDecision] != "allow" ||
		hex.EncodeToString(spans[0].GetTraceId()) != traceID || hex.EncodeToString(spans[0].GetParentSpanId()) != parentID {
		t.Errorf("spans %v, want the one of decision %s under %s in trace %s", spans, out.Context.DecisionID, parentID, traceID)
	}
}

// The trace context of the gRPC call (Envoy's ext_authz span, when Envoy traces) is the parent
// over the one among the request's headers; a malformed or repeated one in the call is ignored
// for the headers'.
func TestSpansFromCallMetadata(t *testing.T) {
	rcv, endpoint := startGRPCReceiver(t)
	p, client := startTraced(t, tracing.Config{Endpoint: endpoint})
	const callTrace, callSpan = "7af7651916cd43dd8448eb211c80319c", "c7ad6b7169203331"
	const headerTrace, headerSpan = "8bf92f3577b34da6a3ce929d0e0e4736", "20f067aa0ba902b7"
	call := "00-" + callTrace + "-" + callSpan + "-01"
	header := map[string]string{"traceparent": "00-" + headerTrace + "-" + headerSpan + "-01"}
	cases := []struct {
		md                  []string
		wantTrace, wantSpan string
	}{
		{[]string{"traceparent", call}, callTrace, callSpan},
		{[]string{"traceparent", "00-garbage-01"}, headerTrace, headerSpan},
		{[]string{"traceparent", call, "traceparent", call}, headerTrace, headerSpan},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ctx := metadata.AppendToOutgoingContext(context.Background(), c.md...)
		resp, err := client.Check(ctx, ticket(helpdesk, header))
		if err != nil {
			t.Fatal(err)
		}
		a, err := servertest.Read(resp)
		if err != nil || !a.Allow {
			t.Fatalf("case %d: %+v, %v; want allow", i, a, err)
		}
		ids[i] = a.DecisionID
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, _ := rcv.wait(t, len(cases))
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[attrs(s.GetAttributes())[engine.AttrDecisionID]] = s
	}
	for i, c := range cases {
		s := byID[ids[i]]
		if s == nil {
			t.Errorf("case %d: no span of decision %s", i, ids[i])
			continue
		}
		if tid, pid := hex.EncodeToString(s.GetTraceId()), hex.EncodeToString(s.GetParentSpanId()); tid != c.wantTrace || pid != c.wantSpan {
			t.Errorf("case %d (metadata %q): span under %s in trace %s, want under %s in %s", i, c.md, pid, tid, c.wantSpan, c.wantTrace)
		}
	}
}

func TestPlaintextOffHost(t *testing.T) {
	for endpoint, want := range map[string]bool{
		"": false, "http://127.0.0.1:4317": false, "http://[::1]:4317": false, "http://localhost:4317": false,
		"https://collector:4317": false, "http://collector:4317": true, "http://10.0.0.7:4317": true, "not a url": false,
	} {
		if got := (tracing.Config{Endpoint: endpoint}).PlaintextOffHost(); got != want {
			t.Errorf("PlaintextOffHost(%q) = %v, want %v", endpoint, got, want)
		}
	}
}
