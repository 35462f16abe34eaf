package demo_test

// The demo's two stories, end to end on loopback: agentauthz (the demo policy, the approval gate
// and the approver API, wired as `agentauthz serve` wires them), the helpdesk and BI backends,
// the test stand-in for Envoy (one per agent identity, as each agent has its own mTLS
// certificate), and the scripted demo agent. While the agent waits for approval, alice approves
// through the HTTP API, as a human would.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/demo/bi"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/envoytest"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

const (
	helpdeskAgent = "spiffe://acme.internal/agent/helpdesk"
	biAgent       = "spiffe://acme.internal/agent/bi"
	// helpdeskToken is the helpdesk API's credential: agentauthz injects it, the API accepts
	// only it. agentToken is the agent's own credential, which no backend may ever see.
	helpdeskToken = "SENTINEL-helpdesk-token-5e1a9c"
	agentToken    = "SENTINEL-agent-own-token-77b2f0"
	aliceToken    = "SENTINEL-alice-approver-token-0d3c4e"
)

// recorded is one request a backend received.
type recorded struct {
	method, uri string
	header      http.Header
	body        string
}

// recorder wraps a backend and keeps every request it receives.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recorded
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
	rec.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec.next.ServeHTTP(w, r)
}

func (rec *recorder) all() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
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

func TestStory(t *testing.T) {
	// agentauthz, wired as serve wires it with the demo policy: the approval gate and the
	// approver API share a store; alice of it-admins is the demo approver.
	store, _ := servertest.DemoStore(t, helpdeskToken)
	approvals := memstore.New()
	approvers := &api.API{
		Store: approvals,
		Auth:  signin.NewTokens(map[string]approval.Approver{aliceToken: {Name: "alice", Groups: []string{"it-admins"}}}),
	}
	authz := servertest.Start(t, server.Config{
		GRPCAddr:  "127.0.0.1:0",
		HTTPAddr:  "127.0.0.1:0",
		Store:     store,
		Approvals: &approval.Gate{Store: approvals},
		APIHandler: func(mux *http.ServeMux) {
			approvers.Register(mux)
			(&console.Console{API: approvers}).Register(mux)
		},
		// The race detector slows checks down; the default 200ms deadline is for production.
		CheckTimeout: 5 * time.Second,
	})
	approvalsURL := "http://" + authz.HTTPAddr().String()

	// The backends, each behind a recorder of what reached it.
	helpdeskAPI, err := helpdesk.New(helpdesk.Config{Token: helpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	biAPI, err := bi.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	helpdeskSeen := &recorder{next: helpdeskAPI}
	biSeen := &recorder{next: biAPI}
	upstreams := map[string]string{
		demoagent.HelpdeskHost: serve(t, helpdeskSeen).URL,
		demoagent.BIHost:       serve(t, biSeen).URL,
	}

	// The console the agent will point the human to is there.
	if resp, err := http.Get(approvalsURL + "/approvals/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /approvals/: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The Envoy stand-ins: one per agent identity, with compose/envoy.yaml's ext_authz settings
	// (header_map, body as bytes up to 64 KiB and never partial, port stripped, underscores
	// refused).
	client := servertest.Client(t, authz)
	front := func(principal string) string {
		return serve(t, envoytest.MustNew(envoytest.Config{
			Client:                       client,
			Principal:                    principal,
			LocalPrincipal:               "spiffe://acme.internal/envoy",
			Upstreams:                    upstreams,
			WithRequestBody:              &envoytest.BodyOptions{MaxRequestBytes: 65536, PackAsBytes: true},
			EncodeRawHeaders:             true,
			StripAnyHostPort:             true,
			RejectHeadersWithUnderscores: true,
			Timeout:                      10 * time.Second,
		})).URL
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	type result struct {
		report *demoagent.Report
		err    error
	}
	done := make(chan result, 1)
	go func() {
		report, err := demoagent.Run(ctx, demoagent.Config{
			Envoy:           front(helpdeskAgent),
			BIEnvoy:         front(biAgent),
			Out:             &out,
			AgentToken:      agentToken,
			PollInterval:    25 * time.Millisecond,
			ApprovalTimeout: 30 * time.Second,
			ApprovalsURL:    approvalsURL,
		})
		done <- result{report, err}
	}()

	// A human looks at the pending approvals, sees what the agent asks for, and approves it.
	id := awaitPending(ctx, t, approvalsURL)
	if strings.Contains(out.String(), "approved after") {
		t.Fatal("the agent went on before anyone approved")
	}
	status, body := approvalCall(t, "POST", approvalsURL+"/v1/approvals/"+id+"/approve", aliceToken, `{"comment":"Verified with jdoe by phone."}`)
	if status != http.StatusOK || body["state"] != "approved" || body["decided_by"] != "alice" {
		t.Fatalf("alice's approval: %d %v", status, body)
	}

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatalf("the agent did not finish:\n%s", out.String())
	}
	narration := out.String()
	t.Logf("the demo agent said:\n%s", narration)
	if res.err != nil {
		t.Fatalf("demo agent: %v", res.err)
	}

	// Every step got the answer the story tells.
	type want struct {
		status int
		code   string
	}
	wantSteps := map[string][]want{
		"helpdesk": {
			{200, ""},                  // list open tickets
			{200, ""},                  // read the ticket
			{201, ""},                  // comment on it
			{428, "approval_required"}, // ask for the password reset: held
			{200, ""},                  // the identical retry after approval
			{403, "approval_used"},     // replaying it
		},
		"bi": {
			{200, ""},                  // revenue
			{200, ""},                  // customers' names and orders
			{403, "graphql_field"},     // customers' e-mail
			{403, "graphql_operation"}, // a mutation
		},
	}
	for story, wants := range wantSteps {
		steps := res.report.Story(story)
		if len(steps) != len(wants) {
			t.Errorf("%s story: %d steps, want %d: %+v", story, len(steps), len(wants), steps)
			continue
		}
		for i, w := range wants {
			if s := steps[i]; s.Status != w.status || s.Code != w.code {
				t.Errorf("%s step %d (%s): got %d %q, want %d %q", story, i+1, s.Name, s.Status, s.Code, w.status, w.code)
			}
		}
	}
	helpdeskSteps := res.report.Story("helpdesk")
	if len(helpdeskSteps) == 6 && (helpdeskSteps[3].ApprovalID != id || helpdeskSteps[4].ApprovalID != id) {
		t.Errorf("the held and the approved request name approvals %q and %q, alice approved %q",
			helpdeskSteps[3].ApprovalID, helpdeskSteps[4].ApprovalID, id)
	}
	for _, s := range res.report.Steps {
		if s.Status >= 400 && (s.Detail == "" || s.DecisionID == "") {
			t.Errorf("%s: a denial without detail or decision id: %+v", s.Name, s)
		}
	}
	for _, want := range []string{id, approvalsURL + "/approvals/", "agentauthz approvals approve " + id, "graphql_field", "graphql_operation"} {
		if !strings.Contains(narration, want) {
			t.Errorf("the narration does not mention %q", want)
		}
	}

	// What reached the helpdesk API: the four allowed requests, each with the injected
	// credential, never the agent's own, never the approval header.
	hd := helpdeskSeen.all()
	var got []string
	for _, r := range hd {
		got = append(got, r.method+" "+r.uri)
		if auth := r.header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+helpdeskToken {
			t.Errorf("%s %s reached the helpdesk API with Authorization %q, want the injected credential", r.method, r.uri, auth)
		}
		if v := r.header.Get(approval.Header); v != "" {
			t.Errorf("%s %s reached the helpdesk API with %s: %s", r.method, r.uri, approval.Header, v)
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
	resets := helpdeskAPI.Resets()
	if len(resets) != 1 || resets[0].Username != "jdoe" || resets[0].Reason != demoagent.ResetReason {
		t.Errorf("password resets performed: %+v, want exactly one, of jdoe", resets)
	}
	if tk, _ := helpdeskAPI.Ticket("4712"); len(tk.Comments) != 1 {
		t.Errorf("ticket 4712 has comments %+v, want the agent's one", tk.Comments)
	}

	// What reached the BI API: the two allowed queries, no credential, no personal data asked,
	// no mutation; nothing was deleted.
	bs := biSeen.all()
	if len(bs) != 2 {
		t.Errorf("the BI API received %d requests, want the 2 allowed queries: %+v", len(bs), bs)
	}
	for _, r := range bs {
		if v := r.header.Values("Authorization"); len(v) > 0 {
			t.Errorf("a BI request carried Authorization %q", v)
		}
		if strings.Contains(r.body, "email") || strings.Contains(r.body, "mutation") {
			t.Errorf("a refused document reached the BI API: %s", r.body)
		}
	}
	if n := biAPI.Customers(); n != 4 {
		t.Errorf("%d customers left, want all 4", n)
	}

	// The agent's own credential reached no backend, in any header or body.
	for _, r := range append(hd, bs...) {
		for k, vs := range r.header {
			for _, v := range vs {
				if strings.Contains(v, agentToken) {
					t.Errorf("%s %s reached a backend with the agent's own token in %s", r.method, r.uri, k)
				}
			}
		}
		if strings.Contains(r.body, agentToken) {
			t.Errorf("%s %s reached a backend with the agent's own token in its body", r.method, r.uri)
		}
	}

	// The approval is used up.
	if status, body := approvalCall(t, "GET", approvalsURL+"/v1/approvals/"+id, aliceToken, ""); status != 200 || body["state"] != "used" {
		t.Errorf("approval after the story: %d %v, want used", status, body)
	}
}

// awaitPending waits until exactly one request is pending, checks it is the agent's password
// reset, and returns its id.
func awaitPending(ctx context.Context, t *testing.T, base string) string {
	t.Helper()
	for {
		status, body := approvalCall(t, "GET", base+"/v1/approvals?state=pending", aliceToken, "")
		if status != http.StatusOK {
			t.Fatalf("listing pending approvals: %d %v", status, body)
		}
		list, _ := body["approvals"].([]any)
		if len(list) > 1 {
			t.Fatalf("%d pending approvals, want 1: %v", len(list), list)
		}
		if len(list) == 1 {
			a := list[0].(map[string]any)
			if a["agent"] != helpdeskAgent || a["method"] != "POST" || a["host"] != demoagent.HelpdeskHost ||
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

// approvalCall calls the approver API with a bearer token and decodes the JSON answer.
func approvalCall(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, out
}
