// Package storetest is the conformance suite every approval.Store must pass.
//
// Time is explicit: every call passes a `now` built from a fixed base, and nothing sleeps, so
// the derived state (expired) is tested exactly. Times are whole microseconds, the precision
// PostgreSQL keeps; a store may round finer times to that.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// Run runs the suite. open is called once for each subtest and must return an empty store,
// arranging its own closing (t.Cleanup) if the store needs it.
func Run(t *testing.T, open func(t *testing.T) approval.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, approval.Store)
	}{
		{"HoldCreatesPending", testHoldCreatesPending},
		{"HoldReturnsLive", testHoldReturnsLive},
		{"HoldAfterEnd", testHoldAfterEnd},
		{"HoldDenialStands", testHoldDenialStands},
		{"HoldSeparatesAgentsAndDigests", testHoldSeparates},
		{"HoldRendersOnlyNew", testHoldRendersOnlyNew},
		{"RoundTrip", testRoundTrip},
		{"Get", testGet},
		{"List", testList},
		{"Decide", testDecide},
		{"DecideExpired", testDecideExpired},
		{"Consume", testConsume},
		{"ConsumeMismatchRevealsNothing", testConsumeMismatch},
		{"ConsumeLapsed", testConsumeLapsed},
		{"Purge", testPurge},
		{"ConcurrentConsume", testConcurrentConsume},
		{"ConcurrentHold", testConcurrentHold},
		{"ConcurrentHoldAfterLapse", testConcurrentHoldAfterLapse},
		{"ConcurrentHoldRenders", testConcurrentHoldRenders},
		{"ConcurrentDecide", testConcurrentDecide},
		{"ListPages", testListPages},
		{"HoldLimitPerAgent", testHoldLimitPerAgent},
		{"HoldLimitPerRule", testHoldLimitPerRule},
		{"ConcurrentHoldLimit", testConcurrentHoldLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// t0 is the suite's clock origin: whole microseconds, not UTC, far from any real now.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 891011000, time.FixedZone("UTC+5:30", 5*3600+1800))

const (
	agentA  = "spiffe://example.org/agent/a"
	agentB  = "spiffe://example.org/agent/b"
	digestX = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digestY = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// cmpOpts compares approvals: times with Equal (cmp uses the method), nil and empty lists alike.
var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

// newApproval returns a fresh request created at created: pending for an hour, usable for ten
// minutes after approval.
func newApproval(agent, digest string, created time.Time) approval.Approval {
	return approval.Approval{
		ID:          approval.NewID(),
		Agent:       agent,
		Digest:      digest,
		Rule:        "payments.refund",
		Reason:      "refunds need a second person",
		Method:      "POST",
		Host:        "payments.internal",
		Path:        "/v1/refunds?order=42",
		Body:        "{\n  \"amount\": 100\n}",
		ContentType: "application/json",
		Approvers:   []string{"group:finance"},
		CreatedAt:   created,
		ExpiresAt:   created.Add(time.Hour),
		UseWithin:   10 * time.Minute,
	}
}

// listAll lists every approval in state, newest first: one page with no limit.
func listAll(s approval.Store, ctx context.Context, state approval.State, now time.Time) ([]approval.Approval, error) {
	p, err := s.List(ctx, approval.Query{State: state}, now)
	if err == nil && (p.More != 0 || !p.Next.IsZero()) {
		err = fmt.Errorf("a List without a limit: More %d, Next %v; want everything on one page", p.More, p.Next)
	}
	return p.Approvals, err
}

func hold(t *testing.T, s approval.Store, a approval.Approval, now time.Time) (approval.Approval, bool) {
	t.Helper()
	got, created, err := s.Hold(t.Context(), a, nil, approval.Limits{}, now)
	if err != nil {
		t.Fatalf("Hold(%s): %v", a.ID, err)
	}
	return got, created
}

// mustCreate holds a, which must be new, and returns it as stored.
func mustCreate(t *testing.T, s approval.Store, a approval.Approval, now time.Time) approval.Approval {
	t.Helper()
	got, created := hold(t, s, a, now)
	if !created || got.ID != a.ID {
		t.Fatalf("Hold(%s) = %s, created %v; want a new approval", a.ID, got.ID, created)
	}
	return got
}

// mustReuse holds a, which must return the live approval want instead.
func mustReuse(t *testing.T, s approval.Store, a approval.Approval, want approval.Approval, now time.Time) {
	t.Helper()
	got, created := hold(t, s, a, now)
	if created {
		t.Fatalf("Hold(%s) created a new approval; want %s again", a.ID, want.ID)
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Hold(%s) returned another approval (-want +got):\n%s", a.ID, diff)
	}
}

func decide(t *testing.T, s approval.Store, id string, approve bool, now time.Time) approval.Approval {
	t.Helper()
	got, err := s.Decide(t.Context(), id, approval.Verdict{Approve: approve, By: "user:alice", Comment: "checked"}, now)
	if err != nil {
		t.Fatalf("Decide(%s, approve=%v): %v", id, approve, err)
	}
	return got
}

func consume(t *testing.T, s approval.Store, a approval.Approval, now time.Time) approval.Approval {
	t.Helper()
	got, err := s.Consume(t.Context(), a.ID, a.Agent, a.Digest, now)
	if err != nil {
		t.Fatalf("Consume(%s): %v", a.ID, err)
	}
	return got
}

func get(t *testing.T, s approval.Store, id string, now time.Time) approval.Approval {
	t.Helper()
	got, err := s.Get(t.Context(), id, now)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

func wantState(t *testing.T, s approval.Store, id string, now time.Time, want approval.State) {
	t.Helper()
	if got := get(t, s, id, now); got.State != want {
		t.Fatalf("Get(%s) at %v: state %q, want %q", id, now.Sub(t0), got.State, want)
	}
}

func wantGet(t *testing.T, s approval.Store, want approval.Approval, now time.Time) {
	t.Helper()
	if diff := cmp.Diff(want, get(t, s, want.ID, now), cmpOpts); diff != "" {
		t.Fatalf("Get(%s) (-want +got):\n%s", want.ID, diff)
	}
}

func ids(as []approval.Approval) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}
