package approval_test

import (
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
)

func TestApproverMay(t *testing.T) {
	alice := approval.Approver{Name: "alice", Groups: []string{"it-admins", "finance"}}
	for _, tc := range []struct {
		approvers []string
		want      bool
	}{
		{[]string{"group:it-admins"}, true},
		{[]string{"group:sales", "group:finance"}, true},
		{[]string{"user:alice"}, true},
		{[]string{"user:bob", "group:sales"}, false},
		{[]string{"group:alice"}, false}, // a user's name is not a group
		{[]string{"user:it-admins"}, false},
		{[]string{"group:IT-admins"}, false},
		{[]string{"it-admins"}, false},
		{[]string{"alice"}, false},
		{[]string{"group:"}, false},
		{nil, false},
	} {
		if got := alice.May(tc.approvers); got != tc.want {
			t.Errorf("alice.May(%q) = %v, want %v", tc.approvers, got, tc.want)
		}
	}
	if (approval.Approver{Name: "carol"}).May([]string{"group:"}) {
		t.Error(`an approver without groups may decide for "group:"`)
	}
}

func TestIsWorkload(t *testing.T) {
	for name, want := range map[string]bool{
		"spiffe://acme.internal/agent/helpdesk": true, "SPIFFE://acme.internal/agent": true, "Spiffe:x": true,
		"alice": false, "alice@example.com": false, "spiffe": false, "": false, "user:spiffe://x": false,
	} {
		if got := approval.IsWorkload(name); got != want {
			t.Errorf("IsWorkload(%q) = %v, want %v", name, got, want)
		}
	}
}
