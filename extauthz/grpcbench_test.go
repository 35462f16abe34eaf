package extauthz_test

import (
	"context"
	"net"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// BenchmarkCheckGRPC is one Check over gRPC on loopback, server and callers in one process:
// what Envoy pays per request, transport included.
func BenchmarkCheckGRPC(b *testing.B) {
	store, _ := servertest.DemoStore(b, helpdeskToken)
	client := servertest.Client(b, servertest.Start(b, server.Config{Store: store}))
	for _, bc := range grpcBenchRequests() {
		cr := bc.req.CheckRequest()
		b.Run(bc.name, func(b *testing.B) {
			if resp, err := client.Check(context.Background(), cr); err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("Check = %v, %v", resp, err)
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Check(context.Background(), cr); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

type grpcBenchRequest struct {
	name string
	req  extauthz.HTTPRequest
}

// grpcBenchRequests are the requests of the gRPC benchmarks: header-only, and a 4 KB JSON body
// checked against the comment route's JSON Schema.
func grpcBenchRequests() []grpcBenchRequest {
	const helpdesk = "spiffe://acme.internal/agent/helpdesk"
	hdr := map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35",
		"user-agent": "agent-runtime/1.0", "content-type": "application/json"}
	return []grpcBenchRequest{
		{"header-only", extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: hdr}},
		{"json-4k", extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711/comments",
			Headers: hdr, Body: `{"body":"` + strings.Repeat("Restarted the VPN client. ", 150) + `"}`}},
	}
}

// noopAuthz allows everything without looking: the ceiling of an ext_authz server on grpc-go.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

var noopOK = &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return noopOK, nil
}

// rawCodec sends pre-marshalled requests and keeps the first two bytes of an answer, so that
// the client's cost is the same whichever server answers.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[2]byte)) = [2]byte{}
	copy((*(v.(*[2]byte)))[:], data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// BenchmarkCheckGRPCCeiling puts agentauthz beside a no-op ext_authz server on the same gRPC
// server options, in one process, callers included: the ratio of their ns/op is what the
// authorization costs over gRPC's own work, as authzbench measures it between processes. The
// callers send pre-marshalled requests and do not decode the answers (an OK status, the first
// two bytes, is checked).
func BenchmarkCheckGRPCCeiling(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(server.GRPCOptions(nil)...)
	authv3.RegisterAuthorizationServer(gs, noopAuthz{})
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	store, _ := servertest.DemoStore(b, helpdeskToken)
	servers := []struct {
		name string
		cc   *grpc.ClientConn
	}{
		{"noop", servertest.Dial(b, lis.Addr().String())},
		{"agentauthz", servertest.Dial(b, servertest.Start(b, server.Config{Store: store}).GRPCAddr().String())},
	}
	for _, bc := range grpcBenchRequests() {
		raw, err := proto.Marshal(bc.req.CheckRequest())
		if err != nil {
			b.Fatal(err)
		}
		for _, srv := range servers {
			b.Run(bc.name+"/"+srv.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						var out [2]byte
						err := srv.cc.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", &raw, &out, grpc.ForceCodec(rawCodec{}))
						if err != nil || out != [2]byte{0x0a, 0x00} { // field 1 (status), empty: OK
							b.Errorf("Check = %x, %v", out, err)
							return
						}
					}
				})
			})
		}
	}
}
