package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// digestN is the n-th request's digest.
func digestN(n int) string { return fmt.Sprintf("sha256:%064d", n) }

// holdLimited holds a new request under lim and returns what Hold did, with the number of
// times it rendered the body.
func holdLimited(t *testing.T, s approval.Store, a approval.Approval, lim approval.Limits, now time.Time) (got approval.Approval, created bool, renders int, err error) {
	t.Helper()
	var n atomic.Int32
	got, created, err = s.Hold(t.Context(), a, func() string { n.Add(1); return "rendered" }, lim, now)
	return got, created, int(n.Load()), err
}

// mustRefuse holds a, which the limits must refuse as scope's, storing and rendering nothing.
func mustRefuse(t *testing.T, s approval.Store, a approval.Approval, lim approval.Limits, now time.Time, scope string, max int) {
	t.Helper()
	before, err := listAll(s, t.Context(), "", now)
	if err != nil {
		t.Fatal(err)
	}
	got, created, renders, err := holdLimited(t, s, a, lim, now)
	var le *approval.LimitError
	if !errors.As(err, &le) || !errors.Is(err, approval.ErrLimit) || le.Scope != scope || le.Max != max {
		t.Fatalf("Hold(%s, %s) past the %s limit = %s, created %v, %v; want a *LimitError{%s, %d}", a.Agent, a.Rule, scope, got.ID, created, err, scope, max)
	}
	if created || got.ID != "" || renders != 0 {
		t.Fatalf("a refused Hold returned %q, created %v, rendered %d times", got.ID, created, renders)
	}
	if after, err := listAll(s, t.Context(), "", now); err != nil || len(after) != len(before) {
		t.Fatalf("a refused Hold stored something: %d approvals, then %d (%v)", len(before), len(after), err)
	}
}

// mustCreateLimited holds a, which must be new and within lim.
func mustCreateLimited(t *testing.T, s approval.Store, a approval.Approval, lim approval.Limits, now time.Time) approval.Approval {
	t.Helper()
	got, created, _, err := holdLimited(t, s, a, lim, now)
	if err != nil || !created || got.ID != a.ID {
		t.Fatalf("Hold(%s, %s, %s) = %s, created %v, %v; want a new approval", a.Agent, a.Rule, a.Digest, got.ID, created, err)
	}
	return got
}

func withRule(a approval.Approval, rule string) approval.Approval {
	a.Rule = rule
	return a
}

// testHoldLimitPerAgent: an agent's live approvals, across its rules, stay within PerAgent;
// what ended (denied, used, lapsed) leaves room; asking again for a live one is never refused.
func testHoldLimitPerAgent(t *testing.T, s approval.Store) {
	lim := approval.Limits{PerAgent: 3}
	now := t0
	var held []approval.Approval
	for i := range 3 {
		held = append(held, mustCreateLimited(t, s, withRule(newApproval(agentA, digestN(i), now), fmt.Sprintf("rule-%d", i)), lim, now))
	}
	mustRefuse(t, s, newApproval(agentA, digestN(3), now), lim, now, approval.LimitAgent, 3)
	mustRefuse(t, s, withRule(newApproval(agentA, digestN(4), now), "another-rule"), lim, now, approval.LimitAgent, 3)
	// The same request again is its live approval, at the limit.
	got, created, renders, err := holdLimited(t, s, newApproval(agentA, digestN(1), now), lim, now)
	if err != nil || created || got.ID != held[1].ID || renders != 0 {
		t.Fatalf("holding a live request again at the limit = %s, created %v, %v, %d renders; want %s", got.ID, created, err, renders, held[1].ID)
	}
	// Another agent is not bound by this one's approvals.
	mustCreateLimited(t, s, newApproval(agentB, digestN(3), now), lim, now)

	// Approved and unused still counts; denied does not.
	now = now.Add(time.Minute)
	decide(t, s, held[0].ID, true, now)
	mustRefuse(t, s, newApproval(agentA, digestN(5), now), lim, now, approval.LimitAgent, 3)
	decide(t, s, held[1].ID, false, now)
	fresh := mustCreateLimited(t, s, newApproval(agentA, digestN(5), now), lim, now)
	mustRefuse(t, s, newApproval(agentA, digestN(6), now), lim, now, approval.LimitAgent, 3)
	// Used does not.
	consume(t, s, held[0], now)
	mustCreateLimited(t, s, newApproval(agentA, digestN(6), now), lim, now)
	mustRefuse(t, s, newApproval(agentA, digestN(7), now), lim, now, approval.LimitAgent, 3)
	// Lapsed does not: the three live ones expire an hour after they were held.
	now = fresh.ExpiresAt
	for i := 7; i < 10; i++ {
		mustCreateLimited(t, s, newApproval(agentA, digestN(i), now), lim, now)
	}
	mustRefuse(t, s, newApproval(agentA, digestN(10), now), lim, now, approval.LimitAgent, 3)
	// No limit: anything goes.
	mustCreateLimited(t, s, newApproval(agentA, digestN(10), now), approval.Limits{}, now)
}

// testHoldLimitPerRule: a rule's live approvals, across agents, stay within PerRule; the first
// limit passed is the one reported.
func testHoldLimitPerRule(t *testing.T, s approval.Store) {
	lim := approval.Limits{PerAgent: 2, PerRule: 3}
	now := t0
	agent := func(i int) string { return fmt.Sprintf("spiffe://example.org/agent/%d", i) }
	a0 := mustCreateLimited(t, s, newApproval(agent(0), digestX, now), lim, now)
	mustCreateLimited(t, s, newApproval(agent(0), digestY, now), lim, now)
	mustCreateLimited(t, s, newApproval(agent(1), digestX, now), lim, now)
	mustRefuse(t, s, newApproval(agent(2), digestX, now), lim, now, approval.LimitRule, 3)
	mustRefuse(t, s, newApproval(agent(0), digestN(1), now), lim, now, approval.LimitAgent, 2)
	// Another rule has room.
	mustCreateLimited(t, s, withRule(newApproval(agent(2), digestX, now), "other.rule"), lim, now)
	// An approval that lapsed unused leaves room.
	now = now.Add(time.Minute)
	approved := decide(t, s, a0.ID, true, now)
	mustRefuse(t, s, newApproval(agent(3), digestX, now), lim, now, approval.LimitRule, 3)
	now = approved.UseBy
	mustCreateLimited(t, s, newApproval(agent(3), digestX, now), lim, now)
	mustRefuse(t, s, newApproval(agent(4), digestX, now), lim, now, approval.LimitRule, 3)
}

// testConcurrentHoldLimit: many creators at once, for one agent and then for one rule, never
// pass the limits: exactly as many approvals as there is room for are created.
func testConcurrentHoldLimit(t *testing.T, s approval.Store) {
	lim := approval.Limits{PerAgent: 5, PerRule: 8}
	const n = 30
	run := func(agent func(i int) string) (created, refused int) {
		t.Helper()
		errs := make([]error, n)
		made := make([]bool, n)
		gate(n, func(i int) {
			a := newApproval(agent(i), digestN(1000+i), t0)
			_, made[i], errs[i] = s.Hold(t.Context(), a, nil, lim, t0)
		})
		for i := range n {
			switch {
			case errs[i] == nil && made[i]:
				created++
			case errors.Is(errs[i], approval.ErrLimit):
				refused++
			default:
				t.Fatalf("Hold %d: created %v, %v", i, made[i], errs[i])
			}
		}
		return created, refused
	}
	if c, r := run(func(int) string { return agentA }); c != 5 || r != n-5 {
		t.Fatalf("%d concurrent Holds for one agent, limit 5: %d created, %d refused", n, c, r)
	}
	if c, r := run(func(i int) string { return fmt.Sprintf("spiffe://example.org/agent/c%d", i) }); c != 3 || r != n-3 {
		t.Fatalf("%d concurrent Holds by %d agents for a rule with 5 of its 8 held: %d created, %d refused", n, n, c, r)
	}
	if live, err := listAll(s, t.Context(), approval.Pending, t0); err != nil || len(live) != 8 {
		t.Fatalf("List(pending) = %d, %v; want 8", len(live), err)
	}
}
