package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
)

const mcpURL = "https://" + demoagent.MCPHost + demoagent.MCPPath

// TestMCPStories plays the MCP stories of the demo agent, with the official MCP Go SDK's client,
// through real Envoy and agentauthz with the demo policy, at revision 2026-07-28 (the SDK's
// newest) and 2025-11-25: the helpdesk agent lists and calls its tools, is refused an argument
// outside a tool's schema and a tool it does not hold, its password reset is held until alice
// approves it, the identical call then passes once and the same call again is held anew; the
// BI agent may use nothing. At the MCP server: only allowed calls arrived, each with the
// injected credential and never the agent's own.
func TestMCPStories(t *testing.T) {
	for _, version := range []string{"", "2025-11-25"} {
		name := version
		if name == "" {
			name = "newest"
		}
		t.Run(name, func(t *testing.T) { mcpStories(t, version) })
	}
}

func mcpStories(t *testing.T, version string) {
	s := stack.Start(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	run := func(story, agent string) (*demoagent.Report, error) {
		return demoagent.Run(ctx, demoagent.Config{
			Envoy: s.URL(), Stories: []string{story}, Client: s.Client(agent), Out: &out,
			AgentToken: agentToken, PollInterval: 25 * time.Millisecond, ApprovalTimeout: 30 * time.Second,
			ApprovalsURL: s.Authz.ApprovalsURL(), MCPProtocolVersion: version,
		})
	}
	type result struct {
		report *demoagent.Report
		err    error
	}
	done := make(chan result, 1)
	go func() {
		r, err := run("helpdesk-mcp", stack.HelpdeskAgent)
		done <- result{r, err}
	}()
	id := awaitPendingMCP(ctx, t, s)
	if status, body := approvalCall(t, s, "POST", "/v1/approvals/"+id+"/approve", `{"comment":"Verified by phone."}`); status != http.StatusOK || body["state"] != "approved" {
		t.Fatalf("alice's approval: %d %v", status, body)
	}
	var helpdesk result
	select {
	case helpdesk = <-done:
	case <-ctx.Done():
		t.Fatalf("the agent did not finish:\n%s", out.String())
	}
	if helpdesk.err != nil {
		t.Fatalf("helpdesk-mcp: %v\n%s", helpdesk.err, out.String())
	}
	bi, err := run("bi-mcp", stack.BIAgent)
	if err != nil {
		t.Fatalf("bi-mcp: %v\n%s", err, out.String())
	}
	t.Logf("the demo agent said:\n%s", out.String())

	steps := helpdesk.report.Story("helpdesk-mcp")
	var got []string
	for _, st := range steps {
		got = append(got, st.Tool+":"+st.Outcome+":"+st.Code)
		if st.Outcome != demoagent.OutcomeResult && st.DecisionID == "" {
			t.Errorf("a refusal without a decision id: %+v", st)
		}
	}
	want := []string{
		":result:", // the session
		":result:", // tools/list
		"list_tickets:result:",
		"add_comment:result:",
		"list_tickets:tool_error:mcp_arguments",
		"delete_ticket:rpc_error:mcp_tool",
		"reset_password:tool_error:approval_required",
		"reset_password:result:",
		"reset_password:tool_error:approval_required",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("helpdesk-mcp steps:\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
	if len(steps) == len(want) && (steps[6].ApprovalID != id || steps[8].ApprovalID == id || steps[8].ApprovalID == "") {
		t.Errorf("approvals: held %q, held anew %q; alice approved %q", steps[6].ApprovalID, steps[8].ApprovalID, id)
	}
	for _, st := range bi.Story("bi-mcp") {
		if st.Tool != "" && st.Outcome == demoagent.OutcomeResult {
			t.Errorf("the BI agent's call went through: %+v", st)
		}
	}
	if !strings.Contains(out.String(), "0 tools") && !strings.Contains(out.String(), "no tools") {
		t.Errorf("the BI agent saw tools:\n%s", out.String())
	}

	// At the MCP server: every message with the injected credential only; tools/call only of
	// allowed calls, the reset exactly once.
	calls := map[string]int{}
	for _, r := range s.Helpdesk.Received() {
		if r.URI != demoagent.MCPPath {
			continue
		}
		if auth := r.Header.Values("Authorization"); len(auth) != 1 || auth[0] != "Bearer "+stack.HelpdeskToken {
			t.Errorf("an MCP message reached the server with Authorization %q", auth)
		}
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if err := json.Unmarshal(r.Body, &msg); err != nil {
			t.Errorf("the server received %q: %v", r.Body, err)
		}
		if msg.Method == "tools/call" {
			calls[msg.Params.Name]++
		}
	}
	if calls["reset_password"] != 1 || calls["delete_ticket"] != 0 || calls["list_tickets"] != 1 || calls["add_comment"] != 1 {
		t.Errorf("tool calls at the server: %v; want list_tickets, add_comment and reset_password once each", calls)
	}
}

// awaitPendingMCP waits for the MCP password reset to be held and returns its approval.
func awaitPendingMCP(ctx context.Context, t *testing.T, s *stack.Stack) string {
	t.Helper()
	for {
		status, body := approvalCall(t, s, "GET", "/v1/approvals?state=pending", "")
		if status != http.StatusOK {
			t.Fatalf("listing pending approvals: %d %v", status, body)
		}
		if list, _ := body["approvals"].([]any); len(list) == 1 {
			a := list[0].(map[string]any)
			if a["agent"] != stack.HelpdeskAgent || a["host"] != demoagent.MCPHost || a["rule"] != "helpdesk/reset_password" ||
				!strings.Contains(a["body"].(string), demoagent.ResetReason) || strings.Contains(a["body"].(string), "jsonrpc") {
				t.Fatalf("the pending approval is not the agent's MCP password reset, shown as its arguments: %v", a)
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

// TestMCPDenialsThroughEnvoy: what reaches an MCP client through real Envoy for each kind of
// refusal: the status, a JSON-RPC body with the request's id, the decision id header, and
// nothing at the server.
func TestMCPDenialsThroughEnvoy(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	c := s.Client(stack.HelpdeskAgent)
	meta26 := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	for _, tc := range []struct {
		name    string
		agent   string
		body    string
		headers []string
		status  int
		rpcCode int  // the JSON-RPC error's code; 0 for a tool result marked isError
		noID    bool // answered without the request's id
		code    string
	}{
		{name: "an argument outside the tool's schema", body: `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"list_tickets","arguments":{"limit":5000}}}`,
			headers: []string{"MCP-Protocol-Version: 2025-11-25"}, status: 200, code: "mcp_arguments"},
		{name: "a tool it does not hold", body: `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"delete_ticket","arguments":{"id":"4711"}}}`,
			headers: []string{"MCP-Protocol-Version: 2025-11-25"}, status: 403, rpcCode: -30403, code: "mcp_tool"},
		{name: "a batch", body: `[{"jsonrpc":"2.0","id":13,"method":"tools/list"}]`,
			headers: []string{"MCP-Protocol-Version: 2025-11-25"}, status: 400, rpcCode: -32600, noID: true, code: "mcp_invalid"},
		{name: "2026-07-28 headers disagreeing with the body", body: `{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"4711"},` + meta26 + `}}`,
			headers: []string{"MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call", "Mcp-Name: reset_password"}, status: 400, rpcCode: -32020, code: "mcp_header_mismatch"},
		{name: "the BI agent", agent: stack.BIAgent, body: `{"jsonrpc":"2.0","id":15,"method":"tools/list"}`,
			headers: []string{"MCP-Protocol-Version: 2025-11-25"}, status: 403, rpcCode: -30403, code: "scope_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := c
			if tc.agent != "" {
				client = s.Client(tc.agent)
			}
			before := s.Helpdesk.Count()
			a := send(t, client, "POST", mcpURL, tc.body, append(tc.headers, "Accept: application/json, text/event-stream")...)
			if a.status != tc.status || !strings.HasPrefix(a.header.Get("content-type"), "application/json") {
				t.Fatalf("got %d %q %s, want %d application/json", a.status, a.header.Get("content-type"), a.body, tc.status)
			}
			var rpc struct {
				ID     json.RawMessage `json:"id"`
				Result *struct {
					IsError bool `json:"isError"`
					Content []struct {
						Text string `json:"text"`
					} `json:"content"`
				} `json:"result"`
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
					Data    struct {
						Code       string `json:"code"`
						DecisionID string `json:"decision_id"`
					} `json:"data"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(a.body), &rpc); err != nil {
				t.Fatalf("not JSON-RPC: %v: %s", err, a.body)
			}
			id := a.header.Get(extauthz.DecisionIDHeader)
			switch {
			case tc.rpcCode == 0:
				if rpc.Result == nil || !rpc.Result.IsError || len(rpc.Result.Content) == 0 ||
					!strings.Contains(rpc.Result.Content[0].Text, tc.code) || !strings.Contains(rpc.Result.Content[0].Text, id) {
					t.Errorf("want a tool result marked isError naming %s and decision %s: %s", tc.code, id, a.body)
				}
			default:
				if rpc.Error == nil || rpc.Error.Code != tc.rpcCode || rpc.Error.Data.Code != tc.code || rpc.Error.Data.DecisionID != id || id == "" {
					t.Errorf("want JSON-RPC error %d with data.code %s and decision %s: %s", tc.rpcCode, tc.code, id, a.body)
				}
			}
			if wantID := !tc.noID; wantID == (string(rpc.ID) == "null" || len(rpc.ID) == 0) {
				t.Errorf("answer id %s (want the request's: %v)", rpc.ID, wantID)
			}
			if n := s.Helpdesk.Count() - before; n != 0 {
				t.Errorf("%d requests reached the MCP server", n)
			}
		})
	}
}

// hostTransport sends every request with the MCP server's host name, as an agent configured with
// the server's URL does, through the stack's loopback address.
type hostTransport struct{ base http.RoundTripper }

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = demoagent.MCPHost
	return h.base.RoundTrip(r)
}

// TestMCPApprovalByURLElicitation: an unmodified MCP Go SDK client of revision 2026-07-28 that
// takes URL elicitations gets, for a held call, an input-required result naming the console's
// page of the approval; its user (here, the test) approves there; the SDK calls again with the
// request state, and the call goes through, once (tampered and foreign states: approval tests).
func TestMCPApprovalByURLElicitation(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := s.Client(stack.HelpdeskAgent)
	httpClient := &http.Client{Transport: hostTransport{base.Transport}}
	var asked []string
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked = append(asked, req.Params.URL)
			id, found := strings.CutPrefix(req.Params.URL, stack.ConsoleURL+"/approvals/requests/")
			if req.Params.Mode != "url" || !found {
				t.Errorf("elicitation %+v, want the console's page of the approval", req.Params)
				return &mcp.ElicitResult{Action: "decline"}, nil
			}
			if len(asked) == 1 {
				// The user opens the page; an IT admin approves there.
				if status, body := approvalCall(t, s, "POST", "/v1/approvals/"+id+"/approve", `{"comment":"ok"}`); status != http.StatusOK {
					t.Errorf("approving %s: %d %v", id, status, body)
				}
			}
			return &mcp.ElicitResult{Action: "accept"}, nil
		},
	})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.URL() + demoagent.MCPPath, HTTPClient: httpClient,
		DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("the session speaks %s, want 2026-07-28", v)
	}
	args := map[string]any{"username": "jdoe", "reason": demoagent.ResetReason}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "reset_password", Arguments: args})
	if err != nil || res.IsError {
		t.Fatalf("the held call, approved through its URL: %v %+v", err, res)
	}
	if len(asked) != 1 {
		t.Errorf("the client was asked %d times (%v), want once", len(asked), asked)
	}
	if n := len(s.HelpdeskAPI.Resets()); n != 1 {
		t.Errorf("%d password resets at the server, want 1", n)
	}
}
