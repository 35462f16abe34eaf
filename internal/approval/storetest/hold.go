package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
)

func testHoldCreatesPending(t *testing.T, s approval.Store) {
	a := newApproval(agentA, digestX, t0)
	want := a
	want.State = approval.Pending
	got, created := hold(t, s, a, t0)
	if !created {
		t.Fatal("Hold on an empty store: created = false")
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Hold (-want +got):\n%s", diff)
	}
	wantGet(t, s, want, t0)
}

func testHoldReturnsLive(t *testing.T, s approval.Store) {
	first := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)

	// While pending: the same approval, whatever the new request says besides agent and digest.
	again := newApproval(agentA, digestX, t0.Add(time.Minute))
	again.Reason, again.Approvers = "another reason", []string{"user:bob"}
	mustReuse(t, s, again, first, t0.Add(time.Minute))
	mustReuse(t, s, newApproval(agentA, digestX, t0.Add(59*time.Minute)), first, t0.Add(59*time.Minute))

	// While approved and not yet used.
	approved := decide(t, s, first.ID, true, t0.Add(2*time.Minute))
	mustReuse(t, s, newApproval(agentA, digestX, t0.Add(3*time.Minute)), approved, t0.Add(3*time.Minute))
	// Approved, it stays live until UseBy (2m + 10m).
	mustReuse(t, s, newApproval(agentA, digestX, t0.Add(11*time.Minute)), approved, t0.Add(11*time.Minute))

	if all, err := listAll(s, t.Context(), "", t0.Add(11*time.Minute)); err != nil || len(all) != 1 {
		t.Fatalf("List after repeated holds = %v, %v; want the one approval", ids(all), err)
	}
}

// testHoldDenialStands: with Limits.DenialStands, a denial answers the same agent and digest,
// without rendering, until its ExpiresAt; other agents, and holds without it, are not affected.
func testHoldDenialStands(t *testing.T, s approval.Store) {
	stands := approval.Limits{DenialStands: true}
	now := t0
	a1 := mustCreate(t, s, newApproval(agentA, digestX, now), now)
	decide(t, s, a1.ID, false, now.Add(time.Minute))
	now = now.Add(2 * time.Minute)

	for range 2 {
		got, created, renders, err := holdLimited(t, s, newApproval(agentA, digestX, now), stands, now)
		if err != nil || created || got.ID != a1.ID || got.State != approval.Denied || renders != 0 {
			t.Fatalf("Hold after a denial = %s %s created=%v renders=%d err=%v; want the denial, unrendered", got.ID, got.State, created, renders, err)
		}
	}
	if _, created, _, err := holdLimited(t, s, newApproval(agentB, digestX, now), stands, now); err != nil || !created {
		t.Errorf("another agent's Hold after a denial: created=%v err=%v; want a new approval", created, err)
	}
	// Exactly at ExpiresAt the denial no longer stands.
	now = a1.ExpiresAt
	got, created, _, err := holdLimited(t, s, newApproval(agentA, digestX, now), stands, now)
	if err != nil || !created || got.ID == a1.ID {
		t.Errorf("Hold once the denial's window passed = %s created=%v err=%v; want a new approval", got.ID, created, err)
	}

	// Without DenialStands, asking again after a denial holds anew.
	b1 := mustCreate(t, s, newApproval(agentA, digestY, now), now)
	decide(t, s, b1.ID, false, now.Add(time.Minute))
	mustCreate(t, s, newApproval(agentA, digestY, now.Add(2*time.Minute)), now.Add(2*time.Minute))
}

func testHoldAfterEnd(t *testing.T, s approval.Store) {
	now := t0
	step := func(d time.Duration) time.Time { now = now.Add(d); return now }

	// Used: a new approval.
	a1 := mustCreate(t, s, newApproval(agentA, digestX, now), now)
	decide(t, s, a1.ID, true, step(time.Minute))
	consume(t, s, a1, step(time.Minute))
	a2 := mustCreate(t, s, newApproval(agentA, digestX, step(time.Minute)), now)

	// Denied: a new approval.
	decide(t, s, a2.ID, false, step(time.Minute))
	a3 := mustCreate(t, s, newApproval(agentA, digestX, step(time.Minute)), now)

	// Pending past ExpiresAt: a new approval; the old one stays, expired.
	step(2 * time.Hour)
	a4 := mustCreate(t, s, newApproval(agentA, digestX, now), now)
	wantState(t, s, a3.ID, now, approval.Expired)

	// Approved past UseBy: a new approval; the old one stays, expired.
	decide(t, s, a4.ID, true, step(time.Minute))
	step(time.Hour)
	a5 := mustCreate(t, s, newApproval(agentA, digestX, now), now)
	wantState(t, s, a4.ID, now, approval.Expired)

	// Exactly at ExpiresAt the pending one has lapsed.
	now = a5.ExpiresAt
	a6 := mustCreate(t, s, newApproval(agentA, digestX, now), now)

	want := map[string]approval.State{
		a1.ID: approval.Used, a2.ID: approval.Denied, a3.ID: approval.Expired,
		a4.ID: approval.Expired, a5.ID: approval.Expired, a6.ID: approval.Pending,
	}
	for id, st := range want {
		wantState(t, s, id, now, st)
	}
	all, err := listAll(s, t.Context(), "", now)
	if err != nil || len(all) != len(want) {
		t.Fatalf("List = %v, %v; want %d approvals", ids(all), err, len(want))
	}
	live, err := listAll(s, t.Context(), approval.Pending, now)
	if err != nil || len(live) != 1 || live[0].ID != a6.ID {
		t.Fatalf("List(pending) = %v, %v; want [%s]", ids(live), err, a6.ID)
	}
}

func testHoldSeparates(t *testing.T, s approval.Store) {
	ax := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	bx := mustCreate(t, s, newApproval(agentB, digestX, t0.Add(time.Second)), t0.Add(time.Second))
	ay := mustCreate(t, s, newApproval(agentA, digestY, t0.Add(2*time.Second)), t0.Add(2*time.Second))
	mustReuse(t, s, newApproval(agentB, digestX, t0.Add(3*time.Second)), bx, t0.Add(3*time.Second))
	mustReuse(t, s, newApproval(agentA, digestX, t0.Add(3*time.Second)), ax, t0.Add(3*time.Second))
	mustReuse(t, s, newApproval(agentA, digestY, t0.Add(3*time.Second)), ay, t0.Add(3*time.Second))
}
