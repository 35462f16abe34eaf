package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// gate starts n goroutines together and waits for them all.
func gate(n int, fn func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			fn(i)
		})
	}
	start.Done()
	done.Wait()
}

func testConcurrentConsume(t *testing.T, s approval.Store) {
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	decide(t, s, a.ID, true, t0.Add(time.Minute))
	now := t0.Add(2 * time.Minute)
	const n = 50
	errs := make([]error, n)
	got := make([]approval.Approval, n)
	gate(n, func(i int) {
		got[i], errs[i] = s.Consume(t.Context(), a.ID, a.Agent, a.Digest, now)
	})
	ok, used := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			if got[i].State != approval.Used || !got[i].UsedAt.Equal(now) {
				t.Errorf("successful Consume returned %+v", got[i])
			}
		case errors.Is(err, approval.ErrUsed):
			used++
		default:
			t.Errorf("Consume %d: %v", i, err)
		}
	}
	if ok != 1 || used != n-1 {
		t.Fatalf("%d concurrent Consume calls: %d succeeded, %d ErrUsed; want 1 and %d", n, ok, used, n-1)
	}
	wantState(t, s, a.ID, now, approval.Used)
}

// concurrentHold holds the same request from n goroutines at now and checks that exactly one
// created an approval and that all returned it.
func concurrentHold(t *testing.T, s approval.Store, n int, now time.Time) approval.Approval {
	t.Helper()
	errs := make([]error, n)
	got := make([]approval.Approval, n)
	created := make([]bool, n)
	gate(n, func(i int) {
		got[i], created[i], errs[i] = s.Hold(t.Context(), newApproval(agentA, digestX, now), nil, approval.Limits{}, now)
	})
	var winner approval.Approval
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Hold %d: %v", i, errs[i])
		}
		if created[i] {
			if winner.ID != "" {
				t.Fatalf("%d concurrent Hold calls created both %s and %s", n, winner.ID, got[i].ID)
			}
			winner = got[i]
		}
	}
	if winner.ID == "" {
		t.Fatalf("%d concurrent Hold calls: none created an approval", n)
	}
	for i := range n {
		if got[i].ID != winner.ID || got[i].State != approval.Pending {
			t.Fatalf("Hold %d returned %s (%q); want %s pending", i, got[i].ID, got[i].State, winner.ID)
		}
	}
	live, err := listAll(s, t.Context(), approval.Pending, now)
	if err != nil || len(live) != 1 || live[0].ID != winner.ID {
		t.Fatalf("List(pending) = %v, %v; want [%s]", ids(live), err, winner.ID)
	}
	return winner
}

func testConcurrentHold(t *testing.T, s approval.Store) {
	concurrentHold(t, s, 20, t0)
}

func testConcurrentHoldAfterLapse(t *testing.T, s approval.Store) {
	old := concurrentHold(t, s, 20, t0)
	now := old.ExpiresAt.Add(time.Minute)
	fresh := concurrentHold(t, s, 20, now)
	if fresh.ID == old.ID {
		t.Fatal("Hold past ExpiresAt returned the lapsed approval")
	}
	wantState(t, s, old.ID, now, approval.Expired)
	if all, err := listAll(s, t.Context(), "", now); err != nil || len(all) != 2 {
		t.Fatalf("List = %v, %v; want the lapsed approval and the new one", ids(all), err)
	}
}

func testConcurrentDecide(t *testing.T, s approval.Store) {
	a := mustCreate(t, s, newApproval(agentA, digestX, t0), t0)
	now := t0.Add(time.Minute)
	const n = 20
	errs := make([]error, n)
	got := make([]approval.Approval, n)
	gate(n, func(i int) {
		got[i], errs[i] = s.Decide(t.Context(), a.ID, approval.Verdict{Approve: i%2 == 0, By: fmt.Sprintf("user:%d", i)}, now)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("Decide %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, approval.ErrNotPending):
			t.Fatalf("Decide %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Decide succeeded")
	}
	final := get(t, s, a.ID, now)
	wantSt := approval.Denied
	if winner%2 == 0 {
		wantSt = approval.Approved
	}
	if final.State != wantSt || final.DecidedBy != fmt.Sprintf("user:%d", winner) {
		t.Fatalf("after concurrent Decide: %q by %q; the winner was user:%d", final.State, final.DecidedBy, winner)
	}
}
