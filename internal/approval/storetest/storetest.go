// Package storetest is the conformance suite every approval.Store must pass.
//
// Time is explicit: every call passes a `now` built from a fixed base, and nothing sleeps, so
// the derived state (expired) is tested exactly. Times are whole microseconds, the precision
// PostgreSQL keeps; a store may round finer times to that.
package storetest

import (
	"context"
	"errors"
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

func testList(t *testing.T, s approval.Store) {
	if got, err := listAll(s, t.Context(), "", t0); err != nil || len(got) != 0 {
		t.Fatalf("List on an empty store = %v, %v", ids(got), err)
	}
	// Oldest to newest; each in a different state at t0+30m.
	var made []approval.Approval
	for i, agent := range []string{"a", "b", "c", "d", "e", "f"} {
		at := t0.Add(time.Duration(i) * time.Second)
		a := newApproval("spiffe://example.org/"+agent, digestX, at)
		if i == 1 {
			a.UseWithin = time.Hour
		}
		made = append(made, mustCreate(t, s, a, at))
	}
	now := t0.Add(time.Minute)
	decide(t, s, made[1].ID, true, now)  // approved until 1h1m
	decide(t, s, made[2].ID, false, now) // denied
	decide(t, s, made[3].ID, true, now)  // used
	consume(t, s, made[3], now)
	short := made[4] // approved, lapses at 1m+10m
	decide(t, s, short.ID, true, now)
	// made[0] and made[5] stay pending.

	at := t0.Add(30 * time.Minute)
	cases := []struct {
		state approval.State
		want  []approval.Approval
	}{
		{"", []approval.Approval{made[5], made[4], made[3], made[2], made[1], made[0]}},
		{approval.Pending, []approval.Approval{made[5], made[0]}},
		{approval.Approved, []approval.Approval{made[1]}},
		{approval.Denied, []approval.Approval{made[2]}},
		{approval.Used, []approval.Approval{made[3]}},
		{approval.Expired, []approval.Approval{made[4]}},
	}
	for _, c := range cases {
		got, err := listAll(s, t.Context(), c.state, at)
		if err != nil {
			t.Fatalf("List(%q): %v", c.state, err)
		}
		if diff := cmp.Diff(ids(c.want), ids(got)); diff != "" {
			t.Errorf("List(%q) ids, newest first (-want +got):\n%s", c.state, diff)
		}
		for _, a := range got {
			if a.State != a.Current(at) || (c.state != "" && a.State != c.state) {
				t.Errorf("List(%q) returned %s in state %q", c.state, a.ID, a.State)
			}
		}
	}

	// Two hours on, the pending ones and the approved one have lapsed too.
	late := t0.Add(2 * time.Hour)
	got, err := listAll(s, t.Context(), approval.Expired, late)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{made[5].ID, made[4].ID, made[1].ID, made[0].ID}, ids(got)); diff != "" {
		t.Errorf("List(expired) two hours on (-want +got):\n%s", diff)
	}
	if got, err := listAll(s, t.Context(), approval.Pending, late); err != nil || len(got) != 0 {
		t.Errorf("List(pending) two hours on = %v, %v; want none", ids(got), err)
	}
}

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
