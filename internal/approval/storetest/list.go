package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
)

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

// testListPages: a listing comes in pages, newest first (then by id), each saying how many
// follow and where the next starts; the pages together are the whole list, whatever the
// state selected, and a cursor written out and read back continues as well.
func testListPages(t *testing.T, s approval.Store) {
	// Nine approvals: three created at the same instant (ordered by id), every third denied.
	var made []approval.Approval
	for i := range 9 {
		at := t0.Add(time.Duration(i) * time.Second)
		if i >= 3 && i <= 5 {
			at = t0.Add(3 * time.Second)
		}
		made = append(made, mustCreate(t, s, newApproval(agentA, digestN(i), at), at))
	}
	now := t0.Add(time.Minute)
	for i := 0; i < 9; i += 3 {
		decide(t, s, made[i].ID, false, now)
	}
	for _, state := range []approval.State{"", approval.Pending, approval.Denied, approval.Used} {
		want, err := listAll(s, t.Context(), state, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(want, approval.ListOrder) {
			t.Fatalf("List(%q) is not newest first, then by id: %v", state, ids(want))
		}
		for _, limit := range []int{1, 2, 4, 9, 10} {
			var got []approval.Approval
			q := approval.Query{State: state, Limit: limit}
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("List(%q) by %d: more pages than approvals", state, limit)
				}
				p, err := s.List(t.Context(), q, now)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Approvals...)
				if len(p.Approvals) > limit || p.More != len(want)-len(got) || (p.More == 0) != p.Next.IsZero() {
					t.Fatalf("List(%q) by %d, page %d: %d approvals, More %d, Next %v; %d of %d listed",
						state, limit, pages, len(p.Approvals), p.More, p.Next, len(got), len(want))
				}
				if p.More == 0 {
					break
				}
				if p.Next != approval.CursorOf(p.Approvals[len(p.Approvals)-1]) {
					t.Fatalf("Next %v is not the page's last approval", p.Next)
				}
				// As a client sends it back.
				if q.After, err = approval.ParseCursor(p.Next.String()); err != nil {
					t.Fatalf("cursor %q: %v", p.Next, err)
				}
			}
			if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
				t.Errorf("List(%q) by %d, pages together (-whole +pages):\n%s", state, limit, diff)
			}
		}
	}
	// A page is as of now, the cursor a place: what changed before it is not listed again.
	p, err := s.List(t.Context(), approval.Query{State: approval.Pending, Limit: 2}, now)
	if err != nil || len(p.Approvals) != 2 || p.More != 4 {
		t.Fatalf("List(pending) by 2 = %v, More %d, %v", ids(p.Approvals), p.More, err)
	}
	decide(t, s, p.Approvals[0].ID, true, now)
	rest, err := s.List(t.Context(), approval.Query{State: approval.Pending, After: p.Next}, now)
	if err != nil || len(rest.Approvals) != 4 || rest.More != 0 || !rest.Next.IsZero() {
		t.Fatalf("the rest after a decision = %v, More %d, %v", ids(rest.Approvals), rest.More, err)
	}
}
