package extauthz_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// The demo's approvers in these tests: alice of it-admins, who may approve password resets,
// and bob of helpdesk-leads, who may not.
const (
	aliceToken = "SENTINEL-alice-approver-token"
	bobToken   = "SENTINEL-bob-approver-token"
)

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// approvalServer is the demo served as `agentauthz serve` serves it: the gate on the gRPC
// listener, the approval API on the HTTP listener, decisions and approval events in one log.
type approvalServer struct {
	t       *testing.T
	client  authv3.AuthorizationClient
	base    string
	clock   *approvaltest.Clock
	logPath string
}

func startApprovals(t *testing.T) *approvalServer {
	t.Helper()
	store, _ := servertest.DemoStore(t, helpdeskToken)
	dir := t.TempDir()
	approvers := filepath.Join(dir, "approvers.yaml")
	if err := os.WriteFile(approvers, []byte("approvers:\n"+
		"  - name: alice\n    groups: [it-admins]\n    token_sha256: "+tokenHash(aliceToken)+"\n"+
		"  - name: bob\n    groups: [helpdesk-leads]\n    token_sha256: "+tokenHash(bobToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := signin.ReadTokens(approvers)
	if err != nil {
		t.Fatalf("ReadTokens: %v", err)
	}
	s := &approvalServer{t: t, clock: approvaltest.NewClock(),
		logPath: filepath.Join(dir, "decisions.log")}
	log, err := audit.Open(s.logPath, audit.Options{SyncEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := log.Close(); err != nil {
			t.Error(err)
		}
	})
	mem := memstore.New()
	approvals := &api.API{Store: mem, Auth: signin.Chain{tokens}, Clock: s.clock.Now, Events: log}
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store, Decisions: log,
		Approvals:  &approval.Gate{Store: mem, Clock: s.clock.Now, Events: log},
		APIHandler: approvals.Register,
	})
	s.client = servertest.Client(t, srv)
	s.base = "http://" + srv.HTTPAddr().String()
	return s
}

// resetBody is the contract's password reset body.
const resetBody = `{"reason":"User locked out after travel","notify_user":true}`

// resetRequest is the helpdesk agent's password reset of user, retried with approval id if
// one is given.
func resetRequest(principal, user, body string, id ...string) *authv3.CheckRequest {
	h := map[string]string{"content-type": "application/json", "authorization": "Bearer agent-own-token"}
	if len(id) > 0 {
		h[approval.Header] = id[0]
	}
	return extauthz.HTTPRequest{Principal: principal, Method: "POST", Host: "helpdesk.acme.internal",
		Path: "/v1/users/" + user + "/password-reset", Headers: h, Body: body}.CheckRequest()
}

// held is one answer with its problem's approval members.
type heldAnswer struct {
	*want
	id, state, expires, detail string
}

func (s *approvalServer) check(req *authv3.CheckRequest) heldAnswer {
	s.t.Helper()
	resp, err := s.client.Check(ctxFor(s.t), req)
	if err != nil {
		s.t.Fatalf("Check: %v", err)
	}
	a := heldAnswer{want: answer(s.t, req, resp)} // checks every answer's invariants
	if body := resp.GetDeniedResponse().GetBody(); body != "" {
		var p struct {
			ID      string `json:"approval_id"`
			State   string `json:"approval_state"`
			Expires string `json:"approval_expires_at"`
			Detail  string `json:"detail"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			s.t.Fatal(err)
		}
		a.id, a.state, a.expires, a.detail = p.ID, p.State, p.Expires, p.Detail
		for _, secret := range []string{aliceToken, bobToken} {
			if strings.Contains(body, secret) {
				s.t.Errorf("a denial carries an approver's token: %s", body)
			}
		}
	}
	return a
}

// expect checks an answer's status and code.
func (s *approvalServer) expect(what string, req *authv3.CheckRequest, status int, code string) heldAnswer {
	s.t.Helper()
	a := s.check(req)
	if a.Status != status || a.Code != code {
		s.t.Fatalf("%s: %d %s (%s); want %d %s", what, a.Status, a.Code, a.detail, status, code)
	}
	return a
}

// hold checks a 428 for a pending approval and returns its id.
func (s *approvalServer) hold(what string, req *authv3.CheckRequest) string {
	s.t.Helper()
	a := s.expect(what, req, 428, "approval_required")
	if a.state != "pending" || !approvalIDPattern.MatchString(a.id) || a.Rule != "reset-password" {
		s.t.Fatalf("%s: approval %q in state %q by rule %q", what, a.id, a.state, a.Rule)
	}
	if !strings.Contains(a.detail, "retry") && !strings.Contains(a.detail, "send the identical request again") ||
		!strings.Contains(a.detail, approval.Header+": "+a.id) {
		s.t.Errorf("%s: the detail does not tell the agent to retry with %s: %s", what, approval.Header, a.detail)
	}
	exp, err := time.Parse(time.RFC3339, a.expires)
	if err != nil || !exp.Equal(s.clock.Now().Add(15*time.Minute)) {
		s.t.Errorf("%s: approval_expires_at %q, want 15 minutes from now (%v)", what, a.expires, s.clock.Now())
	}
	return a.id
}

// call makes an approval API call; token "" sends no Authorization.
func (s *approvalServer) call(method, path, token, body string) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxFor(s.t), method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("content-type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		s.t.Fatalf("%s %s: %d: %v\n%s", method, path, resp.StatusCode, err, data)
	}
	return resp.StatusCode, m
}

func (s *approvalServer) decide(verb, id, token, comment string) (int, map[string]any) {
	s.t.Helper()
	body := ""
	if comment != "" {
		b, _ := json.Marshal(map[string]string{"comment": comment})
		body = string(b)
	}
	return s.call("POST", "/v1/approvals/"+id+"/"+verb, token, body)
}

// listed returns the ids GET /v1/approvals?state=STATE lists.
func (s *approvalServer) listed(state string) []string {
	s.t.Helper()
	st, body := s.call("GET", "/v1/approvals?state="+state, aliceToken, "")
	if st != 200 {
		s.t.Fatalf("list %s: %d %v", state, st, body)
	}
	list, _ := body["approvals"].([]any)
	ids := []string{}
	for _, x := range list {
		a, _ := x.(map[string]any)
		if a["state"] != state {
			s.t.Errorf("list %s shows %v in state %v", state, a["id"], a["state"])
		}
		ids = append(ids, a["id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// TestApprovalFlow is the demo's approval flow (the contract's approval-flow.yaml and more),
// through the gRPC service Envoy calls and the HTTP API approvers call.
func TestApprovalFlow(t *testing.T) {
	const helpdesk, bi = "spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"
	s := startApprovals(t)

	// Held: 428 with the approval the agent retries with.
	a := s.hold("password reset", resetRequest(helpdesk, "jdoe", resetBody))
	if got := s.hold("identical request", resetRequest(helpdesk, "jdoe", resetBody)); got != a {
		t.Fatalf("the identical pending request got approval %s, want %s", got, a)
	}
	for _, body := range []string{
		`{"notify_user":true,"reason":"User locked out after travel"}`,
		"{\n  \"reason\" : \"User locked out after travel\",\n  \"notify_user\" : true\n}\n",
		`{"reason":"User locked out \u0061fter travel","notify_user":true}`,
	} {
		if got := s.hold("the same body spelled differently", resetRequest(helpdesk, "jdoe", body)); got != a {
			t.Errorf("the same body spelled %s got approval %s, want %s", body, got, a)
		}
	}
	if r := s.expect("retry while pending", resetRequest(helpdesk, "jdoe", resetBody, a), 428, "approval_required"); r.id != a || r.state != "pending" {
		t.Errorf("retry while pending: approval %s %s, want %s pending", r.id, r.state, a)
	}

	// Approving takes an approver of the route.
	for _, tc := range []struct {
		token  string
		status int
		code   string
	}{
		{"", 401, "unauthenticated"},
		{"not-a-real-token", 401, "unauthenticated"},
		{tokenHash(aliceToken), 401, "unauthenticated"},
		{bobToken, 403, "forbidden"},
	} {
		if st, p := s.decide("approve", a, tc.token, "checked"); st != tc.status || p["code"] != tc.code {
			t.Errorf("approve with %q: %d %v; want %d %s", tc.token, st, p, tc.status, tc.code)
		}
	}
	if st, p := s.decide("approve", a, aliceToken, "checked with the user"); st != 200 || p["state"] != "approved" || p["decided_by"] != "alice" {
		t.Fatalf("alice approves: %d %v", st, p)
	}
	if st, _ := s.decide("deny", a, aliceToken, ""); st != 409 {
		t.Errorf("deny after approval: %d, want 409", st)
	}

	// The approval covers this agent's identical request only.
	s.expect("different body", resetRequest(helpdesk, "jdoe", `{"reason":"User locked out after travel","notify_user":false}`, a), 403, "approval_mismatch")
	s.expect("different user", resetRequest(helpdesk, "root", resetBody, a), 403, "approval_mismatch")
	if r := s.check(resetRequest(bi, "jdoe", resetBody, a)); r.Allow || r.Status != 403 {
		t.Errorf("the bi agent with the helpdesk agent's approval: %+v; want a 403 deny", r.want)
	}
	twice := resetRequest(helpdesk, "jdoe", resetBody, a)
	extauthz.RawHeaders(twice)
	hm := twice.GetAttributes().GetRequest().GetHttp().GetHeaderMap()
	hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: approval.Header, RawValue: []byte(a)})
	s.expect("the approval header twice", twice, 400, "request_malformed")

	// The identical retry passes once, with the upstream's credential and without the header.
	r := s.check(resetRequest(helpdesk, "jdoe", "{ \"notify_user\": true, \"reason\": \"User locked out after travel\" }", a))
	if !r.Allow || r.Rule != "reset-password" {
		t.Fatalf("the identical retry: %+v (%s); want allow", r.want, r.detail)
	}
	if !slices.Contains(r.HeadersRemoved, approval.Header) || r.HeadersSet["authorization"] != "Bearer "+helpdeskToken {
		t.Errorf("the allowed retry removes %v and sets %v", r.HeadersRemoved, r.HeadersSet)
	}
	if _, leaked := r.Upstream[approval.Header]; leaked || r.Upstream["authorization"] != "Bearer "+helpdeskToken {
		t.Errorf("the upstream sees %v", r.Upstream)
	}
	if r := s.expect("used again", resetRequest(helpdesk, "jdoe", resetBody, a), 403, "approval_used"); r.id != a || r.state != "used" {
		t.Errorf("used again: approval %s %s", r.id, r.state)
	}
	s.expect("an invented id", resetRequest(helpdesk, "jdoe", resetBody, approval.NewID()), 403, "approval_unknown")
	s.expect("a malformed id", resetRequest(helpdesk, "jdoe", resetBody, "01HZZZZZZZZZZZZZZZZZZZZZZZ"), 403, "approval_unknown")
	s.expect("an empty id", resetRequest(helpdesk, "jdoe", resetBody, ""), 403, "approval_unknown")

	// After use, the identical request asks anew.
	c := s.hold("identical request after use", resetRequest(helpdesk, "jdoe", resetBody))
	if c == a {
		t.Fatal("after use, the identical request got the used approval")
	}
	const why = "Ask the user to call the service desk first."
	if st, p := s.decide("deny", c, aliceToken, why); st != 200 || p["state"] != "denied" {
		t.Fatalf("deny: %d %v", st, p)
	}
	if r := s.expect("denied", resetRequest(helpdesk, "jdoe", resetBody, c), 403, "approval_denied"); !strings.Contains(r.detail, why) || r.id != c {
		t.Errorf("the denial's detail does not quote the comment: %s", r.detail)
	}

	// Expiry: a pending approval after approve_within, an approved one after use_within.
	d := s.hold("to expire pending", resetRequest(helpdesk, "asmith", resetBody))
	e := s.hold("to expire approved", resetRequest(helpdesk, "bjones", resetBody))
	if st, _ := s.decide("approve", e, aliceToken, ""); st != 200 {
		t.Fatal("approve failed")
	}
	s.clock.Advance(15 * time.Minute)
	if st, p := s.decide("approve", d, aliceToken, ""); st != 410 || p["code"] != "expired" {
		t.Errorf("approving after approve_within: %d %v; want 410", st, p)
	}
	s.expect("pending, expired", resetRequest(helpdesk, "asmith", resetBody, d), 403, "approval_expired")
	s.expect("approved, expired unused", resetRequest(helpdesk, "bjones", resetBody, e), 403, "approval_expired")
	d2 := s.hold("identical request after expiry", resetRequest(helpdesk, "asmith", resetBody))
	if d2 == d {
		t.Error("after expiry, the identical request got the expired approval")
	}
	f := s.hold("one to approve", resetRequest(helpdesk, "cdoe", resetBody))
	if st, _ := s.decide("approve", f, aliceToken, ""); st != 200 {
		t.Fatal("approve failed")
	}

	// Approvers list by state and see each request in full.
	for state, want := range map[string][]string{
		"pending": {d2}, "approved": {f}, "denied": {c}, "expired": sorted(d, e), "used": {a},
	} {
		if got := s.listed(state); !slices.Equal(got, want) {
			t.Errorf("state=%s lists %v, want %v", state, got, want)
		}
	}
	if st, p := s.call("GET", "/v1/approvals?state=stale", aliceToken, ""); st != 400 || p["code"] != "bad_state" {
		t.Errorf("a bad state: %d %v; want 400", st, p)
	}
	st, g := s.call("GET", "/v1/approvals/"+a, aliceToken, "")
	if st != 200 {
		t.Fatalf("GET %s: %d %v", a, st, g)
	}
	for k, v := range map[string]any{
		"id": a, "state": "used", "agent": helpdesk, "method": "POST", "host": "helpdesk.acme.internal",
		"path": "/v1/users/jdoe/password-reset", "rule": "reset-password", "decided_by": "alice",
		"reason":  "A password reset locks the user out of every session.",
		"body":    "{\n  \"notify_user\": true,\n  \"reason\": \"User locked out after travel\"\n}",
		"comment": "checked with the user",
	} {
		if g[k] != v {
			t.Errorf("GET %s: %s = %q, want %q", a, k, g[k], v)
		}
	}
	if st, _ := s.call("GET", "/v1/approvals/"+approval.NewID(), aliceToken, ""); st != 404 {
		t.Errorf("GET an unknown approval: %d", st)
	}

	// Every step is in the decision log's chain.
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.Verify(bytes.NewReader(data), audit.VerifyOptions{}); err != nil {
		t.Errorf("the decision log does not verify: %v", err)
	}
	kinds := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var rec struct {
			Kind string `json:"kind"`
			ID   string `json:"approval_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		kinds[rec.ID] = append(kinds[rec.ID], rec.Kind)
	}
	for id, want := range map[string][]string{
		a: {"approval.requested", "approval.approved", "approval.used"},
		c: {"approval.requested", "approval.denied"},
		d: {"approval.requested"},
		e: {"approval.requested", "approval.approved"},
	} {
		if !slices.Equal(kinds[id], want) {
			t.Errorf("events of %s: %v, want %v", id, kinds[id], want)
		}
	}
	for _, secret := range []string{aliceToken, bobToken, helpdeskToken, "agent-own-token"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the decision log contains %q", secret)
		}
	}
}

// TestApprovalConcurrentRetries: fifty identical retries of one approved request at the same
// instant let exactly one through.
func TestApprovalConcurrentRetries(t *testing.T) {
	const helpdesk = "spiffe://acme.internal/agent/helpdesk"
	s := startApprovals(t)
	id := s.hold("password reset", resetRequest(helpdesk, "jdoe", resetBody))
	if st, _ := s.decide("approve", id, aliceToken, ""); st != 200 {
		t.Fatal("approve failed")
	}
	const n = 50
	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
		go1   = make(chan struct{})
		mu    sync.Mutex
		codes = map[string]int{}
	)
	ready.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := resetRequest(helpdesk, "jdoe", resetBody, id)
			ready.Done()
			<-go1
			resp, err := s.client.Check(ctxFor(t), req)
			if err != nil {
				t.Errorf("Check: %v", err)
				return
			}
			code := resp.GetDynamicMetadata().GetFields()["code"].GetStringValue()
			if resp.GetOkResponse() != nil {
				code = "allow"
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	ready.Wait()
	close(go1)
	wg.Wait()
	if codes["allow"] != 1 || codes["approval_used"] != n-1 || len(codes) != 2 {
		t.Errorf("%d identical retries: %v; want 1 allow and %d approval_used", n, codes, n-1)
	}
}

// TestApproverNotAWorkload: an approvers file naming a SPIFFE ID does not load.
func TestApproverNotAWorkload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "approvers.yaml")
	if err := os.WriteFile(p, []byte("approvers:\n  - name: spiffe://acme.internal/agent/helpdesk\n    groups: [it-admins]\n    token_sha256: "+
		tokenHash("x")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := signin.ReadTokens(p); err == nil || !strings.Contains(err.Error(), "workload identity") {
		t.Errorf("ReadTokens of an approvers file naming the helpdesk agent: %v", err)
	}
}

// TestNoApprovalStore: a policy that holds requests, served without a gate, refuses them as
// a failure to decide, never allows them.
func TestNoApprovalStore(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store})
	client := servertest.Client(t, srv)
	req := resetRequest("spiffe://acme.internal/agent/helpdesk", "jdoe", resetBody)
	resp, err := client.Check(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := answer(t, req, resp); got.Allow || got.Status != 503 || got.Code != "internal_error" {
		t.Errorf("held request without an approval store: %+v; want 503 internal_error", got)
	}
}
