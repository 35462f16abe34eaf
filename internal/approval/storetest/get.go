package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
)

func testRoundTrip(t *testing.T, s approval.Store) {
	// Every field set, times in two zones, a duration that is not whole seconds.
	full := approval.Approval{
		ID:          approval.NewID(),
		Agent:       "spiffe://example.org/ns/prod/sa/refund-bot",
		Digest:      "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Rule:        "payments.refund.large",
		Reason:      "refunds over 1000 EUR — two people",
		Condition:   `body.amount > 1000 && body.currency == "EUR" || "<b>" in query.x`,
		Method:      "PATCH",
		Host:        "payments.internal:8443",
		Path:        "/v1/refunds/ab%2Fc?currency=EUR&x=1",
		Body:        "{\n  \"amount\": 1500,\n  \"card\": \"[redacted]\",\n  \"note\": \"ünïcødé \\\"quoted\\\"\"\n}",
		ContentType: "application/merge-patch+json; charset=utf-8",
		Approvers:   []string{"group:finance", "user:alice", "user:bob"},
		Notify:      []string{"slack-finance", "email"},
		CreatedAt:   t0,
		ExpiresAt:   t0.Add(90 * time.Minute).UTC(),
		UseWithin:   7*time.Minute + 30*time.Second + 250*time.Microsecond,
	}
	want := full
	want.State = approval.Pending
	got, created := hold(t, s, full, t0)
	if !created {
		t.Fatal("Hold: created = false")
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Hold (-want +got):\n%s", diff)
	}
	wantGet(t, s, want, t0)
	list, err := listAll(s, t.Context(), approval.Pending, t0)
	if err != nil || len(list) != 1 {
		t.Fatalf("List(pending) = %v, %v", ids(list), err)
	}
	if diff := cmp.Diff(want, list[0], cmpOpts); diff != "" {
		t.Fatalf("List (-want +got):\n%s", diff)
	}

	decidedAt := t0.Add(3*time.Minute + 17*time.Microsecond)
	got, err = s.Decide(t.Context(), full.ID, approval.Verdict{Approve: true, By: "user:alice", Comment: "ok — ticket FIN-7"}, decidedAt)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	want.State, want.DecidedAt, want.DecidedBy, want.Comment = approval.Approved, decidedAt, "user:alice", "ok — ticket FIN-7"
	want.UseBy = decidedAt.Add(full.UseWithin)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Decide (-want +got):\n%s", diff)
	}
	wantGet(t, s, want, decidedAt)

	usedAt := want.UseBy.Add(-time.Microsecond) // the last instant it may be used
	got = consume(t, s, full, usedAt)
	want.State, want.UsedAt = approval.Used, usedAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Consume (-want +got):\n%s", diff)
	}
	wantGet(t, s, want, usedAt.Add(time.Hour))

	// The least an approval can carry: no body, no lists, no reason, zero UseWithin.
	bare := approval.Approval{
		ID: approval.NewID(), Agent: full.Agent, Digest: full.Digest, Rule: "r",
		Method: "DELETE", Host: "h", Path: "/",
		CreatedAt: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour),
	}
	wantBare := bare
	wantBare.State = approval.Pending
	got, created = hold(t, s, bare, t0.Add(time.Hour))
	if !created {
		t.Fatal("Hold(bare): created = false")
	}
	if diff := cmp.Diff(wantBare, got, cmpOpts); diff != "" {
		t.Fatalf("Hold(bare) (-want +got):\n%s", diff)
	}
	wantGet(t, s, wantBare, t0.Add(time.Hour))
	if got.Body != "" || len(got.Approvers) != 0 || len(got.Notify) != 0 || got.UseWithin != 0 {
		t.Fatalf("Hold(bare) = %+v", got)
	}
	denied := decide(t, s, bare.ID, false, t0.Add(time.Hour+time.Minute))
	wantBare.State, wantBare.DecidedAt, wantBare.DecidedBy, wantBare.Comment = approval.Denied, t0.Add(time.Hour+time.Minute), "user:alice", "checked"
	if diff := cmp.Diff(wantBare, denied, cmpOpts); diff != "" {
		t.Fatalf("Decide(deny) (-want +got):\n%s", diff)
	}
	if !denied.UseBy.IsZero() || !denied.UsedAt.IsZero() {
		t.Fatalf("denied approval has UseBy %v, UsedAt %v", denied.UseBy, denied.UsedAt)
	}
	wantGet(t, s, wantBare, t0.Add(5*time.Hour))
}

func testGet(t *testing.T, s approval.Store) {
	if got, err := s.Get(t.Context(), approval.NewID(), t0); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Get(unknown) = %+v, %v; want ErrNotFound", got, err)
	}
	if _, err := s.Get(t.Context(), "not-an-id", t0); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Get(malformed) error = %v; want ErrNotFound", err)
	}
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	wantState(t, s, a.ID, t0, approval.Pending)
	wantState(t, s, a.ID, a.ExpiresAt.Add(-time.Microsecond), approval.Pending)
	wantState(t, s, a.ID, a.ExpiresAt, approval.Expired)
	wantState(t, s, a.ID, a.ExpiresAt.Add(time.Hour), approval.Expired)
	// Reading never writes: earlier, it is pending again.
	wantState(t, s, a.ID, t0.Add(time.Minute), approval.Pending)

	b := mustCreate(t, s, newApproval(agentB, digestX, t0), t0)
	approved := decide(t, s, b.ID, true, t0.Add(time.Minute))
	wantState(t, s, b.ID, approved.UseBy.Add(-time.Microsecond), approval.Approved)
	wantState(t, s, b.ID, approved.UseBy, approval.Expired)
	// An approved one is not held to ExpiresAt.
	late := newApproval(agentB, digestY, t0)
	late.UseWithin = 3 * time.Hour
	late = mustCreate(t, s, late, t0)
	decide(t, s, late.ID, true, t0.Add(59*time.Minute))
	wantState(t, s, late.ID, t0.Add(2*time.Hour), approval.Approved)
}
