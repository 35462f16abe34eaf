package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLintQuietMistakes: lint reports what loads but is wrong, in the policy and in the test
// file beside it, all at once, and fails.
func TestLintQuietMistakes(t *testing.T) {
	r := cli(t, "lint", "../../policy/testdata/lint")
	r.want(t, exitProblems)
	for _, s := range []string{
		"policy.yaml:55:16: hosts[1].routes[2].scope: no agent holds scope orders:export",
		"policy.yaml:82:17: hosts[1].routes[4].approval.when: body.amuont: the schema allows no property",
		"policy.yaml:27:17: mcp_servers[0].tools[0].approval.when: body.ammount: the schema allows no property",
		"policy_test.yaml:13: a rule the policy lacks: rule list-order: the policy has no route or MCP tool of that name",
		"policy_test.yaml:13: a rule the policy lacks: code alowed: not a reason code",
		"../../policy/testdata/lint: 19 problem(s)",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	// Told who approves, lint checks each approval rule against them.
	r = cli(t, "lint", "--approvers", "../../internal/approval/signin/testdata/approvers.yaml", "../../policy/testdata/lint")
	r.want(t, exitProblems)
	if !strings.Contains(r.stdout, "approval.approvers: no approver may approve refund-typos: none of user:nobody") {
		t.Errorf("stdout lacks the rule nobody may approve:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "may approve refund:") || strings.Contains(r.stderr, "warning") {
		t.Errorf("a rule finance may approve is reported, or a warning printed:\n%s\n%s", r.stdout, r.stderr)
	}
}

// TestLintTestsFlag: --tests checks a test file that is not beside the policy, strictly.
func TestLintTestsFlag(t *testing.T) {
	setCredential(t)
	tf := filepath.Join(t.TempDir(), "extra_test.yaml")
	os.WriteFile(tf, []byte("- name: a typo\n  principal: spiffe://acme.internal/agent/helpdesk\n  host: helpdesk.acme.internal\n  path: /v1/tickets\n  want: allow\n  rulle: list-tickets\n"), 0o600)
	r := cli(t, "lint", "--tests", tf, demoDir)
	r.want(t, exitProblems)
	if !strings.Contains(r.stdout, tf+":1: ") || !strings.Contains(r.stdout, `unknown key "rulle"`) {
		t.Errorf("stdout lacks the unknown key:\n%s", r.stdout)
	}
}

// TestLintCheckSecrets: --check-secrets reads every credential, as serve does, and reports every
// missing one at once.
func TestLintCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(`trust_domains: [example.org]
agents:
  - id: spiffe://example.org/agent/a
    scopes: [s]
hosts:
  - name: one.example.org
    inject_headers:
      - {name: authorization, env: AGENTAUTHZ_TEST_LINT_UNSET_ONE}
    routes: [{name: one, method: GET, path: /, scope: s}]
  - name: two.example.org
    inject_headers:
      - {name: authorization, file: missing-token.txt}
      - {name: x-api-key, env: AGENTAUTHZ_TEST_LINT_UNSET_TWO}
    routes: [{name: two, method: GET, path: /, scope: s}]
`), 0o600)
	os.Unsetenv("AGENTAUTHZ_TEST_LINT_UNSET_ONE")
	os.Unsetenv("AGENTAUTHZ_TEST_LINT_UNSET_TWO")
	r := cli(t, "lint", dir)
	r.want(t, exitOK)
	r = cli(t, "lint", "--check-secrets", dir)
	r.want(t, exitProblems)
	for _, s := range []string{
		"hosts[0].inject_headers[0]: credential for header authorization: environment variable AGENTAUTHZ_TEST_LINT_UNSET_ONE is not set",
		"hosts[1].inject_headers[0]: credential for header authorization: cannot read credential file",
		"hosts[1].inject_headers[1]: credential for header x-api-key: environment variable AGENTAUTHZ_TEST_LINT_UNSET_TWO is not set",
		": 3 problem(s)",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}
