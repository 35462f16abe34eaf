package approval_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/policy"
)

const (
	consoleAliceToken = "alice-console-token"
	consoleBobToken   = "bob-console-token"
	consoleAgent      = "spiffe://acme.internal/agent/helpdesk"
	consoleResetPath  = "/v1/users/jdoe/password-reset"
	// consoleHostile is a path an agent controls; the console must show it as text.
	consoleHostile     = "/v1/<script>alert(1)</script>"
	consoleHostileBody = "{\n  \"reason\": \"<img src=x onerror=alert(2)>\"\n}"
)

// consoleWiring registers the API and the console over store, as serve does.
func consoleWiring(store approval.Store) func(*http.ServeMux) {
	api := &approval.API{Store: store, Auth: approval.NewTokens(map[string]approval.Approver{
		consoleAliceToken: {Name: "alice", Groups: []string{"it-admins"}},
		consoleBobToken:   {Name: "bob", Groups: []string{"finance"}},
	})}
	return func(mux *http.ServeMux) { api.Register(mux); (&approval.Console{API: api}).Register(mux) }
}

// newConsoleServer serves the API and the console over a memory store.
func newConsoleServer(t *testing.T, tls bool) (*httptest.Server, approval.Store) {
	store, mux := approval.NewMemory(), http.NewServeMux()
	t.Cleanup(func() { store.Close() })
	consoleWiring(store)(mux)
	srv := httptest.NewUnstartedServer(mux)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, store
}

// consoleHold stores a pending approval the way the gate does.
func consoleHold(t *testing.T, store approval.Store, agent, path, body string, approvers ...string) approval.Approval {
	t.Helper()
	now := time.Now()
	a, _, err := store.Hold(context.Background(), approval.Approval{ID: approval.NewID(), Agent: agent, Digest: approval.NewID(),
		Rule: "reset-password", Method: "POST", Host: "helpdesk.acme.internal", Path: path, Body: body,
		Approvers: approvers, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), UseWithin: 15 * time.Minute}, now)
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	return a
}

// consoleClient calls the console as its own page in a browser would: same origin, with the session
// cookie and CSRF token once signed in.
type consoleClient struct {
	t      *testing.T
	srv    *httptest.Server
	cookie *http.Cookie
	csrf   string
}

// do sends a request; hdr are name, value pairs that override the defaults ("" deletes).
func (c *consoleClient) do(method, path string, body any, hdr ...string) (*http.Response, map[string]any) {
	c.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, c.srv.URL+path, rd)
	for k, v := range map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin",
		"Origin": c.srv.URL, approval.CSRFHeader: c.csrf} {
		req.Header.Set(k, v)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if req.Header.Del(hdr[i]); hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	hc := *c.srv.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	m := map[string]any{}
	_ = json.Unmarshal(raw, &m) // pages and scripts are not JSON
	m["_raw"] = string(raw)
	return resp, m
}

// consoleSignIn signs in with token and keeps the session; it fails the test unless that works.
func consoleSignIn(t *testing.T, srv *httptest.Server, token string) *consoleClient {
	t.Helper()
	c := &consoleClient{t: t, srv: srv}
	resp, m := c.do("POST", "/approvals/api/session", map[string]string{"token": token})
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in: %d %v %v", resp.StatusCode, resp.Cookies(), m)
	}
	c.cookie, c.csrf = resp.Cookies()[0], m["csrf"].(string)
	return c
}

func consoleWant(t *testing.T, what string, resp *http.Response, m map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || (code != "" && m["code"] != code) {
		t.Errorf("%s: got %d %v, want %d %s", what, resp.StatusCode, m["code"], status, code)
	}
}

func TestConsoleSignIn(t *testing.T) {
	for _, tls := range []bool{false, true} {
		srv, _ := newConsoleServer(t, tls)
		c := &consoleClient{t: t, srv: srv}
		for _, bad := range []string{"wrong", "", "Bearer wrong", consoleAliceToken + "x"} {
			resp, m := c.do("POST", "/approvals/api/session", map[string]string{"token": bad})
			consoleWant(t, "bad token "+bad, resp, m, http.StatusUnauthorized, "bad_token")
			if len(resp.Cookies()) != 0 {
				t.Errorf("bad token %q set a cookie: %v", bad, resp.Cookies())
			}
		}
		resp, m := c.do("POST", "/approvals/api/session", map[string]string{"token": "Bearer " + consoleAliceToken})
		consoleWant(t, "good token", resp, m, http.StatusOK, "")
		if m["approver"] != "alice" || len(m["csrf"].(string)) < 43 {
			t.Errorf("sign-in answer: %v", m)
		}
		ck := resp.Cookies()[0]
		id, err := base64.RawURLEncoding.DecodeString(ck.Value)
		if ck.Name != "agentauthz_console" || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode ||
			ck.Path != "/approvals/" || ck.Secure != tls || ck.MaxAge != 8*3600 || err != nil || len(id) != 32 {
			t.Errorf("tls=%v: session cookie %+v (id %d bytes, %v)", tls, ck, len(id), err)
		}
		c.cookie, c.csrf = ck, m["csrf"].(string)
		if _, m := c.do("GET", "/approvals/api/session", nil); m["approver"] != "alice" || m["csrf"] != c.csrf {
			t.Errorf("session: %v", m)
		}
		resp, m = c.do("POST", "/approvals/api/signout", nil)
		consoleWant(t, "sign-out", resp, m, http.StatusOK, "")
		if cks := resp.Cookies(); len(cks) != 1 || cks[0].MaxAge >= 0 || cks[0].Path != "/approvals/" {
			t.Errorf("sign-out cookie: %v", cks)
		}
		if _, m := c.do("GET", "/approvals/api/session", nil); m["signed_in"] != false {
			t.Errorf("session after sign-out: %v", m)
		}
		resp, m = c.do("GET", "/approvals/api/approvals", nil)
		consoleWant(t, "list after sign-out", resp, m, http.StatusUnauthorized, "unauthenticated")
	}
}

func TestConsoleDecide(t *testing.T) {
	srv, store := newConsoleServer(t, false)
	a := consoleHold(t, store, consoleAgent, consoleResetPath, "{}", "group:it-admins")
	c := consoleSignIn(t, srv, consoleAliceToken)
	approve := "/approvals/api/approvals/" + a.ID + "/approve"
	body := map[string]string{"comment": "ok"}
	for _, tc := range []struct {
		name, path, code string
		status           int
		hdr              []string
	}{
		{"no CSRF token", approve, "csrf", 403, []string{approval.CSRFHeader, ""}},
		{"wrong CSRF token", approve, "csrf", 403, []string{approval.CSRFHeader, strings.Repeat("A", len(c.csrf))}},
		{"cross-site", approve, "cross_origin", 403, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		{"cross-origin, old browser", approve, "cross_origin", 403, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		{"form post", approve, "bad_content_type", 415, []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"no session", approve, "unauthenticated", 401, []string{"Cookie", ""}},
		{"sign-out without CSRF token", "/approvals/api/signout", "csrf", 403, []string{approval.CSRFHeader, ""}},
		{"cross-site sign-in", "/approvals/api/session", "cross_origin", 403, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		resp, m := c.do("POST", tc.path, body, tc.hdr...)
		consoleWant(t, tc.name, resp, m, tc.status, tc.code)
	}
	if got, _ := store.Get(context.Background(), a.ID, time.Now()); got.State != approval.Pending {
		t.Fatalf("a refused request changed the approval: %s", got.State)
	}
	resp, m := c.do("POST", approve, body)
	consoleWant(t, "approve", resp, m, http.StatusOK, "")
	if got := m["approval"].(map[string]any); got["state"] != "approved" || got["decided_by"] != "alice" || got["comment"] != "ok" {
		t.Errorf("approved: %v", got)
	}
	resp, m = c.do("POST", approve, body)
	consoleWant(t, "approve twice", resp, m, http.StatusConflict, "not_pending")

	// Who may decide: the page is told why not, and the console and the API refuse alike.
	own := consoleHold(t, store, "alice", consoleResetPath, "{}", "group:it-admins", "user:alice")
	theirs := consoleHold(t, store, consoleAgent, consoleResetPath, "{}", "group:it-admins")
	bob := consoleSignIn(t, srv, consoleBobToken)
	for _, tc := range []struct {
		c      *consoleClient
		id     string
		whyNot string
	}{{c, theirs.ID, ""}, {bob, theirs.ID, "you are not one of its approvers (group:it-admins)"}, {c, own.ID, "it is your own request"}} {
		path := "/approvals/api/approvals/" + tc.id
		_, m := tc.c.do("GET", path, nil)
		if got, _ := m["approval"].(map[string]any)["why_not"].(string); got != tc.whyNot {
			t.Errorf("why_not %q, want %q", got, tc.whyNot)
		}
		if tc.whyNot != "" {
			resp, m := tc.c.do("POST", path+"/deny", map[string]string{"comment": "no"})
			consoleWant(t, "deciding when "+tc.whyNot, resp, m, http.StatusForbidden, "forbidden")
		}
	}
	resp, m = c.do("POST", "/v1/approvals/"+own.ID+"/approve", nil, "Authorization", "Bearer "+consoleAliceToken)
	consoleWant(t, "the API, one's own request", resp, m, http.StatusForbidden, "forbidden")
}

func TestConsoleSecurityHeaders(t *testing.T) {
	srv, store := newConsoleServer(t, false)
	a := consoleHold(t, store, consoleAgent, consoleHostile, consoleHostileBody, "group:it-admins")
	anon, alice := &consoleClient{t: t, srv: srv}, consoleSignIn(t, srv, consoleAliceToken)
	raw := map[string]string{}
	for _, tc := range []struct {
		c      *consoleClient
		path   string
		status int
		ctype  string
	}{
		{anon, "/approvals", 303, ""},
		{anon, "/approvals/", 200, "text/html; charset=utf-8"},
		{anon, "/approvals/requests/" + a.ID, 200, "text/html; charset=utf-8"},
		{anon, "/approvals/assets/console.js", 200, "text/javascript; charset=utf-8"},
		{anon, "/approvals/assets/console.css", 200, "text/css; charset=utf-8"},
		{anon, "/approvals/assets/", 404, ""},
		{anon, "/approvals/nowhere", 404, ""},
		{anon, "/approvals/api/session", 200, "application/json"},
		{anon, "/approvals/api/approvals", 401, "application/problem+json"},
		{alice, "/approvals/api/approvals", 200, "application/json"},
		{alice, "/approvals/api/approvals/" + a.ID, 200, "application/json"},
	} {
		resp, m := tc.c.do("GET", tc.path, nil)
		h := resp.Header
		if resp.StatusCode != tc.status || (tc.ctype != "" && h.Get("Content-Type") != tc.ctype) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, resp.StatusCode, h.Get("Content-Type"), tc.status, tc.ctype)
		}
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe") || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: security headers missing: %v", tc.path, h)
		}
		if raw[tc.path] = m["_raw"].(string); strings.Contains(raw[tc.path], "<script>alert") || strings.Contains(raw[tc.path], "<img") {
			t.Errorf("GET %s: the hostile path or body is in the answer unescaped: %s", tc.path, raw[tc.path])
		}
	}
	// The JSON escapes markup, and decodes back to exactly what the agent sent.
	_, m := alice.do("GET", "/approvals/api/approvals/"+a.ID, nil)
	if got := m["approval"].(map[string]any); got["path"] != consoleHostile || got["body"] != consoleHostileBody {
		t.Errorf("hostile approval: %v", got)
	}
	// The page runs only its own script, builds the DOM from text, and names no other host.
	html, js := raw["/approvals/"], raw["/approvals/assets/console.js"]
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if tag != `<script src="/approvals/assets/console.js" defer>` {
			t.Errorf("inline or foreign script: %s", tag)
		}
	}
	if regexp.MustCompile(`\son[a-z]+=|style=|javascript:`).MatchString(html) {
		t.Error("the page has inline handlers or styles")
	}
	if bad := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`).FindString(js); bad != "" {
		t.Errorf("console.js uses %s", bad)
	}
	for name, text := range map[string]string{"page": html, "script": js, "style": raw["/approvals/assets/console.css"]} {
		if regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]`).MatchString(text) {
			t.Errorf("the %s names another host", name)
		}
	}
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

	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "console-test-helpdesk-token")
	snap, err := demo.Load(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	policies, store := &policy.Store{}, approval.NewMemory()
	policies.Swap(snap)
	t.Cleanup(func() { store.Close() })
	srv, err := server.Start(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: policies,
		Approvals: &approval.Gate{Store: store}, APIHandler: consoleWiring(store)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	check := func(approvalID string) *authv3.CheckResponse { // the agent's request, as Envoy asks about it
		t.Helper()
		h := map[string]string{":authority": "helpdesk.acme.internal", ":method": "POST", ":path": consoleResetPath,
			":scheme": "https", "content-type": "application/json", "x-envoy-auth-partial-body": "false"}
		if approvalID != "" {
			h[approval.Header] = approvalID
		}
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{
			Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Principal: consoleAgent},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "POST", Host: "helpdesk.acme.internal", Path: consoleResetPath, Scheme: "https",
					Protocol: "HTTP/2", Headers: h, Body: `{"reason":"User locked out after travel"}`}}}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	// A request alice may not decide, with a hostile path and body, is already waiting.
	other := consoleHold(t, store, consoleAgent, consoleHostile, consoleHostileBody, "group:db-admins")

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
	screenshot("list.png")

	// Open it, read it in full, approve it with a comment.
	if resp, err := chromedp.RunResponse(step(30*time.Second), chromedp.Click(chromedp.CSS(row(id)+" a"))); err != nil || resp.Status != 200 {
		t.Fatalf("open the request: %v; the page shows:\n%s", err, shows())
	}
	run("open", showing(id))
	for sel, want := range map[string]string{"#d-agent": consoleAgent, "#d-method": "POST", "#d-host": "helpdesk.acme.internal",
		"#d-path": consoleResetPath, "#d-rule": "reset-password", "#d-reason": "A password reset locks the user out of every session.",
		"#d-body": `"reason": "User locked out after travel"`, "#d-approvers": "group:it-admins", "#d-state": "pending"} {
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
