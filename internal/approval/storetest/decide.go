package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

func testDecide(t *testing.T, s approval.Store) {
	ctx := t.Context()
	if got, err := s.Decide(ctx, approval.NewID(), approval.Verdict{Approve: true, By: "user:alice"}, t0); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Decide(unknown) = %+v, %v; want ErrNotFound", got, err)
	}

	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	at := t0.Add(5 * time.Minute)
	got := decide(t, s, a.ID, true, at)
	if got.State != approval.Approved || !got.DecidedAt.Equal(at) || got.DecidedBy != "user:alice" || got.Comment != "checked" || !got.UseBy.Equal(at.Add(a.UseWithin)) {
		t.Fatalf("Decide(approve) = %+v", got)
	}
	// Twice: whatever the verdict, the first stands.
	for _, approve := range []bool{true, false} {
		again, err := s.Decide(ctx, a.ID, approval.Verdict{Approve: approve, By: "user:bob"}, at.Add(time.Minute))
		if !errors.Is(err, approval.ErrNotPending) {
			t.Fatalf("Decide again (approve=%v) error = %v; want ErrNotPending", approve, err)
		}
		if again.ID != a.ID || again.State != approval.Approved {
			t.Fatalf("Decide again returned %s in state %q; want %s approved", again.ID, again.State, a.ID)
		}
	}
	wantGet(t, s, got, at.Add(time.Minute))

	b := mustCreate(t, s, newApproval(agentB, digestX, t0), t0)
	got = decide(t, s, b.ID, false, at)
	if got.State != approval.Denied || !got.DecidedAt.Equal(at) || got.DecidedBy != "user:alice" || !got.UseBy.IsZero() {
		t.Fatalf("Decide(deny) = %+v", got)
	}
	if again, err := s.Decide(ctx, b.ID, approval.Verdict{Approve: true, By: "user:bob"}, at); !errors.Is(err, approval.ErrNotPending) || again.State != approval.Denied {
		t.Fatalf("Decide after deny = %q, %v; want denied, ErrNotPending", again.State, err)
	}
	wantState(t, s, b.ID, at.Add(24*time.Hour), approval.Denied)

	// Used: not pending.
	c := mustCreate(t, s, newApproval(agentA, digestY, t0), t0)
	decide(t, s, c.ID, true, at)
	consume(t, s, c, at)
	if again, err := s.Decide(ctx, c.ID, approval.Verdict{Approve: true, By: "user:bob"}, at); !errors.Is(err, approval.ErrNotPending) || again.State != approval.Used {
		t.Fatalf("Decide after use = %q, %v; want used, ErrNotPending", again.State, err)
	}
}

func testDecideExpired(t *testing.T, s approval.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	for _, now := range []time.Time{a.ExpiresAt, a.ExpiresAt.Add(time.Hour)} {
		got, err := s.Decide(ctx, a.ID, approval.Verdict{Approve: true, By: "user:alice"}, now)
		if !errors.Is(err, approval.ErrExpired) {
			t.Fatalf("Decide at %v after creation error = %v; want ErrExpired", now.Sub(t0), err)
		}
		if got.ID != a.ID || got.State != approval.Expired {
			t.Fatalf("Decide past expiry returned %s in state %q", got.ID, got.State)
		}
	}
	// Nothing was decided.
	got := get(t, s, a.ID, t0)
	if got.State != approval.Pending || !got.DecidedAt.IsZero() || got.DecidedBy != "" {
		t.Fatalf("after a refused Decide: %+v", got)
	}
	// An approved one that lapsed unused is expired, not merely not pending.
	b := mustCreate(t, s, newApproval(agentB, digestX, t0), t0)
	approved := decide(t, s, b.ID, true, t0.Add(time.Minute))
	if _, err := s.Decide(ctx, b.ID, approval.Verdict{By: "user:bob"}, approved.UseBy); !errors.Is(err, approval.ErrExpired) {
		t.Fatalf("Decide on a lapsed approval error = %v; want ErrExpired", err)
	}
}
