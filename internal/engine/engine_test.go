package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/jwtsvidtest"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const (
	demoDir  = "../demo/policy"
	helpdesk = "spiffe://acme.internal/agent/helpdesk"
)

// loadDemo compiles the demo policy; with note, one of its files ends in that comment, which
// makes another revision of the same policy.
func loadDemo(t *testing.T, note string) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath(demoDir)
	if err != nil {
		t.Fatal(err)
	}
	if note != "" {
		files[0].Data = append(slices.Clip(files[0].Data), "\n# "+note+"\n"...)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// headers are request headers, one value each.
type headers map[string]string

func (h headers) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

var _ policy.Headers = headers(nil)

// listTickets is a request the demo policy allows.
func listTickets() *engine.Request {
	return &engine.Request{Principal: helpdesk, Method: "GET", Host: "helpdesk.acme.internal", Target: "/v1/tickets?status=open"}
}

// passwordReset is a request the demo policy holds for approval.
func passwordReset() *engine.Request {
	return &engine.Request{
		Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal", Target: "/v1/users/jdoe/password-reset",
		Headers: headers{"content-type": "application/json"}, Body: []byte(`{"reason":"User locked out after travel"}`),
	}
}

// records is a DecisionLog that keeps every record.
type records struct {
	mu   sync.Mutex
	list []audit.Decision
}

func (r *records) Decision(d audit.Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, d)
	return nil
}

// only returns the one record kept.
func (r *records) only(t *testing.T) audit.Decision {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) != 1 {
		t.Fatalf("%d decisions recorded, want 1: %+v", len(r.list), r.list)
	}
	return r.list[0]
}

var _ engine.DecisionLog = (*records)(nil)

// approvals is an Approvals that runs resolve.
type approvals func(ctx context.Context, r *policy.Request, d decision.Decision) decision.Decision

func (a approvals) Resolve(ctx context.Context, r *policy.Request, d decision.Decision) decision.Decision {
	return a(ctx, r, d)
}

var _ engine.Approvals = approvals(nil)

// serverLog is a JSON server log in a buffer.
func serverLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

func wantCode(t *testing.T, res engine.Result, code decision.Code) {
	t.Helper()
	if res.Decision.Allowed() || res.Decision.Code != code {
		t.Errorf("decided %s %d %s, want a %s deny", res.Decision.Outcome, res.Decision.Status(), res.Decision.Code, code)
	}
}

// wantLogged checks that the server log has one error line naming the decision and holding each
// of parts.
func wantLogged(t *testing.T, log *bytes.Buffer, id string, parts ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("server log has %d lines, want 1:\n%s", len(lines), log)
	}
	for _, s := range append([]string{`"level":"ERROR"`, `"decision_id":"` + id + `"`}, parts...) {
		if !strings.Contains(lines[0], s) {
			t.Errorf("server log lacks %q:\n%s", s, lines[0])
		}
	}
}

// A panic anywhere in the pipeline is answered as internal_error, and the server log names the
// decision and the panic with its cause.
func TestPanicIsInternalError(t *testing.T) {
	log, buf := serverLog()
	recs := &records{}
	cause := errors.New("approval store: connection reset")
	e := engine.New(engine.Config{
		Store: policy.NewStore(loadDemo(t, "")), Log: log, Decisions: recs,
		Approvals: approvals(func(context.Context, *policy.Request, decision.Decision) decision.Decision {
			panic(fmt.Errorf("holding the request: %w", cause))
		}),
	})
	res := e.Decide(context.Background(), passwordReset())
	wantCode(t, res, decision.CodeInternal)
	if res.Decision.Status() != 503 || res.Decision.Cause == nil || !strings.Contains(res.Decision.Cause.Error(), cause.Error()) {
		t.Errorf("status %d, cause %v; want 503 and the panic as the cause", res.Decision.Status(), res.Decision.Cause)
	}
	if strings.Contains(res.Decision.Detail, cause.Error()) {
		t.Errorf("the agent is told the cause: %q", res.Decision.Detail)
	}
	wantLogged(t, buf, res.ID, "panic: holding the request: approval store: connection reset", "engine_test.go")
	if rec := recs.only(t); rec.Code != string(decision.CodeInternal) || rec.ID != res.ID || rec.Agent != helpdesk {
		t.Errorf("recorded %+v, want internal_error for %s by %s", rec, res.ID, helpdesk)
	}
}

func TestNoPolicyLoaded(t *testing.T) {
	recs := &records{}
	e := engine.New(engine.Config{Store: &policy.Store{}, Decisions: recs})
	res := e.Decide(context.Background(), listTickets())
	wantCode(t, res, decision.CodePolicyNotLoaded)
	if res.Revision != "" || res.Decision.Status() != 503 {
		t.Errorf("revision %q, status %d; want none and 503", res.Revision, res.Decision.Status())
	}
	if rec := recs.only(t); rec.Code != string(decision.CodePolicyNotLoaded) || rec.PolicyRevision != "" {
		t.Errorf("recorded %+v", rec)
	}
}

// A policy that holds a request for approval, on an engine without approvals, is a failure to
// decide, not a policy deny: internal_error, with the cause in the server log.
func TestApprovalRouteWithoutApprovals(t *testing.T) {
	log, buf := serverLog()
	e := engine.New(engine.Config{Store: policy.NewStore(loadDemo(t, "")), Log: log})
	res := e.Decide(context.Background(), passwordReset())
	wantCode(t, res, decision.CodeInternal)
	if res.Decision.Cause == nil {
		t.Error("no cause")
	}
	wantLogged(t, buf, res.ID, "no approval store is configured")

	// Without a hold, the same engine decides: only the hold needs approvals.
	buf.Reset()
	if res := e.Decide(context.Background(), listTickets()); !res.Decision.Allowed() || buf.Len() != 0 {
		t.Errorf("list tickets: %s %s, log %q", res.Decision.Outcome, res.Decision.Code, buf)
	}
}

// The record names the revision of the snapshot that decided, even when another is swapped in
// while the decision is in flight.
func TestRecordCarriesDecidingRevision(t *testing.T) {
	first, second := loadDemo(t, ""), loadDemo(t, "second revision")
	if first.Revision() == second.Revision() {
		t.Fatalf("both snapshots have revision %s", first.Revision())
	}
	store := policy.NewStore(first)
	recs := &records{}
	e := engine.New(engine.Config{
		Store: store, Decisions: recs,
		Approvals: approvals(func(_ context.Context, _ *policy.Request, d decision.Decision) decision.Decision {
			store.Swap(second) // a reload lands while this decision is in flight
			return d
		}),
	})
	res := e.Decide(context.Background(), passwordReset())
	if store.Load() != second {
		t.Fatal("the store was not swapped during the decision")
	}
	if res.Decision.Code != decision.CodeApprovalRequired {
		t.Errorf("decided %s, want approval_required", res.Decision.Code)
	}
	if rec := recs.only(t); rec.PolicyRevision != first.Revision() || res.Revision != first.Revision() {
		t.Errorf("record revision %q, result revision %q; want %s that decided (not %s, swapped in after)",
			rec.PolicyRevision, res.Revision, first.Revision(), second.Revision())
	}
	// The next decision is the new snapshot's.
	if res := e.Decide(context.Background(), listTickets()); res.Revision != second.Revision() {
		t.Errorf("next decision by revision %q, want %s", res.Revision, second.Revision())
	}
}

func TestCancelledContext(t *testing.T) {
	e := engine.New(engine.Config{Store: policy.NewStore(loadDemo(t, ""))})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	wantCode(t, e.Decide(cancelled, listTickets()), decision.CodeInternal)

	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	wantCode(t, e.Decide(expired, listTickets()), decision.CodeDeadlineExceeded)

	if res := e.Decide(context.Background(), listTickets()); !res.Decision.Allowed() {
		t.Errorf("with a live context: %s %s, want allow", res.Decision.Outcome, res.Decision.Code)
	}
}

// steppingClock advances by step each time it is read.
func steppingClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(step)
		return now
	}
}

// An allow reached after the deadline is not trusted: deadline_exceeded. An allow that spent an
// approval is kept, or the approver's decision would be wasted.
func TestLateAllow(t *testing.T) {
	const timeout = 100 * time.Millisecond
	spend := approvals(func(_ context.Context, _ *policy.Request, d decision.Decision) decision.Decision {
		return decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed, Rule: d.Rule,
			Approval: &decision.ApprovalRef{ID: "apr_test", State: "used"}}
	})
	for _, tc := range []struct {
		name string
		step time.Duration
		req  *engine.Request
		want decision.Code
	}{
		{"in time", timeout / 4, listTickets(), decision.CodeAllowed},
		{"late", timeout + time.Millisecond, listTickets(), decision.CodeDeadlineExceeded},
		{"late, approval spent", timeout + time.Millisecond, passwordReset(), decision.CodeAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := &records{}
			e := engine.New(engine.Config{Store: policy.NewStore(loadDemo(t, "")), Timeout: timeout,
				Clock: steppingClock(tc.step), Approvals: spend, Decisions: recs})
			res := e.Decide(context.Background(), tc.req)
			if res.Decision.Code != tc.want || (tc.want == decision.CodeAllowed) != res.Decision.Allowed() {
				t.Errorf("decided %s %s, want %s", res.Decision.Outcome, res.Decision.Code, tc.want)
			}
			if rec := recs.only(t); rec.Code != string(tc.want) {
				t.Errorf("recorded %s, want %s", rec.Code, tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	e := engine.New(engine.Config{Store: policy.NewStore(loadDemo(t, ""))})
	req := listTickets()
	if res := e.Decide(context.Background(), req); res.Explain != nil {
		t.Errorf("Explain without asking: %q", res.Explain)
	}
	req.Explain = true
	res := e.Decide(context.Background(), req)
	if !res.Decision.Allowed() || res.Decision.Rule != "list-tickets" {
		t.Errorf("decided %s %s by %q, want allow by list-tickets", res.Decision.Outcome, res.Decision.Code, res.Decision.Rule)
	}
	steps := strings.Join(res.Explain, "\n")
	for _, s := range []string{"identity: " + helpdesk, "list-tickets"} {
		if !strings.Contains(steps, s) {
			t.Errorf("Explain lacks %q:\n%s", s, steps)
		}
	}
}

// A caller without a certificate is the agent its JWT-SVID names, on a host that accepts them;
// an invalid token names nobody.
func TestJWTSVIDAgent(t *testing.T) {
	snap, err := policy.Load([]policy.File{{Name: "jwt.yaml", Data: []byte(jwtsvidtest.Policy)}},
		policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	key := jwtsvidtest.NewKey(t)
	recs := &records{}
	e := engine.New(engine.Config{Store: policy.NewStore(snap), Decisions: recs,
		JWTBundles: jwtsvidtest.Bundle(t, jwtsvidtest.TrustDomain, jwtsvidtest.KeyID, key.Public())})
	ask := func(c map[string]any) engine.Result {
		tok := jwtsvidtest.SignES256(t, key, jwtsvidtest.KeyID, c)
		return e.Decide(context.Background(), &engine.Request{Method: "GET", Host: jwtsvidtest.Audience, Target: "/v1/tickets",
			Headers: headers{"authorization": "Bearer " + tok}})
	}

	res := ask(jwtsvidtest.Claims(jwtsvidtest.Helpdesk, jwtsvidtest.Audience))
	if !res.Decision.Allowed() || res.Agent != jwtsvidtest.Helpdesk {
		t.Errorf("decided %s %s for agent %q, want allow for %s", res.Decision.Outcome, res.Decision.Code, res.Agent, jwtsvidtest.Helpdesk)
	}
	if rec := recs.only(t); rec.Agent != jwtsvidtest.Helpdesk {
		t.Errorf("recorded agent %q", rec.Agent)
	}

	// The BI agent, by its token: known, but without the scope.
	res = ask(jwtsvidtest.Claims(jwtsvidtest.BI, jwtsvidtest.Audience))
	if res.Agent != jwtsvidtest.BI || res.Decision.Code != decision.CodeScopeMissing {
		t.Errorf("BI token: agent %q, code %s; want %s and scope_missing", res.Agent, res.Decision.Code, jwtsvidtest.BI)
	}

	res = ask(jwtsvidtest.Expired(jwtsvidtest.Claims(jwtsvidtest.Helpdesk, jwtsvidtest.Audience)))
	wantCode(t, res, decision.CodeJWTSVIDInvalid)
	if res.Agent != "" {
		t.Errorf("agent %q from an expired token", res.Agent)
	}
}
