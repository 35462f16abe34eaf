package envoy_test

// Real Envoy (internal/envoyproc: Envoy 1.40.0) running front-proxy.yaml and sidecar.yaml as
// shipped, only addresses, ports and socket paths rewritten, against test servers: a stand-in
// for the SPIRE agent's SDS, a tiny ext_authz server in agentauthz's place, and the APIs. These
// tests are the oracle for what Envoy does: what it puts in a CheckRequest (this file), how it
// applies an answer, and how it fails closed (realenvoy_answer_test.go). They assert behaviour;
// agentauthz's reading of CheckRequests (extauthz) is written to match. internal/e2e runs real
// agentauthz behind the same file (internal/stack).

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// frontProxy is front-proxy.yaml running in real Envoy.
type frontProxy struct {
	envoy    *envoyproc.Envoy
	pki      *stack.PKI
	authz    *authzServer
	helpdesk *backend
	bi       *backend
	rpc      *stack.GRPCUpstream // the demo helpdesk API's gRPC service (helpdesk_grpc_api)
	addr     string              // the agents' listener
	agent    stack.SVID          // the helpdesk agent's certificate
	agentTLS *tls.Config         // its HTTP/1.1 client configuration
}

func startFrontProxy(t *testing.T) *frontProxy { return startFrontProxyWith(t, proxyOptions{}) }

// proxyOptions vary how startFrontProxyWith runs front-proxy.yaml.
type proxyOptions struct {
	// settings rewrites settings (exact text → replacement, as envoyproc.Render) beyond the
	// addresses: the variants whose CheckRequests the golden capture records. Nil runs the file
	// as shipped.
	settings map[string]string
	// agents is the agents' listener address; 127.0.0.1:0 when empty.
	agents string
}

func startFrontProxyWith(t *testing.T, opts proxyOptions) *frontProxy {
	t.Helper()
	envoyproc.Binary(t) // skip, or fail under CI, before building anything
	p := stack.NewPKI(t)
	sock := filepath.Join(stack.ShortTempDir(t), "sds.sock")
	stack.StartSDS(t, sock, p, p.Issue(t, envoyID))
	fp := &frontProxy{pki: p, agent: p.Issue(t, helpdeskAgent)}
	fp.authz = startAuthz(t, "tcp", "127.0.0.1:0", p.ServerTLS(p.Issue(t, agentauthzID)))
	fp.helpdesk = startBackend(t, p.BackendTLS(p.Issue(t, helpdeskAPIID)))
	fp.bi = startBackend(t, p.BackendTLS(p.Issue(t, biAPIID)))
	api, err := helpdesk.New(helpdesk.Config{Token: stack.HelpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	fp.rpc = stack.StartGRPCUpstream(t, api, p.BackendTLS(p.Issue(t, helpdeskAPIID)))
	agents := cmp.Or(opts.agents, "127.0.0.1:0")
	cfg := stack.RenderFrontProxy(t, stack.Addrs{Agents: agents, Authz: fp.authz.addr,
		Helpdesk: fp.helpdesk.url, BI: fp.bi.url, HelpdeskGRPC: fp.rpc.Addr(), SDSSocket: sock})
	if opts.settings != nil {
		cfg = envoyproc.RenderFile(t, cfg, opts.settings)
	}
	fp.envoy = envoyproc.Start(t, envoyproc.Options{Config: cfg})
	fp.addr = fp.envoy.ListenerAddr("agents_ingress")
	fp.agentTLS = p.ClientTLS(&fp.agent, envoyID, "http/1.1")
	return fp
}

// send sends an HTTP/1.1 request for the helpdesk API through Envoy as the helpdesk agent, with
// header x-probe: probe, and has the check answered by answer.
func (fp *frontProxy) send(t *testing.T, probe string, answer answerFunc, method, target string, headers []string, body string) (*http.Response, string) {
	t.Helper()
	fp.authz.answer(probe, answer)
	return rawHTTP1(t, fp.addr, fp.agentTLS,
		httpRequest(method, target, "helpdesk.acme.internal:8443", append([]string{"x-probe: " + probe}, headers...), body))
}

func allow(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse(&authv3.OkHttpResponse{}), nil
}

// headerNames lists the header_map's names in order.
func headerNames(cr *authv3.CheckRequest) []string {
	var names []string
	for _, hv := range cr.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		names = append(names, hv.GetKey())
	}
	return names
}

// TestRealEnvoyCheckRequest pins what Envoy 1.40 sends agentauthz, with the shipped settings
// (encode_raw_headers, with_request_body with pack_as_bytes, include_peer_certificate false).
func TestRealEnvoyCheckRequest(t *testing.T) {
	fp := startFrontProxy(t)

	t.Run("GET over HTTP/1.1", func(t *testing.T) {
		resp, _ := fp.send(t, "get", allow, "GET", "/v1/tickets?status=open&limit=10", []string{
			"Authorization: Bearer agent-own",
			"X-Dup: a", "X-Dup: b",
			"X-Forwarded-Client-Cert: By=spiffe://acme.internal/envoy;URI=spiffe://acme.internal/agent/admin",
			"X-Forwarded-For: 203.0.113.7",
			"X-Envoy-Retry-On: 5xx",
			"X-Request-Id: chosen-by-agent",
		}, "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		cr := fp.authz.onlyCheck(t, "get")
		attrs := cr.GetAttributes()
		h := attrs.GetRequest().GetHttp()

		// Identity: the URI SAN of the certificate Envoy verified; Envoy's own as destination.
		if got := attrs.GetSource().GetPrincipal(); got != helpdeskAgent {
			t.Errorf("source.principal = %q, want %s", got, helpdeskAgent)
		}
		if got := attrs.GetSource().GetCertificate(); got != "" {
			t.Errorf("source.certificate is set (include_peer_certificate is false): %.40q...", got)
		}
		if got := attrs.GetDestination().GetPrincipal(); got != envoyID {
			t.Errorf("destination.principal = %q, want Envoy's own ID %s", got, envoyID)
		}
		if got := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
			t.Errorf("source.address = %q, want the TCP peer 127.0.0.1", got)
		}

		// The request line: path with its query in path; host without the port
		// (strip_any_host_port); query and fragment never filled.
		for _, c := range []struct{ field, got, want string }{
			{"method", h.GetMethod(), "GET"},
			{"path", h.GetPath(), "/v1/tickets?status=open&limit=10"},
			{"host", h.GetHost(), "helpdesk.acme.internal"},
			{"scheme", h.GetScheme(), "https"},
			{"protocol", h.GetProtocol(), "HTTP/1.1"},
			{"query", h.GetQuery(), ""},
			{"fragment", h.GetFragment(), ""},
			{"body", h.GetBody(), ""},
			{"raw_body", string(h.GetRawBody()), ""},
		} {
			if c.got != c.want {
				t.Errorf("http.%s = %q, want %q", c.field, c.got, c.want)
			}
		}
		if h.GetSize() != 0 {
			t.Errorf("http.size = %d for a request without a body, want 0", h.GetSize())
		}

		// Headers: header_map only (encode_raw_headers), values in raw_value, names lower-case,
		// the pseudo-headers first, one entry per header line; no host entry (HTTP/1.1's Host
		// is :authority).
		if len(h.GetHeaders()) != 0 {
			t.Errorf("the headers map is filled too: %v", h.GetHeaders())
		}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			if hv.GetValue() != "" || len(hv.GetRawValue()) == 0 || hv.GetKey() != strings.ToLower(hv.GetKey()) {
				t.Errorf("header_map entry %q: value %q, raw_value %q; want a lower-case name and the value in raw_value only", hv.GetKey(), hv.GetValue(), hv.GetRawValue())
			}
		}
		names := headerNames(cr)
		if want := []string{":authority", ":path", ":method", ":scheme"}; len(names) < 4 || !slices.Equal(names[:4], want) {
			t.Errorf("header_map starts %q, want the pseudo-headers %q", names, want)
		}
		for name, want := range map[string][]string{
			":authority":        {"helpdesk.acme.internal"},
			":path":             {"/v1/tickets?status=open&limit=10"},
			":method":           {"GET"},
			":scheme":           {"https"},
			"authorization":     {"Bearer agent-own"},
			"x-dup":             {"a", "b"}, // not joined
			"x-forwarded-proto": {"https"},
			// use_remote_address: the agent's X-Forwarded-For is kept and Envoy appends its
			// own reading; for a loopback peer Envoy appends its own address instead of
			// 127.0.0.1, so only the agent's entry is pinned here (see below).
			"host":                      nil,
			"x-forwarded-client-cert":   nil, // SANITIZE: the agent's forged XFCC is gone
			"x-envoy-retry-on":          nil, // an external request's x-envoy-* are stripped
			"x-envoy-auth-partial-body": nil, // only with a body
		} {
			if got := headerValues(cr, name); !slices.Equal(got, want) {
				t.Errorf("header_map %s = %q, want %q", name, got, want)
			}
		}
		if xff := headerValues(cr, "x-forwarded-for"); len(xff) != 1 || !strings.HasPrefix(xff[0], "203.0.113.7,") {
			t.Errorf("x-forwarded-for = %q, want the agent's value with Envoy's appended", xff)
		}
		if got := headerValues(cr, "x-envoy-external-address"); !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("x-envoy-external-address = %q, want the peer 127.0.0.1", got)
		}
		if id := headerValues(cr, "x-request-id"); len(id) != 1 || id[0] == "chosen-by-agent" || len(id[0]) != 36 {
			t.Errorf("x-request-id = %q, want one UUID Envoy generated", id)
		}
		if h.GetId() == "" || attrs.GetRequest().GetTime() == nil {
			t.Error("http.id or request.time is not set")
		}

		// The backend got the request Envoy checked, from Envoy's own SVID.
		reqs := fp.helpdesk.requestsOf("get")
		if len(reqs) != 1 {
			t.Fatalf("%d requests reached the helpdesk API, want 1", len(reqs))
		}
		got := reqs[0]
		if got.uri != h.GetPath() || got.host != h.GetHost() || got.peer != envoyID {
			t.Errorf("backend got %s (host %s) from %q; want %s (host %s) from %s", got.uri, got.host, got.peer, h.GetPath(), h.GetHost(), envoyID)
		}
		if !slices.Equal(got.header.Values("X-Dup"), []string{"a", "b"}) || got.header.Get("X-Forwarded-Client-Cert") != "" {
			t.Errorf("backend headers: %v", got.header)
		}
	})

	t.Run("POST body as bytes", func(t *testing.T) {
		body := "{\"note\":\"caf\xc3\xa9 \xff\xfe\"}" // valid and invalid UTF-8
		resp, _ := fp.send(t, "post", allow, "POST", "/v1/tickets/42/comments", []string{"Content-Type: application/json"}, body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		h := fp.authz.onlyCheck(t, "post").GetAttributes().GetRequest().GetHttp()
		if !bytes.Equal(h.GetRawBody(), []byte(body)) || h.GetBody() != "" {
			t.Errorf("raw_body %q, body %q; want the bytes in raw_body only (pack_as_bytes)", h.GetRawBody(), h.GetBody())
		}
		if h.GetSize() != int64(len(body)) {
			t.Errorf("size = %d, want %d", h.GetSize(), len(body))
		}
		cr := fp.authz.onlyCheck(t, "post")
		if got := headerValues(cr, "x-envoy-auth-partial-body"); !slices.Equal(got, []string{"false"}) {
			t.Errorf("x-envoy-auth-partial-body = %q, want [false]", got)
		}
		if names := headerNames(cr); names[len(names)-1] != "x-envoy-auth-partial-body" {
			t.Errorf("x-envoy-auth-partial-body is not the last header: %q", names)
		}
		if got := headerValues(cr, "content-length"); !slices.Equal(got, []string{strconv.Itoa(len(body))}) {
			t.Errorf("content-length = %q", got)
		}
		if reqs := fp.helpdesk.requestsOf("post"); len(reqs) != 1 || string(reqs[0].body) != body {
			t.Errorf("the backend did not get the body as sent: %+v", reqs)
		}
	})

	t.Run("chunked and empty bodies", func(t *testing.T) {
		// A chunked body: Envoy has consumed the chunking, so the check has neither
		// transfer-encoding nor content-length, only the body and its size.
		fp.authz.answer("chunked", allow)
		rawHTTP1(t, fp.addr, fp.agentTLS, "POST /v1/x HTTP/1.1\r\nHost: helpdesk.acme.internal\r\nx-probe: chunked\r\n"+
			"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		cr := fp.authz.onlyCheck(t, "chunked")
		h := cr.GetAttributes().GetRequest().GetHttp()
		if string(h.GetRawBody()) != "hello world" || h.GetSize() != 11 || first(headerValues(cr, "x-envoy-auth-partial-body")) != "false" ||
			len(headerValues(cr, "transfer-encoding")) != 0 || len(headerValues(cr, "content-length")) != 0 {
			t.Errorf("chunked: raw_body %q size %d, headers %q", h.GetRawBody(), h.GetSize(), headerNames(cr))
		}
		// An empty body is no body: no raw_body, no partial-body marker.
		fp.send(t, "empty", allow, "POST", "/v1/x", nil, "")
		cr = fp.authz.onlyCheck(t, "empty")
		h = cr.GetAttributes().GetRequest().GetHttp()
		if len(h.GetRawBody()) != 0 || h.GetSize() != 0 || len(headerValues(cr, "x-envoy-auth-partial-body")) != 0 || first(headerValues(cr, "content-length")) != "0" {
			t.Errorf("empty: raw_body %q size %d, headers %q", h.GetRawBody(), h.GetSize(), headerNames(cr))
		}
	})

	t.Run("an agent's own x-envoy-auth-partial-body never reaches the check", func(t *testing.T) {
		// Envoy leaves the agent's header out of the check and, with a body, adds its own; the
		// agent's header is still forwarded to the API as sent.
		for probe, body := range map[string]string{"forged-get": "", "forged-post": "hi"} {
			method := "GET"
			if body != "" {
				method = "POST"
			}
			fp.send(t, probe, allow, method, "/v1/x", []string{"X-Envoy-Auth-Partial-Body: true"}, body)
			want := []string(nil)
			if body != "" {
				want = []string{"false"}
			}
			if got := headerValues(fp.authz.onlyCheck(t, probe), "x-envoy-auth-partial-body"); !slices.Equal(got, want) {
				t.Errorf("%s: the check's x-envoy-auth-partial-body = %q, want %q", probe, got, want)
			}
			if reqs := fp.helpdesk.requestsOf(probe); len(reqs) != 1 || reqs[0].header.Get("X-Envoy-Auth-Partial-Body") != "true" {
				t.Errorf("%s: the API got %+v", probe, reqs)
			}
		}
	})

	t.Run("body at and over max_request_bytes", func(t *testing.T) {
		const limit = 65536
		resp, _ := fp.send(t, "limit", allow, "POST", "/v1/upload", nil, strings.Repeat("a", limit))
		if resp.StatusCode != 200 {
			t.Fatalf("a body of exactly max_request_bytes: status %d, want 200", resp.StatusCode)
		}
		cr := fp.authz.onlyCheck(t, "limit")
		if got := cr.GetAttributes().GetRequest().GetHttp().GetRawBody(); len(got) != limit || first(headerValues(cr, "x-envoy-auth-partial-body")) != "false" {
			t.Errorf("check carried %d bytes marked partial=%q, want %d and false", len(got), headerValues(cr, "x-envoy-auth-partial-body"), limit)
		}

		resp, body := fp.send(t, "over", allow, "POST", "/v1/upload", nil, strings.Repeat("a", limit+1))
		if resp.StatusCode != 413 || body != "Payload Too Large" {
			t.Errorf("a body one byte over: %d %q, want 413 \"Payload Too Large\"", resp.StatusCode, body)
		}
		if n := len(fp.authz.checksOf("over")); n != 0 {
			t.Errorf("%d checks for a body over the limit, want none (allow_partial_message is false)", n)
		}
		if n := len(fp.helpdesk.requestsOf("over")); n != 0 {
			t.Errorf("a body over the limit reached the API")
		}

		// Over HTTP/2, allow_partial_message: false does not hold: Envoy checks the first
		// max_request_bytes marked partial and, on allow, forwards the whole body, the unchecked
		// tail included. agentauthz refuses every partial body (body_truncated); that refusal,
		// not Envoy's setting, is what keeps the tail from the API.
		fp.authz.answer("over-h2", allow)
		tr := &http.Transport{TLSClientConfig: fp.pki.ClientTLS(&fp.agent, envoyID, "h2"), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest("POST", "https://"+fp.addr+"/v1/upload", strings.NewReader(strings.Repeat("a", limit+1)))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "helpdesk.acme.internal"
		req.Header.Set("x-probe", "over-h2")
		resp, err = tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cr = fp.authz.onlyCheck(t, "over-h2")
		if got := cr.GetAttributes().GetRequest().GetHttp().GetRawBody(); resp.StatusCode != 200 || len(got) != limit || first(headerValues(cr, "x-envoy-auth-partial-body")) != "true" {
			t.Errorf("HTTP/2: %d, check carried %d bytes marked partial=%q; want 200 (allowed), %d bytes, true", resp.StatusCode, len(got), headerValues(cr, "x-envoy-auth-partial-body"), limit)
		}
		if reqs := fp.helpdesk.requestsOf("over-h2"); len(reqs) != 1 || len(reqs[0].body) != limit+1 {
			t.Errorf("HTTP/2: the API got %d requests, want 1 with all %d bytes", len(reqs), limit+1)
		}
	})

	t.Run("raw path, not normalised", func(t *testing.T) {
		for i, target := range []string{
			"/v1/tickets/../admin",
			"/v1/tickets/%2e%2e/admin",
			"/v1//tickets/%2F42;x=1?a=1&a=2&a=%zz",
			"/v1/tickets/%252F",
			"/v1/tickets/%5C..%5Cadmin",
		} {
			probe := "path" + string(rune('a'+i))
			resp, _ := fp.send(t, probe, allow, "GET", target, nil, "")
			if resp.StatusCode != 200 {
				t.Errorf("%s: status %d", target, resp.StatusCode)
				continue
			}
			cr := fp.authz.onlyCheck(t, probe)
			want := target
			if got := cr.GetAttributes().GetRequest().GetHttp().GetPath(); got != want {
				t.Errorf("sent %s, check path %s, want %s", target, got, want)
			}
			if reqs := fp.helpdesk.requestsOf(probe); len(reqs) != 1 || reqs[0].uri != want {
				t.Errorf("sent %s, the API got %+v, want %s", target, reqs, want)
			}
		}
	})

	t.Run("a fragment in the request target is refused", func(t *testing.T) {
		resp, _ := fp.send(t, "fragment", allow, "GET", "/v1/tickets#frag", nil, "")
		if resp.StatusCode != 400 {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
		if n := len(fp.authz.checksOf("fragment")); n != 0 {
			t.Errorf("%d checks, want none", n)
		}
	})

	t.Run("headers with underscores are refused", func(t *testing.T) {
		resp, _ := fp.send(t, "underscore", allow, "GET", "/v1/tickets", []string{"X_Api_Key: k"}, "")
		if resp.StatusCode != 400 {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
		if n := len(fp.authz.checksOf("underscore")); n != 0 {
			t.Errorf("%d checks, want none", n)
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		fp.authz.answer("h2", allow)
		tr := &http.Transport{TLSClientConfig: fp.pki.ClientTLS(&fp.agent, envoyID, "h2"), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest("POST", "https://"+fp.addr+"/v1/tickets?x=1", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "helpdesk.acme.internal"
		req.Header.Set("x-probe", "h2")
		req.Header.Add("x-dup", "a")
		req.Header.Add("x-dup", "b")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		cr := fp.authz.onlyCheck(t, "h2")
		h := cr.GetAttributes().GetRequest().GetHttp()
		if h.GetProtocol() != "HTTP/2" || h.GetPath() != "/v1/tickets?x=1" || h.GetHost() != "helpdesk.acme.internal" || string(h.GetRawBody()) != `{"a":1}` {
			t.Errorf("protocol %q path %q host %q raw_body %q", h.GetProtocol(), h.GetPath(), h.GetHost(), h.GetRawBody())
		}
		// The pseudo-headers first, in the order the client sent them (Go: :authority,
		// :method, :path, :scheme).
		if names := headerNames(cr); len(names) < 4 || !slices.Equal(names[:4], []string{":authority", ":method", ":path", ":scheme"}) {
			t.Errorf("header_map starts %q", names)
		}
		if got := headerValues(cr, "x-dup"); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("x-dup = %q, want two entries", got)
		}
		if got := headerValues(cr, "x-envoy-auth-partial-body"); !slices.Equal(got, []string{"false"}) {
			t.Errorf("x-envoy-auth-partial-body = %q", got)
		}
	})

	t.Run("mTLS", func(t *testing.T) {
		// Envoy calls agentauthz with its own SVID.
		if !fp.authz.calledBy(envoyID) {
			t.Errorf("agentauthz was not called with Envoy's certificate %s", envoyID)
		}
		// No client certificate, or one that is not an agent's: no TLS session, no check.
		before := fp.envoy.Stats()["http.agents_ingress.ext_authz.ok"]
		for name, cert := range map[string]*stack.SVID{"none": nil, "not an agent": ptr(fp.pki.Issue(t, biAPIID))} {
			conn, err := tls.Dial("tcp", fp.addr, fp.pki.ClientTLS(cert, envoyID, "http/1.1"))
			if err == nil {
				// TLS 1.3: the server's refusal of the client certificate arrives with the
				// first read.
				io.WriteString(conn, httpRequest("GET", "/v1/tickets", "helpdesk.acme.internal", nil, ""))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil {
				t.Errorf("client certificate %s: Envoy answered", name)
			}
		}
		if after := fp.envoy.Stats()["http.agents_ingress.ext_authz.ok"]; after != before {
			t.Errorf("a client without an agent certificate was checked")
		}
	})
}

func ptr[T any](v T) *T { return &v }

// accessLog returns the access log line of the request Envoy gave the x-request-id id, its
// values as text (Envoy writes numbers as JSON numbers, a missing value as null).
func (fp *frontProxy) accessLog(t *testing.T, id string) map[string]string {
	t.Helper()
	entry := map[string]string{}
	waitUntil(t, "the access log line of "+id, func() bool {
		for _, line := range strings.Split(fp.envoy.Stdout(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["request_id"] == id {
				for k, v := range m {
					if v != nil {
						entry[k] = fmt.Sprint(v)
					}
				}
				return true
			}
		}
		return false
	})
	return entry
}
