package extauthz_test

import (
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/policy"
)

// resetWith is the helpdesk agent's password reset of jdoe, retried with approval id, carrying
// extra headers.
func resetWith(id string, extra map[string]string) *authv3.CheckRequest {
	h := map[string]string{"content-type": "application/json", "authorization": "Bearer agent-own-token", approval.Header: id}
	for k, v := range extra {
		h[k] = v
	}
	return extauthz.HTTPRequest{Principal: "spiffe://acme.internal/agent/helpdesk", Method: "POST",
		Host: "helpdesk.acme.internal", Path: "/v1/users/jdoe/password-reset", Headers: h, Body: resetBody}.CheckRequest()
}

// TestApprovedRetryHeaders: an approval binds the agent, method, host, path, rule and body, and
// no header. That is safe because a header that could make the API act on another request
// never reaches it: an approved retry that adds a path, host or method override is refused
// before the approval is looked at (and the approval stays usable), and one that adds
// forwarded-context headers passes with them removed.
func TestApprovedRetryHeaders(t *testing.T) {
	s := startApprovals(t)
	id := s.hold("password reset", resetRequest("spiffe://acme.internal/agent/helpdesk", "jdoe", resetBody))
	if st, p := s.decide("approve", id, aliceToken, "checked with the user"); st != 200 || p["state"] != "approved" {
		t.Fatalf("alice approves: %d %v", st, p)
	}

	for _, tc := range []struct {
		header, value, code string
	}{
		{"x-original-url", "/v1/users/root/password-reset", "header_override"},
		{"x-rewrite-url", "/v1/users/root/password-reset", "header_override"},
		{"x-forwarded-uri", "/v1/users/root/password-reset", "header_override"},
		{"x-original-host", "admin.acme.internal", "header_override"},
		{"x-http-method-override", "DELETE", "method_override"},
	} {
		s.expect("approved retry with "+tc.header, resetWith(id, map[string]string{tc.header: tc.value}), 400, tc.code)
	}

	// The approval was not used by the refusals: the retry with forwarded-context headers
	// passes, and none of them reaches the API.
	forged := map[string]string{}
	for _, name := range policy.ForwardedHeaders() {
		forged[name] = "admin.acme.internal"
	}
	r := s.check(resetWith(id, forged))
	if !r.Allow || r.Rule != "reset-password" {
		t.Fatalf("approved retry with forwarded-context headers: %+v (%s); want allow", r.want, r.detail)
	}
	for _, name := range policy.ForwardedHeaders() {
		if !slices.Contains(r.HeadersRemoved, name) {
			t.Errorf("the approved retry does not remove %s", name)
		}
		if _, ok := r.Upstream[name]; ok {
			t.Errorf("%s reaches the API on the approved retry", name)
		}
	}
	if !slices.Contains(r.HeadersRemoved, approval.Header) {
		t.Errorf("the approved retry removes %v, not the approval header", r.HeadersRemoved)
	}
	s.expect("the retry again", resetWith(id, nil), 403, "approval_used")
}
