package notify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// coalescing is a dispatcher's config that waits window for a burst to gather.
func (r *notifyRecorder) coalescing(window time.Duration) DispatcherConfig {
	cfg := r.config(nil)
	cfg.Coalesce = window
	return cfg
}

// announced are the calls that announced, each with the ids it names.
func announced(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "announce ") {
			out = append(out, c)
		}
	}
	return out
}

// TestNotifyCoalescesABurst: the requests one agent gets held under one rule within the
// window are one announcement saying how many and which; another agent's, or another rule's,
// are announced apart. The default window is 2 seconds.
func TestNotifyCoalescesABurst(t *testing.T) {
	if d := NewDispatcher(DispatcherConfig{}); d.cfg.Coalesce != 2*time.Second {
		t.Errorf("default Coalesce %v, want 2s", d.cfg.Coalesce)
	}
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.coalescing(300 * time.Millisecond))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops"}
	d.Set(n)

	var burst []approval.Approval
	for range 20 {
		a := notifyApproval("ops")
		burst = append(burst, a)
		d.Enqueue(a)
	}
	apart := notifyApproval("ops")
	apart.Agent = "spiffe://example.org/agent/other"
	d.Enqueue(apart)
	rule := notifyApproval("ops")
	rule.Rule = "another-rule"
	d.Enqueue(rule)
	if got := n.got(); len(got) != 0 {
		t.Errorf("announced before the window closed: %q", got)
	}
	rec.waitOutcomes(t, "ops approval.requested delivered", 3)
	time.Sleep(100 * time.Millisecond) // nothing else comes
	want := "announce " + burst[0].ID
	for _, a := range burst[1:] {
		want += " " + a.ID
	}
	want += " (20 held)"
	got := announced(n.got())
	if diff := cmp.Diff(sortedCopy([]string{want, "announce " + apart.ID, "announce " + rule.ID}), sortedCopy(got)); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestNotifyBurstBounded: a burst names at most MaxAlso other requests, and counts them all.
func TestNotifyBurstBounded(t *testing.T) {
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.coalescing(200 * time.Millisecond))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops"}
	d.Set(n)
	for range 3 * MaxAlso {
		d.Enqueue(notifyApproval("ops"))
	}
	rec.waitOutcome(t, "ops approval.requested delivered")
	got := announced(n.got())
	if len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprintf(" (%d held)", 3*MaxAlso)) ||
		strings.Count(got[0], "apr_") != MaxAlso+1 {
		t.Errorf("announcements: %q", got)
	}
}

// TestNotifyBurstBeforeItsDecision: a decision on a request whose burst is still gathering
// sends the burst's announcement first, at once.
func TestNotifyBurstBeforeItsDecision(t *testing.T) {
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.coalescing(time.Hour))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops"}
	d.Set(n)
	a, b := notifyApproval("ops"), notifyApproval("ops")
	d.Enqueue(a)
	d.Enqueue(b)
	b.State, b.DecidedBy = approval.Approved, "alice"
	d.Decided(b)
	rec.waitOutcome(t, "ops approval.approved delivered")
	want := []string{"announce " + a.ID + " " + b.ID + " (2 held)", "decided " + b.ID + " approved by alice"}
	if diff := cmp.Diff(want, n.got()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// TestNotifyCloseSendsBursts: shutting down announces the bursts still gathering.
func TestNotifyCloseSendsBursts(t *testing.T) {
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.coalescing(time.Hour))
	n := &fakeNotifier{name: "ops"}
	d.Set(n)
	for range 3 {
		d.Enqueue(notifyApproval("ops"))
	}
	d.Close(context.Background())
	if got := n.got(); len(got) != 1 || !strings.HasSuffix(got[0], "(3 held)") {
		t.Errorf("delivered at Close: %q", got)
	}
}

// TestWebhookBurstIsOneEvent: a burst of held requests of one agent and rule, from the gate as
// serve wires it, reaches a webhook as one approval.requested event with how many and the
// others.
func TestWebhookBurstIsOneEvent(t *testing.T) {
	rv := newWebhookReceiver(t, "s3cret")
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.coalescing(300 * time.Millisecond))
	defer d.Close(context.Background())
	d.Set(newTestWebhook(t, rv.URL, "s3cret"))
	gate := &approval.Gate{Announce: d.Enqueue}
	var ids []string
	for range 20 {
		a := notifyApproval("siem")
		ids = append(ids, a.ID)
		gate.Announce(a)
	}
	rec.waitOutcome(t, "siem approval.requested delivered")
	time.Sleep(100 * time.Millisecond)
	events, _, _ := rv.got()
	if len(events) != 1 {
		t.Fatalf("%d events for a burst of 20; want 1", len(events))
	}
	e := events[0]
	var also []string
	for _, a := range e.Also {
		also = append(also, a.ID)
	}
	if e.ID != ids[0]+":approval.requested" || e.Approval.ID != ids[0] || e.Held != 20 || !cmp.Equal(also, ids[1:]) {
		t.Errorf("event %s for %s, held %d, also %q; want %s, 20, %q", e.ID, e.Approval.ID, e.Held, also, ids[0], ids[1:])
	}
}
