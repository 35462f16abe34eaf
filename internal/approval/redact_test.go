package approval_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// headers is a request's headers for the gate.
type headers map[string]string

func (h headers) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// events records approval events as text.
type events struct {
	mu    sync.Mutex
	lines []string
}

func (e *events) Write(kind string, attrs ...slog.Attr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, fmt.Sprint(kind, attrs))
	return nil
}

// A held request's path is stored redacted: what the approvals API, the console, the CLI, Slack,
// webhooks and approval events show never holds a --redact-query value, however its name is
// spelt. The approval stays bound to the request as sent: the identical retry is allowed, one
// with another value of the redacted parameter is not.
func TestGateRedactsTheHeldPath(t *testing.T) {
	const secret = "S3CRET-query-value"
	store := memstore.New()
	var ev events
	var announced []approval.Approval
	g := &approval.Gate{Store: store, Events: &ev, RedactQuery: redact.NewQuery("token"),
		Announce: func(a approval.Approval) { announced = append(announced, a) }}
	agent := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	hold := func() decision.Decision {
		return decision.Decision{Outcome: decision.Deny, Code: decision.CodeApprovalRequired, Rule: "reset",
			Hold: &decision.Hold{Rule: "reset", Approvers: []string{"group:it-admins"}, ApproveWithin: time.Hour, UseWithin: time.Hour}}
	}
	ctx := context.Background()
	for _, target := range []string{
		"/v1/users/jdoe/password-reset?Token=" + secret + "&notify=1",
		"/v1/users/jdoe/password-reset?notify=1;token=" + secret,
		"/v1/users/jdoe/password-reset?%74oken=" + secret,
	} {
		r := &policy.Request{Agent: agent, Method: "POST", Host: "helpdesk.acme.internal", Target: target, Headers: headers{}}
		d := g.Resolve(ctx, r, hold())
		if d.Code != decision.CodeApprovalRequired || d.Approval == nil {
			t.Fatalf("%s: %+v, want held", target, d)
		}
		a, err := store.Get(ctx, d.Approval.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(a.Path, secret) || !strings.Contains(a.Path, "="+redact.Marker) {
			t.Errorf("stored path %q", a.Path)
		}
		if _, err := store.Decide(ctx, a.ID, approval.Verdict{Approve: true, By: "user:alice"}, time.Now()); err != nil {
			t.Fatal(err)
		}
		other := &policy.Request{Agent: agent, Method: "POST", Host: r.Host, Target: strings.Replace(target, secret, "other", 1),
			Headers: headers{approval.Header: a.ID}}
		if d := g.Resolve(ctx, other, hold()); d.Code != decision.CodeApprovalMismatch {
			t.Errorf("%s: a retry with another value: %s, want approval_mismatch", target, d.Code)
		}
		retry := &policy.Request{Agent: agent, Method: "POST", Host: r.Host, Target: target, Headers: headers{approval.Header: a.ID}}
		if d := g.Resolve(ctx, retry, hold()); !d.Allowed() {
			t.Errorf("%s: the identical retry: %s, want allowed", target, d.Code)
		}
	}
	for _, a := range announced {
		if strings.Contains(fmt.Sprint(a), secret) {
			t.Errorf("announced (Slack, webhook): %+v", a)
		}
	}
	if len(announced) != 3 || len(ev.lines) != 6 {
		t.Errorf("%d announced, %d events; want 3 and 6", len(announced), len(ev.lines))
	}
	for _, line := range ev.lines {
		if strings.Contains(line, secret) {
			t.Errorf("approval event: %s", line)
		}
	}
	list, err := store.List(ctx, approval.Query{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list.Approvals {
		if strings.Contains(fmt.Sprint(a), secret) {
			t.Errorf("listed (approvals API, console, CLI): %+v", a)
		}
	}
}

// The approval records the condition that held the request, for approvers to read.
func TestGateRecordsCondition(t *testing.T) {
	store := memstore.New()
	g := &approval.Gate{Store: store}
	agent := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	ctx := context.Background()
	for i, cond := range []string{`body.amount > 1000`, ""} {
		d := g.Resolve(ctx, &policy.Request{Agent: agent, Method: "POST", Host: "helpdesk.acme.internal",
			Target: fmt.Sprintf("/v1/refunds/%d", i), Headers: headers{}},
			decision.Decision{Outcome: decision.Deny, Code: decision.CodeApprovalRequired, Rule: "refund",
				Hold: &decision.Hold{Rule: "refund", Condition: cond, Approvers: []string{"group:finance"}, ApproveWithin: time.Hour, UseWithin: time.Hour}})
		if d.Approval == nil {
			t.Fatalf("%q: not held: %+v", cond, d)
		}
		a, err := store.Get(ctx, d.Approval.ID, time.Now())
		if err != nil || a.Condition != cond {
			t.Errorf("stored condition %q, %v; want %q", a.Condition, err, cond)
		}
	}
}
