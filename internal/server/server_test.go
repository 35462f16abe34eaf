package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

const (
	helpdesk = "spiffe://acme.internal/agent/helpdesk"
	bi       = "spiffe://acme.internal/agent/bi"
	// upstreamToken is the helpdesk API credential the demo policy injects; agentToken is the
	// agent's own credential, which must never reach the upstream or the log.
	upstreamToken = "SENTINEL-upstream-token-3b9f2c"
	agentToken    = "SENTINEL-agent-token-c81d07"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func getTicket(principal string) *authv3.CheckRequest {
	return extauthz.HTTPRequest{Principal: principal, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest()
}

// blockingLog is a DecisionLog that holds the Check of one path in flight until released: the
// decision log is written before Check answers.
type blockingLog struct {
	path     string
	entered  chan struct{}
	release  chan struct{}
	once     sync.Once
	released sync.Once
	mu       sync.Mutex
	recorded []audit.Decision
}

func newBlockingLog(path string) *blockingLog {
	return &blockingLog{path: path, entered: make(chan struct{}), release: make(chan struct{})}
}

func (l *blockingLog) Decision(d audit.Decision) error {
	l.mu.Lock()
	l.recorded = append(l.recorded, d)
	l.mu.Unlock()
	if d.Path == l.path {
		l.once.Do(func() { close(l.entered) })
		<-l.release
	}
	return nil
}

// Release lets the held check go on; calling it again does nothing.
func (l *blockingLog) Release() { l.released.Do(func() { close(l.release) }) }

func waitFor(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
	}
}

// pollRefused polls until a new TCP connection to addr is refused.
func pollRefused(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s %s still accepts connections", network, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShutdownDrains: Shutdown turns gRPC health NOT_SERVING, stops taking connections, lets the
// check in flight finish and answer, and returns. Checks completed before it all had answers.
func TestShutdownDrains(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	const slowPath = "/v1/tickets/999"
	dlog := newBlockingLog(slowPath)
	defer dlog.Release() // never leave the handler blocked, whatever fails
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store, Decisions: dlog,
		// Far beyond the test's deadlines: Shutdown must return because the drain ended.
		DrainTimeout: 10 * time.Minute,
	})
	grpcAddr, httpAddr := srv.GRPCAddr().String(), srv.HTTPAddr().String()
	conn := servertest.Dial(t, grpcAddr)
	client := authv3.NewAuthorizationClient(conn)

	// A health watcher, as gRPC client-side health checking keeps one.
	watchCtx, stopWatch := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if hr, err := watch.Recv(); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before Shutdown = %v, %v; want SERVING", hr, err)
	}

	// Checks completed before Shutdown, concurrently: every one answered.
	const before = 40
	var wg sync.WaitGroup
	errs := make(chan error, before)
	for i := range before {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := getTicket(helpdesk)
			if i%2 == 1 {
				req = getTicket(bi)
			}
			resp, err := client.Check(ctxFor(t, 10*time.Second), req)
			if err != nil {
				errs <- err
				return
			}
			a, err := servertest.Read(resp)
			if err != nil {
				errs <- err
				return
			}
			if (i%2 == 0) != a.Allow || a.Code == "" {
				errs <- errors.New("unexpected answer " + a.Code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("check before Shutdown: %v", err)
	}

	// One check in flight: its decision log write blocks.
	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		req := extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: slowPath}.CheckRequest()
		resp, err := client.Check(context.Background(), req)
		inflight <- result{resp, err}
	}()
	waitFor(t, "the slow check reaching the decision log", dlog.entered, 10*time.Second)

	shutdownDone := make(chan struct{})
	go func() {
		srv.Shutdown()
		close(shutdownDone)
	}()

	// The watcher hears NOT_SERVING, then its stream ends: it must not hold the drain.
	hr, err := watch.Recv()
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after Shutdown began = %v, %v; want NOT_SERVING", hr, err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("health watch after NOT_SERVING: %v, want the stream to end with Unavailable", err)
	}

	// No new connections while draining.
	pollRefused(t, "tcp", grpcAddr)
	select {
	case <-shutdownDone:
		t.Fatal("Shutdown returned with a check in flight")
	case r := <-inflight:
		t.Fatalf("the check in flight answered before it was released: %v %v", r.resp, r.err)
	default:
	}

	dlog.Release()
	var r result
	select {
	case r = <-inflight:
	case <-time.After(30 * time.Second):
		t.Fatal("the check in flight was not answered after its release")
	}
	if r.err != nil {
		t.Fatalf("the check in flight during the drain failed: %v", r.err)
	}
	if a, err := servertest.Read(r.resp); err != nil || !a.Allow || a.Rule != "get-ticket" {
		t.Errorf("the check in flight during the drain = %+v, %v; want allow by get-ticket", a, err)
	}
	waitFor(t, "Shutdown after the drain", shutdownDone, 30*time.Second)

	// Stopped: new clients get no answer, and the HTTP listener is closed.
	fresh := authv3.NewAuthorizationClient(servertest.Dial(t, grpcAddr))
	if _, err := fresh.Check(ctxFor(t, 5*time.Second), getTicket(helpdesk)); status.Code(err) != codes.Unavailable {
		t.Errorf("Check after Shutdown: %v, want Unavailable", err)
	}
	pollRefused(t, "tcp", httpAddr)

	dlog.mu.Lock()
	defer dlog.mu.Unlock()
	if len(dlog.recorded) != before+1 {
		t.Errorf("%d decisions recorded, want %d", len(dlog.recorded), before+1)
	}
}

// TestShutdownDrainTimeout: a check that never finishes does not hold Shutdown past
// DrainTimeout; its caller gets an error, not a hang.
func TestShutdownDrainTimeout(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	const slowPath = "/v1/tickets/999"
	dlog := newBlockingLog(slowPath)
	t.Cleanup(dlog.Release) // after Shutdown: lets the handler goroutine end
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store, Decisions: dlog, DrainTimeout: 300 * time.Millisecond})
	client := servertest.Client(t, srv)
	errc := make(chan error, 1)
	go func() {
		req := extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: slowPath}.CheckRequest()
		_, err := client.Check(context.Background(), req)
		errc <- err
	}()
	waitFor(t, "the slow check reaching the decision log", dlog.entered, 10*time.Second)

	done := make(chan struct{})
	go func() {
		srv.Shutdown()
		close(done)
	}()
	waitFor(t, "Shutdown with a check stuck past DrainTimeout", done, 60*time.Second)
	select {
	case err := <-errc:
		if err == nil {
			t.Error("the stuck check was answered although it never finished")
		}
	case <-time.After(30 * time.Second):
		t.Error("the stuck check's caller still waits after Shutdown stopped the server")
	}
}

func TestUnixSocket(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	sock := filepath.Join(t.TempDir(), "authz.sock")
	srv := servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, Store: store})
	if got := srv.GRPCAddr().Network(); got != "unix" {
		t.Errorf("GRPCAddr().Network() = %q, want unix", got)
	}
	if st, err := os.Lstat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket: %v", sock, err)
	}
	client := authv3.NewAuthorizationClient(servertest.Dial(t, "unix:"+sock))
	if a := servertest.Check(t, client, getTicket(helpdesk)); !a.Allow || a.Rule != "get-ticket" {
		t.Errorf("Check over the socket = %+v, want allow by get-ticket", a)
	}
	if a := servertest.Check(t, client, getTicket(bi)); a.Allow || a.Code != "scope_missing" {
		t.Errorf("Check over the socket = %+v, want scope_missing", a)
	}
	srv.Shutdown()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Shutdown, %s: %v; want it removed", sock, err)
	}
}

// TestUnixSocketStale: a socket left by a previous run is replaced.
func TestUnixSocketStale(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	sock := filepath.Join(t.TempDir(), "authz.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if st, err := os.Lstat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no stale socket at %s: %v", sock, err)
	}
	// Nobody listens on the stale socket.
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatal("the stale socket accepts connections")
	}
	srv := servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, Store: store})
	client := authv3.NewAuthorizationClient(servertest.Dial(t, "unix:"+srv.GRPCAddr().String()))
	if a := servertest.Check(t, client, getTicket(helpdesk)); !a.Allow {
		t.Errorf("Check over the replaced socket = %+v, want allow", a)
	}
}

// TestUnixSocketRefusesOtherFiles: whatever is at the socket path and is not a socket is an
// operator's mistake: refused, and left as it is.
func TestUnixSocketRefusesOtherFiles(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	dir := t.TempDir()
	regular := filepath.Join(dir, "authz.sock")
	if err := os.WriteFile(regular, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "subdir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{regular, sub, link} {
		srv, err := server.Start(server.Config{GRPCAddr: "unix:" + p, Store: store})
		if err == nil {
			srv.Shutdown()
			t.Errorf("server.Start on %s (not a socket) succeeded", p)
			continue
		}
		if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("server.Start on %s: %v; want it to say it is not a socket", p, err)
		}
	}
	if data, err := os.ReadFile(regular); err != nil || string(data) != "precious" {
		t.Errorf("the refused file was touched: %q, %v", data, err)
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Errorf("the refused directory was touched: %v", err)
	}
	if target, err := os.Readlink(link); err != nil || target != regular {
		t.Errorf("the refused symlink was touched: %q, %v", target, err)
	}
}

// TestPlaintextOnlyOnLoopback: plaintext gRPC on a non-loopback address needs Insecure.
func TestPlaintextOnlyOnLoopback(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "agentauthz.example:9001", "10.1.2.3:9001"} {
		srv, err := server.Start(server.Config{GRPCAddr: addr, Store: store})
		if err == nil {
			srv.Shutdown()
			t.Errorf("server.Start(%q) served plaintext on a non-loopback address", addr)
			continue
		}
		if !strings.Contains(err.Error(), "refusing plaintext") {
			t.Errorf("server.Start(%q): %v; want the plaintext refusal", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		srv, err := server.Start(server.Config{GRPCAddr: addr, Store: store})
		if err != nil {
			t.Errorf("server.Start(%q): %v", addr, err)
			continue
		}
		srv.Shutdown()
	}
	srv := servertest.Start(t, server.Config{GRPCAddr: "0.0.0.0:0", Insecure: true, Store: store})
	_, port, _ := net.SplitHostPort(srv.GRPCAddr().String())
	client := authv3.NewAuthorizationClient(servertest.Dial(t, net.JoinHostPort("127.0.0.1", port)))
	if a := servertest.Check(t, client, getTicket(helpdesk)); !a.Allow {
		t.Errorf("Check on the insecure listener = %+v, want allow", a)
	}
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t, 10*time.Second), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d", url, code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not the text format: %v", url, err)
	}
	return mfs
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestMetricsEndpoint: /metrics is served only with a Gatherer, and counts each check in the
// latency histogram by outcome and in the decisions counter by reason.
func TestMetricsEndpoint(t *testing.T) {
	store, snap := servertest.DemoStore(t, upstreamToken)

	plain := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store, Metrics: metrics.New(prometheus.NewRegistry())})
	if code, _ := httpGet(t, "http://"+plain.HTTPAddr().String()+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without a Gatherer = %d, want 404", code)
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	empty := &policy.Store{}
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: empty, Metrics: m, Gatherer: reg})
	client := servertest.Client(t, srv)

	// No policy yet: an error.
	if a := servertest.Check(t, client, getTicket(helpdesk)); a.Code != "policy_not_loaded" {
		t.Fatalf("check without a policy = %+v", a)
	}
	empty.Swap(snap)
	want := map[string]int{"allowed": 3, "scope_missing": 2, "route_unknown": 1, "identity_missing": 1, "policy_not_loaded": 1}
	for range 3 {
		servertest.Check(t, client, getTicket(helpdesk))
	}
	servertest.Check(t, client, getTicket(bi))
	servertest.Check(t, client, getTicket(bi))
	servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/admin"}.CheckRequest())
	servertest.Check(t, client, getTicket(""))

	mfs := scrape(t, "http://"+srv.HTTPAddr().String()+"/metrics")
	hist := mfs["agentauthz_check_duration_seconds"]
	if hist.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("agentauthz_check_duration_seconds is %v, want a histogram", hist.GetType())
	}
	byOutcome := map[string]uint64{}
	for _, mm := range hist.GetMetric() {
		byOutcome[label(mm, "outcome")] = mm.GetHistogram().GetSampleCount()
		if n := len(mm.GetHistogram().GetBucket()); n == 0 {
			t.Errorf("outcome %s has no buckets", label(mm, "outcome"))
		}
	}
	if wantH := map[string]uint64{"allow": 3, "deny": 4, "error": 1}; !equalMaps(byOutcome, wantH) {
		t.Errorf("check_duration samples by outcome = %v, want %v", byOutcome, wantH)
	}
	byReason := map[string]int{}
	for _, mm := range mfs["agentauthz_decisions_total"].GetMetric() {
		byReason[label(mm, "reason")] = int(mm.GetCounter().GetValue())
	}
	if !equalMaps(byReason, want) {
		t.Errorf("decisions_total by reason = %v, want %v", byReason, want)
	}
}

func equalMaps[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// logRecord is a decision record as the log file has it.
type logRecord struct {
	Kind           string `json:"kind"`
	ID             string `json:"id"`
	Agent          string `json:"agent"`
	Host           string `json:"host"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	Outcome        string `json:"outcome"`
	Code           string `json:"code"`
	Status         int    `json:"status"`
	Rule           string `json:"rule"`
	PolicyRevision string `json:"policy_revision"`
	BodyDigest     string `json:"body_digest"`
}

// TestDecisionLog: a real, hash-chained decision log behind a queue gets one record per check,
// with the decision, the agent and the body's digest, and never the body, a credential or a
// redacted query value. The file verifies once the queue is closed.
func TestDecisionLog(t *testing.T) {
	store, snap := servertest.DemoStore(t, upstreamToken)
	path := filepath.Join(t.TempDir(), "decisions.log")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q := audit.NewQueue(l, audit.QueueOptions{})
	closed := false
	defer func() {
		if !closed {
			q.Close()
		}
	}()
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", Store: store, Decisions: q,
		RedactQuery: redact.NewQuery("limit", "token"),
	})
	client := servertest.Client(t, srv)

	const (
		bodySentinel  = "SENTINEL-body-text-5e0a41"
		querySentinel = "SENTINEL-query-value-77d2e9"
		limitValue    = "83"
	)
	body := `{"body":"` + bodySentinel + `"}`
	sum := sha256.Sum256([]byte(body))
	agentAuth := map[string]string{"authorization": "Bearer " + agentToken, "cookie": "session=" + agentToken}
	type expect struct {
		req                              extauthz.HTTPRequest
		outcome, code, rule, agent, path string
		status                           int
		digest                           string
	}
	cases := []expect{
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: agentAuth},
			outcome: "allow", code: "allowed", rule: "get-ticket", agent: helpdesk, path: "/v1/tickets/4711", status: 200},
		{req: extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711/comments",
			Headers: map[string]string{"content-type": "application/json", "authorization": "Bearer " + agentToken}, Body: body},
			outcome: "allow", code: "allowed", rule: "comment-ticket", agent: helpdesk, path: "/v1/tickets/4711/comments", status: 200,
			digest: "sha256:" + hex.EncodeToString(sum[:])},
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?status=open&limit=" + limitValue, Headers: agentAuth},
			outcome: "allow", code: "allowed", rule: "list-tickets", agent: helpdesk, path: "/v1/tickets?status=open&limit=" + redact.Marker, status: 200},
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?token=" + querySentinel + "&status=open"},
			outcome: "deny", code: "query_invalid", rule: "list-tickets", agent: helpdesk, path: "/v1/tickets?token=" + redact.Marker + "&status=open", status: 400},
		// Spellings a reader may take for the same name: case, ";" and percent-encoding.
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?Token=" + querySentinel + "&status=open"},
			outcome: "deny", code: "query_invalid", rule: "list-tickets", agent: helpdesk, path: "/v1/tickets?Token=" + redact.Marker + "&status=open", status: 400},
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?status=open;token=" + querySentinel},
			outcome: "deny", code: "query_invalid", agent: helpdesk, path: "/v1/tickets?status=open;token=" + redact.Marker, status: 400},
		{req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?%54oken=" + querySentinel},
			outcome: "deny", code: "query_invalid", rule: "list-tickets", agent: helpdesk, path: "/v1/tickets?%54oken=" + redact.Marker, status: 400},
		{req: extauthz.HTTPRequest{Principal: bi, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: agentAuth},
			outcome: "deny", code: "scope_missing", rule: "get-ticket", agent: bi, path: "/v1/tickets/4711", status: 403},
		{req: extauthz.HTTPRequest{Principal: "spiffe://acme.internal/agent/stranger", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"},
			outcome: "deny", code: "agent_unknown", agent: "spiffe://acme.internal/agent/stranger", path: "/v1/tickets/4711", status: 403},
		{req: extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: agentAuth},
			outcome: "deny", code: "identity_missing", path: "/v1/tickets/4711", status: 401},
	}
	byID := map[string]expect{}
	sawUpstreamToken := false
	for _, c := range cases {
		resp, err := client.Check(ctxFor(t, 10*time.Second), c.req.CheckRequest())
		if err != nil {
			t.Fatalf("Check %s: %v", c.req.Path, err)
		}
		a, err := servertest.Read(resp)
		if err != nil {
			t.Fatal(err)
		}
		if a.Code != c.code || a.Status != c.status {
			t.Fatalf("Check %s %s = %+v, want %s %d", c.req.Principal, c.req.Path, a, c.code, c.status)
		}
		// The answer (problem details, headers, metadata) names an offending parameter, never
		// its value.
		if strings.Contains(resp.String(), querySentinel) {
			t.Errorf("the answer to %s echoes the query value: %v", c.req.Path, resp)
		}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			sawUpstreamToken = sawUpstreamToken || strings.Contains(h.GetHeader().GetValue(), upstreamToken)
		}
		byID[a.DecisionID] = c
	}
	if !sawUpstreamToken {
		t.Fatal("no allow injected the upstream credential: the test would not notice it leaking")
	}
	if err := q.Close(); err != nil {
		t.Fatalf("closing the queue: %v", err)
	}
	closed = true

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{upstreamToken, agentToken, bodySentinel, querySentinel, "limit=" + limitValue} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the decision log contains %q", secret)
		}
	}
	n, head, err := audit.Verify(bytes.NewReader(data), audit.VerifyOptions{})
	if err != nil || n != len(cases) || !audit.IsHash(head) {
		t.Errorf("audit.Verify = %d records, head %q, %v; want %d records", n, head, err, len(cases))
	}

	sc := bufio.NewScanner(bytes.NewReader(data))
	seen := map[string]bool{}
	for sc.Scan() {
		var rec logRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		c, ok := byID[rec.ID]
		if !ok || seen[rec.ID] {
			t.Errorf("record for decision %q: unknown or repeated: %s", rec.ID, sc.Text())
			continue
		}
		seen[rec.ID] = true
		want := logRecord{Kind: "decision", ID: rec.ID, Agent: c.agent, Host: "helpdesk.acme.internal", Method: c.req.Method,
			Path: c.path, Outcome: c.outcome, Code: c.code, Status: c.status, Rule: c.rule, PolicyRevision: snap.Revision(), BodyDigest: c.digest}
		if want.Method == "" {
			want.Method = "GET"
		}
		if rec != want {
			t.Errorf("record for %s %s:\n got %+v\nwant %+v", c.req.Principal, c.req.Path, rec, want)
		}
	}
	if len(seen) != len(cases) {
		t.Errorf("%d decisions recorded, want %d", len(seen), len(cases))
	}
}
