package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/url"
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
	// The error; the demo's warning (it holds requests, and lint was given no approvers) is in
	// the JSON.
	oneLine(t, "stderr", r.stderr)
	if !strings.HasPrefix(r.stderr, "agentauthz lint: ") || !strings.Contains(r.stderr, "testdata/missing.yaml") {
		t.Errorf("stderr: %q", r.stderr)
	}
	var out lintJSON
	decodeStrict(t, r.stdout, &out)
	if len(out.Policies) != 3 || out.Problems != 3 {
		t.Fatalf("%+v", out)
	}
	demo, bad, missing := out.Policies[0], out.Policies[1], out.Policies[2]
	if !demo.OK || demo.Stats == nil || demo.Stats.Routes != 9 || demo.Revision != demoRevision(t) || len(demo.Problems) != 0 ||
		len(demo.Warnings) != 1 || !strings.Contains(demo.Warnings[0], "holds requests for approval") {
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

// The SARIF 2.1.0 objects lint writes, as the OASIS standard defines them, written here apart
// from the types that write them: pointers for the properties the standard requires, so that a
// missing one is told from a zero one. Unknown properties are refused, so a misspelt name
// fails too.
type (
	sarif21Log struct {
		Schema  string        `json:"$schema"`
		Version *string       `json:"version"` // required, "2.1.0"
		Runs    *[]sarif21Run `json:"runs"`    // required
	}
	sarif21Run struct {
		Tool    *sarif21Tool    `json:"tool"` // required
		Results []sarif21Result `json:"results"`
	}
	sarif21Tool struct {
		Driver *sarif21Component `json:"driver"` // required
	}
	sarif21Component struct {
		Name           *string                      `json:"name"` // required
		Version        string                       `json:"version"`
		InformationURI string                       `json:"informationUri"`
		Rules          []sarif21ReportingDescriptor `json:"rules"`
	}
	sarif21ReportingDescriptor struct {
		ID               *string         `json:"id"` // required
		ShortDescription *sarif21Message `json:"shortDescription"`
	}
	sarif21Message struct { // text or id required
		Text *string `json:"text"`
		ID   *string `json:"id"`
	}
	sarif21Result struct {
		RuleID    string            `json:"ruleId"`
		RuleIndex *int              `json:"ruleIndex"`
		Level     string            `json:"level"`
		Message   *sarif21Message   `json:"message"` // required
		Locations []sarif21Location `json:"locations"`
	}
	sarif21Location struct {
		PhysicalLocation *sarif21PhysicalLocation `json:"physicalLocation"`
	}
	sarif21PhysicalLocation struct {
		ArtifactLocation *sarif21ArtifactLocation `json:"artifactLocation"`
		Region           *sarif21Region           `json:"region"`
	}
	sarif21ArtifactLocation struct {
		URI *string `json:"uri"`
	}
	sarif21Region struct {
		StartLine   *int `json:"startLine"`   // minimum 1
		StartColumn *int `json:"startColumn"` // minimum 1
	}
)

// checkSARIF21 checks a log against the standard's requirements on the objects above, and
// returns its results.
func checkSARIF21(t *testing.T, data string) []sarif21Result {
	t.Helper()
	var log sarif21Log
	decodeStrict(t, data, &log)
	// encoding/json matches names in any case; SARIF's are case-sensitive.
	var raw any
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatal(err)
	}
	checkSARIFNames(t, raw)
	if log.Version == nil || *log.Version != "2.1.0" || log.Runs == nil || len(*log.Runs) != 1 {
		t.Fatalf("sarifLog: version and one run required:\n%s", data)
	}
	run := (*log.Runs)[0]
	if run.Tool == nil || run.Tool.Driver == nil || run.Tool.Driver.Name == nil || *run.Tool.Driver.Name != "agentauthz" {
		t.Fatalf("run.tool.driver.name required:\n%s", data)
	}
	rules := run.Tool.Driver.Rules
	for i, r := range rules {
		if r.ID == nil || *r.ID == "" || r.ShortDescription == nil || r.ShortDescription.Text == nil {
			t.Errorf("rules[%d]: id and a description required", i)
		}
	}
	if run.Results == nil {
		t.Fatalf("run.results: lint says it ran, with no results or some:\n%s", data)
	}
	for i, res := range run.Results {
		if res.Message == nil || (res.Message.Text == nil && res.Message.ID == nil) || res.Message.Text != nil && *res.Message.Text == "" {
			t.Errorf("results[%d].message: text or id required", i)
		}
		switch res.Level {
		case "none", "note", "warning", "error":
		default:
			t.Errorf("results[%d].level %q is not a SARIF level", i, res.Level)
		}
		if res.RuleIndex == nil || *res.RuleIndex < 0 || *res.RuleIndex >= len(rules) || *rules[*res.RuleIndex].ID != res.RuleID {
			t.Errorf("results[%d]: ruleId %q is not rules[ruleIndex]", i, res.RuleID)
		}
		for j, loc := range res.Locations {
			pl := loc.PhysicalLocation
			if pl == nil || pl.ArtifactLocation == nil || pl.ArtifactLocation.URI == nil {
				t.Errorf("results[%d].locations[%d]: no artifact", i, j)
				continue
			}
			if _, err := url.Parse(*pl.ArtifactLocation.URI); err != nil {
				t.Errorf("results[%d].locations[%d]: uri %q is not a URI reference", i, j, *pl.ArtifactLocation.URI)
			}
			if r := pl.Region; r != nil && (r.StartLine == nil || *r.StartLine < 1 || r.StartColumn != nil && *r.StartColumn < 1) {
				t.Errorf("results[%d].locations[%d]: region %+v", i, j, r)
			}
		}
	}
	return run.Results
}

// sarif21Names are the property names of the objects above, as the standard spells them.
var sarif21Names = map[string]bool{"$schema": true, "version": true, "runs": true, "tool": true, "results": true,
	"driver": true, "name": true, "informationUri": true, "rules": true, "id": true, "shortDescription": true,
	"text": true, "ruleId": true, "ruleIndex": true, "level": true, "message": true, "locations": true,
	"physicalLocation": true, "artifactLocation": true, "region": true, "uri": true, "startLine": true, "startColumn": true}

func checkSARIFNames(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !sarif21Names[k] {
				t.Errorf("%q is not a SARIF 2.1.0 property of the objects lint writes", k)
			}
			checkSARIFNames(t, e)
		}
	case []any:
		for _, e := range x {
			checkSARIFNames(t, e)
		}
	}
}

// TestLintSARIF: lint's SARIF meets SARIF 2.1.0 (checkSARIF21), a result per problem at its
// file, line and column with its rule.
func TestLintSARIF(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", "--format", "sarif", "testdata/bad-policy.yaml", "testdata/bad-compile.yaml")
	r.want(t, exitProblems)
	results := checkSARIF21(t, r.stdout)
	if len(results) != 5 {
		t.Fatalf("%d results, want 5 (3 + 2 problems):\n%s", len(results), r.stdout)
	}
	for i, res := range results {
		if res.Level != "error" || len(res.Locations) != 1 || res.Locations[0].PhysicalLocation.Region == nil ||
			res.Locations[0].PhysicalLocation.Region.StartColumn == nil {
			t.Errorf("result %d: %+v", i, res)
			continue
		}
		if uri := *res.Locations[0].PhysicalLocation.ArtifactLocation.URI; uri != "testdata/bad-policy.yaml" && uri != "testdata/bad-compile.yaml" {
			t.Errorf("result %d: uri %q", i, uri)
		}
	}
	first := results[0]
	if first.RuleID != "unknown-field" || *first.Locations[0].PhysicalLocation.Region.StartLine != 5 ||
		*first.Locations[0].PhysicalLocation.Region.StartColumn != 5 || *first.Message.Text != `unknown field "scoeps", expected one of [id scopes description]` {
		t.Errorf("first result: %+v", first)
	}
	if got := results[1].RuleID; got != "string.pattern" {
		t.Errorf("second result's rule %q, want string.pattern", got)
	}

	// No problems: a warning does not fail lint, and is a result of level warning.
	r = cli(t, "lint", "--format", "sarif", demoDir)
	r.want(t, exitOK)
	if results := checkSARIF21(t, r.stdout); len(results) != 1 || results[0].Level != "warning" || results[0].RuleID != "approvers-not-given" {
		t.Errorf("clean policy: %+v", results)
	}
	// No problems and no warnings: a run with no results, still a whole log.
	r = cli(t, "lint", "--format", "sarif", "--approvers", "../../internal/approval/signin/testdata/approvers.yaml", "testdata/approval")
	r.want(t, exitOK)
	if results := checkSARIF21(t, r.stdout); len(results) != 0 {
		t.Errorf("clean policy: %+v\n%s", results, r.stderr)
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

// TestCheckJSONDocumented: every field check -o json prints is in the reference's table, as
// spelt there.
func TestCheckJSONDocumented(t *testing.T) {
	setCredential(t)
	data, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(data), "### `check -o json`")
	section, _, _ = strings.Cut(section, "\n#")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| ((?:`[a-z_]+`(?:, )?)+) \\|").FindAllStringSubmatch(section, -1) {
		for _, f := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[1], -1) {
			documented[f[1]] = true
		}
	}
	if len(documented) < 10 {
		t.Fatalf("docs/cli.md documents %d fields of check -o json", len(documented))
	}
	for _, args := range [][]string{
		{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42", "--header", "Authorization: Bearer x", "--explain"},
		{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets?limit=1000"},
		{"--agent", helpdesk, "--method", "POST", "--host", "helpdesk.acme.internal", "--path", "/v1/users/jdoe/password-reset",
			"--header", "content-type: application/json", "--body", `{"reason":"locked out"}`},
	} {
		r := cli(t, append([]string{"check", "-o", "json"}, args...)...)
		r.want(t, exitOK)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		for k := range raw {
			if !documented[k] {
				t.Errorf("check -o json prints %q, which docs/cli.md does not document", k)
			}
		}
	}
}
