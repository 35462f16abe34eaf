package demoagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MCPHost and MCPPath are where the demo's helpdesk MCP server is: https://mcp.acme.internal/mcp.
const (
	MCPHost = "mcp.acme.internal"
	MCPPath = "/mcp"
)

// What a story expects of an MCP call.
type mcpWant int

const (
	wantResult  mcpWant = iota // an answer
	wantRefused                // a refusal, in whichever form
	wantHeld                   // a refusal naming the approval that holds the call
)

// mcpCall is one tools/call of a story.
type mcpCall struct {
	name     string
	tool     string
	args     map[string]any
	approval string // sent in the approval header when set
	quiet    bool   // neither narrated nor recorded (the approval poll)
}

// mcpEndpoint is the MCP endpoint behind the front door at base.
func (a *agent) mcpEndpoint(base string) string {
	if a.cfg.MCP != "" {
		return a.cfg.MCP
	}
	return base + MCPPath
}

// openMCP opens the agent's MCP session, retrying while the front door starts. A refusal is
// narrated and returned as the answer, with a nil session.
func (a *agent) openMCP(ctx context.Context, endpoint string) (*mcpSession, mcpAnswer, error) {
	s := &mcpSession{
		client:   mcp.NewClient(&mcp.Implementation{Name: "acme-demo-agent", Version: "1.0"}, nil),
		endpoint: endpoint,
		http:     mcpHTTPClient(a.cfg.Client, a.cfg.AgentToken),
		version:  a.cfg.MCPProtocolVersion,
	}
	a.n++
	a.printf("%2d. open an MCP session\n    POST %s%s: server/discover, or the initialize handshake\n", a.n, MCPHost, pathOf(endpoint))
	deadline := time.Now().Add(a.cfg.StartupWait)
	for {
		ex := &exchange{}
		err := s.connect(context.WithValue(ctx, exchangeKey{}, ex))
		if err == nil {
			res := s.cs.InitializeResult()
			server := "an unnamed server"
			if res.ServerInfo != nil {
				server = res.ServerInfo.Name + " " + res.ServerInfo.Version
			}
			a.printf("    ← protocol %s, %s\n", res.ProtocolVersion, server)
			a.recordMCP(mcpCall{name: "open an MCP session"}, mcpAnswer{outcome: OutcomeResult, ex: *ex})
			return s, mcpAnswer{outcome: OutcomeResult}, nil
		}
		if !startupRetry(err, ex, deadline) {
			ans, cerr := classify(&mcp.CallToolResult{}, err, ex)
			if cerr != nil {
				return nil, ans, cerr
			}
			a.recordMCP(mcpCall{name: "open an MCP session"}, ans)
			a.showMCP(ans)
			return nil, ans, nil
		}
		a.printf("    … the front door is not ready (%v); retrying\n", err)
		select {
		case <-ctx.Done():
			return nil, mcpAnswer{}, ctx.Err()
		case <-time.After(a.cfg.PollInterval):
		}
	}
}

func pathOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Path != "" {
		return u.Path
	}
	return MCPPath
}

// listMCPTools lists the tools the server shows the agent, narrated.
func (a *agent) listMCPTools(ctx context.Context, s *mcpSession) ([]*mcp.Tool, mcpAnswer, error) {
	a.n++
	a.printf("%2d. list the tools\n    tools/list\n", a.n)
	tools, ans, err := s.listTools(ctx)
	if err != nil {
		return nil, ans, err
	}
	a.recordMCP(mcpCall{name: "list the tools"}, ans)
	if ans.outcome != OutcomeResult {
		a.showMCP(ans)
		return nil, ans, s.recover(ctx, ans)
	}
	a.printf("    ← %s\n", plural(len(tools), "tool"))
	for _, t := range tools {
		a.printf("        %s: %s\n", t.Name, t.Description)
	}
	return tools, ans, nil
}

// doMCP calls a tool and records the step; the caller narrates the answer.
func (a *agent) doMCP(ctx context.Context, s *mcpSession, c mcpCall) (mcpAnswer, error) {
	if !c.quiet {
		a.n++
		a.printf("%2d. %s\n    tools/call %s %s", a.n, c.name, c.tool, argsJSON(c.args))
		if c.approval != "" {
			a.printf(" with %s: %s", ApprovalHeader, c.approval)
		}
		a.printf("\n")
	}
	ans, err := s.callTool(ctx, c.tool, c.args, c.approval)
	if err != nil {
		return ans, err
	}
	if !c.quiet {
		a.recordMCP(c, ans)
	}
	return ans, s.recover(ctx, ans)
}

// recover opens a new session after an HTTP refusal, which ends the SDK's session.
func (s *mcpSession) recover(ctx context.Context, ans mcpAnswer) error {
	if ans.outcome != OutcomeHTTPError {
		return nil
	}
	s.close()
	if err := s.connect(ctx); err != nil {
		return fmt.Errorf("opening another MCP session: %w", err)
	}
	return nil
}

// recordMCP adds an MCP step to the report.
func (a *agent) recordMCP(c mcpCall, ans mcpAnswer) {
	status := ans.ex.status
	if ans.ex.refused != 0 {
		status = ans.ex.refused
	}
	a.report.Steps = append(a.report.Steps, Step{
		Story: a.story, Name: c.name, Method: "POST", Host: MCPHost, Path: pathOf(a.base), Status: status,
		Code: ans.problem.Code, Detail: ans.problem.Detail, DecisionID: ans.problem.DecisionID,
		ApprovalID: firstNonEmpty(ans.approvalID(), c.approval), Tool: c.tool, Outcome: ans.outcome,
	})
}

// showMCP prints an answer as the agent's model gets it.
func (a *agent) showMCP(ans mcpAnswer) {
	switch ans.outcome {
	case OutcomeResult:
		a.printf("    ← %s\n", indent(ans.text()))
	case OutcomeToolError:
		a.printf("    ← tool error (isError): %s\n", indent(ans.text()))
	case OutcomeRPCError:
		a.printf("    ← JSON-RPC error %d: %s\n", ans.rpc.Code, ans.rpc.Message)
		if len(ans.rpc.Data) > 0 {
			a.printf("      data: %s\n", clip(ans.rpc.Data, 300))
		}
		a.printf("      (CallTool's error: %v)\n", ans.err)
	case OutcomeHTTPError:
		a.printf("    ← HTTP %d with no MCP answer in it; CallTool's error: %v\n", ans.ex.refused, ans.err)
		if p := ans.ex.problem; p.Code != "" {
			a.printf("      what the SDK did not pass on: %d %s: %s\n", ans.ex.refused, p.Code, p.Detail)
		}
		a.printf("      (the SDK ends its session on such an answer; the agent opens another)\n")
	}
	for _, v := range ans.problem.Violations {
		a.printf("        - %s: %s\n", v.Field, v.Message)
	}
	if ans.problem.DecisionID != "" {
		a.printf("      (decision %s)\n", ans.problem.DecisionID)
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

// describeMCP says what an answer was, for an error.
func describeMCP(ans mcpAnswer) string {
	switch ans.outcome {
	case OutcomeResult:
		return "a result"
	case OutcomeToolError:
		return "a tool error: " + string(clip([]byte(ans.text()), 200))
	case OutcomeRPCError:
		return fmt.Sprintf("JSON-RPC error %d %s", ans.rpc.Code, ans.rpc.Message)
	}
	return fmt.Sprintf("HTTP %d %s", ans.ex.refused, ans.problem.Code)
}

// expectMCP narrates an answer and checks it is what the story wants.
func (a *agent) expectMCP(ans mcpAnswer, want mcpWant) error {
	a.showMCP(ans)
	ok := false
	switch want {
	case wantResult:
		ok = ans.outcome == OutcomeResult
	case wantRefused:
		ok = ans.outcome != OutcomeResult
	case wantHeld:
		ok = ans.outcome != OutcomeResult && ans.approvalID() != ""
	}
	if !ok {
		return fmt.Errorf("step %d got %s, want %s", a.n, describeMCP(ans), [...]string{"a result", "a refusal", "a hold for approval"}[want])
	}
	return nil
}

// structured decodes a result's structured content into v.
func structured(ans mcpAnswer, v any) error {
	b, err := json.Marshal(ans.result.StructuredContent)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return fmt.Errorf("the result's structured content is not what the tool promises: %v", err)
	}
	return nil
}

// helpdeskMCPStory is the IT helpdesk agent's day over MCP: tickets, a comment, two calls
// agentauthz refuses, and a password reset that a human must approve.
func (a *agent) helpdeskMCPStory(ctx context.Context) error {
	endpoint := a.mcpEndpoint(a.cfg.Envoy)
	a.begin("helpdesk-mcp", "the IT helpdesk agent over MCP", endpoint)
	s, ans, err := a.openMCP(ctx, endpoint)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("step %d got %s, want a session", a.n, describeMCP(ans))
	}
	defer s.close()

	tools, ans, err := a.listMCPTools(ctx, s)
	if err != nil {
		return err
	}
	if ans.outcome != OutcomeResult {
		return fmt.Errorf("step %d got %s, want the tools", a.n, describeMCP(ans))
	}
	for _, need := range []string{"list_tickets", "add_comment", "reset_password"} {
		if !slices.ContainsFunc(tools, func(t *mcp.Tool) bool { return t.Name == need }) {
			return fmt.Errorf("step %d: the server does not list %s", a.n, need)
		}
	}

	ans, err = a.doMCP(ctx, s, mcpCall{name: "list open tickets", tool: "list_tickets", args: map[string]any{"status": "open", "limit": 5}})
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, wantResult); err != nil {
		return err
	}
	var list struct {
		Tickets []ticket `json:"tickets"`
	}
	if err := structured(ans, &list); err != nil {
		return err
	}
	if len(list.Tickets) == 0 {
		return errors.New("no open tickets")
	}
	chosen := list.Tickets[0]
	for _, t := range list.Tickets {
		if strings.Contains(strings.ToLower(t.Subject), "password") {
			chosen = t
			break
		}
	}
	user := chosen.Requester
	if user == "" {
		user = "jdoe"
	}

	ans, err = a.doMCP(ctx, s, mcpCall{name: "comment on ticket #" + chosen.ID, tool: "add_comment", args: map[string]any{
		"ticket_id": chosen.ID,
		"body":      fmt.Sprintf("Hi %s, I have asked IT to reset your password; you will get an e-mail once it is done.", user),
	}})
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, wantResult); err != nil {
		return err
	}

	// Two calls agentauthz refuses. The server refuses them as well, on its own: the first is
	// outside list_tickets' input schema, and the second names a tool it does not have.
	ans, err = a.doMCP(ctx, s, mcpCall{name: "list 5000 open tickets (over the tool's limit of 100)", tool: "list_tickets",
		args: map[string]any{"status": "open", "limit": 5000}})
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, wantRefused); err != nil {
		return err
	}
	ans, err = a.doMCP(ctx, s, mcpCall{name: "delete ticket #" + chosen.ID + " (a tool this agent does not hold)", tool: "delete_ticket",
		args: map[string]any{"id": chosen.ID}})
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, wantRefused); err != nil {
		return err
	}

	reset := mcpCall{name: "reset " + user + "'s password", tool: "reset_password", args: map[string]any{"username": user, "reason": ResetReason}}
	ans, err = a.doMCP(ctx, s, reset)
	if err != nil {
		return err
	}
	if a.cfg.Direct {
		// Nothing in front of the server holds the reset.
		if err := a.expectMCP(ans, wantResult); err != nil {
			return err
		}
		a.printf("\n")
		return nil
	}
	if err := a.expectMCP(ans, wantHeld); err != nil {
		return err
	}
	id := ans.approvalID()
	a.instructionsFor(id, true)

	ans, err = a.awaitMCPApproval(ctx, s, reset, id)
	if err != nil {
		return err
	}
	a.showMCP(ans)
	a.printf("    (approval %s is now used up)\n", id)

	// An approval lets one call through: the same call once more is a new request, held anew.
	replay := reset
	replay.name = "the identical reset once more"
	ans, err = a.doMCP(ctx, s, replay)
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, wantHeld); err != nil {
		return err
	}
	if again := ans.approvalID(); again == id {
		return fmt.Errorf("step %d: the identical call after its approval was used is held as the same approval %s", a.n, id)
	}
	a.printf("    (held anew as approval %s: an approval lets one call through)\n\n", ans.approvalID())
	return nil
}

// awaitMCPApproval repeats the held call, identically and without any header (an MCP client
// sends what the model asks, nothing more), until it goes through, is refused for good, or the
// wait times out.
func (a *agent) awaitMCPApproval(ctx context.Context, s *mcpSession, held mcpCall, id string) (mcpAnswer, error) {
	retry := held
	retry.name, retry.quiet = "repeat the identical call", true
	start := time.Now()
	lastSaid := start
	for {
		select {
		case <-ctx.Done():
			return mcpAnswer{}, ctx.Err()
		case <-time.After(a.cfg.PollInterval):
		}
		ans, err := a.doMCP(ctx, s, retry)
		if err != nil {
			return ans, err
		}
		pending := ans.outcome != OutcomeResult && ans.approvalID() == id &&
			(ans.problem.Code == "" || ans.problem.Code == "approval_required")
		switch {
		case ans.outcome == OutcomeResult:
			a.recordMCP(retry, ans)
			a.n++
			a.printf("%2d. %s (approval %s, approved after %s)\n    tools/call %s %s\n", a.n, retry.name, id,
				time.Since(start).Round(time.Second), retry.tool, argsJSON(retry.args))
			return ans, nil
		case pending:
			if time.Since(lastSaid) >= 30*time.Second {
				a.printf("    … still waiting for approval %s (%s so far)\n", id, time.Since(start).Round(time.Second))
				lastSaid = time.Now()
			}
		default:
			a.recordMCP(retry, ans)
			a.showMCP(ans)
			return ans, fmt.Errorf("approval %s: %s", id, describeMCP(ans))
		}
		if time.Since(start) > a.cfg.ApprovalTimeout {
			return ans, fmt.Errorf("approval %s was not decided within %s", id, a.cfg.ApprovalTimeout)
		}
	}
}

// biMCPStory is the BI agent at the helpdesk's MCP server: it holds no helpdesk tool, so it
// sees none and may call none.
func (a *agent) biMCPStory(ctx context.Context) error {
	endpoint := a.mcpEndpoint(a.cfg.BIEnvoy)
	a.begin("bi-mcp", "the business-intelligence agent over MCP", endpoint)
	s, ans, err := a.openMCP(ctx, endpoint)
	if err != nil {
		return err
	}
	if s == nil {
		if a.cfg.Direct {
			return fmt.Errorf("step %d got %s, want a session", a.n, describeMCP(ans))
		}
		a.printf("    The BI agent gets no session at the helpdesk's MCP server, so no tools.\n\n")
		return nil
	}
	defer s.close()

	tools, ans, err := a.listMCPTools(ctx, s)
	if err != nil {
		return err
	}
	switch {
	case a.cfg.Direct && len(tools) == 0:
		return fmt.Errorf("step %d got no tools from the server itself", a.n)
	case !a.cfg.Direct && len(tools) > 0:
		return fmt.Errorf("step %d got %s, want none", a.n, plural(len(tools), "tool"))
	case ans.outcome != OutcomeResult:
		a.printf("    The BI agent may not list the helpdesk's tools.\n")
	}

	want := wantRefused
	if a.cfg.Direct {
		want = wantResult
	}
	ans, err = a.doMCP(ctx, s, mcpCall{name: "list open tickets (a helpdesk tool)", tool: "list_tickets", args: map[string]any{"status": "open"}})
	if err != nil {
		return err
	}
	if err := a.expectMCP(ans, want); err != nil {
		return err
	}
	a.printf("\n")
	return nil
}
