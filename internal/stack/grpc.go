package stack

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
)

// HelpdeskGRPCHost is the host name of the helpdesk API's gRPC service (front-proxy.yaml's
// helpdesk_grpc virtual host, the demo policy's gRPC routes).
const HelpdeskGRPCHost = "helpdesk-grpc.acme.internal"

// Call is one gRPC call as the upstream service received it from Envoy.
type Call struct {
	// Method is the full method name, which is also the HTTP/2 :path.
	Method string
	// Metadata is the request headers, pseudo-headers excluded.
	Metadata metadata.MD
	// Peer is the SPIFFE ID of the client certificate: Envoy's.
	Peer string
}

// GRPCUpstream serves the demo helpdesk API's gRPC service (helpdesk.API.RegisterGRPC) over
// SPIFFE mTLS and HTTP/2, as front-proxy.yaml's helpdesk_grpc_api cluster reaches it, and
// records every call that reaches it before the service sees it.
type GRPCUpstream struct {
	addr string

	mu    sync.Mutex
	calls []Call
}

// StartGRPCUpstream serves api's gRPC service on loopback until the test ends.
func StartGRPCUpstream(t testing.TB, api *helpdesk.API, tlsConf *tls.Config) *GRPCUpstream {
	t.Helper()
	u := &GRPCUpstream{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		c := Call{Method: info.FullMethod}
		c.Metadata, _ = metadata.FromIncomingContext(ctx)
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				c.Peer = URISAN(ti.State.PeerCertificates)
			}
		}
		u.mu.Lock()
		u.calls = append(u.calls, c)
		u.mu.Unlock()
		return h(ctx, req)
	}
	// credentials.NewTLS offers ALPN h2, which gRPC needs and Envoy's cluster asks for.
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf)), grpc.UnaryInterceptor(record))
	if err := api.RegisterGRPC(g); err != nil {
		t.Fatal(err)
	}
	ServeGRPC(t, g, l)
	return u
}

// Addr is where the service listens.
func (u *GRPCUpstream) Addr() string { return u.addr }

// Calls returns every call received so far, in order.
func (u *GRPCUpstream) Calls() []Call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.calls)
}

// GRPCConn is a gRPC client connection of agent to the helpdesk gRPC service through Envoy: it
// presents the agent's X.509-SVID, accepts only Envoy's SPIFFE ID, and sends :authority
// helpdesk-grpc.acme.internal. It marshals with grpc-go's own codec, which writes map entries
// and a dynamic message's fields in random order: an approval binds the message, not its bytes.
// It is closed when the test ends.
func (s *Stack) GRPCConn(t testing.TB, agent string) *grpc.ClientConn {
	t.Helper()
	svid, ok := s.svids[agent]
	if !ok {
		t.Fatalf("stack: no SVID for %s", agent)
	}
	conn, err := grpc.NewClient("passthrough:///"+s.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(s.PKI.ClientTLS(&svid, EnvoyID, "h2"))),
		grpc.WithAuthority(HelpdeskGRPCHost))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
