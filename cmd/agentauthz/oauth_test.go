package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

// startOAuthCLI writes a policy trusting a local issuer and starts a server deciding from it; it
// returns the issuer, the policy's path and a function asking the server.
func startOAuthCLI(t *testing.T) (*oauthtest.Issuer, string, func(extauthz.HTTPRequest) answer) {
	t.Helper()
	iss := oauthtest.Start(t)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "oauth.yaml")
	writeTestFile(t, policyPath, oauthtest.Policy(iss.URL))
	snap, err := loadOffline(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, server.Config{Store: policy.NewStore(snap), OAuthKeys: oauthkeys.New(oauthkeys.Config{}),
		CheckTimeout: 5 * time.Second}) // the race detector is slow; deadlines are not under test
	client := servertest.Client(t, srv)
	return iss, policyPath, func(req extauthz.HTTPRequest) answer {
		return grpcAnswer(servertest.Check(t, client, req.CheckRequest()))
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOAuthCheckAsServer: check --token answers as the running server does for the same token;
// check --claims answers as the server does for a token the issuer signs with those claims.
func TestOAuthCheckAsServer(t *testing.T) {
	iss, policyPath, fromServer := startOAuthCLI(t)
	dir := filepath.Dir(policyPath)
	claims := func(change func(map[string]any)) map[string]any {
		c := iss.Claims(oauthtest.HelpdeskClient, "tickets.read")
		if change != nil {
			change(c)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		// claimsFile is the same claims as a case writes them: times from now.
		claimsFile string
		want       answer
	}{
		{"valid", claims(nil),
			"iss: " + iss.URL + "\naud: " + oauthtest.Audience + "\nclient_id: helpdesk-client\nscope: tickets.read\n",
			answer{true, 200, "allowed", "list-tickets"}},
		{"expired", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
			"iss: " + iss.URL + "\naud: " + oauthtest.Audience + "\nclient_id: helpdesk-client\nscope: tickets.read\nexp: -1h\n",
			answer{false, 401, "oauth_token_invalid", ""}},
		{"wrong audience", claims(func(c map[string]any) { c["aud"] = "https://reports.acme.internal" }),
			`{"iss": "` + iss.URL + `", "aud": "https://reports.acme.internal", "client_id": "helpdesk-client", "scope": "tickets.read"}`,
			answer{false, 401, "oauth_token_invalid", ""}},
		{"scope missing", claims(func(c map[string]any) { c["scope"] = "tickets.write" }),
			"iss: " + iss.URL + "\naud: " + oauthtest.Audience + "\nclient_id: helpdesk-client\nscope: tickets.write\n",
			answer{false, 403, "oauth_scope_missing", "list-tickets"}},
		{"unmapped client", claims(func(c map[string]any) { c["client_id"] = "stranger" }),
			"iss: " + iss.URL + "\naud: " + oauthtest.Audience + "\nclient_id: stranger\nscope: tickets.read\n",
			answer{false, 403, "oauth_subject_unknown", ""}},
		{"BI client", claims(func(c map[string]any) { c["client_id"] = oauthtest.BIClient }),
			"iss: " + iss.URL + "\naud: " + oauthtest.Audience + "\nclient_id: bi-client\nscope: tickets.read\n",
			answer{false, 403, "scope_missing", "list-tickets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := iss.Token(t, jose.ES256, tc.claims)
			req := extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets",
				Headers: map[string]string{"authorization": "Bearer " + token}}
			tokenFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".jwt")
			writeTestFile(t, tokenFile, token+"\n")
			claimsFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".claims")
			writeTestFile(t, claimsFile, tc.claimsFile)
			base := []string{"check", "--policy", policyPath, "--host", req.Host, "--path", req.Path}
			server := fromServer(req)
			byToken := checkAnswer(t, cli(t, append(base, "--token", tokenFile)...))
			byClaims := checkAnswer(t, cli(t, append(base, "--claims", claimsFile)...))
			if server != tc.want || byToken != tc.want || byClaims != tc.want {
				t.Errorf("server %v, check --token %v, check --claims %v; want %v from each", server, byToken, byClaims, tc.want)
			}
		})
	}
	// No token: the same identity_missing.
	want := answer{false, 401, "identity_missing", ""}
	if got := fromServer(extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets"}); got != want {
		t.Errorf("server without a token: %v", got)
	}
	if got := checkAnswer(t, cli(t, "check", "--policy", policyPath, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets")); got != want {
		t.Errorf("check without a token: %v", got)
	}
}

// A token signed offline from claims is the offline engine's only: the server refuses it.
func TestOAuthOfflineTokensRefusedOnline(t *testing.T) {
	iss, policyPath, fromServer := startOAuthCLI(t)
	snap, err := loadOffline(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := policytest.NewClaims(snap, nil).Token(map[string]any{"iss": iss.URL, "aud": oauthtest.Audience,
		"client_id": oauthtest.HelpdeskClient, "scope": "tickets.read"})
	if err != nil {
		t.Fatal(err)
	}
	got := fromServer(extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets", Headers: map[string]string{"authorization": "Bearer " + tok}})
	if want := (answer{false, 401, "oauth_token_invalid", ""}); got != want {
		t.Errorf("the server answered an offline token with %v, want %v", got, want)
	}
	// Nor does another run's offline key verify it: each run makes its own.
	writeTestFile(t, filepath.Join(filepath.Dir(policyPath), "t.jwt"), tok)
	r := cli(t, "check", "--policy", policyPath, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets", "--token", filepath.Join(filepath.Dir(policyPath), "t.jwt"))
	if got := checkAnswer(t, r); got.code != "oauth_token_invalid" {
		t.Errorf("check --token with another run's offline token: %v", got)
	}
}

func TestOAuthCheckUsage(t *testing.T) {
	_, policyPath, _ := startOAuthCLI(t)
	dir := filepath.Dir(policyPath)
	writeTestFile(t, filepath.Join(dir, "c.yaml"), "iss: x\n")
	writeTestFile(t, filepath.Join(dir, "empty.jwt"), "\n")
	writeTestFile(t, filepath.Join(dir, "bad.yaml"), "exp: soon\n")
	base := []string{"check", "--policy", policyPath, "--host", "helpdesk.acme.internal", "--path", "/v1/tickets"}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{append(base, "--token", filepath.Join(dir, "c.yaml"), "--claims", filepath.Join(dir, "c.yaml")), exitUsage},
		{append(base, "--claims", filepath.Join(dir, "c.yaml"), "--header", "Authorization: Bearer x"), exitUsage},
		{append(base, "--token", filepath.Join(dir, "missing.jwt")), exitError},
		{append(base, "--token", filepath.Join(dir, "empty.jwt")), exitError},
		{append(base, "--claims", filepath.Join(dir, "bad.yaml")), exitError},
		{[]string{"check", "--policy", policyPath, "--check-request", "testdata/none.json", "--claims", filepath.Join(dir, "c.yaml")}, exitUsage},
	} {
		r := cli(t, tc.args...)
		r.want(t, tc.code)
		oneLine(t, "stderr", r.stderr)
	}
}

// agentauthz test runs cases that give claims.
func TestOAuthTestCases(t *testing.T) {
	iss, policyPath, _ := startOAuthCLI(t)
	dir := filepath.Dir(policyPath)
	writeTestFile(t, filepath.Join(dir, "oauth_test.yaml"), `
- name: the helpdesk client's token lists tickets
  claims: {iss: "`+iss.URL+`", aud: "`+oauthtest.Audience+`", client_id: helpdesk-client, scope: tickets.read}
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: allow
  rule: list-tickets
- name: as the helpdesk agent's certificate does
  principal: spiffe://acme.internal/agent/helpdesk
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: allow
- name: an expired token
  claims: {iss: "`+iss.URL+`", aud: "`+oauthtest.Audience+`", client_id: helpdesk-client, scope: tickets.read, exp: -10m}
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: deny
  code: oauth_token_invalid
- name: a step-up for tickets.write
  claims: {iss: "`+iss.URL+`", aud: "`+oauthtest.Audience+`", client_id: helpdesk-client, scope: tickets.read}
  method: POST
  host: helpdesk.acme.internal
  path: /v1/tickets/7/comments
  want: deny
  status: 403
  code: oauth_scope_missing
- name: a token for another agent beside the certificate
  principal: spiffe://acme.internal/agent/bi
  claims: {iss: "`+iss.URL+`", aud: "`+oauthtest.Audience+`", client_id: helpdesk-client}
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: deny
  code: identity_conflict
`)
	r := cli(t, "test", "-v", dir)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "5 passed, 0 failed") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	// A case that expects the wrong answer fails: the claims are really checked.
	writeTestFile(t, filepath.Join(dir, "oauth_test.yaml"), `
- name: a token for another resource
  claims: {iss: "`+iss.URL+`", aud: https://reports.acme.internal, client_id: helpdesk-client, scope: tickets.read}
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: allow
`)
	r = cli(t, "test", dir)
	r.want(t, exitFailed)
	if !strings.Contains(r.stdout, "want allow, got deny 401 oauth_token_invalid") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	writeTestFile(t, filepath.Join(dir, "oauth_test.yaml"), `
- name: claims and an authorization header
  claims: {iss: x}
  headers: {Authorization: Bearer x}
  host: helpdesk.acme.internal
  path: /v1/tickets
  want: deny
`)
	cli(t, "test", dir).want(t, exitError)
}
