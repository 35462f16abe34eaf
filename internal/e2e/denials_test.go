package e2e_test

import (
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// TestDenials: every deny status the product uses, as an agent receives it through real Envoy:
// the status, agentauthz's problem details and decision id header where agentauthz refused, the
// bare status where Envoy itself did; and in every case, nothing reached the API.
func TestDenials(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	helpdeskAgent := s.Client(stack.HelpdeskAgent)
	nothingReached := func(t *testing.T, before int) {
		t.Helper()
		if n := s.Helpdesk.Count() + s.BI.Count() - before; n != 0 {
			t.Errorf("%d requests reached an API", n)
		}
	}
	sent := func() int { return s.Helpdesk.Count() + s.BI.Count() }

	for _, c := range []struct {
		name         string
		agent        string
		method, url  string
		body         string
		status       int
		code         string
		headers      []string
		wantViolated string // a field the violations must name
	}{
		{name: "400 undeclared query parameter", agent: stack.HelpdeskAgent, method: "GET", url: helpdesk + "/v1/tickets?include_deleted=true",
			status: 400, code: "query_invalid", wantViolated: "query.include_deleted"},
		{name: "400 ambiguous path", agent: stack.HelpdeskAgent, method: "GET", url: helpdesk + "/v1/tickets/%2e%2e/tickets/4711",
			status: 400, code: "path_ambiguous"},
		{name: "400 comment breaking the schema", agent: stack.HelpdeskAgent, method: "POST", url: helpdesk + "/v1/tickets/4712/comments",
			body: `{"body":"ok","visibility":"public"}`, status: 400, code: "body_schema"},
		{name: "403 scope missing", agent: stack.BIAgent, method: "GET", url: helpdesk + "/v1/tickets/4711",
			status: 403, code: "scope_missing"},
		{name: "403 route unknown", agent: stack.HelpdeskAgent, method: "DELETE", url: helpdesk + "/v1/users/jdoe",
			status: 403, code: "route_unknown"},
		{name: "413 body over the route's max_bytes", agent: stack.HelpdeskAgent, method: "POST", url: helpdesk + "/v1/tickets/4712/comments",
			body: `{"body":"` + strings.Repeat("a", 20000) + `"}`, status: 413, code: "body_too_large"},
		{name: "428 approval required", agent: stack.HelpdeskAgent, method: "POST", url: helpdesk + "/v1/users/jdoe/password-reset",
			body: `{"reason":"locked out"}`, status: 428, code: "approval_required"},
		{name: "403 unknown approval", agent: stack.HelpdeskAgent, method: "POST", url: helpdesk + "/v1/users/jdoe/password-reset",
			body: `{"reason":"locked out"}`, headers: []string{"x-agentauthz-approval: apr_doesnotexist"}, status: 403, code: "approval_unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := sent()
			a := send(t, s.Client(c.agent), c.method, c.url, c.body, c.headers...)
			wantDenial(t, s, a, c.status, c.code)
			if c.wantViolated != "" && !strings.Contains(a.body, `"field":"`+c.wantViolated+`"`) {
				t.Errorf("violations do not name %s: %s", c.wantViolated, a.body)
			}
			nothingReached(t, before)
		})
	}

	// 401: a certificate of the trust domain whose URI SANs are an agent's path (Envoy's SAN
	// matcher admits it: any SAN may match) and, first, an ID of another trust domain, which
	// Envoy sends as the principal. SPIRE never issues such a certificate; agentauthz judges the
	// identity Envoy sends, and refuses it.
	t.Run("401 trust domain not accepted", func(t *testing.T) {
		cert := s.PKI.IssueURIs(t, "spiffe://evil.example/agent/helpdesk", stack.HelpdeskAgent)
		before := sent()
		a := send(t, s.ClientWith(&cert, "http/1.1"), "GET", helpdesk+"/v1/tickets/4711", "")
		wantDenial(t, s, a, 401, "trust_domain_unknown")
		nothingReached(t, before)
	})

	// 413 from Envoy: a body over the front proxy's max_request_bytes (65536) is refused by Envoy
	// before any check; no problem details, no decision.
	t.Run("413 body over max_request_bytes", func(t *testing.T) {
		before, decided := sent(), len(s.Authz.Decisions.All())
		a := send(t, helpdeskAgent, "POST", helpdesk+"/v1/tickets/4712/comments", `{"body":"`+strings.Repeat("a", 70000)+`"}`)
		if a.status != 413 || a.problem != nil || a.body != "Payload Too Large" || a.header.Get(extauthz.DecisionIDHeader) != "" {
			t.Errorf("got %d %q %s, want Envoy's bare 413", a.status, a.header.Get("content-type"), a.body)
		}
		if n := len(s.Authz.Decisions.All()) - decided; n != 0 {
			t.Errorf("%d checks reached agentauthz, want none", n)
		}
		nothingReached(t, before)
	})

	// 503 from agentauthz: it cannot decide (here: no policy in force) and says so with problem
	// details, which Envoy passes on as they are.
	t.Run("503 policy not loaded", func(t *testing.T) {
		snap := s.Authz.Store.Swap(nil)
		defer s.Authz.Store.Swap(snap)
		before := sent()
		a := send(t, helpdeskAgent, "GET", helpdesk+"/v1/tickets/4711", "")
		wantDenial(t, s, a, 503, "policy_not_loaded")
		nothingReached(t, before)
	})

	// 400 from Envoy: a header name with an underscore is refused before any check.
	t.Run("400 header with an underscore", func(t *testing.T) {
		before, decided := sent(), len(s.Authz.Decisions.All())
		a := send(t, helpdeskAgent, "GET", helpdesk+"/v1/tickets/4711", "", "x_api_key: k")
		if a.status != 400 || a.problem != nil {
			t.Errorf("got %d %s, want Envoy's bare 400", a.status, a.body)
		}
		if n := len(s.Authz.Decisions.All()) - decided; n != 0 {
			t.Errorf("%d checks reached agentauthz, want none", n)
		}
		nothingReached(t, before)
	})

	// 404 from Envoy: a host no virtual host serves has no route, and Envoy answers it itself
	// (route_not_found) before the ext_authz filter asks anything; agentauthz's host_unknown is
	// never reached through this front proxy.
	t.Run("404 host without a virtual host", func(t *testing.T) {
		before, decided := sent(), len(s.Authz.Decisions.All())
		a := send(t, helpdeskAgent, "GET", "https://payroll.acme.internal/v1/salaries", "")
		if a.status != 404 || a.problem != nil {
			t.Errorf("got %d %s, want Envoy's bare 404", a.status, a.body)
		}
		if n := len(s.Authz.Decisions.All()) - decided; n != 0 {
			t.Errorf("%d checks reached agentauthz, want none", n)
		}
		nothingReached(t, before)
		l := s.WaitAccessLog(t, func(l map[string]string) bool { return l["authority"] == "payroll.acme.internal" })
		if l["response_code_details"] != "route_not_found" || l["decision_id"] != "" {
			t.Errorf("access log %v, want route_not_found without a decision", l)
		}
	})
}
