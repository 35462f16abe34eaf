package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

const (
	consoleAliceToken = "alice-console-token"
	consoleBobToken   = "bob-console-token"
	consoleAgent      = "spiffe://acme.internal/agent/helpdesk"
	consoleResetPath  = "/v1/users/jdoe/password-reset"
	// consoleHostile is a path an agent controls; the console must show it as text.
	consoleHostile     = "/v1/<script>alert(1)</script>"
	consoleHostileBody = "{\n  \"reason\": \"<img src=x onerror=alert(2)>\"\n}"
	// consoleHostileCondition is a rule's condition; the console shows it as text too.
	consoleHostileCondition = `body.note == "<img src=x onerror=alert(3)>"`
)

// consoleDenied stores a request held by a rule with condition, denied by carol.
func consoleDenied(t *testing.T, store approval.Store, condition string) approval.Approval {
	t.Helper()
	now := time.Now()
	a, _, err := store.Hold(context.Background(), approval.Approval{ID: approval.NewID(), Agent: consoleAgent, Digest: approval.NewID(),
		Rule: "reset-password", Condition: condition, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/users/x/password-reset",
		Approvers: []string{"group:db-admins"}, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}, nil, approval.Limits{}, now)
	if err == nil {
		a, err = store.Decide(context.Background(), a.ID, approval.Verdict{By: "carol"}, now)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// consoleWiring registers the API and the console over store, as serve does.
func consoleWiring(store approval.Store) func(*http.ServeMux) {
	a := &api.API{Store: store, Auth: signin.NewTokens(map[string]approval.Approver{
		consoleAliceToken: {Name: "alice", Groups: []string{"it-admins"}},
		consoleBobToken:   {Name: "bob", Groups: []string{"finance"}},
	})}
	return func(mux *http.ServeMux) { a.Register(mux); (&console.Console{API: a}).Register(mux) }
}

// consoleHold stores a pending approval the way the gate does.
func consoleHold(t *testing.T, store approval.Store, agent, path, body string, approvers ...string) approval.Approval {
	t.Helper()
	now := time.Now()
	a, _, err := store.Hold(context.Background(), approval.Approval{ID: approval.NewID(), Agent: agent, Digest: approval.NewID(),
		Rule: "reset-password", Method: "POST", Host: "helpdesk.acme.internal", Path: path, Body: body,
		Approvers: approvers, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), UseWithin: 15 * time.Minute}, nil, approval.Limits{}, now)
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	return a
}

// TestConsoleBrowser runs the whole flow in Debian's Chromium against the real server: the agent
// is held, alice signs in, sees the request arrive, approves it, and the agent's retry passes.
func TestConsoleBrowser(t *testing.T) {
	bin, _ := exec.LookPath("chromium")
	version, err := exec.Command(bin, "--version").Output()
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("chromium not installed: %v (apt-get install -y chromium)", err)
	} else if err != nil {
		t.Skip("chromium not installed: apt-get install -y chromium")
	}
	t.Logf("browser: %s", bytes.TrimSpace(version))

	policies, _ := servertest.DemoStore(t, "console-test-helpdesk-token")
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: policies,
		Approvals: &approval.Gate{Store: store}, APIHandler: consoleWiring(store)})
	client := servertest.Client(t, srv)
	check := func(approvalID string) *authv3.CheckResponse { // the agent's request, as Envoy asks about it
		t.Helper()
		h := map[string]string{":authority": "helpdesk.acme.internal", ":method": "POST", ":path": consoleResetPath,
			":scheme": "https", "content-type": "application/json", "x-envoy-auth-partial-body": "false"}
		if approvalID != "" {
			h[approval.Header] = approvalID
		}
		resp, err := client.Check(context.Background(), &authv3.CheckRequest{
			Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Principal: consoleAgent},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "POST", Host: "helpdesk.acme.internal", Path: consoleResetPath, Scheme: "https",
					Protocol: "HTTP/2", Headers: h, Body: `{"reason":"User locked out after travel"}`}}}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	// A request alice may not decide, with a hostile path and body, is already waiting; and one
	// whose path and body hide text with bidi controls and zero-width characters.
	other := consoleHold(t, store, consoleAgent, consoleHostile, consoleHostileBody, "group:db-admins")
	// A decided request whose rule's condition is hostile text: the console shows it as text.
	decidedHostile := consoleDenied(t, store, consoleHostileCondition)
	hostile := approvaltest.Hostile()
	hidden := consoleHold(t, store, consoleAgent, "/v1/users/"+hostile, "{\n  \"reason\": \""+hostile+"\"\n}", "group:db-admins")
	// And 60 older ones, held an hour ago by another agent: the list shows the newest.
	hourAgo := time.Now().Add(-time.Hour)
	for i := range 60 {
		at := hourAgo.Add(time.Duration(i) * time.Second)
		if _, _, err := store.Hold(context.Background(), approval.Approval{ID: approval.NewID(), Agent: "spiffe://acme.internal/agent/bulk",
			Digest: approval.NewID(), Rule: "reset-password", Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/users/old/password-reset",
			Approvers: []string{"group:it-admins"}, CreatedAt: at, ExpiresAt: at.Add(2 * time.Hour)}, nil, approval.Limits{}, at); err != nil {
			t.Fatal(err)
		}
	}

	actx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // start the browser before anything else uses ctx
		t.Fatalf("starting chromium: %v", err)
	}
	var dialogs atomic.Int32 // alert() from hostile text would open one
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range opening {
			if err != nil {
				return
			}
			dialogs.Add(1)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
		}
	}()
	// Each step has its own deadline, so that a failed one leaves the page to look at.
	step := func(d time.Duration) context.Context {
		sctx, cancel := context.WithTimeout(ctx, d)
		t.Cleanup(cancel)
		return sctx
	}
	shows := func() string {
		s, _ := chromedp.Run(step(5*time.Second), chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		return s
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(step(30*time.Second), actions...); err != nil {
			t.Fatalf("%s: %v; the page shows:\n%s", what, err, shows())
		}
	}
	js := func(expr string) string { // String(expr), evaluated in the page
		t.Helper()
		s, err := chromedp.Run(step(10*time.Second), chromedp.Evaluate[string]("String("+expr+")"))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return s
	}
	text := func(sel string) string { return js("document.querySelector(" + strconv.Quote(sel) + ").textContent") }
	showing := func(id string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("d-id").textContent === "` + id + `"`)
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(step(20*time.Second), chromedp.FullScreenshot(100))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("screenshot %s: %v (%d bytes, not a PNG)", name, err, len(png))
		}
		dir := os.Getenv("AGENTAUTHZ_SCREENSHOT_DIR") // to keep them; by default they go with the test
		if dir == "" {
			dir = t.TempDir()
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", filepath.Join(dir, name))
	}
	row := func(id string) string { return `#pending tr[data-id="` + id + `"]` }

	base := "http://" + srv.HTTPAddr().String() + "/approvals/"
	run("sign in", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), consoleAliceToken), chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.CSS(row(other.ID))))

	// The agent asks; the held request appears in the open list without a reload.
	held := check("")
	var problem struct {
		ApprovalID string `json:"approval_id"`
	}
	if code := held.GetDeniedResponse().GetStatus().GetCode(); code != 428 ||
		json.Unmarshal([]byte(held.GetDeniedResponse().GetBody()), &problem) != nil || !approval.ValidID(problem.ApprovalID) {
		t.Fatalf("first check: want 428 with approval_id, got %d %s", code, held.GetDeniedResponse().GetBody())
	}
	id := problem.ApprovalID
	run("new request listed", chromedp.WaitVisible(chromedp.CSS(row(id))))
	for _, want := range []string{consoleAgent, "POST", "helpdesk.acme.internal", consoleResetPath, "reset-password", "ago", "in 1"} {
		if got := text(row(id)); !strings.Contains(got, want) {
			t.Errorf("list row %q lacks %q", got, want)
		}
	}
	if got := text(row(other.ID) + " a"); got != consoleHostile || js("document.scripts.length + document.images.length") != "1" || text("#who-name") != "alice" {
		t.Errorf("hostile path shown as %q, or it became markup, or alice is not signed in", got)
	}
	// The 50 newest are listed, and the page says how many more there are.
	if n := js(`document.querySelectorAll("#pending tbody tr").length`); n != "50" {
		t.Errorf("%s rows listed; want the 50 newest", n)
	}
	if got := text("#more"); !strings.Contains(got, "The 50 newest are shown; 13 more, older, are pending too.") || js(`document.getElementById("more").hidden`) != "false" {
		t.Errorf("more: %q", got)
	}
	if got := text("#list-status"); !strings.HasPrefix(got, "63 pending") {
		t.Errorf("list status: %q", got)
	}
	approvaltest.WantVisible(t, "list: path", text(row(hidden.ID)+" a"), false)
	approvaltest.WantVisible(t, "list page", js("document.body.textContent"), true)
	screenshot("list.png")

	// Open it, read it in full, approve it with a comment.
	if resp, err := chromedp.RunResponse(step(30*time.Second), chromedp.Click(chromedp.CSS(row(id)+" a"))); err != nil || resp.Status != 200 {
		t.Fatalf("open the request: %v; the page shows:\n%s", err, shows())
	}
	run("open", showing(id))
	for sel, want := range map[string]string{"#d-agent": consoleAgent, "#d-method": "POST", "#d-host": "helpdesk.acme.internal",
		"#d-path": consoleResetPath, "#d-rule": "reset-password", "#d-reason": "A password reset locks the user out of every session.",
		"#d-body": `"reason": "User locked out after travel"`, "#d-approvers": "group:it-admins", "#d-state": "pending",
		"#d-condition": "every request to this rule", "#d-created": " UTC ("} {
		if got := text(sel); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	run("approve", chromedp.SendKeys(chromedp.ID("comment"), "Verified with jdoe by phone"),
		chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("result")))
	if got := text("#result"); !strings.Contains(got, "Approved by alice") || !strings.Contains(got, id) || text("#d-state") != "approved" {
		t.Errorf("result: %q, state %q", got, text("#d-state"))
	}
	screenshot("approved.png")

	// The request alice may not decide: buttons disabled, with why; hostile text stays text.
	run("open other", chromedp.Navigate(base+"requests/"+other.ID), showing(other.ID))
	if text("#d-path") != consoleHostile || text("#d-body") != consoleHostileBody || !strings.Contains(text("#why-not"), "not one of its approvers") ||
		js(`document.getElementById("approve").disabled && document.getElementById("deny").disabled && !document.images.length`) != "true" {
		t.Errorf("other request: path %q, why %q", text("#d-path"), text("#why-not"))
	}
	// Bidi controls, zero-width and other invisible characters show as \u{XXXX} markers.
	run("open hidden", chromedp.Navigate(base+"requests/"+hidden.ID), showing(hidden.ID))
	approvaltest.WantVisible(t, "detail: path", text("#d-path"), false)
	approvaltest.WantVisible(t, "detail: body", text("#d-body"), true)
	if !strings.HasPrefix(text("#d-body"), "{\n  \"reason\": \"a\\u{202a}b\\u{202b}c") {
		t.Errorf("detail: body %+q", text("#d-body"))
	}
	approvaltest.WantVisible(t, "detail page", js("document.body.textContent"), true)
	screenshot("invisible.png")

	// The history: decided requests too, each with the condition that held it, every time in UTC.
	run("history", chromedp.Navigate(base+"history"), chromedp.WaitVisible(chromedp.CSS(`#past tr[data-id="`+id+`"]`)))
	past := func(id string) string { return `#past tr[data-id="` + id + `"]` }
	for _, want := range []string{consoleAgent, consoleResetPath, "reset-password", "every request to this rule", "approved", "alice", " UTC"} {
		if got := text(past(id)); !strings.Contains(got, want) {
			t.Errorf("history row %q lacks %q", got, want)
		}
	}
	if got := text(past(decidedHostile.ID) + " td.condition"); got != consoleHostileCondition || js("document.scripts.length + document.images.length") != "1" {
		t.Errorf("hostile condition shown as %q, or it became markup", got)
	}
	if js(`document.querySelector('#past tr[data-id="`+other.ID+`"]') === null`) != "true" {
		t.Error("the history (decided) lists a pending request")
	}
	if ts := text(past(id) + " td"); !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`).MatchString(ts) {
		t.Errorf("held at %q, want a UTC time saying so", ts)
	}
	screenshot("history.png")
	// Filters: every state, the bulk agent, held in a window around an hour ago (UTC).
	from := hourAgo.Add(-time.Minute).UTC().Format("2006-01-02T15:04:05")
	to := hourAgo.Add(30 * time.Second).UTC().Format("2006-01-02T15:04:05")
	fromT, _ := time.Parse(time.RFC3339, from+"Z")
	toT, _ := time.Parse(time.RFC3339, to+"Z")
	inWindow := 0
	for i := range 60 {
		if at := hourAgo.Add(time.Duration(i) * time.Second); !at.Before(fromT) && !at.After(toT) {
			inWindow++
		}
	}
	run("filter", chromedp.SetValue(chromedp.ID("f-state"), "all"), chromedp.SendKeys(chromedp.ID("f-agent"), "spiffe://acme.internal/agent/bulk"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("f-from").value = "`+from+`"; document.getElementById("f-to").value = "`+to+`"; 0`),
		chromedp.Click(chromedp.ID("f-apply")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#past tbody tr").length === `+strconv.Itoa(inWindow)))
	if got := js(`[...document.querySelectorAll("#past tbody tr td:nth-child(2)")].every((td) => td.textContent === "spiffe://acme.internal/agent/bulk")`); got != "true" {
		t.Error("the agent filter lists another agent")
	}
	if q := js("location.search"); !strings.Contains(q, "state=all") || !strings.Contains(q, "agent=spiffe") || !strings.Contains(q, "from="+url.QueryEscape(from+"Z")) {
		t.Errorf("the filters are not in the page's address: %s", q)
	}
	// Read on: a page of 50 of every state, then the older ones.
	run("older", chromedp.Navigate(base+"history?state=all"), chromedp.Poll[chromedp.Void](`document.querySelectorAll("#past tbody tr").length === 50`),
		chromedp.Click(chromedp.ID("h-older")), chromedp.Poll[chromedp.Void](`document.querySelectorAll("#past tbody tr").length === 64`))
	if js(`document.getElementById("h-older").hidden`) != "true" {
		t.Error("the last page still offers older requests")
	}
	run("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
	if n := dialogs.Load(); n != 0 {
		t.Errorf("%d script dialogs opened: hostile text ran", n)
	}

	a, err := store.Get(context.Background(), id, time.Now())
	if err != nil || a.State != approval.Approved || a.DecidedBy != "alice" || a.Comment != "Verified with jdoe by phone" {
		t.Fatalf("stored approval: %+v %v", a, err)
	}
	if resp := check(id); resp.GetOkResponse() == nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("approved retry: want allow, got %v", resp)
	}
	if resp := check(id); resp.GetDeniedResponse() == nil {
		t.Errorf("second retry: want deny (used), got %v", resp)
	}
}
