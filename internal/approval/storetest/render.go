package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// renderer counts its calls and renders a body that names the approval it was made for.
type renderer struct {
	calls atomic.Int32
	body  string
}

func (r *renderer) render() string {
	r.calls.Add(1)
	return r.body
}

// holdRendering holds a with a body renderer and returns what Hold returned and how many times
// it rendered.
func holdRendering(t *testing.T, s approval.Store, a approval.Approval, now time.Time) (approval.Approval, bool, int) {
	t.Helper()
	r := &renderer{body: "{\n  \"for\": \"" + a.ID + "\"\n}"}
	a.Body = "" // the renderer's to fill in
	got, created, err := s.Hold(t.Context(), a, r.render, approval.Limits{}, now)
	if err != nil {
		t.Fatalf("Hold(%s): %v", a.ID, err)
	}
	if created && got.Body != r.body {
		t.Fatalf("Hold(%s) created an approval with body %q, want the rendered %q", a.ID, got.Body, r.body)
	}
	return got, created, int(r.calls.Load())
}

// testHoldRendersOnlyNew: Hold renders the body of an approval it creates, once, and stores it;
// a request answered by its live approval renders nothing, pending or approved; once that
// approval has ended, the next Hold renders again.
func testHoldRendersOnlyNew(t *testing.T, s approval.Store) {
	first, created, calls := holdRendering(t, s, newApproval(agentA, digestX, t0), t0)
	if !created || calls != 1 {
		t.Fatalf("first Hold: created %v, rendered %d times; want created, rendered once", created, calls)
	}
	if got := get(t, s, first.ID, t0); got.Body != first.Body {
		t.Fatalf("stored body %q, want the rendered %q", got.Body, first.Body)
	}
	now := t0.Add(time.Minute)
	for range 3 {
		got, created, calls := holdRendering(t, s, newApproval(agentA, digestX, now), now)
		if created || got.ID != first.ID || calls != 0 {
			t.Fatalf("Hold of a pending request: %s, created %v, rendered %d times; want %s, not rendered", got.ID, created, calls, first.ID)
		}
		if got.Body != first.Body {
			t.Fatalf("Hold of a pending request returned body %q, want the stored %q", got.Body, first.Body)
		}
	}
	decide(t, s, first.ID, true, now)
	now = now.Add(time.Minute)
	if got, created, calls := holdRendering(t, s, newApproval(agentA, digestX, now), now); created || got.ID != first.ID || calls != 0 {
		t.Fatalf("Hold of an approved request: %s, created %v, rendered %d times; want %s, not rendered", got.ID, created, calls, first.ID)
	}
	// Another agent's request with the same digest is another request.
	if _, created, calls := holdRendering(t, s, newApproval(agentB, digestX, now), now); !created || calls != 1 {
		t.Fatalf("Hold of another agent's request: created %v, rendered %d times; want created, rendered once", created, calls)
	}
	// Past UseBy the approval has ended: a new one, rendered anew.
	now = now.Add(time.Hour)
	fresh, created, calls := holdRendering(t, s, newApproval(agentA, digestX, now), now)
	if !created || fresh.ID == first.ID || calls != 1 {
		t.Fatalf("Hold after the approval lapsed: %s, created %v, rendered %d times; want a new one, rendered once", fresh.ID, created, calls)
	}
	// Without a renderer, the body given is stored.
	a := newApproval(agentB, digestY, now)
	if got, created := hold(t, s, a, now); !created || got.Body != a.Body {
		t.Fatalf("Hold without a renderer: created %v, body %q; want %q", created, got.Body, a.Body)
	}
}

// testConcurrentHoldRenders: of many concurrent holds of one request, the one that creates the
// approval stored its own rendering, and every Hold rendered at most once.
func testConcurrentHoldRenders(t *testing.T, s approval.Store) {
	const n = 20
	rs := make([]*renderer, n)
	got := make([]approval.Approval, n)
	created := make([]bool, n)
	errs := make([]error, n)
	gate(n, func(i int) {
		a := newApproval(agentA, digestX, t0)
		rs[i] = &renderer{body: "rendered for " + a.ID}
		a.Body = ""
		got[i], created[i], errs[i] = s.Hold(t.Context(), a, rs[i].render, approval.Limits{}, t0)
	})
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Hold %d: %v", i, errs[i])
		}
		if c := rs[i].calls.Load(); c > 1 {
			t.Fatalf("Hold %d rendered %d times", i, c)
		}
		if created[i] {
			if winner >= 0 {
				t.Fatalf("%d concurrent Hold calls created two approvals", n)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("%d concurrent Hold calls created no approval", n)
	}
	for i := range n {
		if got[i].ID != got[winner].ID || got[i].Body != rs[winner].body {
			t.Fatalf("Hold %d returned %s with body %q; want %s with %q", i, got[i].ID, got[i].Body, got[winner].ID, rs[winner].body)
		}
	}
	if stored := get(t, s, got[winner].ID, t0); stored.Body != rs[winner].body {
		t.Fatalf("stored body %q, want the creator's %q", stored.Body, rs[winner].body)
	}
}
