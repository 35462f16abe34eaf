package e2e_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
)

const helpdesk = "https://" + demoagent.HelpdeskHost

// TestHelpdeskStory plays the helpdesk story over real HTTP through real Envoy, as a plain
// client: list and read tickets, comment with a valid and an invalid body, a password reset
// held for approval, approved by alice through the approvals API, retried, passed once and
// refused the second time. At the helpdesk API it checks what arrived: exactly the allowed
// requests, each from Envoy with the injected credential, never the agent's own, never the
// approval header.
func TestHelpdeskStory(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	c := s.Client(stack.HelpdeskAgent)
	var allowed []string // what the API must have received, in order

	// ok sends a request the policy allows and checks what the API received.
	ok := func(method, target, body, rule string, status int, headers ...string) (answer, stack.Received) {
		t.Helper()
		before := s.Helpdesk.Count()
		a := send(t, c, method, helpdesk+target, body, headers...)
		if a.status != status {
			t.Fatalf("%s %s: %d %s, want %d", method, target, a.status, a.body, status)
		}
		if id := a.header.Get("x-agentauthz-decision-id"); id != "" {
			t.Errorf("%s %s: an allowed answer carries decision id %s; agentauthz sets it on denials only", method, target, id)
		}
		got := s.Helpdesk.Received()
		if len(got) != before+1 {
			t.Fatalf("%s %s: the API received %d requests, want 1", method, target, len(got)-before)
		}
		r := got[before]
		allowed = append(allowed, method+" "+target)
		if r.Method != method || r.URI != target || r.Host != demoagent.HelpdeskHost || r.Peer != stack.EnvoyID {
			t.Errorf("the API received %s %s (host %s) from %q, want %s %s (host %s) from Envoy", r.Method, r.URI, r.Host, r.Peer, method, target, demoagent.HelpdeskHost)
		}
		if auth := r.Header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+stack.HelpdeskToken {
			t.Errorf("%s %s reached the API with Authorization %q, want only the injected credential", method, target, auth)
		}
		if v := r.Header.Values(approval.Header); len(v) > 0 {
			t.Errorf("%s %s reached the API with %s %q", method, target, approval.Header, v)
		}
		if string(r.Body) != body {
			t.Errorf("%s %s reached the API with body %q, want %q", method, target, r.Body, body)
		}
		allowedID(t, s, r.Header, rule)
		return a, r
	}
	// denied sends a request the policy refuses and checks that nothing reached the API.
	denied := func(method, target, body string, status int, code string, headers ...string) answer {
		t.Helper()
		before := s.Helpdesk.Count()
		a := send(t, c, method, helpdesk+target, body, headers...)
		wantDenial(t, s, a, status, code)
		if n := s.Helpdesk.Count() - before; n != 0 {
			t.Errorf("%s %s was denied, yet %d requests reached the API", method, target, n)
		}
		return a
	}

	a, _ := ok("GET", "/v1/tickets?status=open&limit=10", "", "list-tickets", 200)
	var list struct {
		Tickets []struct{ ID string } `json:"tickets"`
	}
	if err := json.Unmarshal([]byte(a.body), &list); err != nil || len(list.Tickets) == 0 {
		t.Fatalf("the ticket list %q: %v", a.body, err)
	}
	ok("GET", "/v1/tickets/4712", "", "get-ticket", 200)

	comment := `{"body":"Hi jdoe, I have asked IT to reset your password."}`
	ok("POST", "/v1/tickets/4712/comments", comment, "comment-ticket", 201)
	bad := denied("POST", "/v1/tickets/4712/comments", `{"body":"ok","visibility":"public"}`, 400, "body_schema")
	if v, _ := bad.problem["violations"].([]any); len(v) == 0 {
		t.Errorf("body_schema without violations: %s", bad.body)
	}

	// The password reset is held: 428, approval_required, and the approval's id.
	reset := `{"reason":"User locked out after travel; identity verified by phone callback","notify_user":true}`
	const resetPath = "/v1/users/jdoe/password-reset"
	held := denied("POST", resetPath, reset, 428, "approval_required")
	id := held.str("approval_id")
	if !strings.HasPrefix(held.body, `{"type":"urn:agentauthz:problem:approval_required","title":"Approval required","status":428,`) ||
		id == "" || held.str("approval_state") != "pending" || held.str("approval_expires_at") == "" || held.str("rule") != "reset-password" {
		t.Fatalf("the 428's problem: %s", held.body)
	}
	// The id the agent got is the one approvers see, unchanged.
	status, body := approvalCall(t, s, "GET", "/v1/approvals?state=pending", "")
	pending, _ := body["approvals"].([]any)
	if status != 200 || len(pending) != 1 {
		t.Fatalf("pending approvals: %d %v, want the reset", status, body)
	}
	if p := pending[0].(map[string]any); p["id"] != id || p["agent"] != stack.HelpdeskAgent || p["path"] != resetPath || !sameJSON(p["body"], reset) {
		t.Fatalf("the pending approval %v is not the agent's reset %s", p, id)
	}
	// Retrying before anyone approved is still held.
	denied("POST", resetPath, reset, 428, "approval_required", approval.Header+": "+id)

	status, body = approvalCall(t, s, "POST", "/v1/approvals/"+id+"/approve", `{"comment":"Verified with jdoe by phone."}`)
	if status != http.StatusOK || body["state"] != "approved" || body["decided_by"] != "alice" {
		t.Fatalf("alice's approval: %d %v", status, body)
	}

	// The identical retry passes once; the API performs the reset once.
	ok("POST", resetPath, reset, "reset-password", 200, approval.Header+": "+id)
	if r := s.HelpdeskAPI.Resets(); len(r) != 1 || r[0].Username != "jdoe" {
		t.Errorf("resets performed: %+v, want jdoe's", r)
	}
	denied("POST", resetPath, reset, 403, "approval_used", approval.Header+": "+id)
	if status, body := approvalCall(t, s, "GET", "/v1/approvals/"+id, ""); status != 200 || body["state"] != "used" {
		t.Errorf("the approval after use: %d %v, want used", status, body)
	}

	// Exactly the allowed requests reached the API; the agent's token never did.
	var got []string
	for _, r := range s.Helpdesk.Received() {
		got = append(got, r.Method+" "+r.URI)
	}
	if strings.Join(got, "\n") != strings.Join(allowed, "\n") {
		t.Errorf("the helpdesk API received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(allowed, "\n"))
	}
	noCredentialLeak(t, s.Helpdesk.Received())
	if tk, _ := s.HelpdeskAPI.Ticket("4712"); len(tk.Comments) != 1 {
		t.Errorf("ticket 4712 has comments %+v, want the one valid comment", tk.Comments)
	}
}

// TestStrippedQuery: with strip_unknown_query on a route, agentauthz allows a request with an
// undeclared query parameter and has Envoy remove it (query_parameters_to_remove): the API
// receives the request without it.
func TestStrippedQuery(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	files := stack.DemoFiles(t)
	for i, f := range files {
		if f.Name == "policy/acme.yaml" {
			const at = "        - id: listTickets               # GET /v1/tickets?status=&limit=\n          scope: tickets:read\n"
			if !strings.Contains(string(f.Data), at) {
				t.Fatalf("acme.yaml changed: no %q", at)
			}
			files[i].Data = []byte(strings.Replace(string(f.Data), at, at+"          strip_unknown_query: true\n", 1))
		}
	}
	s.Authz.Reload(files)

	c := s.Client(stack.HelpdeskAgent)
	a := send(t, c, "GET", helpdesk+"/v1/tickets?utm_source=agent&status=open&trace=1&limit=5", "")
	if a.status != 200 {
		t.Fatalf("%d %s, want 200", a.status, a.body)
	}
	got := s.Helpdesk.Received()
	// Envoy rebuilds the query when it removes a parameter: what is left comes sorted by name
	// (Envoy keeps parameters in a sorted map), not in the order the agent sent and agentauthz
	// checked. The values are not re-encoded.
	if len(got) != 1 || got[0].URI != "/v1/tickets?limit=5&status=open" {
		t.Fatalf("the API received %+v, want GET /v1/tickets?limit=5&status=open", got)
	}
	allowedID(t, s, got[0].Header, "list-tickets")

	// A parameter that differs from a declared one only by case is refused, never stripped.
	before := s.Helpdesk.Count()
	wantDenial(t, s, send(t, c, "GET", helpdesk+"/v1/tickets?Status=open", ""), 400, "query_invalid")
	if s.Helpdesk.Count() != before {
		t.Error("a refused request reached the API")
	}
}

// sameJSON reports whether a (a string holding JSON) and b hold the same JSON value.
func sameJSON(a any, b string) bool {
	as, _ := a.(string)
	var av, bv any
	if json.Unmarshal([]byte(as), &av) != nil || json.Unmarshal([]byte(b), &bv) != nil {
		return false
	}
	return reflect.DeepEqual(av, bv)
}
