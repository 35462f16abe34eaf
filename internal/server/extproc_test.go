package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// showsNothing is an extproc.Lists that lets an agent see nothing of any list.
type showsNothing struct{ asked chan extproc.ListRequest }

func (s showsNothing) FilterMCPList(_ context.Context, req extproc.ListRequest) extproc.ListResult {
	s.asked <- req
	return extproc.ListResult{Body: mcpfilter.Empty(req.Method, nil), ContentType: mcpfilter.ContentTypeJSON}
}

// TestExternalProcessor: the gRPC listener serves Envoy's ExternalProcessor next to ext_authz,
// and reports it in gRPC health; it asks MCPLists when set, the engine over the policy otherwise.
func TestExternalProcessor(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	lists := showsNothing{asked: make(chan extproc.ListRequest, 1)}
	srv := servertest.Start(t, server.Config{Store: store, MCPLists: lists})
	conn := servertest.Dial(t, srv.GRPCAddr().String())
	ctx := ctxFor(t, 10*time.Second)

	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: extprocv3.ExternalProcessor_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of the ExternalProcessor: %v, %v", hr, err)
	}
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"agent": helpdesk, "mcp_method": "tools/list"})
	const body = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"reset_password"}]}}`
	for _, req := range []*extprocv3.ProcessingRequest{
		{
			Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
				Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("application/json")}}}}},
			MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extproc.MetadataNamespace: md}},
			ProtocolConfig:  &extprocv3.ProtocolConfiguration{ResponseBodyMode: procv3.ProcessingMode_BUFFERED},
		},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if req := <-lists.asked; req.Agent != helpdesk || string(req.Body) != body {
		t.Errorf("MCPLists asked %+v", req)
	}

	// Without MCPLists, the engine shows the agent what the policy in force lets it use.
	plain := servertest.Start(t, server.Config{Store: store})
	stream, err = extprocv3.NewExternalProcessorClient(servertest.Dial(t, plain.GRPCAddr().String())).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ = structpb.NewStruct(map[string]any{"agent": helpdesk, "mcp_method": "tools/list", "mcp_server": "helpdesk"})
	const listed = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"reset_password","inputSchema":{"type":"object"}},{"name":"shred_tickets","inputSchema":{"type":"object"}}]}}`
	var last *extprocv3.ProcessingResponse
	for _, req := range []*extprocv3.ProcessingRequest{
		{
			Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
				Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("application/json")}}}}},
			MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extproc.MetadataNamespace: md}},
			ProtocolConfig:  &extprocv3.ProtocolConfiguration{ResponseBodyMode: procv3.ProcessingMode_BUFFERED},
		},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(listed), EndOfStream: true}}},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if last, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	shown := string(last.GetResponseBody().GetResponse().GetBodyMutation().GetBody())
	if !strings.Contains(shown, `"reset_password"`) || strings.Contains(shown, "shred_tickets") {
		t.Errorf("the engine showed the helpdesk agent %q; want reset_password (it holds its scope) and not shred_tickets (no policy grants it)", shown)
	}
}
