package e2e_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// TestDemoAgent runs the scripted demo agent (internal/demo/demoagent, what cmd/demo-agent and
// the compose demo run) against real Envoy, each story with its agent's X.509-SVID. While the
// helpdesk agent waits for approval, alice approves through the approvals API, as a human
// would.
func TestDemoAgent(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	approvalsURL := s.Authz.ApprovalsURL()
	if resp, err := http.Get(approvalsURL + "/approvals/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the console the agent points to: GET /approvals/: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	run := func(story, agent string) (*demoagent.Report, error) {
		return demoagent.Run(ctx, demoagent.Config{
			Envoy:           s.URL(),
			Stories:         []string{story},
			Client:          s.Client(agent),
			Out:             &out,
			AgentToken:      agentToken,
			PollInterval:    25 * time.Millisecond,
			ApprovalTimeout: 30 * time.Second,
			ApprovalsURL:    approvalsURL,
		})
	}
	type result struct {
		report *demoagent.Report
		err    error
	}
	done := make(chan result, 1)
	go func() {
		r, err := run("helpdesk", stack.HelpdeskAgent)
		done <- result{r, err}
	}()

	id := awaitPending(ctx, t, s)
	if strings.Contains(out.String(), "approved after") {
		t.Fatal("the agent went on before anyone approved")
	}
	status, body := approvalCall(t, s, "POST", "/v1/approvals/"+id+"/approve", `{"comment":"Verified with jdoe by phone."}`)
	if status != http.StatusOK || body["state"] != "approved" || body["decided_by"] != "alice" {
		t.Fatalf("alice's approval: %d %v", status, body)
	}
	var helpdeskRun result
	select {
	case helpdeskRun = <-done:
	case <-ctx.Done():
		t.Fatalf("the agent did not finish:\n%s", out.String())
	}
	if helpdeskRun.err != nil {
		t.Fatalf("helpdesk story: %v\n%s", helpdeskRun.err, out.String())
	}
	biReport, err := run("bi", stack.BIAgent)
	if err != nil {
		t.Fatalf("bi story: %v\n%s", err, out.String())
	}
	narration := out.String()
	t.Logf("the demo agent said:\n%s", narration)

	type want struct {
		status int
		code   string
	}
	for story, c := range map[string]struct {
		report *demoagent.Report
		want   []want
	}{
		"helpdesk": {helpdeskRun.report, []want{
			{200, ""},                  // list open tickets
			{200, ""},                  // read the ticket
			{201, ""},                  // comment on it
			{428, "approval_required"}, // ask for the password reset: held
			{200, ""},                  // the identical retry after approval
			{403, "approval_used"},     // replaying it
		}},
		"bi": {biReport, []want{
			{200, ""},                  // revenue
			{200, ""},                  // customers' names and orders
			{403, "graphql_field"},     // customers' e-mail
			{403, "graphql_operation"}, // a mutation
		}},
	} {
		steps := c.report.Story(story)
		if len(steps) != len(c.want) {
			t.Errorf("%s story: %d steps, want %d: %+v", story, len(steps), len(c.want), steps)
			continue
		}
		for i, w := range c.want {
			if st := steps[i]; st.Status != w.status || st.Code != w.code {
				t.Errorf("%s step %d (%s): got %d %q, want %d %q", story, i+1, st.Name, st.Status, st.Code, w.status, w.code)
			}
		}
		for _, st := range steps {
			if st.Status >= 400 && (st.Detail == "" || st.DecisionID == "") {
				t.Errorf("%s: a denial without detail or decision id: %+v", st.Name, st)
			}
		}
	}
	if st := helpdeskRun.report.Story("helpdesk"); len(st) == 6 && (st[3].ApprovalID != id || st[4].ApprovalID != id) {
		t.Errorf("the held and the approved request name approvals %q and %q, alice approved %q", st[3].ApprovalID, st[4].ApprovalID, id)
	}
	// The ticket the agent read had no requester e-mail or phone: the response rule removed them.
	for _, w := range []string{id, approvalsURL + "/approvals/", "agentauthz approvals approve " + id, "graphql_field", "graphql_operation",
		"no requester e-mail or phone (the response rule removed them)"} {
		if !strings.Contains(narration, w) {
			t.Errorf("the narration does not mention %q", w)
		}
	}

	// What reached the helpdesk API: the four allowed requests, each with the injected
	// credential, never the agent's own, never the approval header. The agent's polls while the
	// reset was held reached nothing.
	var got []string
	for _, r := range s.Helpdesk.Received() {
		got = append(got, r.Method+" "+r.URI)
		if auth := r.Header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+stack.HelpdeskToken {
			t.Errorf("%s %s reached the helpdesk API with Authorization %q, want the injected credential", r.Method, r.URI, auth)
		}
		if v := r.Header.Get(approval.Header); v != "" {
			t.Errorf("%s %s reached the helpdesk API with %s: %s", r.Method, r.URI, approval.Header, v)
		}
	}
	wantSeen := []string{
		"GET /v1/tickets?status=open&limit=10",
		"GET /v1/tickets/4712",
		"POST /v1/tickets/4712/comments",
		"POST /v1/users/jdoe/password-reset",
	}
	if strings.Join(got, "\n") != strings.Join(wantSeen, "\n") {
		t.Errorf("the helpdesk API received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantSeen, "\n"))
	}
	if r := s.HelpdeskAPI.Resets(); len(r) != 1 || r[0].Username != "jdoe" || r[0].Reason != demoagent.ResetReason {
		t.Errorf("password resets performed: %+v, want exactly one, of jdoe", r)
	}
	if tk, _ := s.HelpdeskAPI.Ticket("4712"); len(tk.Comments) != 1 {
		t.Errorf("ticket 4712 has comments %+v, want the agent's one", tk.Comments)
	}
	if bs := s.BI.Received(); len(bs) != 2 {
		t.Errorf("the BI API received %d requests, want the 2 allowed queries", len(bs))
	}
	if n := s.BIAPI.Customers(); n != 4 {
		t.Errorf("%d customers left, want all 4", n)
	}
	noCredentialLeak(t, append(s.Helpdesk.Received(), s.BI.Received()...))
	if status, body := approvalCall(t, s, "GET", "/v1/approvals/"+id, ""); status != 200 || body["state"] != "used" {
		t.Errorf("approval after the story: %d %v, want used", status, body)
	}
}

// awaitPending waits until exactly one request is pending, checks it is the agent's password
// reset, and returns its id.
func awaitPending(ctx context.Context, t *testing.T, s *stack.Stack) string {
	t.Helper()
	for {
		status, body := approvalCall(t, s, "GET", "/v1/approvals?state=pending", "")
		if status != http.StatusOK {
			t.Fatalf("listing pending approvals: %d %v", status, body)
		}
		list, _ := body["approvals"].([]any)
		if len(list) > 1 {
			t.Fatalf("%d pending approvals, want 1: %v", len(list), list)
		}
		if len(list) == 1 {
			a := list[0].(map[string]any)
			if a["agent"] != stack.HelpdeskAgent || a["method"] != "POST" || a["host"] != demoagent.HelpdeskHost ||
				a["path"] != "/v1/users/jdoe/password-reset" || a["rule"] != "reset-password" ||
				!strings.Contains(a["body"].(string), demoagent.ResetReason) {
				t.Fatalf("the pending approval is not the agent's password reset: %v", a)
			}
			return a["id"].(string)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no approval became pending")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// syncBuffer is the agent's narration, read while the agent writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
