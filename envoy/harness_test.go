package envoy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/internal/stack"
)

// The SPIFFE IDs of the shipped configurations. The test trust domain (certificates, the SDS
// stand-in) is internal/stack's.
const (
	envoyID       = stack.EnvoyID
	agentauthzID  = stack.AgentauthzID
	helpdeskAgent = stack.HelpdeskAgent
	helpdeskAPIID = stack.HelpdeskAPIID
	biAPIID       = stack.BIAPIID
)

// answerFunc answers one check. A nil response with a nil error never answers (the check
// times out).
type answerFunc func(*authv3.CheckRequest) (*authv3.CheckResponse, error)

// authzServer is a tiny ext_authz server in agentauthz's place: it records every CheckRequest
// and answers as the running case says. Cases are told apart by the x-probe request header.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	g    *grpc.Server
	addr string

	mu      sync.Mutex
	answers map[string]answerFunc
	checks  map[string][]*authv3.CheckRequest
	callers map[string]bool // SPIFFE IDs of the clients that called Check
}

func startAuthz(t testing.TB, network, address string, tlsConf *tls.Config) *authzServer {
	t.Helper()
	l, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	a := &authzServer{g: grpc.NewServer(opts...), addr: l.Addr().String(),
		answers: map[string]answerFunc{}, checks: map[string][]*authv3.CheckRequest{}, callers: map[string]bool{}}
	authv3.RegisterAuthorizationServer(a.g, a)
	hs := health.NewServer()
	hs.SetServingStatus("envoy.service.auth.v3.Authorization", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(a.g, hs)
	stack.ServeGRPC(t, a.g, l)
	return a
}

func (a *authzServer) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	id := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			id = stack.URISAN(ti.State.PeerCertificates)
		}
	}
	probe := first(headerValues(cr, "x-probe"))
	a.mu.Lock()
	a.callers[id] = true
	a.checks[probe] = append(a.checks[probe], proto.Clone(cr).(*authv3.CheckRequest))
	answer := a.answers[probe]
	a.mu.Unlock()
	if answer == nil {
		return deny(403, "no answer for x-probe "+probe), nil
	}
	resp, err := answer(cr)
	if resp == nil && err == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return resp, err
}

// answer sets how the case probe is answered.
func (a *authzServer) answer(probe string, f answerFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answers[probe] = f
}

// checksOf returns the CheckRequests the case probe produced.
func (a *authzServer) checksOf(probe string) []*authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checks[probe]
}

// onlyCheck returns the one CheckRequest of the case probe.
func (a *authzServer) onlyCheck(t testing.TB, probe string) *authv3.CheckRequest {
	t.Helper()
	cs := a.checksOf(probe)
	if len(cs) != 1 {
		t.Fatalf("case %s: %d checks reached the authorization server, want 1", probe, len(cs))
	}
	return cs[0]
}

// takeChecks returns the CheckRequests of the case probe so far and forgets them.
func (a *authzServer) takeChecks(probe string) []*authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	cs := a.checks[probe]
	delete(a.checks, probe)
	return cs
}

func (a *authzServer) calledBy(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.callers[id]
}

// headerValues returns every value of a header in a CheckRequest, header_map and headers both.
func headerValues(cr *authv3.CheckRequest, name string) []string {
	h := cr.GetAttributes().GetRequest().GetHttp()
	var out []string
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if hv.GetKey() == name {
			out = append(out, string(hv.GetRawValue())+hv.GetValue())
		}
	}
	if v, ok := h.GetHeaders()[name]; ok {
		out = append(out, v)
	}
	return out
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func okResponse(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

func deny(status int, body string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: typeStatus(status), Body: body,
		}},
	}
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// backendRequest is a request as a backend received it.
type backendRequest struct {
	method, uri, host string
	header            http.Header
	body              []byte
	peer              string // the client certificate's SPIFFE ID
}

// backend is an upstream API that records what reaches it.
type backend struct {
	srv *http.Server
	url string

	mu   sync.Mutex
	reqs map[string][]backendRequest // by x-probe
}

// startBackend serves on loopback, with mTLS if tlsConf is set.
func startBackend(t testing.TB, tlsConf *tls.Config) *backend {
	t.Helper()
	b := &backend{reqs: map[string][]backendRequest{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = l.Addr().String()
	if tlsConf != nil {
		l = tls.NewListener(l, tlsConf)
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		br := backendRequest{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(), body: body}
		if r.TLS != nil {
			br.peer = stack.URISAN(r.TLS.PeerCertificates)
		}
		b.mu.Lock()
		b.reqs[r.Header.Get("x-probe")] = append(b.reqs[r.Header.Get("x-probe")], br)
		b.mu.Unlock()
		w.Header().Set("content-type", "text/plain")
		io.WriteString(w, "backend says hi")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(l) }()
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) requestsOf(probe string) []backendRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs[probe]
}

func (b *backend) port() string {
	_, port, _ := net.SplitHostPort(b.url)
	return port
}

// rawHTTP1 sends request bytes exactly as given over a new connection (TLS if tlsConf is set)
// and reads the response. A plain http.Client would clean up what the tests send on purpose:
// duplicate headers, dot segments, odd bytes.
func rawHTTP1(t testing.TB, addr string, tlsConf *tls.Config, request string) (*http.Response, string) {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to\n%s: %v", request, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// httpRequest writes an HTTP/1.1 request: one header line per "Name: value" given, in order.
func httpRequest(method, target, host string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	return b.String()
}

// endpointAddr is how the shipped files write a socket address: host and port on two lines,
// the port under the host (indent spaces before each).
func endpointAddr(indent int, host, port string) string {
	sp := strings.Repeat(" ", indent)
	return "address: " + host + "\n" + sp + "port_value: " + port
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func typeStatus(code int) *typev3.HttpStatus {
	return &typev3.HttpStatus{Code: typev3.StatusCode(code)}
}
