package envoytest_test

import (
	"context"
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
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agentauthz/agentauthz/internal/envoytest"
)

const principal = "spiffe://example.org/agent/test"

// authz is a real gRPC ext_authz server on loopback that records each check and answers with
// answer.
type authz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	checks []*authv3.CheckRequest
	answer func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (a *authz) Check(_ context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.checks = append(a.checks, cr)
	answer := a.answer
	a.mu.Unlock()
	return answer(cr)
}

func (a *authz) last(t testing.TB) *authv3.CheckRequest {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.checks) == 0 {
		t.Fatal("no check was made")
	}
	return a.checks[len(a.checks)-1]
}

func (a *authz) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.checks)
}

func allow(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

// startAuthz serves a on loopback and returns a client for it.
func startAuthz(t testing.TB, answer func(*authv3.CheckRequest) (*authv3.CheckResponse, error)) (*authz, authv3.AuthorizationClient) {
	t.Helper()
	a := &authz{answer: answer}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, a)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return a, dial(t, lis.Addr().String())
}

func dial(t testing.TB, addr string) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// seen is what an upstream received.
type seen struct {
	method, uri, host string
	header            http.Header
	body              string
}

type upstream struct {
	mu   sync.Mutex
	reqs []seen
	srv  *httptest.Server
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(body)})
		u.mu.Unlock()
		w.Header().Set("x-upstream", "yes")
		_, _ = io.WriteString(w, "upstream says hi")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) only(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(u.reqs))
	}
	return u.reqs[0]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// front starts the stand-in with cfg (Client, Principal and Upstreams filled in when empty).
func front(t testing.TB, client authv3.AuthorizationClient, up *upstream, cfg envoytest.Config) *httptest.Server {
	t.Helper()
	cfg.Client = client
	if cfg.Principal == "" {
		cfg.Principal = principal
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = map[string]string{"api.example.org": up.srv.URL}
	}
	srv := httptest.NewServer(envoytest.MustNew(cfg))
	t.Cleanup(srv.Close)
	return srv
}

func do(t testing.TB, method, url, host, body string, header http.Header) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckRequestAsEnvoyFillsIt(t *testing.T) {
	a, client := startAuthz(t, allow)
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{
		WithRequestBody: &envoytest.BodyOptions{MaxRequestBytes: 1024},
		LocalPrincipal:  "spiffe://example.org/envoy",
	})
	resp := do(t, "POST", srv.URL+"/v1/things/a%2Fb?x=1&y=%20", "api.example.org", "hello",
		http.Header{"Authorization": {"Bearer agent"}, "X-Multi": {"a", "b"}, "Content-Type": {"text/plain"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cr := a.last(t)
	attrs := cr.GetAttributes()
	if got := attrs.GetSource().GetPrincipal(); got != principal {
		t.Errorf("source.principal = %q", got)
	}
	if got := attrs.GetDestination().GetPrincipal(); got != "spiffe://example.org/envoy" {
		t.Errorf("destination.principal = %q", got)
	}
	if attrs.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" {
		t.Errorf("source.address = %v", attrs.GetSource().GetAddress())
	}
	h := attrs.GetRequest().GetHttp()
	if h.GetMethod() != "POST" || h.GetPath() != "/v1/things/a%2Fb?x=1&y=%20" || h.GetHost() != "api.example.org" ||
		h.GetScheme() != "https" || h.GetProtocol() != "HTTP/1.1" || h.GetId() == "" {
		t.Errorf("http attributes: %v", h)
	}
	if h.GetBody() != "hello" || len(h.GetRawBody()) != 0 || h.GetHeaderMap() != nil {
		t.Errorf("body %q raw_body %q header_map %v", h.GetBody(), h.GetRawBody(), h.GetHeaderMap())
	}
	want := map[string]string{
		":authority": "api.example.org", ":path": "/v1/things/a%2Fb?x=1&y=%20", ":method": "POST", ":scheme": "https",
		"authorization": "Bearer agent", "x-multi": "a,b", "content-type": "text/plain", "content-length": "5",
		"x-forwarded-proto": "https", envoytest.PartialBodyHeader: "false",
	}
	for k, v := range want {
		if got, ok := h.GetHeaders()[k]; !ok || got != v {
			t.Errorf("headers[%q] = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if h.GetHeaders()["x-request-id"] == "" {
		t.Error("no x-request-id: the connection manager adds one before any filter")
	}
	if _, ok := h.GetHeaders()["host"]; ok {
		t.Error("a host header: HTTP/1's Host is :authority")
	}
	for k := range h.GetHeaders() {
		if k != strings.ToLower(k) {
			t.Errorf("header name %q is not lower case", k)
		}
	}
	got := up.only(t)
	if got.uri != "/v1/things/a%2Fb?x=1&y=%20" || got.body != "hello" || got.host != "api.example.org" {
		t.Errorf("upstream saw %+v", got)
	}
	if got.header.Get(envoytest.PartialBodyHeader) != "" {
		t.Error("the partial-body marker belongs to the check only, not the upstream request")
	}
}

func TestRawHeadersAndPackAsBytes(t *testing.T) {
	a, client := startAuthz(t, allow)
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{
		WithRequestBody:  &envoytest.BodyOptions{MaxRequestBytes: 1024, PackAsBytes: true},
		EncodeRawHeaders: true,
	})
	do(t, "PUT", srv.URL+"/x", "api.example.org", "\xff\x00bytes", http.Header{"X-Multi": {"a", "b"}})
	h := a.last(t).GetAttributes().GetRequest().GetHttp()
	if len(h.GetHeaders()) != 0 {
		t.Errorf("headers map filled with encode_raw_headers: %v", h.GetHeaders())
	}
	if string(h.GetRawBody()) != "\xff\x00bytes" || h.GetBody() != "" {
		t.Errorf("raw_body %q body %q", h.GetRawBody(), h.GetBody())
	}
	var multi []string
	var partial int
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		switch hv.GetKey() {
		case "x-multi":
			multi = append(multi, string(hv.GetRawValue()))
		case envoytest.PartialBodyHeader:
			partial++
		}
		if hv.GetValue() != "" {
			t.Errorf("header %s in value, not raw_value", hv.GetKey())
		}
	}
	if strings.Join(multi, "|") != "a|b" || partial != 1 {
		t.Errorf("x-multi entries %q, partial-body entries %d", multi, partial)
	}
}

func TestNoBodyNoPartialMarker(t *testing.T) {
	a, client := startAuthz(t, allow)
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{WithRequestBody: &envoytest.BodyOptions{MaxRequestBytes: 10}})
	do(t, "GET", srv.URL+"/x", "api.example.org", "", nil)
	h := a.last(t).GetAttributes().GetRequest().GetHttp()
	if _, ok := h.GetHeaders()[envoytest.PartialBodyHeader]; ok || h.GetBody() != "" {
		t.Errorf("a bodiless request got a body or partial marker: %v", h)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Run("refused without allow_partial_message", func(t *testing.T) {
		a, client := startAuthz(t, allow)
		up := startUpstream(t)
		srv := front(t, client, up, envoytest.Config{WithRequestBody: &envoytest.BodyOptions{MaxRequestBytes: 4}})
		resp := do(t, "POST", srv.URL+"/x", "api.example.org", "123456", nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || a.count() != 0 || up.count() != 0 {
			t.Errorf("status %d, %d checks, %d upstream requests; want 413 and neither", resp.StatusCode, a.count(), up.count())
		}
	})
	t.Run("partial with allow_partial_message", func(t *testing.T) {
		a, client := startAuthz(t, allow)
		up := startUpstream(t)
		srv := front(t, client, up, envoytest.Config{WithRequestBody: &envoytest.BodyOptions{MaxRequestBytes: 4, AllowPartialMessage: true}})
		do(t, "POST", srv.URL+"/x", "api.example.org", "123456", nil)
		h := a.last(t).GetAttributes().GetRequest().GetHttp()
		if h.GetBody() != "1234" || h.GetHeaders()[envoytest.PartialBodyHeader] != "true" {
			t.Errorf("check body %q partial %q", h.GetBody(), h.GetHeaders()[envoytest.PartialBodyHeader])
		}
		if got := up.only(t).body; got != "123456" {
			t.Errorf("upstream body %q, want all of it", got)
		}
	})
}

func hvo(key, value string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: a}
}

func TestOKResponseMutations(t *testing.T) {
	//lint:ignore SA1019 the stand-in must apply the deprecated append flag as Envoy does
	deprecatedAppend := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-d", Value: "2"}, Append: wrapperspb.Bool(true)}
	_, client := startAuthz(t, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					hvo("authorization", "Bearer upstream", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hvo("x-a", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
					hvo("x-b", "new", corev3.HeaderValueOption_ADD_IF_ABSENT),
					hvo("x-c", "new", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
					deprecatedAppend,
					hvo("x-gone", "set then removed", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hvo(":path", "/elsewhere", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				},
				HeadersToRemove:         []string{"cookie", "x-gone", ":path", "host"},
				QueryParametersToRemove: []string{"secret"},
				ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hvo("x-resp", "added", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
			}},
		}, nil
	})
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{})
	resp := do(t, "GET", srv.URL+"/v1/x?secret=s&b=2&a=1", "api.example.org", "", http.Header{
		"Authorization": {"Bearer agent"}, "Cookie": {"c=1"}, "X-A": {"1"}, "X-B": {"old"}, "X-D": {"1"},
	})
	if resp.StatusCode != 200 || resp.Header.Get("x-resp") != "added" || resp.Header.Get("x-upstream") != "yes" {
		t.Errorf("client got %d %v", resp.StatusCode, resp.Header)
	}
	got := up.only(t)
	// Envoy rewrites the query in key order once it changes it.
	if got.uri != "/v1/x?a=1&b=2" {
		t.Errorf("upstream uri %q", got.uri)
	}
	checks := []struct {
		name string
		want []string
	}{
		{"Authorization", []string{"Bearer upstream"}},
		{"X-A", []string{"1", "2"}},
		{"X-B", []string{"old"}},
		{"X-C", nil},
		{"X-D", []string{"1,2"}},
		{"X-Gone", nil},
		{"Cookie", nil},
	}
	for _, c := range checks {
		if g := got.header.Values(c.name); strings.Join(g, "|") != strings.Join(c.want, "|") {
			t.Errorf("upstream %s = %q, want %q", c.name, g, c.want)
		}
	}
	if got.host != "api.example.org" {
		t.Errorf("upstream host %q", got.host)
	}
}

func TestDeniedResponseReachesTheClient(t *testing.T) {
	_, client := startAuthz(t, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: 428},
				Headers: []*corev3.HeaderValueOption{hvo("content-type", "application/problem+json", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
				Body:    `{"code":"approval_required"}`,
			}},
		}, nil
	})
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{})
	resp := do(t, "POST", srv.URL+"/x", "api.example.org", "{}", nil)
	if resp.StatusCode != 428 || resp.Header.Get("content-type") != "application/problem+json" ||
		readAll(t, resp.Body) != `{"code":"approval_required"}` || up.count() != 0 {
		t.Errorf("client got %d %v; upstream %d requests", resp.StatusCode, resp.Header, up.count())
	}

	t.Run("403 when the status is unset", func(t *testing.T) {
		_, client := startAuthz(t, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
		})
		srv := front(t, client, up, envoytest.Config{})
		if resp := do(t, "GET", srv.URL+"/x", "api.example.org", "", nil); resp.StatusCode != 403 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestFailuresAnswerStatusOnError(t *testing.T) {
	cases := map[string]func(*authv3.CheckRequest) (*authv3.CheckResponse, error){
		"gRPC error": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, status.Error(codes.Internal, "boom")
		},
		"error_response": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}},
			}, nil
		},
		"timeout": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			time.Sleep(300 * time.Millisecond)
			return allow(nil)
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			_, client := startAuthz(t, answer)
			up := startUpstream(t)
			srv := front(t, client, up, envoytest.Config{Timeout: 100 * time.Millisecond})
			resp := do(t, "GET", srv.URL+"/x", "api.example.org", "", nil)
			if resp.StatusCode != 503 || up.count() != 0 {
				t.Errorf("status %d, upstream %d requests; want 503 and none", resp.StatusCode, up.count())
			}
		})
	}
	t.Run("server unreachable", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		up := startUpstream(t)
		srv := front(t, dial(t, addr), up, envoytest.Config{})
		if resp := do(t, "GET", srv.URL+"/x", "api.example.org", "", nil); resp.StatusCode != 503 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestRoutingByHost(t *testing.T) {
	a, client := startAuthz(t, allow)
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{StripAnyHostPort: true})
	if resp := do(t, "GET", srv.URL+"/x", "API.example.org:8443", "", nil); resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if got := a.last(t).GetAttributes().GetRequest().GetHttp().GetHost(); got != "API.example.org" {
		t.Errorf("host %q: strip_any_host_port drops the port", got)
	}
	if resp := do(t, "GET", srv.URL+"/x", "nowhere.example.org", "", nil); resp.StatusCode != 404 {
		t.Errorf("unknown host: status %d, want 404 (no route)", resp.StatusCode)
	}
	if a.count() != 2 {
		t.Errorf("%d checks: every request is checked, routed or not", a.count())
	}
}

func TestEdgeHeaders(t *testing.T) {
	a, client := startAuthz(t, allow)
	up := startUpstream(t)
	srv := front(t, client, up, envoytest.Config{RejectHeadersWithUnderscores: true})
	do(t, "GET", srv.URL+"/x", "api.example.org", "", http.Header{"X-Request-Id": {"chosen-by-agent"}, "X-Forwarded-Proto": {"gopher"}})
	h := a.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()
	if h["x-request-id"] == "chosen-by-agent" || h["x-forwarded-proto"] != "https" || h["x-forwarded-for"] != "127.0.0.1" {
		t.Errorf("edge headers: %v", h)
	}
	if resp := do(t, "GET", srv.URL+"/x", "api.example.org", "", http.Header{"X_Api_Key": {"k"}}); resp.StatusCode != 400 || a.count() != 1 {
		t.Errorf("a header with an underscore: status %d, %d checks; want 400 before any check", resp.StatusCode, a.count())
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	_, client := startAuthz(t, allow)
	for name, cfg := range map[string]envoytest.Config{
		"no client":    {Principal: principal},
		"no principal": {Client: client},
		"bad upstream": {Client: client, Principal: principal, Upstreams: map[string]string{"a": "not a url"}},
		"zero body":    {Client: client, Principal: principal, WithRequestBody: &envoytest.BodyOptions{}},
	} {
		if _, err := envoytest.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
