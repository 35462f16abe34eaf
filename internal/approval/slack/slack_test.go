package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
)

// fakeSlack behaves like Slack's Web API for chat.postMessage and chat.update, and like an
// incoming webhook at /hook: it checks the token, answers {"ok":true,...} or Slack's errors,
// and records each message.
type fakeSlack struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	messages []slackCall
	next     int
	failNext int // answer this many calls with HTTP 500 first
}

type slackCall struct {
	Method  string
	Channel string
	TS      string
	Text    string
	Blocks  []map[string]any
	BlocksJ string
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{token: "xoxb-test-token"}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSlack) apiURL() string { return f.URL + "/api/" }

func (f *fakeSlack) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		http.Error(w, "<html>upstream error</html>", http.StatusInternalServerError)
		return
	}
	reply := func(v map[string]any) {
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path == "/hook" {
		var m struct {
			Text   string           `json:"text"`
			Blocks []map[string]any `json:"blocks"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Text == "" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		raw, _ := json.Marshal(m.Blocks)
		f.messages = append(f.messages, slackCall{Method: "webhook", Text: m.Text, Blocks: m.Blocks, BlocksJ: string(raw)})
		_, _ = w.Write([]byte("ok"))
		return
	}
	if err := r.ParseForm(); err != nil {
		reply(map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if token != f.token {
		reply(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	channel := r.PostForm.Get("channel")
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(r.PostForm.Get("blocks")), &blocks); err != nil {
		reply(map[string]any{"ok": false, "error": "invalid_blocks"})
		return
	}
	call := slackCall{Method: method, Channel: channel, Text: r.PostForm.Get("text"), Blocks: blocks, BlocksJ: r.PostForm.Get("blocks")}
	switch {
	case channel != "C0AGENTS":
		reply(map[string]any{"ok": false, "error": "channel_not_found"})
		return
	case method == "chat.postMessage":
		f.next++
		call.TS = fmt.Sprintf("1700000000.%06d", f.next)
	case method == "chat.update":
		call.TS = r.PostForm.Get("ts")
		found := false
		for _, m := range f.messages {
			found = found || (m.Method == "chat.postMessage" && m.TS == call.TS)
		}
		if !found {
			reply(map[string]any{"ok": false, "error": "message_not_found"})
			return
		}
	default:
		reply(map[string]any{"ok": false, "error": "unknown_method"})
		return
	}
	f.messages = append(f.messages, call)
	reply(map[string]any{"ok": true, "channel": channel, "ts": call.TS})
}

func (f *fakeSlack) calls() []slackCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slackCall(nil), f.messages...)
}

func newTestSlack(t *testing.T, f *fakeSlack, channel string) *Notifier {
	t.Helper()
	s, err := New(Config{Name: "ops-slack", Channel: channel, BotToken: f.token, SigningSecret: testSigningSecret, APIURL: f.apiURL()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSlackAnnounceBlockKit(t *testing.T) {
	f := newFakeSlack(t)
	s := newTestSlack(t, f, "C0AGENTS")
	a := notifyApproval("ops-slack")
	a.Body = "{\n  \"note\": \"<!channel> *bold* ```\",\n  \"big\": \"" + strings.Repeat("é", 5000) + "\"\n}"
	if err := s.Announce(context.Background(), notify.Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || calls[0].Channel != "C0AGENTS" {
		t.Fatalf("calls: %+v", calls)
	}
	c := calls[0]
	for _, want := range []string{
		`"type":"header"`, "Approval needed: POST idp.example.com",
		"spiffe://example.org/agent/helpdesk", "POST idp.example.com/users/42/reset", "reset-password",
		"Resets a user's password", "group:it-admins", "rich_text_preformatted", "more bytes not shown",
		`"action_id":"approve:` + a.ID + `"`, `"action_id":"deny:` + a.ID + `"`, `"value":"` + a.ID + `"`,
		fmt.Sprintf("!date^%d^", a.ExpiresAt.Unix()), a.ID,
	} {
		if !strings.Contains(c.BlocksJ, want) {
			t.Errorf("blocks lack %q", want)
		}
	}
	// Slack's limits: header text 150, section text 3000, field 2000.
	for _, b := range c.Blocks {
		raw, _ := json.Marshal(b)
		if b["type"] == "header" {
			if txt := b["text"].(map[string]any)["text"].(string); len([]rune(txt)) > 150 {
				t.Errorf("header is %d characters", len([]rune(txt)))
			}
		}
		if len(raw) > 3500 {
			t.Errorf("block of %d bytes: %.200s", len(raw), raw)
		}
	}
	// The agent's body is rich text, never mrkdwn: no mention or formatting gets through.
	if strings.Contains(c.Text, "<!channel>") {
		t.Errorf("fallback text: %q", c.Text)
	}
	if len(mrkdwnTexts(c.Blocks)) < 4 {
		t.Errorf("mrkdwn texts: %q", mrkdwnTexts(c.Blocks))
	}
	for _, text := range mrkdwnTexts(c.Blocks) {
		if strings.Contains(text, "<!channel>") || strings.Contains(text, "*bold*") {
			t.Errorf("the body reached mrkdwn: %q", text)
		}
	}
}

// mrkdwnTexts returns every mrkdwn text in blocks: what Slack formats.
func mrkdwnTexts(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		if v["type"] == "mrkdwn" {
			out = append(out, v["text"].(string))
		}
		for _, x := range v {
			out = append(out, mrkdwnTexts(x)...)
		}
	case []map[string]any:
		for _, x := range v {
			out = append(out, mrkdwnTexts(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, mrkdwnTexts(x)...)
		}
	}
	return out
}

func TestSlackAnnounceWithoutSigningSecretHasNoButtons(t *testing.T) {
	f := newFakeSlack(t)
	s, err := New(Config{Name: "ops-slack", Channel: "C0AGENTS", BotToken: f.token, APIURL: f.apiURL()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(context.Background(), notify.Announcement{Approval: notifyApproval("ops-slack")}); err != nil {
		t.Fatal(err)
	}
	if c := f.calls()[0]; strings.Contains(c.BlocksJ, `"actions"`) || !strings.Contains(c.BlocksJ, "/v1/approvals/") {
		t.Errorf("without a signing secret: no buttons, and the API named; blocks %s", c.BlocksJ)
	}
}

func TestSlackDecidedUpdatesTheMessage(t *testing.T) {
	f := newFakeSlack(t)
	s := newTestSlack(t, f, "C0AGENTS")
	a := notifyApproval("ops-slack")
	if err := s.Announce(context.Background(), notify.Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Comment = approval.Approved, "alice", time.Now(), "ticket INC-1"
	a.UseBy = a.DecidedAt.Add(a.UseWithin)
	if err := s.Decided(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 2 || calls[1].Method != "chat.update" || calls[1].TS != calls[0].TS {
		t.Fatalf("calls: %+v", calls)
	}
	u := calls[1].BlocksJ
	if !strings.Contains(u, "Approved by alice") || !strings.Contains(u, "ticket INC-1") || strings.Contains(u, `"actions"`) {
		t.Errorf("the update shows who decided, without buttons: %s", u)
	}

	// A decision on a message this process did not post (another replica, a restart) is a
	// new message.
	b := notifyApproval("ops-slack")
	b.State, b.DecidedBy, b.DecidedAt = approval.Denied, "bob", time.Now()
	if err := s.Decided(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	calls = f.calls()
	if last := calls[len(calls)-1]; last.Method != "chat.postMessage" || !strings.Contains(last.BlocksJ, "Denied by bob") {
		t.Errorf("last call: %+v", last)
	}
}

func TestSlackErrorsArePermanentOrRetried(t *testing.T) {
	f := newFakeSlack(t)
	err := newTestSlack(t, f, "C0NOWHERE").Announce(context.Background(), notify.Announcement{Approval: notifyApproval("ops-slack")})
	if err == nil || !strings.Contains(err.Error(), "channel_not_found") || !notify.IsPermanent(err) {
		t.Errorf("channel_not_found: %v (permanent %v)", err, notify.IsPermanent(err))
	}
	bad, _ := New(Config{Name: "x", Channel: "C0AGENTS", BotToken: "xoxb-wrong", APIURL: f.apiURL()})
	if err := bad.Announce(context.Background(), notify.Announcement{Approval: notifyApproval("x")}); err == nil || !notify.IsPermanent(err) {
		t.Errorf("invalid_auth: %v", err)
	}
	f.mu.Lock()
	f.failNext = 1
	f.mu.Unlock()
	err = newTestSlack(t, f, "C0AGENTS").Announce(context.Background(), notify.Announcement{Approval: notifyApproval("ops-slack")})
	if err == nil || notify.IsPermanent(err) {
		t.Errorf("HTTP 500 is retried: %v", err)
	}
}

func TestSlackThroughDispatcherRetriesAndGivesUp(t *testing.T) {
	f := newFakeSlack(t)
	var logs logBuffer
	rec := newNotifyRecorder()
	d := notify.NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	d.Set(newTestSlack(t, f, "C0AGENTS"))
	f.mu.Lock()
	f.failNext = 2
	f.mu.Unlock()
	d.Enqueue(notifyApproval("ops-slack"))
	rec.waitOutcome(t, "delivered")
	if calls := f.calls(); len(calls) != 1 {
		t.Errorf("delivered once after two 500s: %+v", calls)
	}

	d.Set(newTestSlack(t, f, "C0NOWHERE"))
	a := notifyApproval("ops-slack")
	d.Enqueue(a)
	rec.waitOutcome(t, "failed")
	if out := logs.String(); !strings.Contains(out, "NOTIFICATION NOT DELIVERED") || !strings.Contains(out, "channel_not_found") {
		t.Errorf("log:\n%s", out)
	}
}

func TestSlackIncomingWebhook(t *testing.T) {
	f := newFakeSlack(t)
	s, err := New(Config{Name: "hook", WebhookURL: f.URL + "/hook", SigningSecret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a := notifyApproval("hook")
	if err := s.Announce(context.Background(), notify.Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	a.State, a.DecidedBy, a.DecidedAt = approval.Denied, "bob", time.Now()
	if err := s.Decided(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 2 || !strings.Contains(calls[0].BlocksJ, "approve:"+a.ID) || !strings.Contains(calls[1].BlocksJ, "Denied by bob") {
		t.Errorf("webhook calls: %+v", calls)
	}
	gone, _ := New(Config{Name: "hook", WebhookURL: f.URL + "/gone/secret-part"})
	f.Config.Handler = http.NotFoundHandler()
	err = gone.Announce(context.Background(), notify.Announcement{Approval: a})
	if err == nil || !notify.IsPermanent(err) || strings.Contains(err.Error(), "secret-part") {
		t.Errorf("a 404 from the webhook is permanent, and the URL (a secret) is not in the error: %v", err)
	}
	if _, err := New(Config{Name: "hook", WebhookURL: "http://hooks.example.com/x"}); err == nil {
		t.Error("a plain-http webhook URL off loopback is refused")
	}
}

// eventRecorder is an EventLog that keeps what it is given.
type eventRecorder struct {
	mu     sync.Mutex
	events []string
}

func (e *eventRecorder) Write(kind string, attrs ...slog.Attr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := kind
	for _, a := range attrs {
		s += " " + a.String()
	}
	e.events = append(e.events, s)
	return nil
}

func (e *eventRecorder) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.events...)
}

const testSigningSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// slackSigned is a signed interaction, as Slack sends it: the body and headers.
func slackSigned(t *testing.T, secret string, at time.Time, user, actionID, value string) (string, http.Header) {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": "someone"},
		"api_app_id": "A0APP", "container": map[string]any{"type": "message", "channel_id": "C0AGENTS", "message_ts": "1700000000.000001"},
		"actions": []map[string]any{{"action_id": actionID, "block_id": "agentauthz:" + value, "value": value, "type": "button", "action_ts": "1700000001.1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := "payload=" + url.QueryEscape(string(payload))
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":" + body))
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return body, h
}

func slackHTTPRequest(body string, h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodPost, InteractionsPath, strings.NewReader(body))
	r.Header = h.Clone()
	return r
}

func slackRequest(t *testing.T, secret string, at time.Time, user, actionID, value string) *http.Request {
	t.Helper()
	body, h := slackSigned(t, secret, at, user, actionID, value)
	return slackHTTPRequest(body, h)
}

type slackFixture struct {
	store  *memstore.Store
	events *eventRecorder
	h      *Interactions
	mux    *http.ServeMux
	now    time.Time
	a      approval.Approval
	logs   *logBuffer

	mu      sync.Mutex
	decided []approval.Approval
}

func newSlackFixture(t *testing.T) *slackFixture {
	t.Helper()
	fx := &slackFixture{store: memstore.New(), events: &eventRecorder{}, now: time.Now(), logs: &logBuffer{}}
	fx.a = notifyApproval("ops-slack")
	if _, _, err := fx.store.Hold(context.Background(), fx.a, nil, approval.Limits{}, fx.now); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return fx.now }
	a := &api.API{Store: fx.store, Auth: signin.Chain{}, Clock: clock, Events: fx.events, Log: fx.logs.logger(),
		Decided: func(a approval.Approval) { fx.mu.Lock(); fx.decided = append(fx.decided, a); fx.mu.Unlock() }}
	fx.h = &Interactions{
		API: a, Clock: clock, Log: fx.logs.logger(),
		Users: Users{
			"U0ALICE":   {Name: "alice", Groups: []string{"it-admins"}},
			"U0MALLORY": {Name: "mallory", Groups: []string{"sales"}},
		},
		Secrets: func() []string { return []string{"another-apps-secret", testSigningSecret} },
	}
	fx.mux = http.NewServeMux()
	fx.h.Register(fx.mux)
	return fx
}

func (fx *slackFixture) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	fx.mux.ServeHTTP(w, r)
	return w
}

func (fx *slackFixture) state(t *testing.T) approval.State {
	t.Helper()
	a, err := fx.store.Get(context.Background(), fx.a.ID, fx.now)
	if err != nil {
		t.Fatal(err)
	}
	return a.State
}

func TestSlackInteractionApproves(t *testing.T) {
	fx := newSlackFixture(t)
	w := fx.do(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	a, _ := fx.store.Get(context.Background(), fx.a.ID, fx.now)
	if a.State != approval.Approved || a.DecidedBy != "alice" {
		t.Errorf("approval: %s by %q", a.State, a.DecidedBy)
	}
	ev := fx.events.all()
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "approval.approved ") || !strings.Contains(ev[0], "by=alice") ||
		!strings.Contains(ev[0], "via=slack") || !strings.Contains(ev[0], "slack_user_id=U0ALICE") {
		t.Errorf("audit events: %q", ev)
	}
	if len(fx.decided) != 1 || fx.decided[0].State != approval.Approved {
		t.Errorf("Decided hook: %+v", fx.decided)
	}
}

func TestSlackInteractionDenies(t *testing.T) {
	fx := newSlackFixture(t)
	w := fx.do(slackRequest(t, testSigningSecret, fx.now.Add(-4*time.Minute), "U0ALICE", "deny:"+fx.a.ID, fx.a.ID))
	if w.Code != http.StatusOK || fx.state(t) != approval.Denied {
		t.Fatalf("status %d (%s), state %s", w.Code, w.Body, fx.state(t))
	}
}

func TestSlackInteractionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    func(fx *slackFixture) *http.Request
		status int
		code   string
	}{
		{"bad signature", func(fx *slackFixture) *http.Request {
			return slackRequest(t, "not-the-secret", fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
		}, 401, "bad_signature"},
		{"tampered body", func(fx *slackFixture) *http.Request {
			r := slackRequest(t, testSigningSecret, fx.now, "U0MALLORY", "approve:"+fx.a.ID, fx.a.ID)
			good := slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
			r.Header.Set("X-Slack-Signature", good.Header.Get("X-Slack-Signature"))
			return r
		}, 401, "bad_signature"},
		{"no signature", func(fx *slackFixture) *http.Request {
			r := slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
			r.Header.Del("X-Slack-Signature")
			return r
		}, 401, "bad_signature"},
		{"stale timestamp", func(fx *slackFixture) *http.Request {
			r := slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
			fx.now = fx.now.Add(5*time.Minute + time.Second) // the server's clock has moved on
			return r
		}, 401, "stale"},
		{"future timestamp", func(fx *slackFixture) *http.Request {
			return slackRequest(t, testSigningSecret, fx.now.Add(6*time.Minute), "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)
		}, 401, "stale"},
		{"unknown Slack user", func(fx *slackFixture) *http.Request {
			return slackRequest(t, testSigningSecret, fx.now, "U0STRANGER", "approve:"+fx.a.ID, fx.a.ID)
		}, 403, "unknown_user"},
		{"not an approver", func(fx *slackFixture) *http.Request {
			return slackRequest(t, testSigningSecret, fx.now, "U0MALLORY", "approve:"+fx.a.ID, fx.a.ID)
		}, 403, "forbidden"},
		{"unknown approval", func(fx *slackFixture) *http.Request {
			id := approval.NewID()
			return slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+id, id)
		}, 404, "not_found"},
		{"not our button", func(fx *slackFixture) *http.Request {
			return slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "something_else", fx.a.ID)
		}, 400, "bad_request"},
		{"value disagrees with action", func(fx *slackFixture) *http.Request {
			return slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, approval.NewID())
		}, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newSlackFixture(t)
			w := fx.do(tc.req(fx))
			var p struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			if w.Code != tc.status || p.Code != tc.code {
				t.Errorf("status %d code %q, want %d %q: %s", w.Code, p.Code, tc.status, tc.code, w.Body)
			}
			if st := fx.state(t); st != approval.Pending {
				t.Errorf("state %s: a refused click decided", st)
			}
			if ev := fx.events.all(); len(ev) != 0 {
				t.Errorf("events: %q", ev)
			}
			if len(fx.decided) != 0 {
				t.Errorf("Decided hook was told: %+v", fx.decided)
			}
		})
	}
}

func TestSlackInteractionReplayRefused(t *testing.T) {
	fx := newSlackFixture(t)
	// Refused the first time (not an approver); the replay is refused as a replay.
	body, h := slackSigned(t, testSigningSecret, fx.now, "U0MALLORY", "approve:"+fx.a.ID, fx.a.ID)
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusForbidden {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	fx.now = fx.now.Add(2 * time.Minute)
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "replayed") {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}

	// A good click, replayed: the replay is refused as such, before any decision logic.
	body, h = slackSigned(t, testSigningSecret, fx.now, "U0ALICE", "deny:"+fx.a.ID, fx.a.ID)
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusOK {
		t.Fatalf("good: %d %s", w.Code, w.Body)
	}
	if w := fx.do(slackHTTPRequest(body, h)); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "replayed") {
		t.Fatalf("good replayed: %d %s", w.Code, w.Body)
	}
	if ev := fx.events.all(); len(ev) != 1 {
		t.Errorf("events: %q", ev)
	}
}

func TestSlackInteractionsWithoutSecretIsNotFound(t *testing.T) {
	fx := newSlackFixture(t)
	fx.h.Secrets = func() []string { return nil }
	if w := fx.do(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)); w.Code != http.StatusNotFound {
		t.Errorf("status %d", w.Code)
	}
	if fx.state(t) != approval.Pending {
		t.Error("decided")
	}
}

func TestSlackInteractionEndToEnd(t *testing.T) {
	// A held request is posted to Slack; alice clicks Approve; the message is edited to say so.
	f := newFakeSlack(t)
	rec := newNotifyRecorder()
	d := notify.NewDispatcher(rec.config(nil))
	defer d.Close(context.Background())
	d.Set(newTestSlack(t, f, "C0AGENTS"))
	fx := newSlackFixture(t)
	fx.h.API.Decided = d.Decided
	fx.h.Secrets = func() []string { return SigningSecrets(d.Notifiers()) }

	d.Enqueue(fx.a)
	rec.waitOutcome(t, "approval.requested delivered")
	if w := fx.do(slackRequest(t, testSigningSecret, fx.now, "U0ALICE", "approve:"+fx.a.ID, fx.a.ID)); w.Code != http.StatusOK {
		t.Fatalf("click: %d %s", w.Code, w.Body)
	}
	rec.waitOutcome(t, "approval.approved delivered")
	calls := f.calls()
	if len(calls) != 2 || calls[1].Method != "chat.update" || !strings.Contains(calls[1].BlocksJ, "Approved by alice") {
		t.Errorf("calls: %+v", calls)
	}
}

func TestSlackUsersFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "slack-users.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	users, err := ReadUsers(filepath.Join("testdata", "slack_users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := users["U024BE7LH"]; got.Name != "alice" || len(got.Groups) != 1 || got.Groups[0] != "it-admins" {
		t.Errorf("alice: %+v", got)
	}
	if len(users) != 2 {
		t.Errorf("users: %+v", users)
	}
	_, err = ReadUsers(write(`slack_users:
  - {slack_user_id: alice, name: alice}
  - {slack_user_id: U1, name: ""}
  - {slack_user_id: U2AB, name: spiffe://example.org/agent}
  - {slack_user_id: U3AB, name: bob}
  - {slack_user_id: U3AB, name: carol}
`))
	for _, want := range []string{"slack_users[0]", "not a Slack member ID", "slack_users[1]", "workload identity", "listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := ReadUsers(write("slack_users:\n  - {slack_user_id: U1AB, name: a, token: x}\n")); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := ReadUsers(write("# nothing yet\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := ReadUsers(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file")
	}
}

func TestSlackClipText(t *testing.T) {
	if got := clipText("héllo", 3); got != "…" && got != "h…" {
		t.Errorf("clipText = %q", got)
	}
	s := strings.Repeat("é", 100)
	if got := clipText(s, 51); len(got) > 51 || !strings.HasSuffix(got, "…") || !isValidUTF8(got) {
		t.Errorf("clipText = %q (%d bytes)", got, len(got))
	}
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
