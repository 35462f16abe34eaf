package console_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
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
	a := &api.API{Store: store, Auth: signin.NewTokens(map[string]approval.Approver{
		consoleAliceToken: {Name: "alice", Groups: []string{"it-admins"}},
		consoleBobToken:   {Name: "bob", Groups: []string{"finance"}},
	})}
	return func(mux *http.ServeMux) { a.Register(mux); (&console.Console{API: a}).Register(mux) }
}

// newConsoleServer serves the API and the console over a memory store.
func newConsoleServer(t testing.TB, tls bool) (*httptest.Server, approval.Store) {
	store, mux := memstore.New(), http.NewServeMux()
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
		Approvers: approvers, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), UseWithin: 15 * time.Minute}, nil, approval.Limits{}, now)
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	return a
}

// consoleClient calls the console as its own page in a browser would: same origin, with the session
// cookie and CSRF token once signed in.
type consoleClient struct {
	t      testing.TB
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
		"Origin": c.srv.URL, console.CSRFHeader: c.csrf} {
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
func consoleSignIn(t testing.TB, srv *httptest.Server, token string) *consoleClient {
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
		{"no CSRF token", approve, "csrf", 403, []string{console.CSRFHeader, ""}},
		{"wrong CSRF token", approve, "csrf", 403, []string{console.CSRFHeader, strings.Repeat("A", len(c.csrf))}},
		{"cross-site", approve, "cross_origin", 403, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		{"cross-origin, old browser", approve, "cross_origin", 403, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		{"form post", approve, "bad_content_type", 415, []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"no session", approve, "unauthenticated", 401, []string{"Cookie", ""}},
		{"sign-out without CSRF token", "/approvals/api/signout", "csrf", 403, []string{console.CSRFHeader, ""}},
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

// TestConsoleShowsInvisibleCharactersAsMarkers: the console's API answers what an agent wrote,
// and what an approver commented, with bidi controls, zero-width and other invisible characters
// as visible \u{XXXX} markers (the page writes them as text: browsertest).
func TestConsoleShowsInvisibleCharactersAsMarkers(t *testing.T) {
	srv, store := newConsoleServer(t, false)
	hostile := approvaltest.Hostile()
	a := consoleHold(t, store, consoleAgent, "/v1/users/"+hostile, "{\n  \"reason\": \""+hostile+"\"\n}", "group:it-admins")
	c := consoleSignIn(t, srv, consoleAliceToken)
	fields := func(what string, m map[string]any) {
		t.Helper()
		approvaltest.WantVisible(t, what+": path", approvaltest.StringOf(m["path"]), false)
		approvaltest.WantVisible(t, what+": body", approvaltest.StringOf(m["body"]), true)
		if !strings.HasPrefix(approvaltest.StringOf(m["body"]), "{\n  \"reason\": \"a\\u{202a}b") {
			t.Errorf("%s: body %+q", what, m["body"])
		}
	}
	_, m := c.do("GET", "/approvals/api/approvals", nil)
	if list, _ := m["approvals"].([]any); len(list) != 1 {
		t.Fatalf("list: %v", m)
	} else {
		fields("list", list[0].(map[string]any))
	}
	_, m = c.do("GET", "/approvals/api/approvals/"+a.ID, nil)
	fields("get", m["approval"].(map[string]any))
	resp, m := c.do("POST", "/approvals/api/approvals/"+a.ID+"/deny", map[string]string{"comment": hostile})
	consoleWant(t, "deny", resp, m, http.StatusOK, "")
	got := m["approval"].(map[string]any)
	fields("deny", got)
	approvaltest.WantVisible(t, "deny: comment", approvaltest.StringOf(got["comment"]), true)
}

// TestConsoleListPages: the console's list is paged as the API's: the newest pending requests,
// how many more there are, and where the next page starts.
func TestConsoleListPages(t *testing.T) {
	srv, store := newConsoleServer(t, false)
	for range 55 {
		consoleHold(t, store, consoleAgent, consoleResetPath, "{}", "group:it-admins")
	}
	c := consoleSignIn(t, srv, consoleAliceToken)
	_, m := c.do("GET", "/approvals/api/approvals", nil)
	if list, _ := m["approvals"].([]any); len(list) != 50 || m["more"] != float64(5) || m["next_cursor"] == nil || m["now"] == nil {
		t.Fatalf("first page: %d approvals, more %v, next %v", len(list), m["more"], m["next_cursor"])
	}
	_, m = c.do("GET", "/approvals/api/approvals?state=pending&limit=50&cursor="+url.QueryEscape(m["next_cursor"].(string)), nil)
	if list, _ := m["approvals"].([]any); len(list) != 5 || m["more"] != float64(0) || m["next_cursor"] != nil {
		t.Fatalf("second page: %d approvals, more %v, next %v", len(list), m["more"], m["next_cursor"])
	}
	resp, m := c.do("GET", "/approvals/api/approvals?limit=1000", nil)
	consoleWant(t, "limit 1000", resp, m, http.StatusBadRequest, "bad_limit")
}
