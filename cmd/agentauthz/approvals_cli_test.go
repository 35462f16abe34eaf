package main

import (
	"context"
	"errors"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

const (
	aliceCLIToken = "alice-cli-token-7d2e" // alice, it-admins: approves password resets
	bobCLIToken   = "bob-cli-token-91ac"   // bob, sales: may not
)

// cliServer is a running demo server with the approval API, as `agentauthz serve` runs it.
type cliServer struct {
	url    string
	client authv3.AuthorizationClient
	clock  *approvaltest.Clock
	store  *failingStore
}

// failingStore is a Store whose List can be made to fail.
type failingStore struct {
	approval.Store
	mu   sync.Mutex
	fail bool
}

func (s *failingStore) List(ctx context.Context, q approval.Query, now time.Time) (approval.Page, error) {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return approval.Page{}, errors.New("store down")
	}
	return s.Store.List(ctx, q, now)
}

func startCLIServer(t *testing.T) *cliServer {
	t.Helper()
	setCredential(t) // for the commands the test runs
	pol, _ := servertest.DemoStore(t, credential)
	s := &cliServer{store: &failingStore{Store: memstore.New()}, clock: approvaltest.NewClock()}
	auth := signin.NewTokens(map[string]approval.Approver{
		aliceCLIToken: {Name: "alice", Groups: []string{"it-admins"}},
		bobCLIToken:   {Name: "bob", Groups: []string{"sales"}},
	})
	approvals := &api.API{Store: s.store, Auth: auth, Clock: s.clock.Now}
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: pol,
		Approvals:  &approval.Gate{Store: s.store, Clock: s.clock.Now},
		APIHandler: approvals.Register,
	})
	s.client = servertest.Client(t, srv)
	s.url = "http://" + srv.HTTPAddr().String()
	return s
}

// hold sends the helpdesk agent's password reset of user and returns the approval id, or the
// problem's code when the answer is not a 428.
func (s *cliServer) check(t *testing.T, user, id string) (code, approvalID, detail string) {
	t.Helper()
	h := map[string]string{"content-type": "application/json"}
	if id != "" {
		h[approval.Header] = id
	}
	req := extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal",
		Path: "/v1/users/" + user + "/password-reset", Headers: h,
		Body: `{"reason":"User locked out after travel","notify_user":true}`}.CheckRequest()
	a := servertest.Check(t, s.client, req)
	if a.Allow {
		return "allowed", "", ""
	}
	return a.ProblemString("code"), a.ProblemString("approval_id"), a.ProblemString("detail")
}

func (s *cliServer) hold(t *testing.T, user string) string {
	t.Helper()
	code, id, _ := s.check(t, user, "")
	if code != "approval_required" || !approval.ValidID(id) {
		t.Fatalf("reset of %s: %s %q; want approval_required", user, code, id)
	}
	return id
}

// approvals runs `agentauthz approvals ARGS --url URL`.
func (s *cliServer) approvals(t *testing.T, args ...string) result {
	t.Helper()
	return cli(t, append(append([]string{"approvals"}, args...), "--url", s.url)...)
}

func TestApprovalsCLI(t *testing.T) {
	s := startCLIServer(t)
	t.Setenv(ApproverTokenEnv, aliceCLIToken)

	r := s.approvals(t, "list")
	r.want(t, exitOK)
	if r.stdout != "No approvals.\n" || r.stderr != "" {
		t.Errorf("list with none: %q %q", r.stdout, r.stderr)
	}
	jdoe := s.hold(t, "jdoe")
	s.clock.Advance(time.Minute)
	asmith := s.hold(t, "asmith")

	r = s.approvals(t, "list")
	r.want(t, exitOK)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^ID\s+STATE\s+UNTIL\s+RULE\s+AGENT\s+REQUEST$`).MatchString(lines[0]) {
		t.Fatalf("list:\n%s", r.stdout)
	}
	// Newest first, one line each, columns aligned.
	row := regexp.MustCompile(`^(apr_[a-z2-7]{26})\s+pending\s+(2026-03-01T12:1[56]:00Z)\s+reset-password\s+` +
		regexp.QuoteMeta(helpdesk) + `\s+POST helpdesk\.acme\.internal/v1/users/([a-z]+)/password-reset$`)
	for i, want := range [][2]string{{asmith, "asmith"}, {jdoe, "jdoe"}} {
		m := row.FindStringSubmatch(lines[i+1])
		if m == nil || m[1] != want[0] || m[3] != want[1] {
			t.Errorf("list row %d: %q; want %s for %s", i+1, lines[i+1], want[0], want[1])
		}
	}
	if strings.Index(lines[1], "STATE") != strings.Index(lines[0], "STATE") && strings.Index(lines[1], "pending") != strings.Index(lines[0], "STATE") {
		t.Errorf("columns not aligned:\n%s", r.stdout)
	}

	r = s.approvals(t, "show", jdoe)
	r.want(t, exitOK)
	for _, want := range []string{"Approval   " + jdoe, "State      pending (expires 2026-03-01T12:15:00Z)", "Agent      " + helpdesk,
		"Request    POST helpdesk.acme.internal/v1/users/jdoe/password-reset", "Rule       reset-password",
		"Reason     A password reset locks the user out of every session.", "Approvers  group:it-admins",
		"Body (application/json):\n  {\n    \"notify_user\": true,\n    \"reason\": \"User locked out after travel\"\n  }\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}

	// bob is not an it-admin: refused, with the server's reason, in one line.
	r = s.approvals(t, "approve", jdoe, "--token", bobCLIToken)
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "forbidden: You are not one of this request's approvers (group:it-admins)") {
		t.Errorf("bob approves: %q", r.stderr)
	}
	r = s.approvals(t, "approve", jdoe, "--token", "wrong")
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "not signed in") || !strings.Contains(r.stderr, ApproverTokenEnv) {
		t.Errorf("wrong token: %q", r.stderr)
	}

	r = s.approvals(t, "approve", "--comment", "called the user", jdoe)
	r.want(t, exitOK)
	if want := "Approved " + jdoe + ": POST helpdesk.acme.internal/v1/users/jdoe/password-reset for " + helpdesk +
		". The agent may send it once, until 2026-03-01T12:16:00Z.\n"; r.stdout != want {
		t.Errorf("approve: %q, want %q", r.stdout, want)
	}
	r = s.approvals(t, "deny", jdoe)
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, jdoe+" was already approved by alice at 2026-03-01T12:01:00Z") {
		t.Errorf("deny after approve: %q", r.stderr)
	}
	r = s.approvals(t, "show", jdoe)
	if !strings.Contains(r.stdout, "Approved   2026-03-01T12:01:00Z by alice") || !strings.Contains(r.stdout, "Comment    called the user") ||
		!strings.Contains(r.stdout, "State      approved (usable once until 2026-03-01T12:16:00Z)") {
		t.Errorf("show after approval:\n%s", r.stdout)
	}
	if code, _, _ := s.check(t, "jdoe", jdoe); code != "allowed" {
		t.Errorf("the agent's retry after the CLI approved: %s", code)
	}
	r = s.approvals(t, "deny", jdoe)
	r.want(t, exitDenied)
	if !strings.Contains(r.stderr, jdoe+" was already decided by alice at 2026-03-01T12:01:00Z, and is now used") {
		t.Errorf("deny after use: %q", r.stderr)
	}

	// A denial's comment reaches the agent; one with escape sequences never reaches a terminal.
	r = s.approvals(t, "deny", asmith, "--comment", "Call the service desk \x1b[2J\x1b]0;pwned\x07first\r")
	r.want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "Denied "+asmith+": POST helpdesk.acme.internal/v1/users/asmith/password-reset") {
		t.Errorf("deny: %q", r.stdout)
	}
	if code, _, detail := s.check(t, "asmith", asmith); code != "approval_denied" || !strings.Contains(detail, "Call the service desk") {
		t.Errorf("the agent's retry after the CLI denied: %s %s", code, detail)
	}
	r = s.approvals(t, "show", asmith)
	r.want(t, exitOK)
	if strings.ContainsAny(r.stdout, "\x1b\x07\r") || !strings.Contains(r.stdout, `\u{001b}[2J`) {
		t.Errorf("show prints the comment's control characters:\n%q", r.stdout)
	}

	// Filters.
	for state, want := range map[string]string{"approved": "", "used": jdoe, "denied": asmith, "pending": "", "expired": ""} {
		r = s.approvals(t, "list", "--state", state)
		r.want(t, exitOK)
		if want == "" && r.stdout != "No "+state+" approvals.\n" || want != "" && (!strings.Contains(r.stdout, want) || strings.Count(r.stdout, "\n") != 2) {
			t.Errorf("list --state %s:\n%s", state, r.stdout)
		}
	}

	// Expired before anyone decided.
	late := s.hold(t, "cdoe")
	s.clock.Advance(16 * time.Minute)
	r = s.approvals(t, "approve", late)
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, late+" expired before it was decided") {
		t.Errorf("approve an expired request: %q", r.stderr)
	}
	r = s.approvals(t, "show", approval.NewID())
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "no approval apr_") {
		t.Errorf("show an unknown id: %q", r.stderr)
	}

	// The store is down: not a refusal, a failure to retry.
	s.store.mu.Lock()
	s.store.fail = true
	s.store.mu.Unlock()
	r = s.approvals(t, "list")
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "retry later") {
		t.Errorf("list with the store down: %q", r.stderr)
	}
	s.store.mu.Lock()
	s.store.fail = false
	s.store.mu.Unlock()

	// The token from --token or the environment never shows.
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, aliceCLIToken) || strings.Contains(out, bobCLIToken) {
			t.Errorf("a token was printed: %s", out)
		}
	}
}

func TestApprovalsCLIUsage(t *testing.T) {
	s := startCLIServer(t)
	t.Setenv(ApproverTokenEnv, aliceCLIToken)
	id := approval.NewID()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown subcommand "frob"`},
		{[]string{"lst"}, `unknown subcommand "lst" (did you mean list?)`},
		{[]string{"show"}, "which approval?"},
		{[]string{"approve"}, "which approval?"},
		{[]string{"show", id, "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "pending"}, `unexpected argument "pending"`},
		{[]string{"show", "not-an-id"}, "is not an approval id"},
		{[]string{"show", "01HZZZZZZZZZZZZZZZZZZZZZZZ"}, "is not an approval id"},
		{[]string{"list", "--state", "bogus"}, `--state "bogus"`},
		{[]string{"list", "--bogus"}, "unknown flag --bogus"},
		{[]string{"list", "--stat", "pending"}, "unknown flag --stat (did you mean --state?)"},
		{[]string{"list", "--limit", "ten"}, `--limit "ten": want a whole number`},
		{[]string{"approve", id, "--comment", strings.Repeat("x", 2001)}, "longer than 2000 bytes"},
		{[]string{"list", "--url", "127.0.0.1:9002"}, "is not an http:// or https:// URL"},
		{[]string{"list", "--url", "ftp://127.0.0.1:9002"}, "is not an http:// or https:// URL"},
		{[]string{"show", "--token", "", id}, ""},
	} {
		args := append([]string{"approvals"}, tc.args...)
		if !strings.Contains(strings.Join(tc.args, " "), "--url") {
			args = append(args, "--url", s.url)
		}
		r := cli(t, args...)
		if tc.want == "" {
			continue
		}
		r.want(t, exitUsage)
		oneLine(t, "stderr of "+strings.Join(tc.args, " "), r.stderr)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("approvals %s: %q; want %q", strings.Join(tc.args, " "), r.stderr, tc.want)
		}
	}

	// An unreachable server: nothing listens on a port just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := cli(t, "approvals", "list", "--url", "http://"+addr)
	r.want(t, exitError)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "cannot reach agentauthz at http://"+addr) {
		t.Errorf("unreachable: %q", r.stderr)
	}

	// Something else on the URL: a clear line, not a JSON error.
	r = cli(t, "approvals", "list", "--url", s.url+"/healthz")
	r.want(t, exitDenied)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "is --url agentauthz's HTTP listener") {
		t.Errorf("wrong URL: %q", r.stderr)
	}

	t.Setenv(ApproverTokenEnv, "")
	r = cli(t, "approvals", "list", "--url", s.url)
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "no approver token: set "+ApproverTokenEnv) {
		t.Errorf("no token: %q", r.stderr)
	}
	r = cli(t, "approvals", "list", "--url", s.url, "--token", bobCLIToken)
	r.want(t, exitOK)

	r = cli(t, "approvals")
	r.want(t, exitUsage)
	oneLine(t, "stderr", r.stderr)
	if !strings.Contains(r.stderr, "name a subcommand: approve, deny, list, show") {
		t.Errorf("approvals without a command: %q", r.stderr)
	}
	r = cli(t, "approvals", "--help")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "Exit status") {
		t.Errorf("approvals --help: %q", r.stdout)
	}
	r = cli(t, "approvals", "approve", "-h")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "--comment") || !strings.Contains(r.stdout, "--url") {
		t.Errorf("approve -h: %q", r.stdout)
	}
	if r := cli(t, "--help"); !strings.Contains(r.stdout, "\n  approvals ") {
		t.Errorf("agentauthz --help does not list approvals:\n%s", r.stdout)
	}
}

// TestApprovalsCLIShowsInvisibleCharactersAsMarkers: the CLI prints what agents and approvers
// wrote with bidi controls, zero-width and other invisible characters as \u{XXXX} markers,
// through the one escaping of every surface (approval.Visible), whatever the server sends.
func TestApprovalsCLIShowsInvisibleCharactersAsMarkers(t *testing.T) {
	hostile := approvaltest.Hostile()
	now := time.Now()
	raw := approval.Approval{ID: approval.NewID(), State: approval.Denied, Agent: helpdesk, Digest: "d", Rule: "reset-password",
		Reason: hostile, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/users/" + hostile,
		Body: "{\n  \"reason\": \"" + hostile + "\"\n}", ContentType: "application/json", Approvers: []string{"group:it-admins"},
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), DecidedAt: now, DecidedBy: "alice" + hostile, Comment: hostile}
	var out strings.Builder
	printApproval(&out, raw) // as a server that did not escape would send it
	approvaltest.WantVisible(t, "show", out.String(), true)

	s := startCLIServer(t)
	t.Setenv(ApproverTokenEnv, aliceCLIToken)
	raw.State, raw.DecidedAt, raw.DecidedBy, raw.Comment = "", time.Time{}, "", ""
	a, _, err := s.store.Hold(t.Context(), raw, nil, approval.Limits{}, s.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"show", a.ID}} {
		r := s.approvals(t, args...)
		r.want(t, exitOK)
		approvaltest.WantVisible(t, strings.Join(args, " "), r.stdout, true)
	}
}

// TestApprovalsCLIPages: list prints the newest approvals, --limit of them, and the command
// for the next page; the pages together list each approval once; --all lists them all.
func TestApprovalsCLIPages(t *testing.T) {
	s := startCLIServer(t)
	t.Setenv(ApproverTokenEnv, aliceCLIToken)
	var want []string // newest first
	for i := range 7 {
		now := s.clock.Now()
		a, _, err := s.store.Hold(t.Context(), approval.Approval{ID: approval.NewID(), Agent: helpdesk, Digest: approval.NewID(),
			Rule: "reset-password", Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/users/u" + strconv.Itoa(i) + "/password-reset",
			Approvers: []string{"group:it-admins"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil, approval.Limits{}, now)
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{a.ID}, want...)
		s.clock.Advance(time.Second)
	}
	rowID := regexp.MustCompile(`(?m)^(apr_[a-z2-7]{26})\s`)
	next := regexp.MustCompile(`(?m)^(\d+) more, older; the next page: agentauthz approvals list --state pending --limit 3 --cursor (\S+)$`)
	var listed []string
	args := []string{"list", "--state", "pending", "--limit", "3"}
	for page := 0; ; page++ {
		r := s.approvals(t, args...)
		r.want(t, exitOK)
		for _, m := range rowID.FindAllStringSubmatch(r.stdout, -1) {
			listed = append(listed, m[1])
		}
		m := next.FindStringSubmatch(r.stdout)
		if m == nil {
			if len(listed) != 7 || strings.Contains(r.stdout, "more, older") {
				t.Fatalf("page %d, the last:\n%s", page, r.stdout)
			}
			break
		}
		if n, _ := strconv.Atoi(m[1]); n != 7-len(listed) || page > 3 {
			t.Fatalf("page %d says %s more after %d listed:\n%s", page, m[1], len(listed), r.stdout)
		}
		args = []string{"list", "--state", "pending", "--limit", "3", "--cursor", m[2]}
	}
	if !slices.Equal(listed, want) {
		t.Errorf("pages together: %v; want %v", listed, want)
	}
	r := s.approvals(t, "list", "--all", "--limit", "2")
	r.want(t, exitOK)
	var all []string
	for _, m := range rowID.FindAllStringSubmatch(r.stdout, -1) {
		all = append(all, m[1])
	}
	if !slices.Equal(all, want) || strings.Contains(r.stdout, "more, older") {
		t.Errorf("--all:\n%s", r.stdout)
	}
	for _, bad := range [][]string{{"list", "--limit", "0"}, {"list", "--limit", "501"}, {"list", "--cursor", "nonsense"},
		{"list", "--all", "--cursor", "1.000000000." + want[0]}} {
		r := s.approvals(t, bad...)
		r.want(t, exitUsage)
		oneLine(t, "stderr", r.stderr)
	}
}
