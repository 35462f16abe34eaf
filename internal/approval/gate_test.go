package approval_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The test policy, testdata/policy/approvals.yaml: two agents with the same scopes on
// api.example.test, whose credential is apiToken.
const (
	payer    = "spiffe://example.test/agent/payer"
	other    = "spiffe://example.test/agent/other"
	apiHost  = "api.example.test"
	apiToken = "SENTINEL-api-token-5e1f"
)

var idPattern = regexp.MustCompile(`^apr_[a-z2-7]{26}$`)

// clock is the injected time of the gate and the API.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness is a real server (gRPC and HTTP on loopback) serving the test policy with a gate and
// the approval API, recording decisions and approval events in an audit log file.
type harness struct {
	t       *testing.T
	clock   *clock
	store   approval.Store
	gate    *approval.Gate
	client  authv3.AuthorizationClient
	base    string
	logPath string

	mu        sync.Mutex
	announced []approval.Approval
	decided   []approval.Approval
}

type options struct {
	store   approval.Store
	auth    approval.Authenticator
	timeout time.Duration
}

// start loads the test policy and starts the server. It sets the environment, so the test must
// not be parallel.
func start(t *testing.T, o options) *harness {
	t.Helper()
	t.Setenv("APPROVAL_TEST_API_TOKEN", apiToken)
	files, err := policy.ReadPath("testdata/policy")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatalf("the test policy: %v", err)
	}
	pol := &policy.Store{}
	pol.Swap(snap)
	if o.store == nil {
		o.store = approval.NewMemory()
	}
	if o.auth == nil {
		tokens, err := approval.ReadTokens(approversFile)
		if err != nil {
			t.Fatal(err)
		}
		o.auth = tokens
	}
	h := &harness{t: t, clock: newClock(), store: o.store, logPath: filepath.Join(t.TempDir(), "decisions.log")}
	log, err := audit.Open(h.logPath, audit.Options{SyncEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := log.Close(); err != nil {
			t.Errorf("closing the decision log: %v", err)
		}
		h.verifyLog()
	})
	h.gate = &approval.Gate{Store: o.store, Clock: h.clock.Now, Events: log, Announce: func(a approval.Approval) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.announced = append(h.announced, a)
	}}
	api := &approval.API{Store: o.store, Auth: o.auth, Clock: h.clock.Now, Events: log, Decided: func(a approval.Approval) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.decided = append(h.decided, a)
	}}
	srv, err := server.Start(server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: pol, Decisions: log,
		Approvals: h.gate, APIHandler: api.Register, CheckTimeout: o.timeout,
	})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = authv3.NewAuthorizationClient(conn)
	h.base = "http://" + srv.HTTPAddr().String()
	return h
}

// verifyLog checks the decision log's chain and that no record carries a secret.
func (h *harness) verifyLog() {
	h.t.Helper()
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, _, err := audit.Verify(bytes.NewReader(data), audit.VerifyOptions{}); err != nil {
		h.t.Errorf("the decision log does not verify: %v", err)
	}
	for _, s := range []string{apiToken, aliceToken, "hunter2"} {
		if bytes.Contains(data, []byte(s)) {
			h.t.Errorf("the decision log contains %q", s)
		}
	}
}

// events returns the approval events of the log so far, in order.
func (h *harness) events() []map[string]any {
	h.t.Helper()
	f, err := os.Open(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			h.t.Fatalf("decision log line %q: %v", sc.Text(), err)
		}
		if k, _ := rec["kind"].(string); strings.HasPrefix(k, "approval.") {
			out = append(out, rec)
		}
	}
	return out
}

// answer is what the agent gets.
type answer struct {
	allow   bool
	status  int
	code    string
	problem map[string]any
	set     map[string]string
	removed []string
}

func (a answer) id() string { s, _ := a.problem["approval_id"].(string); return s }

func (a answer) state() string { s, _ := a.problem["approval_state"].(string); return s }

func (a answer) detail() string { s, _ := a.problem["detail"].(string); return s }

func (a answer) String() string {
	if a.allow {
		return "allow"
	}
	b, _ := json.Marshal(a.problem)
	return string(b)
}

// request is one request through Envoy.
type request struct {
	agent, method, path, body string
	headers                   map[string]string
	// raw sends the headers as header_map entries, with the extra lines appended.
	raw   bool
	extra [][2]string
}

func transfer(agent, body string, approvalID ...string) request {
	r := request{agent: agent, method: "POST", path: "/v1/transfers", body: body,
		headers: map[string]string{"content-type": "application/json", "authorization": "Bearer agent-own"}}
	if len(approvalID) > 0 {
		r.headers[approval.Header] = approvalID[0]
	}
	return r
}

func reset(agent, user string, approvalID ...string) request {
	r := request{agent: agent, method: "POST", path: "/v1/users/" + user + "/reset", headers: map[string]string{}}
	if len(approvalID) > 0 {
		r.headers[approval.Header] = approvalID[0]
	}
	return r
}

func (r request) checkRequest() *authv3.CheckRequest {
	cr := extauthz.HTTPRequest{Principal: r.agent, Method: r.method, Host: apiHost, Path: r.path,
		Headers: r.headers, Body: r.body}.CheckRequest()
	if r.raw {
		extauthz.RawHeaders(cr)
		hm := cr.GetAttributes().GetRequest().GetHttp().GetHeaderMap()
		for _, kv := range r.extra {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
	}
	return cr
}

func (h *harness) check(r request) answer {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, r.checkRequest())
	if err != nil {
		h.t.Fatalf("Check: %v", err)
	}
	return readAnswer(h.t, resp)
}

func readAnswer(t *testing.T, resp *authv3.CheckResponse) answer {
	t.Helper()
	if ok := resp.GetOkResponse(); ok != nil {
		a := answer{allow: true, status: 200, code: "allowed", set: map[string]string{}, removed: ok.GetHeadersToRemove()}
		for _, hv := range ok.GetHeaders() {
			a.set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		return a
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("no http_response: %v", resp)
	}
	a := answer{status: int(d.GetStatus().GetCode())}
	if err := json.Unmarshal([]byte(d.GetBody()), &a.problem); err != nil {
		t.Fatalf("problem body: %v: %s", err, d.GetBody())
	}
	a.code, _ = a.problem["code"].(string)
	if st, _ := a.problem["status"].(float64); int(st) != a.status || decision.Code(a.code).Status() != a.status {
		t.Errorf("HTTP %d for problem %s", a.status, d.GetBody())
	}
	for _, s := range []string{apiToken, "hunter2"} {
		if strings.Contains(d.GetBody(), s) {
			t.Errorf("a denial carries %q: %s", s, d.GetBody())
		}
	}
	return a
}

// held checks a 428 and returns its approval id.
func (h *harness) held(r request, state string) string {
	h.t.Helper()
	a := h.check(r)
	if a.status != 428 || a.code != "approval_required" || a.state() != state || !idPattern.MatchString(a.id()) {
		h.t.Fatalf("%s %s: %v; want 428 approval_required, %s, with an approval id", r.agent, r.path, a, state)
	}
	if !strings.Contains(a.detail(), approval.Header) || !strings.Contains(a.detail(), a.id()) {
		h.t.Errorf("the 428's detail does not tell the agent to retry with %s: %s", approval.Header, a.id())
	}
	if _, err := time.Parse(time.RFC3339, stringOf(a.problem["approval_expires_at"])); err != nil {
		h.t.Errorf("approval_expires_at: %v", err)
	}
	return a.id()
}

func stringOf(v any) string { s, _ := v.(string); return s }

// want checks an answer's status and code.
func (h *harness) want(r request, status int, code string) answer {
	h.t.Helper()
	a := h.check(r)
	if a.status != status || a.code != code {
		h.t.Fatalf("%s %s %s: %v; want %d %s", r.agent, r.method, r.path, a, status, code)
	}
	return a
}

// call makes an approval API call; token "" sends no Authorization.
func (h *harness) call(method, path, token, body string) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.Header.Get("cache-control") != "no-store" {
		h.t.Errorf("%s %s: cache-control %q, want no-store", method, path, resp.Header.Get("cache-control"))
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		h.t.Fatalf("%s %s: %d %v: %s", method, path, resp.StatusCode, err, data)
	}
	return resp.StatusCode, m
}

func (h *harness) approve(id, token string) int {
	h.t.Helper()
	status, _ := h.call("POST", "/v1/approvals/"+id+"/approve", token, `{"comment":"ok"}`)
	return status
}

// TestGateWhen: a route's CEL condition decides which requests are held; one that cannot be
// evaluated holds the request.
func TestGateWhen(t *testing.T) {
	h := start(t, options{})
	for _, tc := range []struct {
		name string
		r    request
		held bool
	}{
		{"small transfer", transfer(payer, `{"amount":500,"to":"DE89"}`), false},
		{"at the limit", transfer(payer, `{"amount":1000,"to":"DE89"}`), false},
		{"large transfer", transfer(payer, `{"amount":1000.5,"to":"DE89"}`), true},
		{"large, spelled as an exponent", transfer(payer, `{"amount":2e3,"to":"DE89"}`), true},
		{"amount a string: the condition fails, the request is held", transfer(payer, `{"amount":"5","to":"DE89"}`), true},
		{"reset a user", reset(payer, "jdoe"), false},
		{"reset root", reset(payer, "root"), true},
	} {
		a := h.check(tc.r)
		switch {
		case tc.held && (a.status != 428 || a.code != "approval_required" || !idPattern.MatchString(a.id())):
			t.Errorf("%s: %v; want held", tc.name, a)
		case !tc.held && !a.allow:
			t.Errorf("%s: %v; want allowed", tc.name, a)
		case !tc.held && (a.set["authorization"] != "Bearer "+apiToken || slices.Contains(a.removed, approval.Header)):
			t.Errorf("%s: allowed with headers %v, removing %v", tc.name, a.set, a.removed)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.announced) != 4 {
		t.Errorf("announced %d held requests, want 4", len(h.announced))
	}
}

// TestGateOtherAgent: an approval covers one agent; another agent with the same scopes cannot
// use it, and trying does not spend it.
func TestGateOtherAgent(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89"}`
	id := h.held(transfer(payer, body), "pending")
	if got := h.held(transfer(other, body), "pending"); got == id {
		t.Fatal("another agent's identical request got the same approval")
	}
	h.want(transfer(other, body, id), 403, "approval_mismatch")
	if st := h.approve(id, aliceToken); st != 200 {
		t.Fatalf("approve: %d", st)
	}
	a := h.want(transfer(other, body, id), 403, "approval_mismatch")
	if a.id() != "" || strings.Contains(a.detail(), id) {
		t.Errorf("a mismatch reveals the approval to the other agent: %v", a)
	}
	h.want(transfer(payer, `{"amount":5001,"to":"DE89"}`, id), 403, "approval_mismatch")
	h.want(reset(payer, "root", id), 403, "approval_mismatch") // another rule
	if a := h.check(transfer(payer, body, id)); !a.allow {
		t.Fatalf("the approved agent's identical retry: %v", a)
	}
}

// TestGateAllow: the allowed retry carries the route's grant and removes the approval header;
// other requests on the host keep the grant as the policy wrote it.
func TestGateAllow(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89","note":"rent"}`
	id := h.held(transfer(payer, body), "pending")
	if h.approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	// The identical request without the header is still held, now saying it is approved.
	a := h.check(transfer(payer, body))
	if a.status != 428 || a.id() != id || a.state() != "approved" || !strings.Contains(a.detail(), "is approved") {
		t.Fatalf("identical request without the header after approval: %v", a)
	}
	// Member order and whitespace do not matter.
	a = h.check(transfer(payer, "{ \"note\": \"rent\", \"to\": \"DE89\", \"amount\": 5000.0 }", id))
	if !a.allow {
		t.Fatalf("approved retry: %v", a)
	}
	if a.set["authorization"] != "Bearer "+apiToken {
		t.Errorf("approved retry sets %v, want the injected credential", a.set)
	}
	if !slices.Equal(a.removed, []string{"cookie", approval.Header}) {
		t.Errorf("approved retry removes %v, want the host's cookie and %s", a.removed, approval.Header)
	}
	// The next approved request of the same route gets the same answer; a plain allow on the
	// host does not remove the approval header (the policy's grant is not modified).
	id2 := h.held(transfer(payer, `{"amount":6000,"to":"DE89"}`), "pending")
	if h.approve(id2, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	if a := h.check(transfer(payer, `{"amount":6000,"to":"DE89"}`, id2)); !a.allow || !slices.Equal(a.removed, []string{"cookie", approval.Header}) {
		t.Errorf("second approved retry: %v removing %v", a, a.removed)
	}
	if a := h.check(transfer(payer, `{"amount":10,"to":"DE89"}`)); !a.allow || !slices.Equal(a.removed, []string{"cookie"}) {
		t.Errorf("plain allow after approvals: %v removing %v", a, a.removed)
	}
	h.want(transfer(payer, body, id), 403, "approval_used")
}

// TestGateHeader: the approval header must be sent once and name an approval.
func TestGateHeader(t *testing.T) {
	h := start(t, options{})
	id := h.held(reset(payer, "root"), "pending")
	if h.approve(id, carolToken) != 200 {
		t.Fatal("approve failed")
	}
	twice := reset(payer, "root", id)
	twice.raw, twice.extra = true, [][2]string{{approval.Header, id}}
	h.want(twice, 400, "request_malformed")
	for _, bad := range []string{"", "apr_", strings.ToUpper(id), id + " ", " " + id, id + "," + id, "apr_aaaaaaaaaaaaaaaaaaaaaaaaa1",
		"01HZZZZZZZZZZZZZZZZZZZZZZZ", "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa' OR 1=1", strings.Repeat("a", 5000)} {
		a := h.want(reset(payer, "root", bad), 403, "approval_unknown")
		if a.id() != "" {
			t.Errorf("an unknown id %q is answered with approval %s", bad, a.id())
		}
	}
	h.want(reset(payer, "root", approval.NewID()), 403, "approval_unknown")
	// None of that spent the approval.
	if a := h.check(reset(payer, "root", id)); !a.allow {
		t.Errorf("approved retry after bad headers: %v", a)
	}
}

// TestGateExpiry: a pending approval lapses after approve_within, an approved one after
// use_within; both are then expired to the agent and to approvers.
func TestGateExpiry(t *testing.T) {
	h := start(t, options{})
	// reset: approve_within 10m, use_within 5m.
	a := h.check(reset(payer, "root"))
	id := a.id()
	if a.status != 428 || stringOf(a.problem["approval_expires_at"]) != "2026-03-01T12:10:00Z" {
		t.Fatalf("held: %v; want approval_expires_at 10 minutes on", a)
	}
	h.clock.Advance(10*time.Minute - time.Second)
	if got := h.held(reset(payer, "root"), "pending"); got != id {
		t.Errorf("just before expiry the identical request got %s, want %s", got, id)
	}
	h.clock.Advance(time.Second)
	if st, p := h.call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 410 || p["code"] != "expired" {
		t.Errorf("approving an expired request: %d %v; want 410", st, p)
	}
	if a := h.want(reset(payer, "root", id), 403, "approval_expired"); a.id() != id || a.state() != "expired" {
		t.Errorf("retry of an expired approval: %v", a)
	}
	if _, g := h.call("GET", "/v1/approvals/"+id, aliceToken, ""); g["state"] != "expired" {
		t.Errorf("GET an expired approval: state %v", g["state"])
	}
	id2 := h.held(reset(payer, "root"), "pending")
	if id2 == id {
		t.Fatal("after expiry, the identical request got the expired approval")
	}

	// Approved, then not used within use_within.
	if h.approve(id2, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	a = h.check(reset(payer, "root"))
	if a.id() != id2 || a.state() != "approved" || stringOf(a.problem["approval_expires_at"]) != "2026-03-01T12:15:00Z" {
		t.Errorf("identical request after approval: %v; want approved until 12:15", a)
	}
	h.clock.Advance(5 * time.Minute)
	h.want(reset(payer, "root", id2), 403, "approval_expired")
	if st, p := h.call("POST", "/v1/approvals/"+id2+"/deny", aliceToken, ""); st != 409 && st != 410 {
		t.Errorf("denying a lapsed approval: %d %v", st, p)
	}
	if id3 := h.held(reset(payer, "root"), "pending"); id3 == id2 || id3 == id {
		t.Error("after the approval lapsed, the identical request got an old approval")
	}
}

// TestGateDenied: a denied request's retry is refused with the approver's comment.
func TestGateDenied(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89"}`
	id := h.held(transfer(payer, body), "pending")
	comment := "x" + strings.Repeat("é", 200) + " \"quoted\" <b>" // 400+ bytes: clipped mid-character unless careful
	b, _ := json.Marshal(map[string]string{"comment": comment})
	if st, p := h.call("POST", "/v1/approvals/"+id+"/deny", aliceToken, string(b)); st != 200 || p["state"] != "denied" || p["comment"] != comment {
		t.Fatalf("deny: %d %v", st, p)
	}
	a := h.want(transfer(payer, body, id), 403, "approval_denied")
	if a.id() != id || a.state() != "denied" || !strings.Contains(a.detail(), strings.Repeat("é", 140)) || strings.Contains(a.detail(), "\ufffd") {
		t.Errorf("retry of a denied request: %v", a)
	}
	// The identical request without the header asks again: the denial does not hold it forever.
	if id2 := h.held(transfer(payer, body), "pending"); id2 == id {
		t.Error("the identical request after a denial got the denied approval")
	}
	h.want(transfer(payer, body, id), 403, "approval_denied")
}

// flakyStore is a Store whose operations can be made to fail or hang.
type flakyStore struct {
	approval.Store
	mu   sync.Mutex
	fail map[string]error
}

var errStore = errors.New("store unreachable")

func (s *flakyStore) set(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail = map[string]error{}
	}
	s.fail[op] = err
}

// errHang makes an operation wait for its context to end.
var errHang = errors.New("hang")

func (s *flakyStore) err(ctx context.Context, op string) error {
	s.mu.Lock()
	err := s.fail[op]
	s.mu.Unlock()
	if err == errHang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (s *flakyStore) Hold(ctx context.Context, a approval.Approval, now time.Time) (approval.Approval, bool, error) {
	if err := s.err(ctx, "hold"); err != nil {
		return a, true, err
	}
	return s.Store.Hold(ctx, a, now)
}

func (s *flakyStore) Get(ctx context.Context, id string, now time.Time) (approval.Approval, error) {
	if err := s.err(ctx, "get"); err != nil {
		return approval.Approval{}, err
	}
	return s.Store.Get(ctx, id, now)
}

func (s *flakyStore) List(ctx context.Context, st approval.State, now time.Time) ([]approval.Approval, error) {
	if err := s.err(ctx, "list"); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, st, now)
}

func (s *flakyStore) Decide(ctx context.Context, id string, v approval.Verdict, now time.Time) (approval.Approval, error) {
	if err := s.err(ctx, "decide"); err != nil {
		return approval.Approval{}, err
	}
	return s.Store.Decide(ctx, id, v, now)
}

func (s *flakyStore) Consume(ctx context.Context, id, agent, digest string, now time.Time) (approval.Approval, error) {
	if err := s.err(ctx, "consume"); err != nil {
		// What a careless store might return with its error: the approval, approved.
		a, _ := s.Store.Get(ctx, id, now)
		return a, err
	}
	return s.Store.Consume(ctx, id, agent, digest, now)
}

// TestGateStoreFailure: a store that cannot answer denies (503 internal_error), never allows,
// and an approval whose use failed stays usable.
func TestGateStoreFailure(t *testing.T) {
	store := &flakyStore{Store: approval.NewMemory()}
	h := start(t, options{store: store, timeout: 300 * time.Millisecond})
	body := `{"amount":5000,"to":"DE89"}`

	store.set("hold", errStore)
	h.want(transfer(payer, body), 503, "internal_error")
	store.set("hold", errHang)
	start := time.Now()
	h.want(transfer(payer, body), 503, "internal_error")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a hanging store held the check for %v", took)
	}
	store.set("hold", nil)
	id := h.held(transfer(payer, body), "pending")

	store.set("get", errStore)
	if st, p := h.call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 503 || p["code"] != "internal_error" {
		t.Errorf("approve with the store down: %d %v", st, p)
	}
	if st, _ := h.call("GET", "/v1/approvals/"+id, aliceToken, ""); st != 503 {
		t.Errorf("GET with the store down: %d", st)
	}
	store.set("get", nil)
	store.set("decide", errStore)
	if st, _ := h.call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 503 {
		t.Errorf("approve with Decide failing: %d", st)
	}
	store.set("decide", nil)
	store.set("list", errStore)
	if st, _ := h.call("GET", "/v1/approvals", aliceToken, ""); st != 503 {
		t.Errorf("list with the store down: %d", st)
	}
	store.set("list", nil)
	if h.approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}

	for _, err := range []error{errStore, errHang, context.Canceled, approval.ErrNotPending} {
		store.set("consume", err)
		if a := h.check(transfer(payer, body, id)); a.allow || a.status != 503 || a.code != "internal_error" {
			t.Errorf("consume failing with %v: %v; want 503 internal_error", err, a)
		}
	}
	store.set("consume", nil)
	if a := h.check(transfer(payer, body, id)); !a.allow {
		t.Errorf("the approval after the store recovered: %v", a)
	}
}

// TestGateEvents: each step of an approval's life is one event in the decision log's chain.
func TestGateEvents(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89","secret":"hunter2"}`
	id := h.held(transfer(payer, body), "pending")
	h.held(transfer(payer, body), "pending") // the same approval: no second event
	if h.approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	if a := h.check(transfer(payer, body, id)); !a.allow {
		t.Fatalf("retry: %v", a)
	}
	id2 := h.held(reset(payer, "root"), "pending")
	if st, _ := h.call("POST", "/v1/approvals/"+id2+"/deny", carolToken, `{"comment":"not today"}`); st != 200 {
		t.Fatal("deny failed")
	}
	var kinds []string
	for _, e := range h.events() {
		kinds = append(kinds, stringOf(e["kind"]))
		if e["approval_id"] != id && e["approval_id"] != id2 {
			t.Errorf("event without the approval id: %v", e)
		}
		switch e["kind"] {
		case "approval.requested", "approval.used":
			if e["agent"] != payer || e["host"] != apiHost || e["digest"] == "" {
				t.Errorf("event %v", e)
			}
		case "approval.approved":
			if e["by"] != "alice" || e["comment"] != "ok" {
				t.Errorf("event %v", e)
			}
		case "approval.denied":
			if e["by"] != "carol" || e["comment"] != "not today" || e["rule"] != "reset" {
				t.Errorf("event %v", e)
			}
		}
	}
	want := []string{"approval.requested", "approval.approved", "approval.used", "approval.requested", "approval.denied"}
	if !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
	h.verifyLog()
}

// TestResolve: Resolve leaves every decision but a policy's hold as it is.
func TestResolve(t *testing.T) {
	g := &approval.Gate{Store: &flakyStore{Store: approval.NewMemory(), fail: map[string]error{"hold": errStore, "consume": errStore}}}
	r := &policy.Request{Method: "GET", Host: apiHost, Target: "/", Headers: noHeaders{}}
	for _, d := range []decision.Decision{
		{Outcome: decision.Allow, Code: decision.CodeAllowed, Rule: "x"},
		decision.Denied(decision.CodeScopeMissing, "no"),
		{Code: decision.CodeApprovalRequired, Rule: "x"}, // no Hold: nothing to hold it with
	} {
		got := g.Resolve(context.Background(), r, d)
		if got.Outcome != d.Outcome || got.Code != d.Code || got.Approval != nil {
			t.Errorf("Resolve(%v) = %v", d, got)
		}
	}
}

type noHeaders struct{}

func (noHeaders) Get(string) (string, int) { return "", 0 }
