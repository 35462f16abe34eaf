package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const responseDir = "testdata/response"

func TestCheckResponseFile(t *testing.T) {
	ticket := filepath.Join(responseDir, "ticket.json")
	base := []string{"check", "--policy", responseDir, "--agent", "spiffe://example.org/agent/helpdesk",
		"--host", "api.example.org", "--path", "/tickets/T-1", "--response-file", ticket}
	r := cli(t, base...)
	r.want(t, exitOK)
	for _, s := range []string{
		"  response rule  route:get-ticket",
		"response 200 reduced  rule=route:get-ticket@",
		"  removed  /requester/email\n  removed  /requester/phone\n  removed  /comments/*/author\n",
		`{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada"},"comments":[{"body":"hi"}]}` + "\n",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "ada@example.com") {
		t.Errorf("stdout shows a removed value:\n%s", r.stdout)
	}

	// Refused: a deny, a decision (status 0, or 3 with --fail-on-deny), and the problem the
	// agent gets.
	cli(t, append(base, "--response-content-type", "text/html", "--fail-on-deny")...).want(t, exitDenied)
	r = cli(t, append(base, "--response-content-type", "text/html")...)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "response 502 refused") || !strings.Contains(r.stdout, `"code":"response_refused"`) {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	// A denied request has no answer.
	r = cli(t, "check", "--policy", responseDir, "--agent", "spiffe://example.org/agent/helpdesk",
		"--host", "api.example.org", "--path", "/tickets/x", "--response-file", ticket)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "response: the request is denied") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	r = cli(t, "check", "--policy", responseDir, "--agent", "spiffe://example.org/agent/helpdesk",
		"--host", "api.example.org", "--path", "/tickets/T-1", "--response-file", filepath.Join(responseDir, "missing.json"))
	r.want(t, exitError)
	r = cli(t, "check", "--policy", responseDir, "--agent", "spiffe://example.org/agent/helpdesk",
		"--host", "api.example.org", "--path", "/tickets/T-1", "--response-file", ticket, "-o", "json")
	r.want(t, exitUsage)
}

func TestTestResponses(t *testing.T) {
	r := cli(t, "test", "-v", responseDir)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "6 passed, 0 failed") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	// A case whose expectation is wrong fails, saying why.
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "args.schema.json", "ticket.schema.json", "ticket.json"} {
		data, err := os.ReadFile(filepath.Join(responseDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bad := `- name: wrong
  principal: spiffe://example.org/agent/helpdesk
  host: api.example.org
  path: /tickets/T-1
  want: allow
  response:
    file: ticket.json
    expect: {removed: [/requester/email], body: '{"id":"T-1"}'}
`
	if err := os.WriteFile(filepath.Join(dir, "bad_test.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "test", dir)
	r.want(t, exitFailed)
	for _, s := range []string{"want removed", "want body", "0 passed, 1 failed"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}
