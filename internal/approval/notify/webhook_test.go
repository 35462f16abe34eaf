package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
)

// webhookReceiver is a receiver as a user would write one: it verifies the signature and
// answers with the statuses it is given, in turn (then 200).
type webhookReceiver struct {
	*httptest.Server
	secret string

	mu       sync.Mutex
	statuses []int
	events   []WebhookEvent
	attempts int
	badSigs  int
}

func newWebhookReceiver(t *testing.T, secret string, statuses ...int) *webhookReceiver {
	rv := &webhookReceiver{secret: secret, statuses: statuses}
	rv.Server = httptest.NewServer(http.HandlerFunc(rv.serve))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *webhookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.attempts++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		!VerifyWebhookSignature([]byte(rv.secret), body, r.Header.Get(WebhookSignatureHeader)) {
		rv.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if ts, err := strconv.ParseInt(r.Header.Get(WebhookTimestampHeader), 10, 64); err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		http.Error(w, "bad timestamp", http.StatusBadRequest)
		return
	}
	if len(rv.statuses) > 0 {
		status := rv.statuses[0]
		rv.statuses = rv.statuses[1:]
		if status != http.StatusOK {
			http.Error(w, "try later", status)
			return
		}
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rv.events = append(rv.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (rv *webhookReceiver) got() (events []WebhookEvent, attempts, badSigs int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]WebhookEvent(nil), rv.events...), rv.attempts, rv.badSigs
}

func newTestWebhook(t *testing.T, url, secret string) *Webhook {
	t.Helper()
	w, err := NewWebhook(WebhookConfig{Name: "siem", URL: url, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookSignedEvents(t *testing.T) {
	rv := newWebhookReceiver(t, "s3cret")
	w := newTestWebhook(t, rv.URL+"/agentauthz", "s3cret")
	a := notifyApproval("siem")
	if err := w.Announce(context.Background(), Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	a.State, a.DecidedBy, a.DecidedAt = approval.Denied, "bob", time.Now()
	if err := w.Decided(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	events, _, bad := rv.got()
	if bad != 0 || len(events) != 2 {
		t.Fatalf("events %+v, bad signatures %d", events, bad)
	}
	if e := events[0]; e.Type != "approval.requested" || e.ID != a.ID+":approval.requested" || e.Approval.ID != a.ID ||
		e.Approval.Body != a.Body || e.Approval.Method != "POST" || e.SentAt.IsZero() {
		t.Errorf("requested event: %+v", e)
	}
	if e := events[1]; e.Type != "approval.denied" || e.Approval.State != approval.Denied || e.Approval.DecidedBy != "bob" {
		t.Errorf("denied event: %+v", e)
	}

	// A receiver with another secret refuses: that is a permanent failure (401).
	other := newWebhookReceiver(t, "another")
	err := newTestWebhook(t, other.URL, "s3cret").Announce(context.Background(), Announcement{Approval: a})
	if err == nil || !IsPermanent(err) {
		t.Errorf("a 401 is permanent: %v", err)
	}
}

func TestWebhookSignature(t *testing.T) {
	// echo -n '{"a":1}' | openssl dgst -sha256 -hmac key
	const want = "sha256=88a67f24bbcdaed0e6c997404bb79a743baf44c6bab2f4c27328e3009d22e342"
	if got := WebhookSignature([]byte("key"), []byte(`{"a":1}`)); got != want {
		t.Errorf("WebhookSignature = %s", got)
	}
	if !VerifyWebhookSignature([]byte("key"), []byte(`{"a":1}`), want) || VerifyWebhookSignature([]byte("key"), []byte(`{"a":2}`), want) {
		t.Error("VerifyWebhookSignature")
	}
}

func TestWebhookRetriedThenDelivered(t *testing.T) {
	rv := newWebhookReceiver(t, "s3cret", 500, 503, 200)
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	d.Set(newTestWebhook(t, rv.URL, "s3cret"))
	a := notifyApproval("siem")
	d.Enqueue(a)
	rec.waitOutcome(t, "siem approval.requested delivered")
	events, attempts, _ := rv.got()
	if attempts != 3 || len(events) != 1 || events[0].Approval.ID != a.ID {
		t.Errorf("attempts %d, events %+v", attempts, events)
	}
	out := logs.String()
	if strings.Count(out, "notification failed; retrying") != 2 || !strings.Contains(out, "500 Internal Server Error") {
		t.Errorf("log:\n%s", out)
	}
}

func TestWebhookPermanentFailureGivesUp(t *testing.T) {
	rv := newWebhookReceiver(t, "s3cret", 500, 500, 500, 500, 500, 500)
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	d.Set(newTestWebhook(t, rv.URL, "s3cret"))
	a := notifyApproval("siem")
	d.Enqueue(a)
	rec.waitOutcome(t, "siem approval.requested failed")
	if _, attempts, _ := rv.got(); attempts != 5 {
		t.Errorf("attempts %d, want 5", attempts)
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "NOTIFICATION NOT DELIVERED") || !strings.Contains(out, a.ID) {
		t.Errorf("giving up is logged loudly; log:\n%s", out)
	}

	// A 404 is not retried: the dispatcher gives up after the first attempt, and says why. Its
	// outcome is the second failure (the first is the 500s'); the log line comes before it.
	gone := newWebhookReceiver(t, "s3cret", 404)
	d.Set(newTestWebhook(t, gone.URL, "s3cret"))
	b := notifyApproval("siem")
	d.Enqueue(b)
	rec.waitOutcomes(t, "siem approval.requested failed", 2)
	if _, attempts, _ := gone.got(); attempts != 1 {
		t.Errorf("a 404 was tried %d times, want once", attempts)
	}
	var gaveUp bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, b.ID) {
			continue
		}
		if strings.Contains(line, "retrying") {
			t.Errorf("a 404 is retried: %s", line)
		}
		if strings.Contains(line, "NOTIFICATION NOT DELIVERED") {
			gaveUp = true
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "the failure is permanent") ||
				!strings.Contains(line, "404 Not Found") || !strings.Contains(line, "attempts=1") {
				t.Errorf("giving up on a 404 does not say it is permanent, with the status, after one attempt: %s", line)
			}
		}
	}
	if !gaveUp {
		t.Errorf("giving up on %s after a 404 is not logged; log:\n%s", b.ID, logs.String())
	}
}

func TestWebhookHungReceiverNeverBlocksTheCheck(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	var logs logBuffer
	d := NewDispatcher(DispatcherConfig{Log: logs.logger(), QueueSize: 8, Timeout: 200 * time.Millisecond,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }, Coalesce: -1})
	d.Set(newTestWebhook(t, hung.URL, "s3cret"))
	gate := &approval.Gate{Announce: d.Enqueue} // what serve wires
	start := time.Now()
	for range 100 {
		gate.Announce(notifyApproval("siem"))
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("100 announcements to a hung receiver took %v", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d.Close(ctx)
	if out := logs.String(); !strings.Contains(out, "queue is full") {
		t.Errorf("log:\n%.2000s", out)
	}
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	target := newWebhookReceiver(t, "s3cret")
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer redirect.Close()
	err := newTestWebhook(t, redirect.URL, "s3cret").Announce(context.Background(), Announcement{Approval: notifyApproval("siem")})
	if err == nil || !IsPermanent(err) {
		t.Errorf("a redirect is a permanent failure: %v", err)
	}
	if _, attempts, _ := target.got(); attempts != 0 {
		t.Error("the redirect was followed")
	}
}

func TestWebhookHonoursRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	err := newTestWebhook(t, srv.URL, "k").Announce(context.Background(), Announcement{Approval: notifyApproval("siem")})
	d := NewDispatcher(DispatcherConfig{})
	defer d.Close(context.Background())
	if err == nil || IsPermanent(err) || d.backoff(1, err) != 7*time.Second {
		t.Errorf("429 with Retry-After 7: %v, backoff %v", err, d.backoff(1, err))
	}
}

func TestWebhookURLs(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://siem.example.com/hook": true, "http://127.0.0.1:8080/hook": true, "http://localhost/x": true,
		"http://[::1]:9/x": true, "http://siem.example.com/hook": false, "http://10.0.0.1/hook": false,
		"ftp://127.0.0.1/": false, "https://": false, "not a url": false,
	} {
		_, err := NewWebhook(WebhookConfig{Name: "w", URL: url, Secret: "k"})
		if (err == nil) != ok {
			t.Errorf("%s: %v", url, err)
		}
	}
	if _, err := NewWebhook(WebhookConfig{Name: "w", URL: "https://x.example.com"}); err == nil {
		t.Error("a webhook without a secret")
	}
}

// TestWebhookShowsInvisibleCharactersAsMarkers: a webhook event carries what an agent sent and
// what an approver commented with bidi controls, zero-width and other invisible characters as
// visible \u{XXXX} markers, for receivers that show it.
func TestWebhookShowsInvisibleCharactersAsMarkers(t *testing.T) {
	rv := newWebhookReceiver(t, "s3cret")
	w := newTestWebhook(t, rv.URL, "s3cret")
	hostile := approvaltest.Hostile()
	a := notifyApproval("siem")
	a.Path, a.Reason, a.Body = "/users/"+hostile, hostile, "{\n  \"note\": \""+hostile+"\"\n}"
	if err := w.Announce(context.Background(), Announcement{Approval: a}); err != nil {
		t.Fatal(err)
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Comment = approval.Denied, "bob", time.Now(), hostile
	if err := w.Decided(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	events, _, _ := rv.got()
	if len(events) != 2 {
		t.Fatalf("events: %+v", events)
	}
	for _, e := range events {
		approvaltest.WantVisible(t, e.Type+": path", e.Approval.Path, false)
		approvaltest.WantVisible(t, e.Type+": reason", e.Approval.Reason, false)
		approvaltest.WantVisible(t, e.Type+": body", e.Approval.Body, true)
	}
	approvaltest.WantVisible(t, "approval.denied: comment", events[1].Approval.Comment, true)
}
