package policytest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const demoDir = "../demo/policy"

func loadDemo(t testing.TB) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath(demoDir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// The demo policy's own test file passes, and covers every route of the demo policy.
func TestDemoPolicyTests(t *testing.T) {
	snap := loadDemo(t)
	files, err := policytest.Files(demoDir)
	if err != nil || len(files) == 0 {
		t.Fatalf("Files(%s) = %v, %v", demoDir, files, err)
	}
	decided := map[string]bool{}
	for _, f := range files {
		cases, err := policytest.ReadCases(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range policytest.Run(context.Background(), policytest.Engine(snap, nil, nil), nil, cases) {
			if !r.Passed() {
				t.Errorf("%s:%d %s: %s", r.File, r.Line, r.Name, strings.Join(r.Problems, "; "))
			}
			// Allowed, or held for approval after passing every other check.
			if r.Decision.Allowed() || r.Decision.Code == decision.CodeApprovalRequired {
				decided[r.Decision.Rule] = true
			}
		}
	}
	for _, rule := range []string{"list-tickets", "get-ticket", "comment-ticket", "reset-password", "bi-graphql", "bi-graphql-get"} {
		if !decided[rule] {
			t.Errorf("no case is allowed (or held) by route %s", rule)
		}
	}
}

// A changed expectation fails, naming the case and what was decided instead.
func TestFailureNamesTheCase(t *testing.T) {
	snap := loadDemo(t)
	path := filepath.Join(t.TempDir(), "x_test.yaml")
	writeFile(t, path, `
- name: bi reads a ticket
  principal: spiffe://acme.internal/agent/bi
  host: helpdesk.acme.internal
  path: /v1/tickets/4711
  want: allow
- name: helpdesk reads a ticket
  principal: spiffe://acme.internal/agent/helpdesk
  host: helpdesk.acme.internal
  path: /v1/tickets/4711
  want: allow
  rule: list-tickets
  status: 200
`)
	cases, err := policytest.ReadCases(path)
	if err != nil {
		t.Fatal(err)
	}
	res := policytest.Run(context.Background(), policytest.Engine(snap, nil, nil), nil, cases)
	if len(res) != 2 || res[0].Passed() || res[1].Passed() {
		t.Fatalf("want both cases to fail, got %+v", res)
	}
	if got := strings.Join(res[0].Problems, "; "); got != "want allow, got deny 403 scope_missing (rule get-ticket)" {
		t.Errorf("problems of case 1 = %q", got)
	}
	if got := strings.Join(res[1].Problems, "; "); got != "want rule list-tickets, got allow 200 allowed (rule get-ticket)" {
		t.Errorf("problems of case 2 = %q", got)
	}
	if res[0].Name != "bi reads a ticket" || res[0].Line != 2 {
		t.Errorf("case 1 is %q at line %d", res[0].Name, res[0].Line)
	}
}

// Test files are read strictly, every problem with its line.
func TestReadCasesStrict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad_test.yaml")
	writeFile(t, path, `
- name: typo
  principal: spiffe://acme.internal/agent/bi
  host: helpdesk.acme.internal
  path: /v1/tickets/4711
  wnat: allow
- name: no outcome
  host: helpdesk.acme.internal
  path: /
  want: maybe
`)
	_, err := policytest.ReadCases(path)
	if err == nil {
		t.Fatal("ReadCases accepted a misspelt key and a bad outcome")
	}
	for _, want := range []string{path + ":2:", "wnat", path + ":7:", "want must be allow or deny"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// A case may be a CheckRequest file as Envoy sends it, named relative to the test file; it is
// decided as the same request written out field by field.
func TestCheckRequestCases(t *testing.T) {
	snap := loadDemo(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "checks"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]extauthz.HTTPRequest{
		"helpdesk-ticket": {Principal: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"},
		"bi-ticket":       {Principal: "spiffe://acme.internal/agent/bi", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"},
	} {
		data, err := protojson.Marshal(r.CheckRequest())
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "checks", name+".json"), string(data))
	}
	path := filepath.Join(dir, "x_test.yaml")
	writeFile(t, path, `
- name: helpdesk reads a ticket, as Envoy asks
  check_request: checks/helpdesk-ticket.json
  want: allow
  rule: get-ticket
- name: bi reads a ticket, as Envoy asks
  check_request: checks/bi-ticket.json
  want: deny
  status: 403
  code: scope_missing
- name: bi reads a ticket, as Envoy asks, expecting the wrong answer
  check_request: checks/bi-ticket.json
  want: allow
`)
	cases, err := policytest.ReadCases(path)
	if err != nil {
		t.Fatal(err)
	}
	res := policytest.Run(context.Background(), policytest.Engine(snap, nil, nil), nil, cases)
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	for _, r := range res[:2] {
		if !r.Passed() {
			t.Errorf("%s:%d %s: %s", r.File, r.Line, r.Name, strings.Join(r.Problems, "; "))
		}
	}
	if got := strings.Join(res[2].Problems, "; "); got != "want allow, got deny 403 scope_missing (rule get-ticket)" {
		t.Errorf("problems of case 3 = %q", got)
	}
}

// A case is either a CheckRequest file or the request's fields, never both; a file that is not a
// CheckRequest is refused. Each problem names the test file and line.
func TestCheckRequestCasesStrict(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "not-a-check.json"), `{"attributes": {"request": {"htp": {}}}}`)
	path := filepath.Join(dir, "bad_test.yaml")
	writeFile(t, path, `
- name: both
  check_request: checks/helpdesk-ticket.json
  host: helpdesk.acme.internal
  path: /v1/tickets/4711
  want: allow
- name: missing file
  check_request: checks/missing.json
  want: allow
- name: not a CheckRequest
  check_request: not-a-check.json
  want: allow
- name: neither
  want: allow
`)
	_, err := policytest.ReadCases(path)
	if err == nil {
		t.Fatal("ReadCases accepted a case with both check_request and host, and unreadable files")
	}
	for _, want := range []string{
		path + ":2: both: check_request is the whole request; drop host, path\n",
		path + ":7: missing file: check_request: ",
		path + ":10: not a CheckRequest: check_request: " + filepath.Join(dir, "not-a-check.json") + ": not a CheckRequest: ",
		path + ":13: neither: a case needs host and path, or check_request",
	} {
		if !strings.Contains(err.Error()+"\n", want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
