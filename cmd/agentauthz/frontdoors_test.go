package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/jwtsvidtest"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/service"
	"github.com/agentauthz/agentauthz/policy"
)

// The same request gets the same answer through every front door: the gRPC server Envoy calls,
// `agentauthz check` and `agentauthz test`. extauthz's TestChecks holds the server to the answers
// in checksDir; the tests here hold check and test to the same answers, and compare check with
// a running server where an answer depends on a token or an approval.

// checksDir holds the CheckRequests of extauthz's end-to-end tests, each NAME.json with the
// server's answer in NAME.want.json.
const checksDir = "../../extauthz/testdata/checks"

// answer is what every front door must agree on.
type answer struct {
	allow  bool
	status int
	code   string
	rule   string // "" when no route matched
}

func (a answer) String() string {
	outcome := "deny"
	if a.allow {
		outcome = "allow"
	}
	return fmt.Sprintf("%s %d %s rule=%q", outcome, a.status, a.code, a.rule)
}

// checkAnswer reads check's answer from its first line ("allow  rule=R" or
// "deny STATUS CODE  rule=R") and its exit code, which must agree.
func checkAnswer(t *testing.T, r result) answer {
	t.Helper()
	first, _, _ := strings.Cut(r.stdout, "\n")
	head, rule, ok := strings.Cut(first, "  rule=")
	if !ok {
		t.Fatalf("check printed no decision (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	if rule == "(no route matched)" {
		rule = ""
	}
	a := answer{rule: rule}
	if head == "allow" {
		a.allow, a.status, a.code = true, 200, "allowed"
	} else if _, err := fmt.Sscanf(head, "deny %d %s", &a.status, &a.code); err != nil {
		t.Fatalf("check printed %q: %v", first, err)
	}
	if r.code != exitOK { // a deny is a decision
		t.Errorf("check answered %v with exit %d, want %d", a, r.code, exitOK)
	}
	return a
}

// grpcAnswer is the server's answer as Envoy enforces it: the HTTP status, and the decision's
// code and rule from the dynamic metadata.
func grpcAnswer(a servertest.Answer) answer { return answer{a.Allow, a.Status, a.Code, a.Rule} }

// serverCheck is one CheckRequest of checksDir and the answer the server gives it.
type serverCheck struct {
	name, path string
	want       answer
}

func serverChecks(t *testing.T) []serverCheck {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(checksDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var checks []serverCheck
	for _, p := range paths {
		name, ok := strings.CutSuffix(filepath.Base(p), ".json")
		if !ok || strings.HasSuffix(name, ".want") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(checksDir, name+".want.json"))
		if err != nil {
			t.Fatal(err)
		}
		var w struct {
			Allow  bool   `json:"allow"`
			Status int    `json:"status"`
			Code   string `json:"code"`
			Rule   string `json:"rule"`
		}
		if err := json.Unmarshal(data, &w); err != nil {
			t.Fatalf("%s.want.json: %v", name, err)
		}
		checks = append(checks, serverCheck{name: name, path: p, want: answer{w.Allow, w.Status, w.Code, w.Rule}})
	}
	if len(checks) < 100 {
		t.Fatalf("%s holds %d CheckRequests; the end-to-end tests have more", checksDir, len(checks))
	}
	return checks
}

// TestCheckRequestAnswersAsServer: `check --check-request` decides every CheckRequest of the
// end-to-end tests as the gRPC server does (extauthz's TestChecks proves the server gives the
// answers in NAME.want.json).
func TestCheckRequestAnswersAsServer(t *testing.T) {
	for _, c := range serverChecks(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, "check", "--check-request", c.path)
			if got := checkAnswer(t, r); got != c.want {
				t.Errorf("check --check-request %s: %v; the server answers %v", c.path, got, c.want)
			}
		})
	}
}

func TestCheckRequestUsage(t *testing.T) {
	file := filepath.Join(checksDir, "allow-bi-graphql-get.json")
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--request", "testdata/request-allow.yaml"}, "--check-request is the whole request; drop --request"},
		{[]string{"--host", "helpdesk.acme.internal", "--path", "/"}, "--check-request is the whole request; drop --host, --path"},
		{[]string{"--method", "GET"}, "drop --method"},
		{[]string{"--agent", helpdesk, "--header", "a: b", "--body", "x"}, "drop --agent, --body, --header"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, append([]string{"check", "--check-request", file}, tc.args...)...)
			r.want(t, exitUsage)
			oneLine(t, "stderr", r.stderr)
			if !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
				t.Errorf("stdout %q, stderr %q: want %q", r.stdout, r.stderr, tc.stderr)
			}
		})
	}

	notCR := filepath.Join(t.TempDir(), "not-a-check.json")
	if err := os.WriteFile(notCR, []byte(`{"attributes": {"request": {"htp": {}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{notCR, "testdata/missing.json"} {
		r := cli(t, "check", "--check-request", f)
		r.want(t, exitError)
		oneLine(t, "stderr", r.stderr)
		if !strings.Contains(r.stderr, f) || r.stdout != "" {
			t.Errorf("stdout %q, stderr %q: want the file named", r.stdout, r.stderr)
		}
	}

	// --explain and --policy go with it.
	r := cli(t, "check", "--check-request", file, "--explain", "--policy", demoDir)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "allow  rule=bi-graphql-get\n") || strings.HasPrefix(r.stdout, "allow") {
		t.Errorf("--explain: want the reasoning, then the decision:\n%s", r.stdout)
	}
}

// TestTestCheckRequests: `agentauthz test` on a copy of the demo policy, with a test file whose
// cases are the end-to-end CheckRequests by reference and the server's answers, passes them all;
// a wrong expectation fails.
func TestTestCheckRequests(t *testing.T) {
	checks := serverChecks(t)
	dir := t.TempDir()
	copyPolicy(t, demoDir, dir)
	type testCase struct {
		Name         string `yaml:"name"`
		CheckRequest string `yaml:"check_request"`
		Want         string `yaml:"want"`
		Status       int    `yaml:"status"`
		Code         string `yaml:"code"`
		Rule         string `yaml:"rule,omitempty"`
	}
	var cases []testCase
	for _, c := range checks {
		abs, err := filepath.Abs(c.path)
		if err != nil {
			t.Fatal(err)
		}
		// Relative to the test file, not to where the command runs.
		rel, err := filepath.Rel(dir, abs)
		if err != nil {
			t.Fatal(err)
		}
		want := "deny"
		if c.want.allow {
			want = "allow"
		}
		cases = append(cases, testCase{Name: c.name, CheckRequest: rel, Want: want, Status: c.want.status, Code: c.want.code, Rule: c.want.rule})
	}
	writeCases := func(cases []testCase) string {
		data, err := yaml.Marshal(cases)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "envoy_test.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	writeCases(cases)
	r := cli(t, "test", dir)
	r.want(t, exitOK)
	if want := fmt.Sprintf("%d passed, 0 failed\n", len(cases)); r.stdout != want || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, want)
	}

	wrong := cases[0]
	wrong.Code = "route_unknown"
	if cases[0].Code == wrong.Code {
		wrong.Code = "scope_missing"
	}
	path := writeCases(append([]testCase{wrong}, cases[1:]...))
	r = cli(t, "test", dir)
	r.want(t, exitFailed)
	for _, s := range []string{
		fmt.Sprintf("FAIL %s:1: %s: want code %s, got ", path, wrong.Name, wrong.Code),
		fmt.Sprintf("%d passed, 1 failed\n", len(cases)-1),
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}

// copyPolicy copies the policy files of from, and the files they refer to, into to; not its
// test files.
func copyPolicy(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), "_test.yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJWTSVIDCheckAsServer: on a host that accepts JWT-SVIDs, check with --jwt-bundle answers
// as a running server with the same bundle does, for a valid, an expired and a wrong-audience
// token and for none.
func TestJWTSVIDCheckAsServer(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "jwt.yaml")
	if err := os.WriteFile(policyPath, []byte(jwtsvidtest.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	key := jwtsvidtest.NewKey(t)
	bundlePath := filepath.Join(dir, "acme.jwks")
	jwtsvidtest.WriteBundle(t, bundlePath, jwtsvidtest.Bundle(t, jwtsvidtest.TrustDomain, jwtsvidtest.KeyID, key.Public()))
	bundleFlag := jwtsvidtest.TrustDomain + "=" + bundlePath

	// The server reads the same files, as serve --policy --jwt-bundle does.
	snap, err := loadOffline(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := service.LoadJWTBundles([]string{bundleFlag})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: policy.NewStore(snap), JWTBundles: bundles,
		CheckTimeout: 5 * time.Second}) // the race detector is slow; deadlines are not under test
	client := servertest.Client(t, srv)

	sign := func(c map[string]any) string { return jwtsvidtest.SignES256(t, key, jwtsvidtest.KeyID, c) }
	for _, tc := range []struct {
		name, token string
		want        answer
	}{
		{"valid", sign(jwtsvidtest.Claims(jwtsvidtest.Helpdesk, jwtsvidtest.Audience)),
			answer{true, 200, "allowed", "list-tickets"}},
		{"expired", sign(jwtsvidtest.Expired(jwtsvidtest.Claims(jwtsvidtest.Helpdesk, jwtsvidtest.Audience))),
			answer{false, 401, "jwt_svid_invalid", ""}},
		{"wrong audience", sign(jwtsvidtest.Claims(jwtsvidtest.Helpdesk, "reports.acme.internal")),
			answer{false, 401, "jwt_svid_invalid", ""}},
		{"no token", "", answer{false, 401, "identity_missing", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := extauthz.HTTPRequest{Host: jwtsvidtest.Audience, Path: "/v1/tickets"}
			args := []string{"check", "--policy", policyPath, "--jwt-bundle", bundleFlag, "--host", req.Host, "--path", req.Path}
			if tc.token != "" {
				req.Headers = map[string]string{"authorization": "Bearer " + tc.token}
				args = append(args, "--header", "authorization: Bearer "+tc.token)
			}
			fromServer := grpcAnswer(servertest.Check(t, client, req.CheckRequest()))
			fromCheck := checkAnswer(t, cli(t, args...))
			if fromServer != tc.want || fromCheck != tc.want {
				t.Errorf("server %v, check %v; want %v from both", fromServer, fromCheck, tc.want)
			}
		})
	}
}

// TestApprovalCheckAsServer: the demo's password reset is held for approval by the server and
// by check alike; check says it holds the approval in memory only.
func TestApprovalCheckAsServer(t *testing.T) {
	s := startCLIServer(t)
	req := extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal",
		Path: "/v1/users/jdoe/password-reset", Headers: map[string]string{"content-type": "application/json"},
		Body: `{"reason":"User locked out after travel"}`}
	want := answer{false, 428, "approval_required", "reset-password"}
	if got := grpcAnswer(servertest.Check(t, s.client, req.CheckRequest())); got != want {
		t.Errorf("server: %v, want %v", got, want)
	}

	r := cli(t, "check", "--agent", req.Principal, "--method", req.Method, "--host", req.Host, "--path", req.Path,
		"--header", "content-type: application/json", "--body", req.Body)
	if got := checkAnswer(t, r); got != want {
		t.Errorf("check: %v, want %v", got, want)
	}
	if note := "  (offline: the approval is held in memory only; a server holds it in its approval store)\n"; !strings.Contains(r.stdout, note) {
		t.Errorf("check does not say where the approval is held:\n%s", r.stdout)
	}
}
