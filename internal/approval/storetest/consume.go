package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
)

func testConsume(t *testing.T, s approval.Store) {
	ctx := t.Context()
	if got, err := s.Consume(ctx, approval.NewID(), agentA, digestX, t0); !errors.Is(err, approval.ErrNotFound) || !reflect.ValueOf(got).IsZero() {
		t.Fatalf("Consume(unknown) = %+v, %v; want zero, ErrNotFound", got, err)
	}
	if _, err := s.Consume(ctx, "apr_nope", agentA, digestX, t0); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Consume(malformed id) error = %v; want ErrNotFound", err)
	}

	// wantErr consumes a and expects err, with the approval quoted in state st.
	wantErr := func(a approval.Approval, now time.Time, want error, st approval.State) {
		t.Helper()
		got, err := s.Consume(ctx, a.ID, a.Agent, a.Digest, now)
		if !errors.Is(err, want) {
			t.Fatalf("Consume(%s) error = %v; want %v", a.ID, err, want)
		}
		if got.ID != a.ID || got.State != st || got.Agent != a.Agent || got.Digest != a.Digest {
			t.Fatalf("Consume(%s) with %v returned %s in state %q; want the approval in state %q", a.ID, want, got.ID, got.State, st)
		}
	}

	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	wantErr(a, t0.Add(time.Minute), approval.ErrPending, approval.Pending)
	wantState(t, s, a.ID, t0.Add(time.Minute), approval.Pending)

	approved := decide(t, s, a.ID, true, t0.Add(2*time.Minute))
	usedAt := t0.Add(3 * time.Minute)
	got := consume(t, s, a, usedAt)
	want := approved
	want.State, want.UsedAt = approval.Used, usedAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Fatalf("Consume (-want +got):\n%s", diff)
	}
	wantGet(t, s, want, usedAt)
	// Once only, however late and whatever else happened.
	wantErr(a, usedAt, approval.ErrUsed, approval.Used)
	wantErr(a, usedAt.Add(time.Second), approval.ErrUsed, approval.Used)
	wantErr(a, usedAt.Add(48*time.Hour), approval.ErrUsed, approval.Used)
	wantGet(t, s, want, usedAt.Add(48*time.Hour))

	b := mustCreate(t, s, newApproval(agentB, digestX, t0), t0)
	decide(t, s, b.ID, false, t0.Add(time.Minute))
	wantErr(b, t0.Add(2*time.Minute), approval.ErrDenied, approval.Denied)
	wantState(t, s, b.ID, t0.Add(2*time.Minute), approval.Denied)
}

func testConsumeMismatch(t *testing.T, s approval.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	b := mustCreate(t, s, newApproval(agentB, digestY, t0), t0)
	decide(t, s, b.ID, false, t0.Add(time.Minute))

	check := func(what string, now time.Time) {
		t.Helper()
		for _, c := range []struct {
			id, agent, digest string
		}{
			{a.ID, agentB, digestX}, // another agent
			{a.ID, agentA, digestY}, // another request
			{a.ID, agentB, digestY},
			{a.ID, "", ""},
			{b.ID, agentA, digestY},
			{b.ID, agentB, digestX},
		} {
			got, err := s.Consume(ctx, c.id, c.agent, c.digest, now)
			if !errors.Is(err, approval.ErrMismatch) {
				t.Fatalf("%s: Consume(%s, %s, %s) error = %v; want ErrMismatch", what, c.id, c.agent, c.digest, err)
			}
			if !reflect.ValueOf(got).IsZero() {
				t.Fatalf("%s: Consume with a mismatch leaked %+v", what, got)
			}
		}
	}
	check("pending", t0.Add(time.Minute))
	approved := decide(t, s, a.ID, true, t0.Add(2*time.Minute))
	check("approved", t0.Add(3*time.Minute))
	wantGet(t, s, approved, t0.Add(3*time.Minute)) // the mismatches changed nothing
	check("expired", approved.UseBy.Add(time.Hour))
	consume(t, s, a, t0.Add(4*time.Minute))
	check("used", t0.Add(5*time.Minute))
}

func testConsumeLapsed(t *testing.T, s approval.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	approved := decide(t, s, a.ID, true, t0.Add(time.Minute))
	for _, now := range []time.Time{approved.UseBy, approved.UseBy.Add(time.Microsecond), approved.UseBy.Add(time.Hour)} {
		got, err := s.Consume(ctx, a.ID, a.Agent, a.Digest, now)
		if !errors.Is(err, approval.ErrExpired) || got.ID != a.ID || got.State != approval.Expired {
			t.Fatalf("Consume at UseBy+%v = %s %q, %v; want the approval, expired, ErrExpired", now.Sub(approved.UseBy), got.ID, got.State, err)
		}
	}
	// Nothing changed: before UseBy it is still usable, once.
	wantGet(t, s, approved, approved.UseBy.Add(-time.Microsecond))
	consume(t, s, a, approved.UseBy.Add(-time.Microsecond))

	// Pending past ExpiresAt.
	b := mustCreate(t, s, newApproval(agentB, digestX, t0), t0)
	got, err := s.Consume(ctx, b.ID, b.Agent, b.Digest, b.ExpiresAt)
	if !errors.Is(err, approval.ErrExpired) || got.ID != b.ID || got.State != approval.Expired {
		t.Fatalf("Consume of a lapsed pending approval = %s %q, %v; want expired, ErrExpired", got.ID, got.State, err)
	}
}

func testPurge(t *testing.T, s approval.Store) {
	ctx := t.Context()
	cutoff := t0.Add(10 * time.Hour)
	n := 0
	mk := func(expiresIn time.Duration) approval.Approval {
		n++
		a := newApproval(agentA, fmt.Sprintf("sha256:%064d", n), t0)
		a.ExpiresAt = t0.Add(expiresIn)
		return mustCreate(t, s, a, t0)
	}
	const day = 24 * time.Hour

	deniedOld := mk(time.Hour)
	decide(t, s, deniedOld.ID, false, t0.Add(time.Minute))
	deniedAtCutoff := mk(day)
	decide(t, s, deniedAtCutoff.ID, false, cutoff)
	deniedNew := mk(day)
	decide(t, s, deniedNew.ID, false, cutoff.Add(time.Hour))

	usedOld := mk(time.Hour)
	decide(t, s, usedOld.ID, true, t0.Add(time.Minute))
	consume(t, s, usedOld, t0.Add(2*time.Minute))
	usedNew := mk(day)
	decide(t, s, usedNew.ID, true, cutoff.Add(-time.Minute))
	consume(t, s, usedNew, cutoff.Add(time.Minute))

	pendingLapsed := mk(time.Hour)
	pendingLive := mk(day)
	pendingLapsesAtCutoff := mk(10 * time.Hour) // expired at cutoff, so ended by then

	approvedLapsed := mk(time.Hour)
	decide(t, s, approvedLapsed.ID, true, t0.Add(time.Minute))
	approvedLive := mk(day)
	decide(t, s, approvedLive.ID, true, cutoff.Add(-5*time.Minute)) // usable until cutoff+5m

	// Lapsed approvals that a later Hold of the same request replaced (a store may record
	// them as expired then): they ended when they lapsed, not when they were replaced.
	successor := func(old approval.Approval, at time.Time) approval.Approval {
		a := newApproval(old.Agent, old.Digest, at)
		a.ExpiresAt = at.Add(day)
		return mustCreate(t, s, a, at)
	}
	replacedPending := mk(time.Hour)
	replacedPendingNext := successor(replacedPending, t0.Add(2*time.Hour))
	replacedApproved := mk(day)
	decide(t, s, replacedApproved.ID, true, t0.Add(time.Minute))
	replacedApprovedNext := successor(replacedApproved, t0.Add(2*time.Hour))
	replacedLate := mk(day)
	decide(t, s, replacedLate.ID, true, cutoff.Add(-time.Minute)) // lapses at cutoff+9m
	replacedLateNext := successor(replacedLate, cutoff.Add(time.Hour))
	replacedLatePending := mk(10*time.Hour + 30*time.Minute) // lapses at cutoff+30m
	replacedLatePendingNext := successor(replacedLatePending, cutoff.Add(time.Hour))

	purged, err := s.Purge(ctx, cutoff)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	gone := []approval.Approval{deniedOld, usedOld, pendingLapsed, pendingLapsesAtCutoff, approvedLapsed, replacedPending, replacedApproved}
	kept := []approval.Approval{deniedAtCutoff, deniedNew, usedNew, pendingLive, approvedLive,
		replacedPendingNext, replacedApprovedNext, replacedLate, replacedLateNext, replacedLatePending, replacedLatePendingNext}
	if purged != len(gone) {
		t.Errorf("Purge = %d; want %d", purged, len(gone))
	}
	at := cutoff.Add(2 * time.Hour)
	for _, a := range gone {
		if _, err := s.Get(ctx, a.ID, at); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("after Purge, Get(%s) error = %v; want ErrNotFound", a.ID, err)
		}
	}
	for _, a := range kept {
		get(t, s, a.ID, at)
	}
	if all, err := listAll(s, ctx, "", at); err != nil || len(all) != len(kept) {
		t.Errorf("after Purge, List = %d approvals, %v; want %d", len(all), err, len(kept))
	}
	if again, err := s.Purge(ctx, cutoff); err != nil || again != 0 {
		t.Errorf("Purge again = %d, %v; want 0", again, err)
	}
	// A purged approval's request can be held anew.
	fresh := newApproval(deniedOld.Agent, deniedOld.Digest, at)
	mustCreate(t, s, fresh, at)
	fresh2 := newApproval(pendingLapsed.Agent, pendingLapsed.Digest, at)
	mustCreate(t, s, fresh2, at)
}
