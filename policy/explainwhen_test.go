package policy_test

import (
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// TestExplainWhen: Explain decides as Decide does, and says what the approval condition made of
// the request: held or not, each part's value, the fields each part read; a condition that
// cannot be evaluated holds, and says why; a request refused before the condition was reached
// says so.
func TestExplainWhen(t *testing.T) {
	snap := conditionSnapshot(t)
	for _, tc := range []struct {
		name string
		req  func() *policy.Request
		code decision.Code
		want []string
	}{
		{"held by one part", func() *policy.Request {
			return conditionRequest("POST", "/v1/payouts", "application/json", `{"max_amount": 5000, "kind": "ACH"}`)
		}, decision.CodeApprovalRequired, []string{
			"    approval when " + payoutWhen + ": true: held for approval",
			"      body.max_amount > 1000: true (body.max_amount = 5000)",
			`      body.kind == "WIRE": false (body.kind = "ACH")`,
		}},
		{"not held", func() *policy.Request {
			return conditionRequest("POST", "/v1/payouts", "application/json", `{"max_amount": 10, "note_tags": ["later"]}`)
		}, decision.CodeAllowed, []string{
			"    approval when " + payoutWhen + ": false: not held",
			`      body.note_tags.exists(t, t == "urgent"): false (body.note_tags = ["later"])`,
		}},
		{"cannot be evaluated", func() *policy.Request {
			return conditionRequest("POST", "/v1/transfers", "application/json", `{"amount": "a lot"}`)
		}, decision.CodeApprovalRequired, []string{
			"    approval when body.amount > 1000: cannot be evaluated (",
			`      where body.amount = "a lot"`,
		}},
		{"refused first", func() *policy.Request {
			return conditionRequest("POST", "/v1/payouts", "application/json", `{"max_amount": "many"}`)
		}, decision.CodeBodySchema, []string{
			"    approval when " + payoutWhen + ": not evaluated: the request was refused first",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := snap.Decide(tc.req())
			d, steps := snap.Explain(tc.req())
			if d.Code != want.Code || d.Code != tc.code {
				t.Errorf("Explain decided %s, Decide %s; want %s", d.Code, want.Code, tc.code)
			}
			text := strings.Join(steps, "\n") + "\n"
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("the explanation lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

// payoutWhen is the condition of the payout routes (loadConditionPolicy).
const payoutWhen = `body.max_amount > 1000 || body.kind == "WIRE" || body.note_tags.exists(t, t == "urgent") || has(body.inner) && body.inner.big > 1000`

// TestExplainToolWhen: on an MCP route, the tool's condition is explained with the call's
// arguments as body.
func TestExplainToolWhen(t *testing.T) {
	snap := loadMCP(t)
	for _, tc := range []struct {
		id   string
		code decision.Code
		want string
	}{
		{"7", decision.CodeApprovalRequired, `      approval when body.id != "1": true: held for approval` + "\n" + `        where body.id = "7"`},
		{"1", decision.CodeAllowed, `      approval when body.id != "1": false: not held` + "\n" + `        where body.id = "1"`},
	} {
		req := func() *policy.Request {
			return mcpRequest(mcpCase{body: call("delete_document", map[string]any{"id": tc.id, "reason": "obsolete"})})
		}
		want := snap.Decide(req())
		d, steps := snap.Explain(req())
		if d.Code != want.Code || d.Code != tc.code {
			t.Errorf("id %s: Explain decided %s, Decide %s; want %s", tc.id, d.Code, want.Code, tc.code)
		}
		if text := strings.Join(steps, "\n"); !strings.Contains(text, tc.want) {
			t.Errorf("id %s: the explanation lacks %q:\n%s", tc.id, tc.want, text)
		}
	}
}
