package demoagent_test

// The MCP stories against the real helpdesk MCP server: directly, with nothing in front, and
// through a scripted gateway that refuses and holds calls as agentauthz would, in each form
// a refusal can take. internal/e2e plays them through real Envoy and agentauthz.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
)

const (
	mcpApprovalID = "apr_bbbbbbbbbbbbbbbbbbbbbbbbbb"
	// mcpApprovalID2 holds the same call once the first approval is used.
	mcpApprovalID2 = "apr_cccccccccccccccccccccccccc"
)

func playMCP(t *testing.T, cfg demoagent.Config) (*demoagent.Report, string, error) {
	t.Helper()
	var out bytes.Buffer
	cfg.Out = &out
	cfg.PollInterval = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	report, err := demoagent.Run(ctx, cfg)
	return report, out.String(), err
}

func outcomes(r *demoagent.Report, story string) string {
	var got []string
	for _, s := range r.Story(story) {
		got = append(got, s.Tool+":"+s.Outcome)
	}
	return strings.Join(got, " ")
}

// With nothing in front, the server answers everything itself: it refuses the call outside the
// tool's schema and the tool it does not have, and lets the reset through.
func TestMCPStoriesDirect(t *testing.T) {
	for _, version := range []string{"", "2025-11-25", "2025-06-18"} {
		t.Run("protocol "+version, func(t *testing.T) {
			api, base := startHelpdesk(t)
			report, out, err := playMCP(t, demoagent.Config{
				Envoy: base, Stories: demoagent.MCPStories, Direct: true, MCPProtocolVersion: version,
				AgentToken: helpdeskToken, // no agentauthz to inject it
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			want := ":result :result list_tickets:result add_comment:result list_tickets:tool_error delete_ticket:rpc_error reset_password:result"
			if got := outcomes(report, "helpdesk-mcp"); got != want {
				t.Errorf("helpdesk-mcp %s, want %s\n%s", got, want, out)
			}
			if got, want := outcomes(report, "bi-mcp"), ":result :result list_tickets:result"; got != want {
				t.Errorf("bi-mcp %s, want %s\n%s", got, want, out)
			}
			tk, _ := api.Ticket("4712")
			if len(tk.Comments) != 1 || !strings.HasPrefix(tk.Comments[0].Body, "Hi jdoe,") {
				t.Errorf("the comment did not land on the password ticket: %+v", tk.Comments)
			}
			if r := api.Resets(); len(r) != 1 || r[0].Username != "jdoe" || r[0].Reason != demoagent.ResetReason {
				t.Errorf("resets %+v", r)
			}
			for _, want := range []string{
				"open an MCP session\n    POST mcp.acme.internal/mcp",
				"← 4 tools\n        add_comment: Adds a comment",
				`← {"tickets":[{"id":"4711","subject":"VPN drops every few minutes","status":"open","requester":"jdoe",`,
				`tools/call list_tickets {"limit":5000,"status":"open"}` + "\n" + `    ← tool error (isError): validating "arguments": `,
				// At 2026-07-28 the SDK's server sends a JSON-RPC error with HTTP 400, and its
				// client's error says so.
				"← JSON-RPC error -32602: unknown tool \"delete_ticket\"\n      (CallTool's error: calling \"tools/call\": ",
				"← jdoe's password was reset",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("the narration lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// Against the server itself, the agent's own token is refused like any other, and the story
// stops at once saying so.
func TestMCPStoryNeedsTheServersCredential(t *testing.T) {
	_, base := startHelpdesk(t)
	report, out, err := playMCP(t, demoagent.Config{Envoy: base, Stories: []string{"helpdesk-mcp"}, Direct: true})
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err %v\n%s", err, out)
	}
	if s := report.Story("helpdesk-mcp"); len(s) != 1 || s[0].Status != 401 || s[0].Code != "unauthenticated" {
		t.Errorf("steps %+v", s)
	}
}

// mcpDoor plays agentauthz in front of the MCP server: it injects the server's credential,
// refuses list_tickets over its limit and tools it does not know, holds reset_password until
// decided, and answers each refusal in one form. For the BI agent it lists no tools and
// refuses every call.
type mcpDoor struct {
	upstream *httputil.ReverseProxy
	form     string // "rpc", "tool", "text" or "http"
	bi       bool

	// approveAfter decides the held call (verdict, approved when unset) when this many calls
	// found it pending.
	approveAfter int32
	verdict      [2]any // status, code

	mu       sync.Mutex
	decision int    // 0 while pending
	code     string // the code of a refused call
	held     string // the approval holding the call
	seen     []string
	calls    atomic.Int32
}

func newMCPDoor(t *testing.T, base, form string, bi bool) (*mcpDoor, string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	d := &mcpDoor{form: form, bi: bi, held: mcpApprovalID, verdict: [2]any{200, ""}}
	d.upstream = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Header.Set("Authorization", "Bearer "+helpdeskToken)
		r.Out.Header.Del(demoagent.ApprovalHeader)
	}}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return d, srv.URL
}

func (d *mcpDoor) decide(status int, code string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.decision, d.code = status, code
}

func (d *mcpDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name      string         `json:"name"`
			Arguments map[string]any `json:"arguments"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &msg)
	approval := r.Header.Get(demoagent.ApprovalHeader)
	d.mu.Lock()
	d.seen = append(d.seen, fmt.Sprintf("%s %s %s %q %s", r.Host, msg.Method, msg.Params.Name, r.Header.Get("Authorization"), approval))
	decision, code := d.decision, d.code
	d.mu.Unlock()

	switch {
	case d.bi && msg.Method == "tools/list":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[]}}`, msg.ID)
	case d.bi && msg.Method == "tools/call":
		d.refuse(w, msg.ID, http.StatusForbidden, "tool_not_held", "This agent holds no tool of this server.", "")
	case msg.Method != "tools/call":
		d.upstream.ServeHTTP(w, r)
	case msg.Params.Name == "list_tickets" && msg.Params.Arguments["limit"] != nil && msg.Params.Arguments["limit"].(float64) > 100:
		d.refuse(w, msg.ID, http.StatusForbidden, "tool_arguments", "The arguments do not match the tool's input schema.", "")
	case msg.Params.Name == "delete_ticket":
		d.refuse(w, msg.ID, http.StatusForbidden, "tool_not_held", "This agent does not hold delete_ticket.", "")
	case msg.Params.Name == "reset_password" && approval != "":
		// An MCP client sends what the model asks: it has no header to add.
		d.refuse(w, msg.ID, http.StatusBadRequest, "request_malformed", "An MCP call carries no approval header.", "")
	case msg.Params.Name == "reset_password" && decision == 0:
		d.mu.Lock()
		held := d.held
		d.mu.Unlock()
		if d.calls.Add(1) == d.approveAfter {
			d.decide(d.verdict[0].(int), d.verdict[1].(string))
		}
		d.refuse(w, msg.ID, http.StatusPreconditionRequired, "approval_required", "An IT admin must approve this call.", held)
	case msg.Params.Name == "reset_password" && decision == 200:
		// The identical call, approved: through once; the same call again is held anew.
		d.mu.Lock()
		d.decision, d.held = 0, mcpApprovalID2
		d.mu.Unlock()
		d.calls.Store(-1 << 20)
		d.upstream.ServeHTTP(w, r)
	case msg.Params.Name == "reset_password":
		d.refuse(w, msg.ID, decision, code, "Refused.", "")
	default:
		d.upstream.ServeHTTP(w, r)
	}
}

func (d *mcpDoor) refuse(w http.ResponseWriter, id json.RawMessage, status int, code, detail, approvalID string) {
	p := map[string]any{"code": code, "detail": detail, "decision_id": "dec_1"}
	if approvalID != "" {
		p["approval_id"] = approvalID
	}
	pj, _ := json.Marshal(p)
	text := fmt.Sprintf("Refused by agentauthz (%s): %s", code, detail)
	if approvalID != "" {
		text += " Approval " + approvalID + "."
	}
	tj, _ := json.Marshal(text)
	switch d.form {
	case "rpc":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32001,"message":%q,"data":%s}}`, id, code+": "+detail, pj)
	case "tool":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}],"structuredContent":%s,"isError":true}}`, id, tj, pj)
	case "text":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}],"isError":true}}`, id, tj)
	case "http":
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		w.Write(pj)
	}
}

// Through a gateway, in every form of refusal: the two refused calls are refused, the reset is
// held until approved, goes through once with the approval, and its replay is refused.
func TestMCPStoryThroughAGateway(t *testing.T) {
	for _, form := range []string{"rpc", "tool", "text", "http"} {
		t.Run(form, func(t *testing.T) {
			api, base := startHelpdesk(t)
			d, door := newMCPDoor(t, base, form, false)
			d.approveAfter = 3
			report, out, err := playMCP(t, demoagent.Config{Envoy: door, Stories: []string{"helpdesk-mcp"}, AgentToken: "own"})
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			refused := map[string]string{"rpc": "rpc_error", "tool": "tool_error", "text": "tool_error", "http": "http_error"}[form]
			want := fmt.Sprintf(":result :result list_tickets:result add_comment:result list_tickets:%[1]s delete_ticket:%[1]s reset_password:%[1]s reset_password:result reset_password:%[1]s", refused)
			if got := outcomes(report, "helpdesk-mcp"); got != want {
				t.Errorf("outcomes %s, want %s\n%s", got, want, out)
			}
			steps := report.Story("helpdesk-mcp")
			if held := steps[6]; held.ApprovalID != mcpApprovalID || (form != "text" && held.Code != "approval_required") {
				t.Errorf("the held step %+v", held)
			}
			if len(api.Resets()) != 1 {
				t.Errorf("resets %+v", api.Resets())
			}
			for _, want := range []string{
				"agentauthz approvals approve " + mcpApprovalID,
				"repeat the identical call (approval " + mcpApprovalID + ", approved after",
				"← jdoe's password was reset",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("the narration lacks %q:\n%s", want, out)
				}
			}
			if form == "http" && !strings.Contains(out, "what the SDK did not pass on: 428 approval_required") {
				t.Errorf("the narration does not show the dropped problem details:\n%s", out)
			}
			if last := steps[len(steps)-1]; last.ApprovalID != mcpApprovalID2 {
				t.Errorf("the identical call after the approval was used: %+v; want held anew as %s", last, mcpApprovalID2)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			resets := 0
			for _, s := range d.seen {
				if !strings.HasPrefix(s, "mcp.acme.internal ") || !strings.Contains(s, `"Bearer own"`) || strings.Contains(s, "apr_") {
					t.Errorf("a request not as an MCP client sends it: %s", s)
				}
				if strings.Contains(s, "reset_password") {
					resets++
				}
			}
			if resets < 4 { // held, pending twice, approved, held anew
				t.Errorf("%d reset calls:\n%s", resets, strings.Join(d.seen, "\n"))
			}
		})
	}
}

func TestMCPStoryStopsWhenTheApprovalIsDenied(t *testing.T) {
	_, base := startHelpdesk(t)
	d, door := newMCPDoor(t, base, "rpc", false)
	d.approveAfter, d.verdict = 2, [2]any{http.StatusForbidden, "approval_denied"}
	report, out, err := playMCP(t, demoagent.Config{Envoy: door, Stories: []string{"helpdesk-mcp"}})
	if err == nil || !strings.Contains(err.Error(), "approval_denied") {
		t.Fatalf("err %v\n%s", err, out)
	}
	steps := report.Story("helpdesk-mcp")
	if last := steps[len(steps)-1]; last.Outcome != demoagent.OutcomeRPCError || last.Code != "approval_denied" {
		t.Errorf("last step %+v", last)
	}
}

func TestMCPStoryGivesUpWaiting(t *testing.T) {
	_, base := startHelpdesk(t)
	_, door := newMCPDoor(t, base, "tool", false)
	_, out, err := playMCP(t, demoagent.Config{Envoy: door, Stories: []string{"helpdesk-mcp"}, ApprovalTimeout: 30 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not decided") {
		t.Fatalf("err %v\n%s", err, out)
	}
}

// A gateway that lets through what it should refuse fails the story.
func TestMCPStoryFailsWhenNothingRefuses(t *testing.T) {
	_, base := startHelpdesk(t)
	_, door := newMCPDoor(t, base, "rpc", false)
	// Through the door, but told it is direct: the reset is held, not answered.
	_, out, err := playMCP(t, demoagent.Config{Envoy: door, Stories: []string{"helpdesk-mcp"}, Direct: true})
	if err == nil || !strings.Contains(err.Error(), "got JSON-RPC error -32001 approval_required: An IT admin must approve this call., want a result") {
		t.Fatalf("err %v\n%s", err, out)
	}
	// Directly, but told a gateway is in front: the BI agent sees every tool.
	_, out, err = playMCP(t, demoagent.Config{Envoy: base, Stories: []string{"bi-mcp"}, AgentToken: helpdeskToken})
	if err == nil || !strings.Contains(err.Error(), "got 4 tools, want none") {
		t.Fatalf("err %v\n%s", err, out)
	}
}

func TestBIMCPStoryThroughAGateway(t *testing.T) {
	for _, form := range []string{"rpc", "http"} {
		_, base := startHelpdesk(t)
		_, door := newMCPDoor(t, base, form, true)
		report, out, err := playMCP(t, demoagent.Config{Envoy: "http://unused.invalid", BIEnvoy: door, Stories: []string{"bi-mcp"}})
		if err != nil {
			t.Fatalf("%s: %v\n%s", form, err, out)
		}
		if got := outcomes(report, "bi-mcp"); !strings.HasPrefix(got, ":result :result list_tickets:") || strings.HasSuffix(got, ":result") {
			t.Errorf("%s: outcomes %s\n%s", form, got, out)
		}
		if !strings.Contains(out, "← 0 tools") {
			t.Errorf("%s: narration:\n%s", form, out)
		}
	}
}
