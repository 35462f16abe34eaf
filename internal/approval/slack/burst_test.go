package slack

import (
	"context"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
)

// TestSlackAnnouncesABurstOnce: a burst of requests of one agent and rule is one message: the
// first request with its buttons, how many are held, the next ten by id and request, and how
// many more.
func TestSlackAnnouncesABurstOnce(t *testing.T) {
	f := newFakeSlack(t)
	s := newTestSlack(t, f, "C0AGENTS")
	first := notifyApproval("ops-slack")
	var also []approval.Approval
	for range 12 {
		also = append(also, notifyApproval("ops-slack"))
	}
	if err := s.Announce(context.Background(), notify.Announcement{Approval: first, Also: also, Held: 13}); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 1 {
		t.Fatalf("calls: %+v", calls)
	}
	c := calls[0]
	for _, want := range []string{"13 requests held at once", "reset-password", "and 12 more", also[0].ID, also[9].ID, "and 2 more",
		`"action_id":"approve:` + first.ID + `"`} {
		if !strings.Contains(c.BlocksJ, want) {
			t.Errorf("blocks lack %q: %s", want, c.BlocksJ)
		}
	}
	if strings.Contains(c.BlocksJ, also[10].ID) || strings.Count(c.BlocksJ, `"action_id":"approve:`) != 1 {
		t.Errorf("blocks name more than ten others, or have buttons for more than one: %s", c.BlocksJ)
	}
	if !strings.Contains(c.Text, "and 12 more requests of the agent") {
		t.Errorf("fallback text: %q", c.Text)
	}
	// The buttons stay just before the footer.
	if n := len(c.Blocks); n < 3 || c.Blocks[n-2]["type"] != "actions" || c.Blocks[n-1]["type"] != "context" {
		t.Errorf("block order: %v", c.BlocksJ)
	}
}
