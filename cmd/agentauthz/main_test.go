package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// credential is what the demo's helpdesk credential is set to in these tests; no command may
// print it.
const credential = "helpdesk-credential-sentinel-3f9a"

const (
	helpdesk = "spiffe://acme.internal/agent/helpdesk"
	demoDir  = "../../internal/demo/policy"
)

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command in-process, as main does, and checks what every run must satisfy: it
// returns (a serve that started would not), it does not panic, and it prints no credential and
// no Go stack trace.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	done := make(chan any, 1)
	var code int
	go func() {
		defer func() { done <- recover() }()
		code = run(args, &stdout, &stderr)
	}()
	select {
	case p := <-done:
		if p != nil {
			t.Fatalf("agentauthz %s panicked: %v", strings.Join(args, " "), p)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agentauthz %s did not return: it must not start serving", strings.Join(args, " "))
	}
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	out := r.stdout + r.stderr
	if strings.Contains(out, credential) {
		t.Errorf("agentauthz %s printed the credential:\n%s", strings.Join(args, " "), out)
	}
	for _, s := range []string{"panic", "goroutine ", ".go:"} {
		if strings.Contains(out, s) {
			t.Errorf("agentauthz %s printed %q:\n%s", strings.Join(args, " "), s, out)
		}
	}
	return r
}

func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// oneLine checks that s is exactly one line.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || strings.TrimSpace(s) == "" {
		t.Errorf("%s is not exactly one line:\n%q", what, s)
	}
}

func setCredential(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", credential)
}

func unsetCredential(t *testing.T) {
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "")
	os.Unsetenv("AGENTAUTHZ_HELPDESK_TOKEN") // restored after the test
}

func TestLintDemo(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", demoDir)
	r.want(t, exitOK)
	oneLine(t, "stdout", r.stdout)
	if !regexp.MustCompile(`^\.\./\.\./internal/demo/policy: ok: 2 agents, 4 hosts, 9 routes, 1 MCP servers with 4 tools \(revision [0-9a-f]{12}\)\n$`).MatchString(r.stdout) {
		t.Errorf("stdout = %q", r.stdout)
	}
	// The demo holds requests for approval and lint was not told who approves: a warning.
	if want := "../../internal/demo/policy: warning: the policy holds requests for approval; lint it with the --approvers file (or --oidc-issuer) serve is given to check that someone may approve them\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

func TestLintBadPolicy(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", "testdata/bad-policy.yaml")
	r.want(t, exitProblems)
	want := `testdata/bad-policy.yaml:5:5: unknown field "scoeps", expected one of [id scopes description]
testdata/bad-policy.yaml:10:17: hosts[0].routes[0].method: does not match regex pattern ` + "`^[A-Z]{1,16}$`" + ` (string.pattern)
testdata/bad-policy.yaml:13:9: duplicate key "scope" (first at line 12)
testdata/bad-policy.yaml: 3 problem(s)
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// demoRevision is the revision lint reports for the demo policy.
func demoRevision(t *testing.T) string {
	t.Helper()
	r := cli(t, "lint", demoDir)
	m := regexp.MustCompile(`\(revision ([0-9a-f]{12})\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("lint %s printed %q", demoDir, r.stdout)
	}
	return m[1]
}

// TestLintSeveralPaths: each path is reported; the worst status wins.
func TestLintSeveralPaths(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", demoDir, "testdata/bad-compile.yaml")
	r.want(t, exitProblems)
	for _, s := range []string{
		"../../internal/demo/policy: ok: 2 agents, 4 hosts, 9 routes, 1 MCP servers with 4 tools (revision " + demoRevision(t) + ")",
		`testdata/bad-compile.yaml:4:9: agents[0].id: trust domain "partner.example" is not in trust_domains`,
		"testdata/bad-compile.yaml:11:15: hosts[0].routes[0].path: path parameter {id} has no type: add it under params",
		"testdata/bad-compile.yaml: 2 problem(s)",
	} {
		if !strings.Contains(r.stdout, s+"\n") {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}

	r = cli(t, "lint", "testdata/bad-compile.yaml", "testdata/missing.yaml")
	r.want(t, exitError) // a path that cannot be read is worse than problems
	oneLine(t, "stderr", r.stderr)
}

func TestLintUsage(t *testing.T) {
	setCredential(t)
	r := cli(t, "lint", "testdata/missing.yaml")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "testdata/missing.yaml") || r.stdout != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}

	r = cli(t, "lint")
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)

	r = cli(t, "lint", "--strict", demoDir)
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)
}

func TestCheckAllow(t *testing.T) {
	setCredential(t)
	for _, policy := range []string{"", demoDir} {
		t.Run("policy="+policy, func(t *testing.T) {
			args := []string{"check", "--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42",
				"--header", "Authorization: Bearer agent-own-token"}
			if policy != "" {
				args = append(args, "--policy", policy)
			}
			r := cli(t, args...)
			r.want(t, exitOK)
			want := "allow  rule=get-ticket\n" +
				"  set header     authorization: [redacted]\n" +
				"  remove header  cookie\n" +
				"  remove header  proxy-authorization\n" +
				"  remove header  every forwarded-context header (trust_forwarded_headers)\n" +
				"  response rule  route:get-ticket (the answer is filtered: --response-file shows how)\n"
			if r.stdout != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

func TestCheckDeny(t *testing.T) {
	setCredential(t)
	for _, tc := range []struct {
		name  string
		args  []string
		first string // the first line of stdout
		more  []string
	}{
		{"query", []string{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets?limit=1000"},
			"deny 400 query_invalid  rule=list-tickets", []string{"  query.limit: must be at most 100 (maximum)"}},
		{"scope", []string{"--agent", helpdesk, "--method", "DELETE", "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/42"},
			"deny 403 scope_missing  rule=delete-ticket", []string{"  This route needs scope tickets:delete, which you do not hold; do not retry."}},
		{"route", []string{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/admin"},
			"deny 403 route_unknown  rule=(no route matched)", nil},
		{"header", []string{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets", "--header", "X-HTTP-Method-Override: DELETE"},
			"deny 400 method_override  rule=(no route matched)", []string{"  header.x-http-method-override: must not be sent (forbidden)"}},
		{"no agent", []string{"--host", "helpdesk.acme.internal", "--path", "/v1/tickets"},
			"deny 401 identity_missing  rule=(no route matched)", nil},
		{"path", []string{"--agent", helpdesk, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets/../users/x/password-reset", "--method", "POST"},
			"deny 400 path_ambiguous  rule=(no route matched)", []string{"  path: contains a dot segment (dot_segment)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, append([]string{"check"}, tc.args...)...)
			r.want(t, exitOK) // a deny is a decision
			lines := strings.Split(r.stdout, "\n")
			if lines[0] != tc.first {
				t.Errorf("first line %q, want %q\n%s", lines[0], tc.first, r.stdout)
			}
			for _, m := range tc.more {
				if !strings.Contains(r.stdout, m+"\n") {
					t.Errorf("stdout lacks %q:\n%s", m, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

func TestCheckRequestFile(t *testing.T) {
	setCredential(t)
	r := cli(t, "check", "--request", "testdata/request-allow.yaml")
	r.want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "allow  rule=list-tickets\n") || !strings.Contains(r.stdout, "authorization: [redacted]\n") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	r = cli(t, "check", "--request", "testdata/request-deny.json", "--policy", demoDir)
	r.want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "deny 403 scope_missing  rule=get-ticket\n") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	r = cli(t, "check", "--request", "testdata/request-unknown-key.yaml")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if want := "agentauthz check: testdata/request-unknown-key.yaml: line 4: unknown key \"pth\" (known: principal, method, host, path, headers, body, protocol)\n"; r.stderr != want || r.stdout != "" {
		t.Errorf("stdout %q, stderr %q: want the file and the key", r.stdout, r.stderr)
	}

	r = cli(t, "check", "--request", "testdata/missing.yaml")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
}

func TestCheckUsage(t *testing.T) {
	setCredential(t)
	for _, args := range [][]string{
		{"check", "--nope"},
		{"check", "--agent"},
		{"check", "--header", "no colon", "--host", "h", "--path", "/"},
		{"check", "--host", "helpdesk.acme.internal"},
		{"check", "--host", "helpdesk.acme.internal", "--path", "/", "extra"},
		{"check", "--request", "testdata/request-allow.yaml", "--agent", helpdesk},
		{"check", "--request", "testdata/request-allow.yaml", "--path", "/v1/tickets/1"},
		{"check", "--host", "helpdesk.acme.internal", "--path", "/", "-o", "yaml"},
		{"check", "-policy", demoDir, "--host", "helpdesk.acme.internal", "--path", "/"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := cli(t, args...)
			r.want(t, exitUsage)
			oneLine(t, "stderr", r.stderr)
			if r.stdout != "" {
				t.Errorf("stdout = %q", r.stdout)
			}
		})
	}
}

// TestCheckRequestWithFlags: --request is the whole request; a flag that describes the request
// beside it is refused in one line naming both, rather than one of them silently winning.
func TestCheckRequestWithFlags(t *testing.T) {
	setCredential(t)
	r := cli(t, "check", "--request", "testdata/request-allow.yaml", "--agent", helpdesk)
	r.want(t, exitUsage)
	if want := "agentauthz check: --request is the whole request; drop --agent or put it in testdata/request-allow.yaml\n"; r.stderr != want || r.stdout != "" {
		t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, want)
	}
}

func TestCheckMissingPolicy(t *testing.T) {
	setCredential(t)
	r := cli(t, "check", "--host", "helpdesk.acme.internal", "--path", "/", "--policy", "testdata/missing.yaml")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if r.stdout != "" || !strings.Contains(r.stderr, "testdata/missing.yaml") {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestCheckBadPolicy(t *testing.T) {
	setCredential(t)
	r := cli(t, "check", "--policy", "testdata/bad-compile.yaml", "--host", "helpdesk.acme.internal", "--path", "/")
	r.want(t, exitProblems)
	want := `testdata/bad-compile.yaml:4:9: agents[0].id: trust domain "partner.example" is not in trust_domains
testdata/bad-compile.yaml:11:15: hosts[0].routes[0].path: path parameter {id} has no type: add it under params
agentauthz check: the policy has 2 problem(s)
`
	if r.stderr != want || r.stdout != "" {
		t.Errorf("stdout %q\nstderr:\n%s\nwant:\n%s", r.stdout, r.stderr, want)
	}
}

func TestCommands(t *testing.T) {
	setCredential(t)
	r := cli(t, "frobnicate")
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, `"frobnicate"`) {
		t.Errorf("stderr = %q", r.stderr)
	}

	r = cli(t)
	r.want(t, exitUsage)
	if !strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
		t.Errorf("no arguments: stdout %q, stderr %q", r.stdout, r.stderr)
	}

	r = cli(t, "--help")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
		t.Errorf("--help: stdout %q, stderr %q", r.stdout, r.stderr)
	}

	r = cli(t, "check", "-h")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "--request") || r.stderr != "" {
		t.Errorf("check -h: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// TestServeBadFlags: a bad flag value is one line and exit 2, before anything is loaded or
// listened on, whether or not the demo's credential is set.
func TestServeBadFlags(t *testing.T) {
	for _, credentialSet := range []bool{true, false} {
		for _, args := range [][]string{
			{"serve", "--grpc-addr", "nonsense"},
			{"serve", "--grpc-addr", "unix:"},
			{"serve", "--http-addr", "nonsense"},
			{"serve", "--log-level", "loud"},
			{"serve", "--memory-limit", "48MB"},
			{"serve", "--memory-limit", "1MiB"},
			{"serve", "--nope"},
			{"serve", "extra"},
		} {
			t.Run(fmt.Sprintf("credential=%v/%s", credentialSet, strings.Join(args, " ")), func(t *testing.T) {
				if credentialSet {
					setCredential(t)
				} else {
					unsetCredential(t)
				}
				r := cli(t, args...)
				r.want(t, exitUsage)
				oneLine(t, "stderr", r.stderr)
				if r.stdout != "" {
					t.Errorf("stdout = %q", r.stdout)
				}
			})
		}
	}
}

// TestServeMissingPolicy: a policy that cannot be read is one line and exit 1, listening on
// nothing.
func TestServeMissingPolicy(t *testing.T) {
	setCredential(t)
	r := cli(t, "serve", "--policy", "testdata/missing.yaml", "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", filepath.Join(t.TempDir(), "data"))
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if r.stdout != "" || !strings.Contains(r.stderr, "testdata/missing.yaml") {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestServeBadPolicy(t *testing.T) {
	setCredential(t)
	r := cli(t, "serve", "--policy", "testdata/bad-compile.yaml", "--grpc-addr", "127.0.0.1:0", "--http-addr", "")
	r.want(t, exitProblems)
	for _, s := range []string{
		`testdata/bad-compile.yaml:4:9: agents[0].id: trust domain \"partner.example\" is not in trust_domains`,
		"testdata/bad-compile.yaml:11:15: hosts[0].routes[0].path: path parameter {id} has no type: add it under params",
		"agentauthz serve: the policy has 2 problem(s); run agentauthz lint testdata/bad-compile.yaml\n",
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "\n"); n != 3 {
		t.Errorf("stderr has %d lines, want 3 (two problems and the summary):\n%s", n, r.stderr)
	}
}
