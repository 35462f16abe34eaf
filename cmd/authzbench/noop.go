package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/runtimeprobe"
	"github.com/agentauthz/agentauthz/internal/server"
)

// noopServer is the ceiling: it answers OK without looking at the request.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

// serveNoop runs the no-op server as agentauthz serve runs its gRPC listener: the same garbage
// collector target (server.SetGC), the same grpc-go transport settings (server.GRPCOptions),
// the same SPIFFE mTLS from the Workload API when given a socket, and gRPC health, which Envoy's
// health checks ask.
func serveNoop(args []string) int {
	fs := flag.NewFlagSet("authzbench noop", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	socket := fs.String("spiffe-socket", "", "SPIFFE Workload API socket: serve mTLS with this SVID")
	id := fs.String("id", "", "the SPIFFE ID to serve as, among the SVIDs the Workload API gives")
	allowed := fs.String("allowed", "", "the SPIFFE ID that may call (Envoy's)")
	probe := fs.String("pprof", "", "serve profiles and runtime metrics on this loopback address, as agentauthz built with -tags pprof does")
	memoryLimit := server.MemoryLimit{Auto: true}
	fs.Var(&memoryLimit, "memory-limit", "as agentauthz serve's --memory-limit")
	if fs.Parse(args) != nil {
		return 2
	}
	server.SetGC()
	server.SetMemoryLimit(memoryLimit)
	if *probe != "" {
		if err := runtimeprobe.Serve(*probe); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench noop:", err)
			return 2
		}
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench noop:", err)
		return 2
	}
	var opts []grpc.ServerOption
	if *socket == "" {
		opts = server.GRPCOptions(nil)
	} else {
		self, err1 := spiffeid.FromString(*id)
		envoy, err2 := spiffeid.FromString(*allowed)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "authzbench noop: -id and -allowed must be SPIFFE IDs")
			return 2
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// This program is registered under several IDs (it also plays the agents and the
		// upstream): it serves with the one it stands for, as agentauthz serves with its own.
		pick := func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == self {
					return s
				}
			}
			return svids[0]
		}
		src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(*socket)),
			workloadapi.WithDefaultX509SVIDPicker(pick))
		if err != nil {
			fmt.Fprintln(os.Stderr, "authzbench noop:", err)
			return 2
		}
		defer src.Close()
		opts = server.GRPCOptions(tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeOneOf(envoy)))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, noopServer{})
	hs := health.NewServer()
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench noop:", err)
		return 2
	}
	return 0
}
