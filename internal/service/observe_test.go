package service_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/service"
	"github.com/agentauthz/agentauthz/internal/tracing"
)

// traceReceiver is the collector's TraceService, keeping the decision ids of the spans it gets.
type traceReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu  sync.Mutex
	ids []string
}

func (r *traceReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				for _, kv := range s.GetAttributes() {
					if kv.GetKey() == "agentauthz.decision_id" {
						r.ids = append(r.ids, kv.GetValue().GetStringValue())
					}
				}
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// serve's tracing and reflection flags reach the listeners: a decision's span is exported by
// the time the service has stopped (the last batch is sent at shutdown), and reflection answers.
func TestTracingAndReflection(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, "service-test-approver")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &traceReceiver{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, rcv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "", DecisionLog: "off", GRPCReflection: true,
		Tracing:   tracing.Config{Endpoint: "http://" + lis.Addr().String()},
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, nil) }()

	conn := servertest.Dial(t, svc.Server().GRPCAddr().String())
	a := servertest.Check(t, servertest.Client(t, svc.Server()), extauthz.HTTPRequest{
		Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest())
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(rctx)
	if err == nil {
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Errorf("reflection with GRPCReflection set: %v", err)
	}
	cancel() // an open stream would hold the drain

	// The default batch delay is 5 s: only the flush at shutdown gets the span out this soon.
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.ids) != 1 || rcv.ids[0] != a.DecisionID {
		t.Errorf("spans of decisions %q exported, want the one of %s", rcv.ids, a.DecisionID)
	}
}
