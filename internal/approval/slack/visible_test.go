package slack

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
)

// blockStrings returns every string in v, decoded blocks: what Slack shows and more.
func blockStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case map[string]any:
		var out []string
		for _, x := range v {
			out = append(out, blockStrings(x)...)
		}
		return out
	case []map[string]any:
		var out []string
		for _, x := range v {
			out = append(out, blockStrings(x)...)
		}
		return out
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, blockStrings(x)...)
		}
		return out
	}
	return nil
}

// TestSlackShowsInvisibleCharactersAsMarkers: what an agent sent (path, body), the policy's
// reason and the approver's name and comment reach Slack with bidi controls, zero-width and
// other invisible characters as visible \u{XXXX} markers, in the announcement and the decision.
func TestSlackShowsInvisibleCharactersAsMarkers(t *testing.T) {
	f := newFakeSlack(t)
	s := newTestSlack(t, f, "C0AGENTS")
	hostile := approvaltest.Hostile()
	a := notifyApproval("ops-slack")
	a.Path, a.Reason, a.Body = "/users/"+hostile, hostile, "{\n  \"note\": \""+hostile+"\"\n}"
	if err := s.Announce(context.Background(), notify.Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Comment = approval.Denied, "alice"+hostile, time.Now(), hostile
	if err := s.Decided(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 2 {
		t.Fatalf("calls: %+v", calls)
	}
	for _, c := range calls {
		approvaltest.WantVisible(t, c.Method+" text", c.Text, false)
		approvaltest.WantVisible(t, c.Method+" blocks", strings.Join(blockStrings(c.Blocks), "\n"), true)
		if !strings.Contains(c.BlocksJ, `/users/a\\u{202a}b`) {
			t.Errorf("%s: the path is not shown with markers: %s", c.Method, c.BlocksJ)
		}
	}
}
