package server_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// gRPC server reflection lists the listener's services when Reflection is set, and is not
// served at all otherwise.
func TestReflection(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	for _, on := range []bool{true, false} {
		srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store, Reflection: on})
		conn := servertest.Dial(t, srv.GRPCAddr().String())
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxFor(t, 10*time.Second))
		if err != nil {
			t.Fatalf("ServerReflectionInfo: %v", err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatalf("reflection Send: %v", err)
		}
		resp, err := stream.Recv()
		if !on {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("reflection off: Recv = %v, %v; want Unimplemented", resp, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("reflection Recv: %v", err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, svc := range []string{"envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor",
			"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(names, svc) {
				t.Errorf("reflection lists %v, want %s among them", names, svc)
			}
		}
		// A service's descriptor, as grpcurl asks for it to build a call.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "envoy.service.auth.v3.Authorization"},
		}); err != nil {
			t.Fatal(err)
		}
		if fd, err := stream.Recv(); err != nil || len(fd.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Errorf("reflection of envoy.service.auth.v3.Authorization: %v, %v", fd, err)
		}
		_ = stream.CloseSend()
	}
}
