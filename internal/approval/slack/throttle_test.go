package slack

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

// TestSlackInteractionThrottled: requests that are not Slack's (forged, stale, replayed) are
// failed sign-ins of their sender's address, throttled after Burst of them (429, Retry-After),
// while Slack's own clicks, from Slack's address, go on deciding. A click from a Slack user who
// is not an approver is counted and logged but never throttles Slack's address, which every
// approver's clicks share.
func TestSlackInteractionThrottled(t *testing.T) {
	fx := newSlackFixture(t)
	var mu sync.Mutex
	counts := map[string]int{}
	fx.h.API.Throttle = &throttle.Limiter{Burst: 3, Log: fx.logs.logger(), Observe: func(surface string, throttled bool) {
		mu.Lock()
		defer mu.Unlock()
		if throttled {
			surface += "/throttled"
		}
		counts[surface]++
	}}
	const forger, slackAddr = "203.0.113.66:40000", "192.0.2.1:1234"
	from := func(r *http.Request, addr string) *http.Request { r.RemoteAddr = addr; return r }

	for i := range 3 {
		r := from(slackRequest(t, "not-the-secret", fx.now.Add(-time.Duration(i)*time.Second), "U0ALICE", "approve:"+fx.a.ID, fx.a.ID), forger)
		if w := fx.do(r); w.Code != http.StatusUnauthorized {
			t.Fatalf("forged click %d: %d %s", i, w.Code, w.Body)
		}
	}
	// Throttled now, even with a genuine signature.
	w := fx.do(from(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID), forger))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "30" {
		t.Errorf("after 3 forgeries: %d %v %s, want 429 with Retry-After", w.Code, w.Header(), w.Body)
	}
	// Slack's unmapped users: refused, counted, logged, never throttled.
	for i := range 5 {
		r := from(slackRequest(t, testSigningSecret, fx.now.Add(-time.Duration(i+1)*time.Second), "U0NOBODY", "approve:"+fx.a.ID, fx.a.ID), slackAddr)
		if w := fx.do(r); w.Code != http.StatusForbidden {
			t.Fatalf("unmapped user's click %d: %d %s", i, w.Code, w.Body)
		}
	}
	// Slack's own click from an approver still decides.
	if w := fx.do(from(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID), slackAddr)); w.Code != http.StatusOK {
		t.Fatalf("the approver's click during the attack: %d %s", w.Code, w.Body)
	}
	if st := fx.state(t); st != approval.Approved {
		t.Errorf("approval is %s, want approved", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if counts["slack"] != 8 || counts["slack/throttled"] != 1 {
		t.Errorf("observed %v, want 8 failures (3 forged, 5 unmapped) and 1 throttled", counts)
	}
	logs := fx.logs.String()
	if n := strings.Count(logs, "approver sign-in failed"); n != 8 {
		t.Errorf("%d failed sign-ins logged, want 8:\n%s", n, logs)
	}
	if strings.Contains(logs, testSigningSecret) {
		t.Error("the log shows the signing secret")
	}
}
