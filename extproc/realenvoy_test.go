package extproc_test

// Real Envoy (internal/envoyproc: Envoy 1.40.0) running envoy/mcp.yaml as shipped, only
// addresses, ports and the SDS socket path rewritten, in front of a test MCP server and an
// ordinary API, with agentauthz's ExternalProcessor (this package, over a fixed View) and a
// small ext_authz server in agentauthz's place that allows every request and answers with the
// metadata agentauthz's MCP checks give (agent, decision_id, rule, mcp_method, mcp_server).
// These tests are the oracle for what Envoy sends the ExternalProcessor and what reaches the
// agent.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"

	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/stack"
)

const (
	mcpHost    = "mcp.acme.internal"
	apiHost    = "helpdesk.acme.internal"
	statPrefix = "http.agents_ingress.ext_proc.mcp_lists."
)

// mcpConfig is the path of the shipped envoy/mcp.yaml.
func mcpConfig() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "envoy", "mcp.yaml")
}

// authzStandIn allows every request, answering with the metadata of agentauthz's MCP checks:
// on the MCP server's host, mcp_server and, for a JSON-RPC request, its method.
type authzStandIn struct {
	authv3.UnimplementedAuthorizationServer
	n atomic.Int64
}

func (a *authzStandIn) Check(_ context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	req := cr.GetAttributes().GetRequest().GetHttp()
	fields := map[string]any{
		"agent":       cr.GetAttributes().GetSource().GetPrincipal(),
		"decision_id": fmt.Sprintf("decision-%d", a.n.Add(1)),
		"outcome":     "allow",
		"code":        "allowed",
		"rule":        "helpdesk-api",
	}
	if req.GetHost() == mcpHost {
		fields["rule"], fields["mcp_server"] = "helpdesk-mcp", "helpdesk"
		var msg struct {
			Method string `json:"method"`
		}
		if json.Unmarshal(req.GetRawBody(), &msg) == nil && msg.Method != "" {
			fields["mcp_method"] = msg.Method
		}
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, err
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		DynamicMetadata: md,
	}, nil
}

// The test MCP server's tools; the helpdesk agent may see list_tickets and comment_ticket.
var serverTools = []string{"list_tickets", "reset_password", "comment_ticket", "export_users"}

// helpdeskServer is the test upstream: an MCP server (Streamable HTTP) at /mcp, and an ordinary
// API at every other path. A POST to /mcp is answered as its x-answer header says: json (the
// default), sse, garbage (JSON with data after it), gzip, empty (no body), or big (a list over
// Envoy's 1 MiB buffer). A GET of /mcp opens an event stream that sends one notification, then
// holds until release is closed.
func helpdeskServer(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/mcp" {
			w.Header().Set("content-type", "application/json")
			io.WriteString(w, `{"tickets":[{"id":4711,"tools":[{"name":"reset_password"}]}]}`)
			return
		}
		if r.Method == http.MethodGet {
			w.Header().Set("content-type", "text/event-stream")
			io.WriteString(w, "id: g1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "id: g2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"bye\"}}\n\n")
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &msg)
		var result string
		switch msg.Method {
		case "tools/list":
			var tools []string
			n := 1
			if r.Header.Get("x-answer") == "big" {
				n = 6000 // about 1.3 MB
			}
			for i := range n {
				for _, name := range serverTools {
					if i > 0 {
						name = fmt.Sprintf("%s_%d", name, i)
					}
					tools = append(tools, fmt.Sprintf(`{"name":%q,"description":"The helpdesk's %s tool, for the demo.","inputSchema":{"type":"object"}}`, name, name))
				}
			}
			result = `{"tools":[` + strings.Join(tools, ",") + `],"nextCursor":"c2"}`
		case "prompts/list":
			result = `{"prompts":[{"name":"triage"},{"name":"exfiltrate"}]}`
		case "tools/call":
			result = `{"content":[{"type":"text","text":"the tools are list_tickets, reset_password, export_users"}]}`
		default:
			result = `{}`
		}
		resp := `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"result":` + result + `}`
		switch r.Header.Get("x-answer") {
		case "empty":
			w.Header().Set("content-type", "application/json")
			w.WriteHeader(http.StatusOK)
			return
		case "sse":
			w.Header().Set("content-type", "text/event-stream")
			io.WriteString(w, "id: s0\ndata:\n\n: a comment\nid: s1\nevent: message\ndata: "+resp+"\n\n")
		case "garbage":
			w.Header().Set("content-type", "application/json")
			io.WriteString(w, resp+` {"tools":["reset_password"]}`)
		case "gzip":
			w.Header().Set("content-type", "application/json")
			w.Header().Set("content-encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, resp)
			zw.Close()
		default:
			w.Header().Set("content-type", "application/json")
			io.WriteString(w, resp)
		}
	})
}

// mcpProxy is envoy/mcp.yaml in real Envoy, with its neighbours.
type mcpProxy struct {
	envoy    *envoyproc.Envoy
	addr     string
	agentTLS *tls.Config
	lists    *viewLists
	upstream *stack.Upstream
	release  chan struct{}
}

// proxyOptions vary how startMCPProxy runs mcp.yaml.
type proxyOptions struct {
	// config is the configuration run; envoy/mcp.yaml when empty.
	config string
	// settings rewrites settings (exact text → replacement) beyond the addresses.
	settings map[string]string
	// proc is the ExternalProcessor's configuration (its Lists is set here).
	proc extproc.Config
}

// startMCPProxy runs envoy/mcp.yaml (or opts.config), only addresses, ports and the SDS socket
// rewritten unless opts says otherwise.
func startMCPProxy(t *testing.T, opts proxyOptions) *mcpProxy {
	t.Helper()
	envoyproc.Binary(t) // skip, or fail under CI, before building anything
	p := stack.NewPKI(t)
	sock := filepath.Join(stack.ShortTempDir(t), "sds.sock")
	stack.StartSDS(t, sock, p, p.Issue(t, stack.EnvoyID))
	px := &mcpProxy{lists: newLists(), release: make(chan struct{})}

	// agentauthz's place: ext_authz, ext_proc and health on one gRPC listener, over mTLS.
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.ServerTLS(p.Issue(t, stack.AgentauthzID)))))
	authv3.RegisterAuthorizationServer(g, &authzStandIn{})
	opts.proc.Lists = px.lists
	extprocv3.RegisterExternalProcessorServer(g, extproc.New(opts.proc))
	hs := health.NewServer()
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stack.ServeGRPC(t, g, l)

	px.upstream = stack.StartUpstream(t, helpdeskServer(px.release), p.BackendTLS(p.Issue(t, stack.HelpdeskAPIID)))

	if opts.config == "" {
		opts.config = mcpConfig()
	}
	conf := envoyproc.RenderFile(t, opts.config, map[string]string{
		endpointAddr(10, "0.0.0.0", "8443"):                        endpointAddr(10, "127.0.0.1", "0"),
		endpointAddr(22, "agentauthz.acme.internal", "9001"):       endpointAt(22, l.Addr().String()),
		endpointAddr(22, "helpdesk-backend.acme.internal", "8443"): endpointAt(22, px.upstream.Addr()),
		"path: /run/spire/agent/public/api.sock":                   "path: " + sock,
	})
	if opts.settings != nil {
		conf = envoyproc.RenderFile(t, conf, opts.settings)
	}
	px.envoy = envoyproc.Start(t, envoyproc.Options{Config: conf})
	px.addr = px.envoy.ListenerAddr("agents_ingress")
	agent := p.Issue(t, stack.HelpdeskAgent)
	px.agentTLS = p.ClientTLS(&agent, stack.EnvoyID, "http/1.1")
	return px
}

// endpointAddr is how the shipped files write a socket address: host and port on two lines.
func endpointAddr(indent int, host, port string) string {
	return "address: " + host + "\n" + strings.Repeat(" ", indent) + "port_value: " + port
}

// endpointAt is endpointAddr for host:port.
func endpointAt(indent int, addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return endpointAddr(indent, h, p)
}

// response is what the agent received.
type response struct {
	status        int
	header        http.Header
	contentLength int64 // -1 when the response was chunked
	chunked       bool
	body          string
}

// post sends a JSON-RPC request to host as the helpdesk agent, over HTTP/1.1, and reads the
// response as it arrived.
func (px *mcpProxy) post(t *testing.T, host, answer, method string) response {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":42,"method":"` + method + `","params":{}}`
	return px.send(t, "POST", host, "/mcp", []string{"content-type: application/json",
		"accept: application/json, text/event-stream", "x-answer: " + answer}, body)
}

func (px *mcpProxy) send(t *testing.T, method, host, path string, headers []string, body string) response {
	t.Helper()
	resp, conn := px.open(t, method, host, path, headers, body)
	defer conn.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, contentLength: resp.ContentLength,
		chunked: len(resp.TransferEncoding) > 0, body: string(b)}
}

// open sends a request and returns the response with its body unread.
func (px *mcpProxy) open(t *testing.T, method, host, path string, headers []string, body string) (*http.Response, net.Conn) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", px.addr, px.agentTLS)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, conn
}

// extProcStats are the ext_proc filter's counters, by name without the prefix.
func (px *mcpProxy) extProcStats(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for name, v := range px.envoy.Stats() {
		if rest, ok := strings.CutPrefix(name, statPrefix); ok {
			out[rest] = v
		}
	}
	if _, ok := out["streams_started"]; !ok {
		t.Fatalf("Envoy has no %sstreams_started", statPrefix)
	}
	return out
}

// TestRealEnvoyMCPLists runs envoy/mcp.yaml as shipped: what the agent receives, what reaches
// the ExternalProcessor, and, from Envoy's own ext_proc counters, which responses are never sent
// to it.
func TestRealEnvoyMCPLists(t *testing.T) {
	px := startMCPProxy(t, proxyOptions{})

	t.Run("tools/list as JSON: only the tools the agent may use, with the metadata of its check", func(t *testing.T) {
		d := px.delta(t)
		r := px.post(t, mcpHost, "json", "tools/list")
		checkLength(t, r)
		msg := listResult(t, r.header.Get("content-type"), r.body)
		checkTools(t, msg)
		if string(msg.ID) != "42" || msg.Result["nextCursor"] != "c2" {
			t.Errorf("id %s, nextCursor %v: the rest of the response is not kept", msg.ID, msg.Result["nextCursor"])
		}
		d.check(t, 1, 2) // one stream: the headers, then the body
		asked := px.lists.requests()
		got := asked[len(asked)-1]
		if got.Agent != stack.HelpdeskAgent || got.Server != "helpdesk" || got.Method != "tools/list" || got.Rule != "helpdesk-mcp" ||
			!strings.HasPrefix(got.DecisionID, "decision-") || got.Status != 200 || got.ContentType != "application/json" {
			t.Errorf("the ExternalProcessor was asked %+v: ext_authz's metadata did not arrive whole", got)
		}
	})

	t.Run("tools/list as an event stream: filtered, event ids kept", func(t *testing.T) {
		d := px.delta(t)
		r := px.post(t, mcpHost, "sse", "tools/list")
		checkLength(t, r)
		if ct := r.header.Get("content-type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		if !strings.HasPrefix(r.body, "id: s0\ndata:\n\nevent: message\nid: s1\ndata: {") {
			t.Errorf("the stream's events were not kept:\n%s", r.body)
		}
		checkTools(t, listResult(t, "text/event-stream", r.body))
		d.check(t, 1, 2)
	})

	t.Run("prompts/list", func(t *testing.T) {
		r := px.post(t, mcpHost, "json", "prompts/list")
		checkLength(t, r)
		if r.body != `{"jsonrpc":"2.0","id":42,"result":{"prompts":[{"name":"triage"}]}}` {
			t.Errorf("body %s", r.body)
		}
	})

	for _, answer := range []string{"garbage", "gzip"} {
		t.Run("an unreadable list ("+answer+") reaches the agent as an empty list", func(t *testing.T) {
			r := px.post(t, mcpHost, answer, "tools/list")
			checkLength(t, r)
			if r.status != 200 || r.body != `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}` ||
				r.header.Get("content-type") != "application/json" || r.header.Get("content-encoding") != "" {
				t.Errorf("%d %v\n%s", r.status, r.header, r.body)
			}
		})
	}

	t.Run("a list answer without a body: an empty list is added, chunked", func(t *testing.T) {
		d := px.delta(t)
		r := px.post(t, mcpHost, "empty", "tools/list")
		if r.status != 200 || r.body != `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}` || !r.chunked || r.header.Get("content-length") != "" {
			t.Errorf("%d %v (chunked %v) %q", r.status, r.header, r.chunked, r.body)
		}
		d.check(t, 1, 1)
	})

	t.Run("a list over Envoy's buffer: Envoy's own 500, nothing of the list", func(t *testing.T) {
		d := px.delta(t)
		n := len(px.lists.requests())
		r := px.post(t, mcpHost, "big", "tools/list")
		if r.status != 500 || strings.Contains(r.body, "reset_password") {
			t.Errorf("%d %s", r.status, r.body)
		}
		if len(px.lists.requests()) != n {
			t.Error("the ExternalProcessor was asked about a body Envoy did not buffer")
		}
		d.check(t, 1, 1) // the headers only
		line := px.waitLog(t, func(l map[string]any) bool { return l["response_code"] == 500.0 })
		if line["response_code_details"] != "response_payload_too_large" {
			t.Errorf("Envoy's access log says %v", line)
		}
	})

	t.Run("tools/call is never sent to the ExternalProcessor", func(t *testing.T) {
		d := px.delta(t)
		r := px.post(t, mcpHost, "json", "tools/call")
		checkLength(t, r)
		if !strings.Contains(r.body, "reset_password") {
			t.Errorf("a tools/call result was changed: %s", r.body)
		}
		d.check(t, 0, 0)
	})

	t.Run("the ordinary API is never sent to the ExternalProcessor", func(t *testing.T) {
		d := px.delta(t)
		r := px.send(t, "GET", apiHost, "/v1/tickets", nil, "")
		if r.status != 200 || !strings.Contains(r.body, "reset_password") {
			t.Errorf("%d %s", r.status, r.body)
		}
		d.check(t, 0, 0)
	})

	t.Run("a POST ext_authz named no method for: its answer is replaced", func(t *testing.T) {
		d := px.delta(t)
		r := px.send(t, "POST", mcpHost, "/mcp", []string{"content-type: application/json", "x-answer: json"},
			`{"jsonrpc":"2.0","id":5,"result":{}}`)
		if r.body != `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}` {
			t.Errorf("%d %s", r.status, r.body)
		}
		d.check(t, 1, 1)
	})

	t.Run("an event stream opened by GET: headers only, then streamed, not buffered", func(t *testing.T) {
		d := px.delta(t)
		resp, conn := px.open(t, "GET", mcpHost, "/mcp", []string{"accept: text/event-stream"}, "")
		defer conn.Close()
		br := bufio.NewReader(resp.Body)
		// The first event arrives while the MCP server holds the stream open: Envoy did not
		// buffer the body.
		first, err := br.ReadString('\n')
		if err != nil || first != "id: g1\n" {
			t.Fatalf("first line %q, %v", first, err)
		}
		close(px.release)
		rest, err := io.ReadAll(br)
		if err != nil || !strings.Contains(string(rest), "id: g2") {
			t.Errorf("the rest of the stream: %q, %v", rest, err)
		}
		d.check(t, 1, 1) // no mcp_method: the headers go to agentauthz, which lets the body pass
	})
}

// TestRealEnvoyModeOverride runs envoy/mcp.yaml with its matcher never skipping: every MCP
// response reaches the ExternalProcessor, which tells Envoy (mode_override) not to send the body
// of one that is not a list. Envoy 1.40 honours it: a tools/call costs the headers' round trip
// only, and its body passes unbuffered and unchanged.
func TestRealEnvoyModeOverride(t *testing.T) {
	// Every presence check becomes a null check, never true of a value there or absent (Envoy
	// reads an absent key as a value of no kind, not null), and none is inverted: no conjunction
	// holds, and no matcher skips.
	px := startMCPProxy(t, proxyOptions{settings: map[string]string{"value: {present_match: true}": "value: {null_match: {}}", "invert: true": "invert: false"}})
	d := px.delta(t)
	r := px.post(t, mcpHost, "json", "tools/call")
	checkLength(t, r)
	if !strings.Contains(r.body, "reset_password") {
		t.Errorf("a tools/call result was changed: %s", r.body)
	}
	d.check(t, 1, 1)
	d = px.delta(t)
	checkTools(t, listResult(t, "application/json", px.post(t, mcpHost, "json", "tools/list").body))
	d.check(t, 1, 2)
}

// TestRealEnvoyNoMetadata runs envoy/mcp.yaml forwarding another namespace than ext_authz's: the
// ExternalProcessor cannot tell who asked, and the list is replaced.
func TestRealEnvoyNoMetadata(t *testing.T) {
	px := startMCPProxy(t, proxyOptions{settings: map[string]string{`untyped: ["envoy.filters.http.ext_authz"]`: `untyped: ["not.ext_authz"]`}})
	r := px.post(t, mcpHost, "json", "tools/list")
	// Replaced in answer to the headers, the body goes without a content-length, chunked:
	// Envoy removes the one agentauthz sets there.
	if !r.chunked || r.header.Get("content-length") != "" {
		t.Errorf("content-length %q (chunked %v)", r.header.Get("content-length"), r.chunked)
	}
	if r.body != `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}` {
		t.Errorf("%d %s", r.status, r.body)
	}
}

// TestRealEnvoyOverMaxBody: with agentauthz's limit below Envoy's buffer, a longer list reaches
// the agent as 502 with an empty list.
func TestRealEnvoyOverMaxBody(t *testing.T) {
	px := startMCPProxy(t, proxyOptions{proc: extproc.Config{MaxBody: 256}})
	r := px.post(t, mcpHost, "json", "tools/list")
	checkLength(t, r)
	if r.status != 502 || r.body != `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}` || r.header.Get("content-type") != "application/json" {
		t.Errorf("%d %v %s", r.status, r.header, r.body)
	}
}

// TestRealEnvoyValueMatchSkipsEveryList runs the broken copy of mcp.yaml whose matcher skips
// ext_proc unless a plain value_match names a list method: Envoy hands metadata to custom
// matchers only, so the value_match never matches, and every list reaches the agent unfiltered.
// envoy/config_test.go refuses that matcher.
func TestRealEnvoyValueMatchSkipsEveryList(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	px := startMCPProxy(t, proxyOptions{config: filepath.Join(filepath.Dir(file), "..", "envoy", "testdata", "broken",
		"mcp-extproc-matcher-value-match.yaml")})
	d := px.delta(t)
	r := px.post(t, mcpHost, "json", "tools/list")
	if !strings.Contains(r.body, "reset_password") {
		t.Errorf("the list was filtered: %s", r.body)
	}
	d.check(t, 0, 0)
}

// statsDelta is the ext_proc counters at one moment.
type statsDelta struct {
	px            *mcpProxy
	started, sent uint64
}

func (px *mcpProxy) delta(t *testing.T) statsDelta {
	s := px.extProcStats(t)
	return statsDelta{px, s["streams_started"], s["stream_msgs_sent"]}
}

// check checks how many ext_proc streams Envoy started, and messages it sent on them, since d.
func (d statsDelta) check(t *testing.T, streams, msgs uint64) {
	t.Helper()
	s := d.px.extProcStats(t)
	if got := s["streams_started"] - d.started; got != streams {
		t.Errorf("Envoy started %d ext_proc streams, want %d", got, streams)
	}
	if got := s["stream_msgs_sent"] - d.sent; got != msgs {
		t.Errorf("Envoy sent %d ext_proc messages, want %d", got, msgs)
	}
}

// checkLength checks that the response's content-length is its body's length: agentauthz sets
// it with a body it changes, and Envoy keeps it.
func checkLength(t *testing.T, r response) {
	t.Helper()
	if r.chunked || r.contentLength != int64(len(r.body)) {
		t.Errorf("content-length %d (chunked %v) for a body of %d bytes", r.contentLength, r.chunked, len(r.body))
	}
}

// checkFraming checks that the response is chunked, or has a content-length that is its body's
// length: an answer that passes unchanged keeps the MCP server's framing.
func checkFraming(t *testing.T, r response) {
	t.Helper()
	if !r.chunked {
		checkLength(t, r)
	} else if r.header.Get("content-length") != "" {
		t.Errorf("a chunked response with content-length %s", r.header.Get("content-length"))
	}
}

// rpcResult is a JSON-RPC response.
type rpcResult struct {
	ID     json.RawMessage `json:"id"`
	Result map[string]any  `json:"result"`
}

// listResult reads the response a body carries: the body itself, or the data of the event
// stream's one event with data.
func listResult(t *testing.T, contentType, body string) rpcResult {
	t.Helper()
	data := body
	if contentType == "text/event-stream" {
		data = ""
		for _, line := range strings.Split(body, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				data = d
			}
		}
	}
	var msg rpcResult
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return msg
}

// checkTools checks that the result lists exactly the tools the helpdesk agent may use, with
// the schema the policy shows.
func checkTools(t *testing.T, msg rpcResult) {
	t.Helper()
	tools, _ := msg.Result["tools"].([]any)
	var names []string
	for _, e := range tools {
		tool := e.(map[string]any)
		names = append(names, tool["name"].(string))
		if tool["name"] == "comment_ticket" {
			s, _ := json.Marshal(tool["inputSchema"])
			var want any
			_ = json.Unmarshal([]byte(tightSchema), &want)
			w, _ := json.Marshal(want)
			if !bytes.Equal(s, w) {
				t.Errorf("comment_ticket shown with schema %s", s)
			}
		}
	}
	if strings.Join(names, ",") != "list_tickets,comment_ticket" {
		t.Errorf("the agent sees %v", names)
	}
}

// waitLog waits for Envoy's access log line that match accepts.
func (px *mcpProxy) waitLog(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(px.envoy.Stdout(), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such line in Envoy's access log:\n%s", px.envoy.Stdout())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
