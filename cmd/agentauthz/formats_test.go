package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// decodeStrict decodes one JSON document into v, refusing unknown fields and trailing data.
func decodeStrict(t *testing.T, data string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("not the documented JSON: %v\n%s", err, data)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", data)
	}
}

func TestCheckJSON(t *testing.T) {
	setCredential(t)
	r := cli(t, "check", "-o", "json", "--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42",
		"--header", "Authorization: Bearer agent-own-token")
	r.want(t, exitOK)
	var allow checkJSON
	decodeStrict(t, r.stdout, &allow)
	if !allow.Allowed || allow.Outcome != "allow" || allow.Status != 200 || allow.Code != "allowed" || allow.Route != "get-ticket" ||
		allow.Agent != helpdesk || allow.AgentSource != "x509" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(allow.DecisionID) ||
		!regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(allow.Revision) {
		t.Errorf("allow: %+v", allow)
	}
	if len(allow.HeadersToSet) != 1 || allow.HeadersToSet[0] != (jsonHeader{Name: "authorization", Value: "[redacted]"}) {
		t.Errorf("headers to set: %+v", allow.HeadersToSet)
	}
	if !strings.Contains(strings.Join(allow.HeadersToRemove, ","), "cookie,proxy-authorization") {
		t.Errorf("headers to remove: %v", allow.HeadersToRemove)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q", r.stderr)
	}

	r = cli(t, "check", "-o", "json", "--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets?limit=1000")
	r.want(t, exitOK)
	var deny checkJSON
	decodeStrict(t, r.stdout, &deny)
	if deny.Allowed || deny.Outcome != "deny" || deny.Status != 400 || deny.Code != "query_invalid" || deny.Route != "list-tickets" ||
		deny.Detail == "" || len(deny.HeadersToSet)+len(deny.HeadersToRemove) != 0 {
		t.Errorf("deny: %+v", deny)
	}
	if len(deny.Violations) != 1 || deny.Violations[0] != (jsonViolation{Field: "query.limit", Rule: "maximum", Message: "must be at most 100"}) {
		t.Errorf("violations: %+v", deny.Violations)
	}
	// Every decision has these, even the zero one; the others are left out when empty.
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"allowed", "outcome", "status", "code", "route", "decision_id"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("the JSON lacks %q: %s", k, r.stdout)
		}
	}
	if _, ok := raw["headers_to_set"]; ok {
		t.Errorf("a deny has headers to set: %s", r.stdout)
	}
}

// TestCheckExitCodes: a deny is a decision (exit 0) unless --fail-on-deny asks for exit 3.
func TestCheckExitCodes(t *testing.T) {
	setCredential(t)
	deny := []string{"check", "--agent", helpdesk, "--method", "DELETE", "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42"}
	allow := []string{"check", "--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42"}
	cli(t, deny...).want(t, exitOK)
	r := cli(t, append(deny, "--fail-on-deny")...)
	r.want(t, exitDenied)
	if !strings.HasPrefix(r.stdout, "deny 403 scope_missing") || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	cli(t, append(deny, "--fail-on-deny", "-o", "json")...).want(t, exitDenied)
	cli(t, append(allow, "--fail-on-deny")...).want(t, exitOK)
}

// TestCheckExplainWhen: --explain says whether the approval condition held, and the value of
// each part and of the request fields it read.
func TestCheckExplainWhen(t *testing.T) {
	base := []string{"check", "--explain", "--policy", "testdata/approval", "--agent", "spiffe://example.test/agent/payer", "--host", "api.example.test"}
	transfer := func(body string) result {
		return cli(t, append(base, "--method", "POST", "--path", "/v1/transfers", "--header", "content-type: application/json", "--body", body)...)
	}
	for _, tc := range []struct {
		name string
		r    result
		want []string
	}{
		{"held", transfer(`{"amount": 1500, "currency": "EUR"}`), []string{
			`    approval when body.amount > 1000 && body.currency == "EUR": true: held for approval`,
			`      body.amount > 1000: true (body.amount = 1500)`,
			`      body.currency == "EUR": true (body.currency = "EUR")`,
			"deny 428 approval_required  rule=transfer",
		}},
		{"not held", transfer(`{"amount": 500, "currency": "EUR"}`), []string{
			`    approval when body.amount > 1000 && body.currency == "EUR": false: not held`,
			`      body.amount > 1000: false (body.amount = 500)`,
			"allow  rule=transfer",
		}},
		{"refused first", transfer(`{"amount": 5000, "currency": "EUR", "x": 1}`), []string{
			`    approval when body.amount > 1000 && body.currency == "EUR": not evaluated: the request was refused first`,
		}},
		{"a macro", cli(t, append(base, "--path", "/v1/exports/bob?to=a@internal.test&to=b@external.test")...), []string{
			`    approval when query.to.exists(v, v.endsWith("@external.test")) || params.owner == "root": true: held for approval`,
			`      query.to.exists(v, v.endsWith("@external.test")): true (query.to = ["a@internal.test","b@external.test"])`,
			`      params.owner == "root": false (params.owner = "bob")`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.want(t, exitOK)
			for _, w := range tc.want {
				if !strings.Contains(tc.r.stdout, w+"\n") {
					t.Errorf("stdout lacks %q:\n%s", w, tc.r.stdout)
				}
			}
		})
	}
}

func TestLintJSON(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", "--format", "json", demoDir, "testdata/bad-policy.yaml", "testdata/missing.yaml")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	var out lintJSON
	decodeStrict(t, r.stdout, &out)
	if len(out.Policies) != 3 || out.Problems != 3 {
		t.Fatalf("%+v", out)
	}
	demo, bad, missing := out.Policies[0], out.Policies[1], out.Policies[2]
	if !demo.OK || demo.Stats == nil || demo.Stats.Routes != 9 || demo.Revision != demoRevision(t) || len(demo.Problems) != 0 {
		t.Errorf("demo: %+v", demo)
	}
	want := []lintJSONProblem{
		{File: "testdata/bad-policy.yaml", Line: 5, Column: 5, Rule: "unknown-field", Message: `unknown field "scoeps", expected one of [id scopes description]`},
		{File: "testdata/bad-policy.yaml", Line: 10, Column: 17, Field: "hosts[0].routes[0].method", Rule: "string.pattern",
			Message: "hosts[0].routes[0].method: does not match regex pattern `^[A-Z]{1,16}$` (string.pattern)"},
		{File: "testdata/bad-policy.yaml", Line: 13, Column: 9, Rule: "duplicate-key", Message: `duplicate key "scope" (first at line 12)`},
	}
	if bad.OK || len(bad.Problems) != len(want) {
		t.Fatalf("bad: %+v", bad)
	}
	for i := range want {
		if bad.Problems[i] != want[i] {
			t.Errorf("problem %d: %+v\nwant %+v", i, bad.Problems[i], want[i])
		}
	}
	if missing.OK || missing.Error == "" {
		t.Errorf("missing: %+v", missing)
	}
	cli(t, "lint", "--format", "json", demoDir).want(t, exitOK)
	cli(t, "lint", "--format", "json", "testdata/bad-compile.yaml").want(t, exitProblems)
	cli(t, "lint", "--format", "yaml", demoDir).want(t, exitUsage)
}

// TestLintSARIF checks lint's SARIF against what SARIF 2.1.0 requires of each object it writes
// (sarifLog: version and runs; run: tool; tool: driver; driver: name; result: message; a rule:
// id; region: startLine >= 1), decoding it strictly into the SARIF shape and checking the
// required properties are present, not only zero.
func TestLintSARIF(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", "--format", "sarif", "testdata/bad-policy.yaml", "testdata/bad-compile.yaml")
	r.want(t, exitProblems)
	var log sarifLog
	decodeStrict(t, r.stdout, &log)
	var raw struct {
		Runs []struct {
			Tool struct {
				Driver map[string]json.RawMessage `json:"driver"`
			} `json:"tool"`
			Results []map[string]json.RawMessage `json:"results"`
		} `json:"runs"`
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || string(raw.Version) != `"2.1.0"` || !strings.HasSuffix(log.Schema, "sarif-schema-2.1.0.json") || len(log.Runs) != 1 {
		t.Fatalf("log: version %q, schema %q, %d runs", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	if _, ok := raw.Runs[0].Tool.Driver["name"]; !ok || run.Tool.Driver.Name != "agentauthz" {
		t.Errorf("driver: %+v", run.Tool.Driver)
	}
	rules := map[string]int{}
	for i, rule := range run.Tool.Driver.Rules {
		if rule.ID == "" || rule.ShortDescription.Text == "" {
			t.Errorf("rule %d: %+v", i, rule)
		}
		rules[rule.ID] = i
	}
	if len(run.Results) != 5 {
		t.Fatalf("%d results, want 5 (3 + 2 problems):\n%s", len(run.Results), r.stdout)
	}
	for i, res := range run.Results {
		if _, ok := raw.Runs[0].Results[i]["message"]; !ok || res.Message.Text == "" {
			t.Errorf("result %d has no message", i)
		}
		if idx, ok := rules[res.RuleID]; !ok || idx != res.RuleIndex {
			t.Errorf("result %d: rule %q at %d, not in the driver's rules %v", i, res.RuleID, res.RuleIndex, rules)
		}
		if res.Level != "error" || len(res.Locations) != 1 {
			t.Errorf("result %d: %+v", i, res)
			continue
		}
		loc := res.Locations[0].PhysicalLocation
		if loc.ArtifactLocation.URI != "testdata/bad-policy.yaml" && loc.ArtifactLocation.URI != "testdata/bad-compile.yaml" ||
			loc.Region == nil || loc.Region.StartLine < 1 || loc.Region.StartColumn < 1 {
			t.Errorf("result %d: location %+v", i, loc)
		}
	}
	first := run.Results[0]
	if first.RuleID != "unknown-field" || first.Locations[0].PhysicalLocation.Region.StartLine != 5 {
		t.Errorf("first result: %+v", first)
	}
	if got := run.Results[1].RuleID; got != "string.pattern" {
		t.Errorf("second result's rule %q, want string.pattern", got)
	}

	// No problems: a run with no results, still a whole log.
	r = cli(t, "lint", "--format", "sarif", demoDir)
	r.want(t, exitOK)
	decodeStrict(t, r.stdout, &log)
	if len(log.Runs) != 1 || len(log.Runs[0].Results) != 0 || !strings.Contains(r.stdout, `"results": []`) {
		t.Errorf("clean policy:\n%s", r.stdout)
	}
}

func TestFileURI(t *testing.T) {
	for in, want := range map[string]string{
		"testdata/bad-policy.yaml": "testdata/bad-policy.yaml",
		"/srv/policy/a b.yaml":     "file:///srv/policy/a%20b.yaml",
		"dir/50%.yaml":             "dir/50%25.yaml",
		"c:x.yaml":                 "./c:x.yaml",
	} {
		if got := fileURI(in); got != want {
			t.Errorf("fileURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// writePolicyTests lays out a copy of the demo policy with one test file.
func writePolicyTests(t *testing.T, cases string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(demoDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), "_test.yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(demoDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cli_test.yaml"), []byte(cases), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const twoCases = `- name: reads a ticket
  principal: spiffe://acme.internal/agent/helpdesk
  host: helpdesk.acme.internal
  path: /v1/tickets/42
  want: allow
- name: deletes <a> ticket & more
  principal: spiffe://acme.internal/agent/helpdesk
  method: DELETE
  host: helpdesk.acme.internal
  path: /v1/tickets/42
  want: allow
`

func TestTestFormats(t *testing.T) {
	setCredential(t)
	dir := writePolicyTests(t, twoCases)
	file := filepath.Join(dir, "cli_test.yaml")

	r := cli(t, "test", "--format", "json", dir)
	r.want(t, exitFailed)
	var out testJSON
	decodeStrict(t, r.stdout, &out)
	if out.Passed != 1 || out.Failed != 1 || len(out.Cases) != 2 {
		t.Fatalf("%+v", out)
	}
	ok, failed := out.Cases[0], out.Cases[1]
	if !ok.Passed || len(ok.Problems) != 0 || ok.File != file || ok.Line != 1 || ok.Outcome != "allow" || ok.Route != "get-ticket" {
		t.Errorf("passing case: %+v", ok)
	}
	if failed.Passed || len(failed.Problems) == 0 || failed.Line != 6 || failed.Code != "scope_missing" || failed.Name != "deletes <a> ticket & more" {
		t.Errorf("failing case: %+v", failed)
	}

	r = cli(t, "test", "--format", "junit", dir)
	r.want(t, exitFailed)
	if !strings.HasPrefix(r.stdout, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML declaration:\n%s", r.stdout)
	}
	// The shape CI reporters read: testsuites > testsuite > testcase > failure, with counts.
	var suites struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.NewDecoder(bytes.NewReader([]byte(r.stdout))).Decode(&suites); err != nil {
		t.Fatalf("not XML: %v\n%s", err, r.stdout)
	}
	if suites.Tests != 2 || suites.Failures != 1 || len(suites.Suites) != 1 {
		t.Fatalf("%+v", suites)
	}
	s := suites.Suites[0]
	if s.Name != file || s.Tests != 2 || s.Failures != 1 || len(s.Cases) != 2 {
		t.Fatalf("suite %+v", s)
	}
	if s.Cases[0].Name != "reads a ticket" || s.Cases[0].Failure != nil || s.Cases[0].Classname == "" {
		t.Errorf("passing case: %+v", s.Cases[0])
	}
	if f := s.Cases[1].Failure; s.Cases[1].Name != "deletes <a> ticket & more" || f == nil || !strings.Contains(f.Message, "want allow") ||
		!strings.Contains(f.Text, file+":6: ") {
		t.Errorf("failing case: %+v", s.Cases[1])
	}

	passing := writePolicyTests(t, strings.SplitAfter(twoCases, "want: allow\n")[0])
	cli(t, "test", "--format", "junit", passing).want(t, exitOK)
	cli(t, "test", "--format", "json", passing).want(t, exitOK)
	cli(t, "test", "--format", "tap", passing).want(t, exitUsage)
}
