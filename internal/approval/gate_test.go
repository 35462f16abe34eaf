package approval_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The server, policy, agents and approvers of the tests (approvaltest).
const (
	payer      = approvaltest.Payer
	other      = approvaltest.Other
	apiHost    = approvaltest.APIHost
	apiToken   = approvaltest.APIToken
	aliceToken = approvaltest.AliceToken
	carolToken = approvaltest.CarolToken
)

type (
	options = approvaltest.Options
	request = approvaltest.Request
)

var (
	start     = approvaltest.Start
	transfer  = approvaltest.Transfer
	reset     = approvaltest.Reset
	idPattern = approvaltest.IDPattern
	stringOf  = approvaltest.StringOf
)

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
		a := h.Check(tc.r)
		switch {
		case tc.held && (a.Status != 428 || a.Code != "approval_required" || !idPattern.MatchString(a.ID())):
			t.Errorf("%s: %v; want held", tc.name, a)
		case !tc.held && !a.Allow:
			t.Errorf("%s: %v; want allowed", tc.name, a)
		case !tc.held && (a.Set["authorization"] != "Bearer "+apiToken || slices.Contains(a.Removed, approval.Header)):
			t.Errorf("%s: allowed with headers %v, removing %v", tc.name, a.Set, a.Removed)
		}
	}
	if n := len(h.Announced()); n != 4 {
		t.Errorf("announced %d held requests, want 4", n)
	}
}

// TestGateOtherAgent: an approval covers one agent; another agent with the same scopes cannot
// use it, and trying does not spend it.
func TestGateOtherAgent(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89"}`
	id := h.Held(transfer(payer, body), "pending")
	if got := h.Held(transfer(other, body), "pending"); got == id {
		t.Fatal("another agent's identical request got the same approval")
	}
	h.Want(transfer(other, body, id), 403, "approval_mismatch")
	if st := h.Approve(id, aliceToken); st != 200 {
		t.Fatalf("approve: %d", st)
	}
	a := h.Want(transfer(other, body, id), 403, "approval_mismatch")
	if a.ID() != "" || strings.Contains(a.Detail(), id) {
		t.Errorf("a mismatch reveals the approval to the other agent: %v", a)
	}
	h.Want(transfer(payer, `{"amount":5001,"to":"DE89"}`, id), 403, "approval_mismatch")
	h.Want(reset(payer, "root", id), 403, "approval_mismatch") // another rule
	if a := h.Check(transfer(payer, body, id)); !a.Allow {
		t.Fatalf("the approved agent's identical retry: %v", a)
	}
}

// TestGateAllow: the allowed retry carries the route's grant and removes the approval header;
// other requests on the host keep the grant as the policy wrote it.
func TestGateAllow(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89","note":"rent"}`
	id := h.Held(transfer(payer, body), "pending")
	if h.Approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	// The identical request without the header is still held, now saying it is approved.
	a := h.Check(transfer(payer, body))
	if a.Status != 428 || a.ID() != id || a.State() != "approved" || !strings.Contains(a.Detail(), "is approved") {
		t.Fatalf("identical request without the header after approval: %v", a)
	}
	// Member order and whitespace do not matter.
	a = h.Check(transfer(payer, "{ \"note\": \"rent\", \"to\": \"DE89\", \"amount\": 5000.0 }", id))
	if !a.Allow {
		t.Fatalf("approved retry: %v", a)
	}
	if a.Set["authorization"] != "Bearer "+apiToken {
		t.Errorf("approved retry sets %v, want the injected credential", a.Set)
	}
	// The host's cookie, the forwarded-context headers it does not trust, and the approval header.
	removed := append([]string{"cookie"}, policy.ForwardedHeaders()...)
	if !slices.Equal(a.Removed, append(slices.Clone(removed), approval.Header)) {
		t.Errorf("approved retry removes %v, want the host's cookie, the forwarded-context headers and %s", a.Removed, approval.Header)
	}
	// The next approved request of the same route gets the same answer; a plain allow on the
	// host does not remove the approval header (the policy's grant is not modified).
	id2 := h.Held(transfer(payer, `{"amount":6000,"to":"DE89"}`), "pending")
	if h.Approve(id2, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	if a := h.Check(transfer(payer, `{"amount":6000,"to":"DE89"}`, id2)); !a.Allow || !slices.Equal(a.Removed, append(slices.Clone(removed), approval.Header)) {
		t.Errorf("second approved retry: %v removing %v", a, a.Removed)
	}
	if a := h.Check(transfer(payer, `{"amount":10,"to":"DE89"}`)); !a.Allow || !slices.Equal(a.Removed, removed) {
		t.Errorf("plain allow after approvals: %v removing %v", a, a.Removed)
	}
	h.Want(transfer(payer, body, id), 403, "approval_used")
}

// TestGateHeader: the approval header must be sent once and name an approval.
func TestGateHeader(t *testing.T) {
	h := start(t, options{})
	id := h.Held(reset(payer, "root"), "pending")
	if h.Approve(id, carolToken) != 200 {
		t.Fatal("approve failed")
	}
	twice := reset(payer, "root", id)
	twice.Raw, twice.Extra = true, [][2]string{{approval.Header, id}}
	h.Want(twice, 400, "request_malformed")
	for _, bad := range []string{"", "apr_", strings.ToUpper(id), id + " ", " " + id, id + "," + id, "apr_aaaaaaaaaaaaaaaaaaaaaaaaa1",
		"01HZZZZZZZZZZZZZZZZZZZZZZZ", "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa' OR 1=1", strings.Repeat("a", 5000)} {
		a := h.Want(reset(payer, "root", bad), 403, "approval_unknown")
		if a.ID() != "" {
			t.Errorf("an unknown id %q is answered with approval %s", bad, a.ID())
		}
	}
	h.Want(reset(payer, "root", approval.NewID()), 403, "approval_unknown")
	// None of that spent the approval.
	if a := h.Check(reset(payer, "root", id)); !a.Allow {
		t.Errorf("approved retry after bad headers: %v", a)
	}
}

// TestGateExpiry: a pending approval lapses after approve_within, an approved one after
// use_within; both are then expired to the agent and to approvers.
func TestGateExpiry(t *testing.T) {
	h := start(t, options{})
	// reset: approve_within 10m, use_within 5m.
	a := h.Check(reset(payer, "root"))
	id := a.ID()
	if a.Status != 428 || stringOf(a.Problem["approval_expires_at"]) != "2026-03-01T12:10:00Z" {
		t.Fatalf("held: %v; want approval_expires_at 10 minutes on", a)
	}
	h.Clock.Advance(10*time.Minute - time.Second)
	if got := h.Held(reset(payer, "root"), "pending"); got != id {
		t.Errorf("just before expiry the identical request got %s, want %s", got, id)
	}
	h.Clock.Advance(time.Second)
	if st, p := h.Call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 410 || p["code"] != "expired" {
		t.Errorf("approving an expired request: %d %v; want 410", st, p)
	}
	if a := h.Want(reset(payer, "root", id), 403, "approval_expired"); a.ID() != id || a.State() != "expired" {
		t.Errorf("retry of an expired approval: %v", a)
	}
	if _, g := h.Call("GET", "/v1/approvals/"+id, aliceToken, ""); g["state"] != "expired" {
		t.Errorf("GET an expired approval: state %v", g["state"])
	}
	id2 := h.Held(reset(payer, "root"), "pending")
	if id2 == id {
		t.Fatal("after expiry, the identical request got the expired approval")
	}

	// Approved, then not used within use_within.
	if h.Approve(id2, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	a = h.Check(reset(payer, "root"))
	if a.ID() != id2 || a.State() != "approved" || stringOf(a.Problem["approval_expires_at"]) != "2026-03-01T12:15:00Z" {
		t.Errorf("identical request after approval: %v; want approved until 12:15", a)
	}
	h.Clock.Advance(5 * time.Minute)
	h.Want(reset(payer, "root", id2), 403, "approval_expired")
	if st, p := h.Call("POST", "/v1/approvals/"+id2+"/deny", aliceToken, ""); st != 409 && st != 410 {
		t.Errorf("denying a lapsed approval: %d %v", st, p)
	}
	if id3 := h.Held(reset(payer, "root"), "pending"); id3 == id2 || id3 == id {
		t.Error("after the approval lapsed, the identical request got an old approval")
	}
}

// TestGateDenied: a denied request's retry is refused with the approver's comment.
func TestGateDenied(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89"}`
	id := h.Held(transfer(payer, body), "pending")
	comment := "x" + strings.Repeat("é", 200) + " \"quoted\" <b>" // 400+ bytes: clipped mid-character unless careful
	b, _ := json.Marshal(map[string]string{"comment": comment})
	if st, p := h.Call("POST", "/v1/approvals/"+id+"/deny", aliceToken, string(b)); st != 200 || p["state"] != "denied" || p["comment"] != comment {
		t.Fatalf("deny: %d %v", st, p)
	}
	a := h.Want(transfer(payer, body, id), 403, "approval_denied")
	if a.ID() != id || a.State() != "denied" || !strings.Contains(a.Detail(), strings.Repeat("é", 140)) || strings.Contains(a.Detail(), "\ufffd") {
		t.Errorf("retry of a denied request: %v", a)
	}
	// The identical request without the header asks again: the denial does not hold it forever.
	if id2 := h.Held(transfer(payer, body), "pending"); id2 == id {
		t.Error("the identical request after a denial got the denied approval")
	}
	h.Want(transfer(payer, body, id), 403, "approval_denied")
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

func (s *flakyStore) Hold(ctx context.Context, a approval.Approval, body func() string, lim approval.Limits, now time.Time) (approval.Approval, bool, error) {
	if err := s.err(ctx, "hold"); err != nil {
		return a, true, err
	}
	return s.Store.Hold(ctx, a, body, lim, now)
}

func (s *flakyStore) Get(ctx context.Context, id string, now time.Time) (approval.Approval, error) {
	if err := s.err(ctx, "get"); err != nil {
		return approval.Approval{}, err
	}
	return s.Store.Get(ctx, id, now)
}

func (s *flakyStore) List(ctx context.Context, q approval.Query, now time.Time) (approval.Page, error) {
	if err := s.err(ctx, "list"); err != nil {
		return approval.Page{}, err
	}
	return s.Store.List(ctx, q, now)
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
	store := &flakyStore{Store: memstore.New()}
	h := start(t, options{Store: store, Timeout: 300 * time.Millisecond})
	body := `{"amount":5000,"to":"DE89"}`

	store.set("hold", errStore)
	h.Want(transfer(payer, body), 503, "internal_error")
	store.set("hold", errHang)
	start := time.Now()
	h.Want(transfer(payer, body), 503, "internal_error")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a hanging store held the check for %v", took)
	}
	store.set("hold", nil)
	id := h.Held(transfer(payer, body), "pending")

	store.set("get", errStore)
	if st, p := h.Call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 503 || p["code"] != "internal_error" {
		t.Errorf("approve with the store down: %d %v", st, p)
	}
	if st, _ := h.Call("GET", "/v1/approvals/"+id, aliceToken, ""); st != 503 {
		t.Errorf("GET with the store down: %d", st)
	}
	store.set("get", nil)
	store.set("decide", errStore)
	if st, _ := h.Call("POST", "/v1/approvals/"+id+"/approve", aliceToken, ""); st != 503 {
		t.Errorf("approve with Decide failing: %d", st)
	}
	store.set("decide", nil)
	store.set("list", errStore)
	if st, _ := h.Call("GET", "/v1/approvals", aliceToken, ""); st != 503 {
		t.Errorf("list with the store down: %d", st)
	}
	store.set("list", nil)
	if h.Approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}

	for _, err := range []error{errStore, errHang, context.Canceled, approval.ErrNotPending} {
		store.set("consume", err)
		if a := h.Check(transfer(payer, body, id)); a.Allow || a.Status != 503 || a.Code != "internal_error" {
			t.Errorf("consume failing with %v: %v; want 503 internal_error", err, a)
		}
	}
	store.set("consume", nil)
	if a := h.Check(transfer(payer, body, id)); !a.Allow {
		t.Errorf("the approval after the store recovered: %v", a)
	}
}

// TestGateEvents: each step of an approval's life is one event in the decision log's chain.
func TestGateEvents(t *testing.T) {
	h := start(t, options{})
	body := `{"amount":5000,"to":"DE89","secret":"hunter2"}`
	id := h.Held(transfer(payer, body), "pending")
	h.Held(transfer(payer, body), "pending") // the same approval: no second event
	if h.Approve(id, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	if a := h.Check(transfer(payer, body, id)); !a.Allow {
		t.Fatalf("retry: %v", a)
	}
	id2 := h.Held(reset(payer, "root"), "pending")
	if st, _ := h.Call("POST", "/v1/approvals/"+id2+"/deny", carolToken, `{"comment":"not today"}`); st != 200 {
		t.Fatal("deny failed")
	}
	var kinds []string
	for _, e := range h.Events() {
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
	h.VerifyLog()
}

// TestResolve: Resolve leaves every decision but a policy's hold as it is.
func TestResolve(t *testing.T) {
	g := &approval.Gate{Store: &flakyStore{Store: memstore.New(), fail: map[string]error{"hold": errStore, "consume": errStore}}}
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

// TestGateApprovalLimit: a route holds a new request only beside fewer live approvals than its
// limits, per agent and per route; past them the agent is refused (429 approval_limit) with
// what to do, nothing is held, announced or recorded as requested; asking again for a held
// request is never refused, and what ends leaves room.
func TestGateApprovalLimit(t *testing.T) {
	h := start(t, options{})
	payout := approvaltest.Payout
	first := h.Held(payout(payer, "1"), "pending")
	h.Held(payout(payer, "2"), "pending")
	a := h.Want(payout(payer, "3"), 429, "approval_limit")
	if a.ID() != "" || !strings.Contains(a.Detail(), "You already have 2 requests waiting") || !strings.Contains(a.Detail(), "Wait for approvers") {
		t.Errorf("over the agent's limit: %v", a)
	}
	// The same request again: its approval, at the limit.
	if again := h.Check(payout(payer, "1")); again.Status != 428 || again.ID() != first {
		t.Errorf("a held request again at the limit: %v; want 428 for %s", again, first)
	}
	// The route's limit counts every agent.
	h.Held(payout(other, "1"), "pending")
	a = h.Want(payout(other, "2"), 429, "approval_limit")
	if !strings.Contains(a.Detail(), "This route already holds 3 requests") {
		t.Errorf("over the route's limit: %v", a)
	}
	// Another route is not bound by this one's (its own limits are the defaults).
	h.Held(reset(other, "root"), "pending")
	if n := len(h.Announced()); n != 4 {
		t.Errorf("%d announced; want the 4 held", n)
	}
	requested := 0
	for _, ev := range h.Events() {
		if ev["kind"] == "approval.requested" {
			requested++
		}
	}
	if requested != 4 {
		t.Errorf("%d approval.requested events; want 4", requested)
	}
	if p, err := h.Store.List(t.Context(), approval.Query{}, h.Clock.Now()); err != nil || len(p.Approvals) != 4 {
		t.Errorf("stored: %d, %v; want the 4 held", len(p.Approvals), err)
	}
	// Used, an approval leaves room.
	if h.Approve(first, aliceToken) != 200 {
		t.Fatal("approve failed")
	}
	h.Want(payout(payer, "3"), 429, "approval_limit") // approved and unused still counts
	if a := h.Check(payout(payer, "1", first)); !a.Allow {
		t.Fatalf("approved retry: %v", a)
	}
	h.Held(payout(payer, "3"), "pending")
}
