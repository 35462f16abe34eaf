package stack

import (
	"fmt"
	"net"
	"os"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// SDS stands in for the SPIRE agent's SDS: it serves X.509-SVIDs (secret name: the SPIFFE ID)
// and the trust bundle (secret name: the trust domain's ID) on a unix socket, as the shipped
// Envoy configurations ask for them. Each subscription is answered once; there is no rotation.
// When the test ends it fails it if Envoy asked for a secret nobody serves or refused one.
type SDS struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	secrets map[string]*tlsv3.Secret

	mu       sync.Mutex
	unknown  []string // names Envoy asked for and nobody serves
	rejected []string // NACKs: Envoy refused a secret
}

// StartSDS serves the bundle of p and the given SVIDs on the unix socket path until the test
// ends.
func StartSDS(t testing.TB, socket string, p *PKI, svids ...SVID) *SDS {
	t.Helper()
	s := &SDS{secrets: map[string]*tlsv3.Secret{
		TrustDomainID: {Name: TrustDomainID, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: p.CAPEM}},
		}}},
	}}
	for _, c := range svids {
		s.secrets[c.ID] = &tlsv3.Secret{Name: c.ID, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.CertPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.KeyPEM}},
		}}}
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(g, s)
	ServeGRPC(t, g, l)
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.unknown) > 0 || len(s.rejected) > 0 {
			t.Errorf("SDS: Envoy asked for unknown secrets %q, refused %q", s.unknown, s.rejected)
		}
	})
	return s
}

// StreamSecrets answers each subscription once; ACKs need no answer.
func (s *SDS) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	for n := 1; ; n++ {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if d := req.GetErrorDetail(); d != nil {
			s.mu.Lock()
			s.rejected = append(s.rejected, fmt.Sprintf("%v: %s", req.GetResourceNames(), d.GetMessage()))
			s.mu.Unlock()
			continue
		}
		if req.GetResponseNonce() != "" {
			continue
		}
		resp := &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: req.GetTypeUrl(), Nonce: fmt.Sprint(n)}
		for _, name := range req.GetResourceNames() {
			sec, ok := s.secrets[name]
			if !ok {
				s.mu.Lock()
				s.unknown = append(s.unknown, name)
				s.mu.Unlock()
				continue
			}
			a, err := anypb.New(sec)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		}
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}

// ServeGRPC serves s on l until the test ends.
func ServeGRPC(t testing.TB, s *grpc.Server, l net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
}

// ShortTempDir is a temporary directory with a short path, for unix sockets (at most 108
// bytes), removed when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "stack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
