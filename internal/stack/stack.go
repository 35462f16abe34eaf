// Package stack brings up, on loopback and for tests, the whole front-proxy deployment with real
// parts: a test SPIFFE trust domain (acme.internal) and an SDS server standing in for the
// SPIRE agent's, real agentauthz (internal/server with the demo policy, the approval gate and
// the approvals API), the demo helpdesk (REST) and BI (GraphQL) APIs as TLS upstreams, and
// real Envoy (internal/envoyproc) running envoy/front-proxy.yaml as shipped, with only
// addresses, ports and the SDS socket path rewritten. Agents reach Envoy with HTTP clients that
// present their X.509-SVIDs.
//
//	s := stack.Start(t, stack.Options{})
//	resp, err := s.Client(stack.HelpdeskAgent).Get("https://helpdesk.acme.internal/v1/tickets")
//
// What reached each API is in s.Helpdesk and s.BI; agentauthz's decisions in
// s.Authz.Decisions; Envoy's access log in s.AccessLog. For failure tests, s.Authz stops,
// restarts, slows down and reloads agentauthz under the running Envoy.
//
// Without Envoy 1.40 installed, Start skips the test (fails it under CI), as envoyproc does.
package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo/bi"
	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
)

// HelpdeskToken is the helpdesk API's credential: agentauthz injects it, the API accepts only it.
const HelpdeskToken = "SENTINEL-helpdesk-token-5e1a9c"

// Options tune Start. The zero value runs the shipped settings.
type Options struct {
	// CheckTimeout is agentauthz's --check-timeout; zero is its default (200ms), below the
	// shipped Envoy's 250ms.
	CheckTimeout time.Duration
	// EnvoyLogLevel is Envoy's --log-level; "" means info.
	EnvoyLogLevel string
	// CertificateOptional lets agents reach Envoy without a client certificate, as agents that
	// authenticate with OAuth access tokens do: require_client_certificate false, and no SAN
	// matcher on the agents' listener (Envoy asks for a certificate whenever one is set). A
	// certificate presented is still verified against the trust bundle, and agentauthz still
	// checks its SPIFFE ID against the policy.
	CertificateOptional bool
	// Helpdesk, when set, wraps the helpdesk upstream's handler (the REST API and its MCP
	// server): a test makes the real upstream answer what it must, a broken or oversized body
	// for one. What the wrapped handler writes is what Received records as sent.
	Helpdesk func(http.Handler) http.Handler
	// MCPConfig runs envoy/mcp.yaml instead of front-proxy.yaml: the MCP server's host and the
	// helpdesk API only (the BI API and the gRPC service are not routed), with the ext_proc
	// filter that also filters MCP lists.
	MCPConfig bool
}

// Stack is the running deployment.
type Stack struct {
	PKI *PKI
	// Envoy runs front-proxy.yaml; Addr is its agents' listener (host:port).
	Envoy *envoyproc.Envoy
	Addr  string
	Authz *Authz
	// Helpdesk and BI record what reached each API; HelpdeskAPI and BIAPI are the APIs.
	Helpdesk, BI *Upstream
	HelpdeskAPI  *helpdesk.API
	BIAPI        *bi.API
	// HelpdeskGRPC records what reached the helpdesk API's gRPC service (HelpdeskAPI's too).
	HelpdeskGRPC *GRPCUpstream

	svids       map[string]SVID // the agents'
	guardPrefix string          // the ext_proc filter's stats prefix
}

// Start brings the stack up; everything stops when the test ends.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	envoyproc.Binary(t) // skip, or fail under CI, before building anything
	p := NewPKI(t)
	s := &Stack{PKI: p, svids: map[string]SVID{}}
	for _, id := range []string{HelpdeskAgent, BIAgent} {
		s.svids[id] = p.Issue(t, id)
	}
	sock := filepath.Join(ShortTempDir(t), "sds.sock")
	StartSDS(t, sock, p, p.Issue(t, EnvoyID))

	var err error
	if s.HelpdeskAPI, err = helpdesk.New(helpdesk.Config{Token: HelpdeskToken}); err != nil {
		t.Fatal(err)
	}
	if s.BIAPI, err = bi.New(nil); err != nil {
		t.Fatal(err)
	}
	var hd http.Handler = helpdeskmcp.Routes(s.HelpdeskAPI, nil)
	if opts.Helpdesk != nil {
		hd = opts.Helpdesk(hd)
	}
	s.Helpdesk = startUpstream(t, hd, p.BackendTLS(p.Issue(t, HelpdeskAPIID)))
	s.BI = startUpstream(t, s.BIAPI, p.BackendTLS(p.Issue(t, BIAPIID)))
	s.HelpdeskGRPC = StartGRPCUpstream(t, s.HelpdeskAPI, p.BackendTLS(p.Issue(t, HelpdeskAPIID)))
	s.Authz = startAuthz(t, p, HelpdeskToken, opts.CheckTimeout)

	addrs := Addrs{Agents: "127.0.0.1:0", Authz: s.Authz.GRPCAddr(),
		Helpdesk: s.Helpdesk.Addr(), BI: s.BI.Addr(), HelpdeskGRPC: s.HelpdeskGRPC.Addr(), SDSSocket: sock}
	var cfg string
	s.guardPrefix = "http.agents_ingress.ext_proc.response_guard."
	if opts.MCPConfig {
		cfg = renderMCP(t, addrs)
		s.guardPrefix = "http.agents_ingress.ext_proc.mcp_lists."
	} else {
		cfg = renderFrontProxy(t, addrs, opts.CertificateOptional)
	}
	s.Envoy = envoyproc.Start(t, envoyproc.Options{Config: cfg, LogLevel: opts.EnvoyLogLevel})
	s.Addr = s.Envoy.ListenerAddr("agents_ingress")
	return s
}

// FrontProxyConfig is the path of the shipped envoy/front-proxy.yaml.
func FrontProxyConfig() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "envoy", "front-proxy.yaml")
}

// Addrs are where the front proxy listens for agents and finds its neighbours, each host:port
// but the SPIRE agent's (SDS) unix socket path.
type Addrs struct {
	Agents, Authz, Helpdesk, BI, HelpdeskGRPC string
	SDSSocket                                 string
}

// RenderFrontProxy writes envoy/front-proxy.yaml with only its addresses, ports and socket path
// replaced (envoyproc.Render), and returns the file's path.
func RenderFrontProxy(t testing.TB, a Addrs) string {
	t.Helper()
	return renderFrontProxy(t, a, false)
}

func renderFrontProxy(t testing.TB, a Addrs, certificateOptional bool) string {
	t.Helper()
	replace := map[string]string{
		endpointAddr(10, "0.0.0.0", "8443"):                             endpointAddr(10, host(a.Agents), port(a.Agents)),
		endpointAddr(22, "agentauthz.acme.internal", "9001"):            endpointAddr(22, host(a.Authz), port(a.Authz)),
		endpointAddr(22, "helpdesk-backend.acme.internal", "8443"):      endpointAddr(22, host(a.Helpdesk), port(a.Helpdesk)),
		endpointAddr(22, "bi-backend.acme.internal", "8443"):            endpointAddr(22, host(a.BI), port(a.BI)),
		endpointAddr(22, "helpdesk-grpc-backend.acme.internal", "8443"): endpointAddr(22, host(a.HelpdeskGRPC), port(a.HelpdeskGRPC)),
		"path: /run/spire/agent/public/api.sock":                        "path: " + a.SDSSocket,
	}
	if certificateOptional {
		replace["require_client_certificate: true"] = "require_client_certificate: false"
		replace[agentsSANMatcher] = "                  default_validation_context: {}\n"
	}
	return envoyproc.RenderFile(t, FrontProxyConfig(), replace)
}

// renderMCP writes envoy/mcp.yaml with only its addresses, ports and socket path replaced.
func renderMCP(t testing.TB, a Addrs) string {
	t.Helper()
	return envoyproc.RenderFile(t, filepath.Join(filepath.Dir(FrontProxyConfig()), "mcp.yaml"), map[string]string{
		endpointAddr(10, "0.0.0.0", "8443"):                        endpointAddr(10, host(a.Agents), port(a.Agents)),
		endpointAddr(22, "agentauthz.acme.internal", "9001"):       endpointAddr(22, host(a.Authz), port(a.Authz)),
		endpointAddr(22, "helpdesk-backend.acme.internal", "8443"): endpointAddr(22, host(a.Helpdesk), port(a.Helpdesk)),
		"path: /run/spire/agent/public/api.sock":                   "path: " + a.SDSSocket,
	})
}

// agentsSANMatcher is the agents' listener's SAN matcher in the shipped front-proxy.yaml.
const agentsSANMatcher = `                  default_validation_context:
                    match_typed_subject_alt_names:
                      - san_type: URI
                        matcher:
                          prefix: "spiffe://acme.internal/agent/"
`

// URL is Envoy's front door as a base URL: https://127.0.0.1:port.
func (s *Stack) URL() string { return "https://" + s.Addr }

// SVID is the X.509-SVID of a demo agent (HelpdeskAgent or BIAgent).
func (s *Stack) SVID(agent string) SVID { return s.svids[agent] }

// Client is an HTTP/1.1 client for agent: it presents the agent's X.509-SVID, accepts only
// Envoy's SPIFFE ID, and connects to Envoy whatever host a URL names, so that
// https://helpdesk.acme.internal/v1/tickets reaches the helpdesk API through Envoy with that
// Host. It follows no redirects.
func (s *Stack) Client(agent string) *http.Client {
	svid, ok := s.svids[agent]
	if !ok {
		panic("stack: no SVID for " + agent)
	}
	return s.ClientWith(&svid, "http/1.1")
}

// ClientWith is Client presenting svid (none when nil), speaking alpn: "http/1.1" or "h2".
func (s *Stack) ClientWith(svid *SVID, alpn string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     s.PKI.ClientTLS(svid, EnvoyID, alpn),
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", s.Addr) },
		ForceAttemptHTTP2:   alpn == "h2",
		MaxIdleConnsPerHost: 16,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ResponseGuardStats are the counters of the ext_proc filter (stat_prefix response_guard, or
// mcp_lists with MCPConfig), by name without the prefix: streams_started counts the responses
// Envoy sent agentauthz. Envoy creates them with the filter, so they are there, at zero, from
// the start.
func (s *Stack) ResponseGuardStats(t testing.TB) map[string]uint64 {
	t.Helper()
	prefix := s.guardPrefix
	out := map[string]uint64{}
	for name, v := range s.Envoy.Stats() {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			out[rest] = v
		}
	}
	if _, ok := out["streams_started"]; !ok {
		t.Fatalf("stack: Envoy has no %sstreams_started", prefix)
	}
	return out
}

// AccessLog returns Envoy's access log lines so far (front-proxy.yaml's JSON format), each value
// as text. Envoy
// flushes it every 50ms; WaitAccessLog waits for a line.
func (s *Stack) AccessLog(t testing.TB) []map[string]string {
	t.Helper()
	var out []map[string]string
	lines := strings.Split(s.Envoy.Stdout(), "\n")
	// The last element is what follows the last newline: empty, or a line Envoy is still
	// writing, read half-way.
	for _, line := range lines[:len(lines)-1] {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("stack: access log line %q: %v", line, err)
		}
		m := make(map[string]string, len(fields))
		for k, v := range fields {
			if v != nil { // null: a field with no value, such as decision_id when nothing was checked
				m[k] = fmt.Sprint(v) // numbers (response_code, bytes, duration) as their text
			}
		}
		out = append(out, m)
	}
	return out
}

// WaitAccessLog waits until the access log has a line for which match is true, and returns it.
func (s *Stack) WaitAccessLog(t testing.TB, match func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range s.AccessLog(t) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack: no matching access log line within 10s; the log:\n%s", s.Envoy.Stdout())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// endpointAddr is how the shipped files write a socket address: host and port on two lines,
// the port under the host (indent spaces before each).
func endpointAddr(indent int, host, port string) string {
	return "address: " + host + "\n" + strings.Repeat(" ", indent) + "port_value: " + port
}

func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
