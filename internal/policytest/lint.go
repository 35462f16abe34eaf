package policytest

import (
	"fmt"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// Policy is what Lint asks of the policy a test file tests.
type Policy interface {
	HasAgent(id string) bool
	HasHost(name string) bool
	HasRule(rule string) bool
}

// Lint reports what in cases cannot be right against policy, each problem on its own line with
// file and line: a rule or shadow_rule the policy has no route or tool of, a reason code that
// does not exist, and a case that wants an allow, or names the rule that decides it, from an
// agent or a host the policy lacks. Cases built from a check_request are checked for their
// codes and rules only. ReadCases has already refused unknown keys.
func Lint(cases []Case, policy Policy) []string {
	codes := map[string]bool{}
	for _, c := range decision.Codes() {
		codes[string(c.Code)] = true
	}
	var out []string
	for _, c := range cases {
		at := fmt.Sprintf("%s:%d: %s", c.file, c.line, c.Name)
		for _, r := range []struct{ key, rule string }{{"rule", c.Rule}, {"shadow_rule", c.ShadowRule}} {
			if r.rule != "" && !policy.HasRule(r.rule) {
				out = append(out, fmt.Sprintf("%s: %s %s: the policy has no route or MCP tool of that name", at, r.key, r.rule))
			}
		}
		for _, k := range []struct{ key, code string }{{"code", c.Code}, {"shadow_code", c.ShadowCode}} {
			if _, ok := codes[k.code]; k.code != "" && !ok {
				out = append(out, fmt.Sprintf("%s: %s %s: not a reason code (agentauthz's reference lists them)", at, k.key, k.code))
			}
		}
		if c.req != nil {
			continue
		}
		// A case may send an unknown agent or host on purpose, to see it refused; it cannot
		// expect it allowed, or decided by a rule.
		mustExist := c.Want == "allow" || c.Rule != ""
		if c.Principal != "" && mustExist && !policy.HasAgent(c.Principal) {
			out = append(out, fmt.Sprintf("%s: principal %s is not an agent of the policy, so the case can never be %s", at, c.Principal, outcome(c)))
		}
		if mustExist && !policy.HasHost(c.Host) {
			out = append(out, fmt.Sprintf("%s: host %s is not a host of the policy, so the case can never be %s", at, c.Host, outcome(c)))
		}
	}
	return out
}

func outcome(c Case) string {
	if c.Want == "allow" {
		return "allowed"
	}
	return "decided by rule " + c.Rule
}
