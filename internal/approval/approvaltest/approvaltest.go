// Package approvaltest runs a real agentauthz server (gRPC and HTTP on loopback, started by
// servertest) with an approval gate and the approval API, over the approval tests' policy
// (testdata/policy), for the tests of the gate, the API and the stores: an agent's requests go
// in as Envoy sends them, approvers call the API, and every decision and approval event is
// written to a hash-chained decision log that is verified when the test ends.
package approvaltest

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The test policy, testdata/policy/approvals.yaml: two agents with the same scopes on
// api.example.test, whose credential is APIToken.
const (
	Payer    = "spiffe://example.test/agent/payer"
	Other    = "spiffe://example.test/agent/other"
	APIHost  = "api.example.test"
	APIToken = "SENTINEL-api-token-5e1f"
)

// The approvers' tokens: alice of it-admins and finance, bob of sales, carol of no group. The
// policy names group:it-admins and user:carol on password resets of root, group:finance on
// large transfers, user:carol on deletes.
const (
	AliceToken = "alice-token"
	BobToken   = "bob-token"
	CarolToken = "carol-token"
)

// Approvers authenticates AliceToken, BobToken and CarolToken.
func Approvers() *signin.Tokens {
	return signin.NewTokens(map[string]approval.Approver{
		AliceToken: {Name: "alice", Groups: []string{"it-admins", "finance"}},
		BobToken:   {Name: "bob", Groups: []string{"sales"}},
		CarolToken: {Name: "carol"},
	})
}

// IDPattern is the form of an approval id.
var IDPattern = regexp.MustCompile(`^apr_[a-z2-7]{26}$`)

//go:embed testdata/policy
var testdata embed.FS

// Clock is the injected time of the gate and the API.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts at 2026-03-01T12:00:00Z.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Harness is a real server (gRPC and HTTP on loopback) serving the test policy with a gate and
// the approval API, recording decisions and approval events in an audit log file.
type Harness struct {
	T      *testing.T
	Clock  *Clock
	Store  approval.Store
	Gate   *approval.Gate
	Client authv3.AuthorizationClient
	// Base is the HTTP listener's URL, http://host:port.
	Base    string
	LogPath string

	mu        sync.Mutex
	announced []approval.Approval
	decided   []approval.Approval
}

// Options are what a test may change.
type Options struct {
	// Store keeps the approvals; nil means a memory store.
	Store approval.Store
	// Auth authenticates approvers; nil means Approvers().
	Auth api.Authenticator
	// Timeout is the check timeout; 0 means the server's default.
	Timeout time.Duration
}

// Start loads the test policy and starts the server. It sets the environment, so the test must
// not be parallel.
func Start(t *testing.T, o Options) *Harness {
	t.Helper()
	t.Setenv("APPROVAL_TEST_API_TOKEN", APIToken)
	sub, err := fs.Sub(testdata, "testdata/policy")
	if err != nil {
		t.Fatal(err)
	}
	files, err := policy.ReadFS(sub, ".")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatalf("the test policy: %v", err)
	}
	pol := &policy.Store{}
	pol.Swap(snap)
	if o.Store == nil {
		o.Store = memstore.New()
	}
	if o.Auth == nil {
		o.Auth = Approvers()
	}
	h := &Harness{T: t, Clock: NewClock(), Store: o.Store, LogPath: filepath.Join(t.TempDir(), "decisions.log")}
	log, err := audit.Open(h.LogPath, audit.Options{SyncEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := log.Close(); err != nil {
			t.Errorf("closing the decision log: %v", err)
		}
		h.VerifyLog()
	})
	h.Gate = &approval.Gate{Store: o.Store, Clock: h.Clock.Now, Events: log, Announce: func(a approval.Approval) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.announced = append(h.announced, a)
	}}
	a := &api.API{Store: o.Store, Auth: o.Auth, Clock: h.Clock.Now, Events: log, Decided: func(a approval.Approval) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.decided = append(h.decided, a)
	}}
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: pol, Decisions: log,
		Approvals: h.Gate, APIHandler: a.Register, CheckTimeout: o.Timeout,
	})
	h.Client = servertest.Client(t, srv)
	h.Base = "http://" + srv.HTTPAddr().String()
	return h
}

// Announced returns the approvals the gate announced so far, in order.
func (h *Harness) Announced() []approval.Approval {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]approval.Approval(nil), h.announced...)
}

// Decided returns the approvals the API reported decided so far, in order.
func (h *Harness) Decided() []approval.Approval {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]approval.Approval(nil), h.decided...)
}

// VerifyLog checks the decision log's chain and that no record carries a secret.
func (h *Harness) VerifyLog() {
	h.T.Helper()
	data, err := os.ReadFile(h.LogPath)
	if err != nil {
		h.T.Fatal(err)
	}
	if _, _, err := audit.Verify(bytes.NewReader(data), audit.VerifyOptions{}); err != nil {
		h.T.Errorf("the decision log does not verify: %v", err)
	}
	for _, s := range []string{APIToken, AliceToken, "hunter2"} {
		if bytes.Contains(data, []byte(s)) {
			h.T.Errorf("the decision log contains %q", s)
		}
	}
}

// Events returns the approval events of the log so far, in order.
func (h *Harness) Events() []map[string]any {
	h.T.Helper()
	f, err := os.Open(h.LogPath)
	if err != nil {
		h.T.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			h.T.Fatalf("decision log line %q: %v", sc.Text(), err)
		}
		if k, _ := rec["kind"].(string); strings.HasPrefix(k, "approval.") {
			out = append(out, rec)
		}
	}
	return out
}

// Answer is what the agent gets.
type Answer struct {
	Allow   bool
	Status  int
	Code    string
	Problem map[string]any
	Set     map[string]string
	Removed []string
}

// ID is the approval id the answer names.
func (a Answer) ID() string { s, _ := a.Problem["approval_id"].(string); return s }

// State is the approval state the answer names.
func (a Answer) State() string { s, _ := a.Problem["approval_state"].(string); return s }

// Detail is the problem's detail.
func (a Answer) Detail() string { s, _ := a.Problem["detail"].(string); return s }

func (a Answer) String() string {
	if a.Allow {
		return "allow"
	}
	b, _ := json.Marshal(a.Problem)
	return string(b)
}

// Request is one request through Envoy.
type Request struct {
	Agent, Method, Path, Body string
	Headers                   map[string]string
	// Raw sends the headers as header_map entries, with the Extra lines appended.
	Raw   bool
	Extra [][2]string
}

// Transfer is a transfer with the given JSON body, with the approval header if an id is given.
func Transfer(agent, body string, approvalID ...string) Request {
	r := Request{Agent: agent, Method: "POST", Path: "/v1/transfers", Body: body,
		Headers: map[string]string{"content-type": "application/json", "authorization": "Bearer agent-own"}}
	if len(approvalID) > 0 {
		r.Headers[approval.Header] = approvalID[0]
	}
	return r
}

// Reset is a password reset of user, with the approval header if an id is given.
func Reset(agent, user string, approvalID ...string) Request {
	r := Request{Agent: agent, Method: "POST", Path: "/v1/users/" + user + "/reset", Headers: map[string]string{}}
	if len(approvalID) > 0 {
		r.Headers[approval.Header] = approvalID[0]
	}
	return r
}

// Payout is a payout of id, a route that holds at most two requests of an agent and three in
// all at once, with the approval header if an id is given.
func Payout(agent, id string, approvalID ...string) Request {
	r := Request{Agent: agent, Method: "POST", Path: "/v1/payouts/" + id, Headers: map[string]string{}}
	if len(approvalID) > 0 {
		r.Headers[approval.Header] = approvalID[0]
	}
	return r
}

// CheckRequest is r as Envoy asks about it.
func (r Request) CheckRequest() *authv3.CheckRequest {
	cr := extauthz.HTTPRequest{Principal: r.Agent, Method: r.Method, Host: APIHost, Path: r.Path,
		Headers: r.Headers, Body: r.Body}.CheckRequest()
	if r.Raw {
		extauthz.RawHeaders(cr)
		hm := cr.GetAttributes().GetRequest().GetHttp().GetHeaderMap()
		for _, kv := range r.Extra {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
	}
	return cr
}

// Check asks the server about r, as Envoy does.
func (h *Harness) Check(r Request) Answer {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.Client.Check(ctx, r.CheckRequest())
	if err != nil {
		h.T.Fatalf("Check: %v", err)
	}
	return ReadAnswer(h.T, resp)
}

// ReadAnswer reads a CheckResponse as the agent gets it, checking that a denial's problem
// agrees with its status and carries no secret.
func ReadAnswer(t *testing.T, resp *authv3.CheckResponse) Answer {
	t.Helper()
	if ok := resp.GetOkResponse(); ok != nil {
		a := Answer{Allow: true, Status: 200, Code: "allowed", Set: map[string]string{}, Removed: ok.GetHeadersToRemove()}
		for _, hv := range ok.GetHeaders() {
			a.Set[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		return a
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("no http_response: %v", resp)
	}
	a := Answer{Status: int(d.GetStatus().GetCode())}
	if err := json.Unmarshal([]byte(d.GetBody()), &a.Problem); err != nil {
		t.Fatalf("problem body: %v: %s", err, d.GetBody())
	}
	a.Code, _ = a.Problem["code"].(string)
	if st, _ := a.Problem["status"].(float64); int(st) != a.Status || decision.Code(a.Code).Status() != a.Status {
		t.Errorf("HTTP %d for problem %s", a.Status, d.GetBody())
	}
	for _, s := range []string{APIToken, "hunter2"} {
		if strings.Contains(d.GetBody(), s) {
			t.Errorf("a denial carries %q: %s", s, d.GetBody())
		}
	}
	return a
}

// Held checks a 428 and returns its approval id.
func (h *Harness) Held(r Request, state string) string {
	h.T.Helper()
	a := h.Check(r)
	if a.Status != 428 || a.Code != "approval_required" || a.State() != state || !IDPattern.MatchString(a.ID()) {
		h.T.Fatalf("%s %s: %v; want 428 approval_required, %s, with an approval id", r.Agent, r.Path, a, state)
	}
	if !strings.Contains(a.Detail(), approval.Header) || !strings.Contains(a.Detail(), a.ID()) {
		h.T.Errorf("the 428's detail does not tell the agent to retry with %s: %s", approval.Header, a.ID())
	}
	if _, err := time.Parse(time.RFC3339, StringOf(a.Problem["approval_expires_at"])); err != nil {
		h.T.Errorf("approval_expires_at: %v", err)
	}
	return a.ID()
}

// StringOf is v if it is a string, or "".
func StringOf(v any) string { s, _ := v.(string); return s }

// Want checks an answer's status and code.
func (h *Harness) Want(r Request, status int, code string) Answer {
	h.T.Helper()
	a := h.Check(r)
	if a.Status != status || a.Code != code {
		h.T.Fatalf("%s %s %s: %v; want %d %s", r.Agent, r.Method, r.Path, a, status, code)
	}
	return a
}

// Call makes an approval API call; token "" sends no Authorization.
func (h *Harness) Call(method, path, token, body string) (int, map[string]any) {
	h.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.Base+path, rd)
	if err != nil {
		h.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.T.Fatal(err)
	}
	if resp.Header.Get("cache-control") != "no-store" {
		h.T.Errorf("%s %s: cache-control %q, want no-store", method, path, resp.Header.Get("cache-control"))
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		h.T.Fatalf("%s %s: %d %v: %s", method, path, resp.StatusCode, err, data)
	}
	return resp.StatusCode, m
}

// Approve approves id with token, commenting "ok", and returns the status.
func (h *Harness) Approve(id, token string) int {
	h.T.Helper()
	status, _ := h.Call("POST", "/v1/approvals/"+id+"/approve", token, `{"comment":"ok"}`)
	return status
}
