package approval_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const mcpPolicy = `trust_domains: [example.org]
agents:
  - id: spiffe://example.org/agent/a
    scopes: [docs]
  - id: spiffe://example.org/agent/b
    scopes: [docs]
mcp_servers:
  - name: docs
    tools_snapshot: tools.json
    tools:
      - name: delete_document
        scope: docs
        approval:
          approvers: [group:admins]
          reason: Deleting is final.
          redact: [/reason]
hosts:
  - name: mcp.example.org
    inject_headers:
      - {name: authorization, prefix: "Bearer ", env: MCP_GATE_TEST_TOKEN}
    routes:
      - {name: docs-mcp, method: POST, path: /mcp, scope: docs, mcp: docs}
`

const mcpTools = `{"tools":[{"name":"delete_document","inputSchema":{"type":"object",
  "properties":{"id":{"type":"string"},"reason":{"type":"string"}},"required":["id"],"additionalProperties":false}}]}`

type mcpHeaders map[string]string

func (h mcpHeaders) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// TestGateMCPToolCall: a held tool call is bound to the agent, the tool and its arguments, not
// to the JSON-RPC id or metadata around them; once approved, the identical call passes without
// any header, exactly once, with the server's credential; other arguments or another agent are
// held apart; approvers see the arguments, redacted.
func TestGateMCPToolCall(t *testing.T) {
	t.Setenv("MCP_GATE_TEST_TOKEN", "srv-secret")
	dir := t.TempDir()
	for name, data := range map[string]string{"p.yaml": mcpPolicy, "tools.json": mcpTools} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := policy.ReadPath(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store := memstore.New()
	gate := &approval.Gate{Store: store, Clock: func() time.Time { return now }, ConsoleURL: "https://approvals.example.org/"}
	ctx := context.Background()
	check := func(agent string, id int, args string) decision.Decision {
		t.Helper()
		body := `{"jsonrpc":"2.0","id":` + string(rune('0'+id)) + `,"method":"tools/call","params":{"name":"delete_document","arguments":` + args +
			`,"_meta":{"progressToken":` + string(rune('0'+id)) + `}}}`
		r := &policy.Request{Agent: spiffeid.RequireFromString(agent), Method: "POST", Host: "mcp.example.org", Target: "/mcp",
			Headers: mcpHeaders{"content-type": "application/json", "mcp-protocol-version": "2025-11-25"}, Body: []byte(body)}
		d := snap.Decide(r)
		if d.Code != decision.CodeApprovalRequired {
			t.Fatalf("policy decided %s, want approval_required", d.Code)
		}
		return gate.Resolve(ctx, r, d)
	}
	const a, b = "spiffe://example.org/agent/a", "spiffe://example.org/agent/b"
	args := `{"id":"42","reason":"duplicate of 41"}`

	first := check(a, 1, args)
	if first.Code != decision.CodeApprovalRequired || first.Approval == nil {
		t.Fatalf("first call: %+v", first)
	}
	id := first.Approval.ID
	for _, want := range []string{id, "https://approvals.example.org/approvals/requests/" + id, "identical call", "(Deleting is final)."} {
		if !strings.Contains(first.Detail, want) {
			t.Errorf("the held call's detail %q does not say %q", first.Detail, want)
		}
	}
	// The same call again, with another JSON-RPC id and metadata, and its arguments in another
	// order: the same approval.
	if again := check(a, 2, `{"reason":"duplicate of 41","id":"42"}`); again.Approval == nil || again.Approval.ID != id {
		t.Fatalf("the same call is held as %+v, want approval %s", again.Approval, id)
	}
	held, err := store.Get(ctx, id, now)
	if err != nil {
		t.Fatal(err)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(held.Body), &shown); err != nil || shown["id"] != "42" || shown["reason"] != "[redacted]" {
		t.Errorf("approvers see %q, want the arguments with reason redacted", held.Body)
	}
	if held.Rule != "docs/delete_document" {
		t.Errorf("rule %q", held.Rule)
	}
	if _, err := store.Decide(ctx, id, approval.Verdict{Approve: true, By: "user:alice"}, now); err != nil {
		t.Fatal(err)
	}
	if other := check(a, 3, `{"id":"43"}`); other.Approval == nil || other.Approval.ID == id || other.Approval.State != "pending" {
		t.Errorf("a call with other arguments: %+v; want a new pending approval", other.Approval)
	}
	if other := check(b, 3, args); other.Approval == nil || other.Approval.ID == id {
		t.Errorf("another agent's identical call: %+v; want its own approval", other.Approval)
	}
	passed := check(a, 4, args)
	if !passed.Allowed() || passed.Approval == nil || passed.Approval.ID != id {
		t.Fatalf("the identical call after approval: %+v; want allowed with approval %s", passed, id)
	}
	if len(passed.Grant.Set) != 1 || passed.Grant.Set[0].Value.Reveal() != "Bearer srv-secret" {
		t.Errorf("the approved call carries %+v, want the server's credential", passed.Grant)
	}
	next := check(a, 5, args)
	if next.Allowed() || next.Approval == nil || next.Approval.ID == id || next.Approval.State != "pending" {
		t.Fatalf("the identical call once more: %+v; want a new pending approval (an approval lets one call through)", next)
	}

	// Denied: the identical call, which the client cannot mark as asking again, is refused with
	// the approver's comment while the denial's window lasts, not put to approvers again.
	if _, err := store.Decide(ctx, next.Approval.ID, approval.Verdict{By: "user:alice", Comment: "not this one"}, now); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		d := check(a, 6+i, args)
		if d.Code != decision.CodeApprovalDenied || d.Approval == nil || d.Approval.ID != next.Approval.ID ||
			!strings.Contains(d.Detail, "not this one") || !strings.Contains(d.Detail, "refused until") {
			t.Fatalf("the identical call after a denial: %+v; want approval_denied quoting the approver", d)
		}
	}
	if other := check(b, 8, args); other.Code != decision.CodeApprovalRequired {
		t.Errorf("another agent's identical call after a denial: %s; want its own hold", other.Code)
	}
	denied, err := store.Get(ctx, next.Approval.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	now = denied.ExpiresAt
	if later := check(a, 9, args); later.Code != decision.CodeApprovalRequired || later.Approval == nil || later.Approval.ID == denied.ID {
		t.Errorf("the identical call once the denial's window passed: %+v; want a new hold", later)
	}
}

// TestGateMCPRequestState: a client of revision 2026-07-28 that takes URL elicitations is told
// where its held call is decided and given a request state bound to the call; a tampered or
// foreign state is refused; once approved, the retry with the state passes, once.
func TestGateMCPRequestState(t *testing.T) {
	t.Setenv("MCP_GATE_TEST_TOKEN", "srv-secret")
	dir := t.TempDir()
	for name, data := range map[string]string{"p.yaml": mcpPolicy, "tools.json": mcpTools} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := policy.ReadPath(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store := memstore.New()
	gate := &approval.Gate{Store: store, Clock: func() time.Time { return now },
		ConsoleURL: "https://approvals.example.org", StateKey: []byte("0123456789abcdef0123456789abcdef")}
	ctx := context.Background()
	check := func(args, state string, elicit bool) decision.Decision {
		t.Helper()
		params := map[string]any{"name": "delete_document", "arguments": json.RawMessage(args),
			"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
		if elicit {
			params["_meta"].(map[string]any)["io.modelcontextprotocol/clientCapabilities"] = map[string]any{"elicitation": map[string]any{"url": map[string]any{}}}
		}
		if state != "" {
			params["requestState"] = state
			params["inputResponses"] = map[string]any{"agentauthz_approval": map[string]any{"action": "accept"}}
		}
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params})
		r := &policy.Request{Agent: spiffeid.RequireFromString("spiffe://example.org/agent/a"), Method: "POST", Host: "mcp.example.org", Target: "/mcp",
			Headers: mcpHeaders{"content-type": "application/json", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "delete_document"},
			Body:    body}
		d := snap.Decide(r)
		if d.Code != decision.CodeApprovalRequired {
			t.Fatalf("policy decided %s %v, want approval_required", d.Code, d.Violations)
		}
		return gate.Resolve(ctx, r, d)
	}
	args := `{"id":"42"}`
	if plain := check(args, "", false); plain.Approval == nil || plain.Approval.RequestState != "" {
		t.Fatalf("a client without URL elicitation got %+v", plain.Approval)
	}
	held := check(args, "", true)
	a := held.Approval
	if a == nil || a.URL != "https://approvals.example.org/approvals/requests/"+a.ID || a.RequestState == "" {
		t.Fatalf("held: %+v; want the console URL and a request state", a)
	}
	_, body, _ := held.MCPAnswer("dec-1")
	var answer struct {
		Result struct {
			ResultType    string `json:"resultType"`
			RequestState  string `json:"requestState"`
			InputRequests map[string]struct {
				Method string `json:"method"`
				Params struct {
					Mode, URL, ElicitationID string
				} `json:"params"`
			} `json:"inputRequests"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatal(err)
	}
	ir := answer.Result.InputRequests["agentauthz_approval"]
	if answer.Result.ResultType != "input_required" || answer.Result.RequestState != a.RequestState ||
		ir.Method != "elicitation/create" || ir.Params.Mode != "url" || ir.Params.URL != a.URL || ir.Params.ElicitationID != a.ID {
		t.Fatalf("answer %s", body)
	}
	for name, bad := range map[string]string{
		"tampered":     a.RequestState[:len(a.RequestState)-2] + "AA",
		"not a state":  "hello",
		"another call": check(`{"id":"43"}`, "", true).Approval.RequestState,
	} {
		if d := check(args, bad, true); d.Code != decision.CodeApprovalMismatch {
			t.Errorf("a %s state: %s, want approval_mismatch", name, d.Code)
		}
	}
	if pending := check(args, a.RequestState, true); pending.Code != decision.CodeApprovalRequired || pending.Approval.ID != a.ID {
		t.Errorf("the retry while pending: %s %+v", pending.Code, pending.Approval)
	}
	if _, err := store.Decide(ctx, a.ID, approval.Verdict{Approve: true, By: "user:alice"}, now); err != nil {
		t.Fatal(err)
	}
	if passed := check(args, a.RequestState, true); !passed.Allowed() || passed.Approval.ID != a.ID {
		t.Fatalf("the retry after approval: %s %+v", passed.Code, passed.Approval)
	}
	if again := check(args, a.RequestState, true); again.Allowed() || again.Approval == nil || again.Approval.ID == a.ID {
		t.Errorf("the state once more: %s %+v; want a new hold", again.Code, again.Approval)
	}
	now = now.Add(time.Hour)
	if late := check(args, a.RequestState, true); late.Code != decision.CodeApprovalMismatch {
		t.Errorf("a lapsed state: %s, want approval_mismatch", late.Code)
	}
}
