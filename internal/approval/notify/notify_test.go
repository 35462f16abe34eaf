package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// logBuffer is a log destination tests read while workers write.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// notifyRecorder records what the dispatcher did: waits and outcomes.
type notifyRecorder struct {
	mu       sync.Mutex
	sleeps   []time.Duration
	outcomes []string
	changed  chan struct{}
}

func newNotifyRecorder() *notifyRecorder { return &notifyRecorder{changed: make(chan struct{}, 1000)} }

func (r *notifyRecorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.sleeps = append(r.sleeps, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *notifyRecorder) observe(notifier, event, outcome string) {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, notifier+" "+event+" "+outcome)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

// waitOutcome waits for an outcome containing want.
func (r *notifyRecorder) waitOutcome(t *testing.T, want string) {
	t.Helper()
	r.waitOutcomes(t, want, 1)
}

// waitOutcomes waits for n outcomes containing want.
func (r *notifyRecorder) waitOutcomes(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		found := 0
		for _, o := range r.outcomes {
			if strings.Contains(o, want) {
				found++
			}
		}
		got := append([]string(nil), r.outcomes...)
		r.mu.Unlock()
		if found >= n {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d outcomes %q, want %d; got %q", found, want, n, got)
		}
	}
}

func (r *notifyRecorder) snapshot() ([]time.Duration, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.sleeps...), append([]string(nil), r.outcomes...)
}

// config is a dispatcher's that announces each request at once (Coalesce: coalesce_test.go).
func (r *notifyRecorder) config(log *slog.Logger) DispatcherConfig {
	return DispatcherConfig{Log: log, Sleep: r.sleep, Observe: r.observe, Coalesce: -1}
}

// fakeNotifier fails its first failures calls with err, then succeeds, recording each call.
type fakeNotifier struct {
	name     string
	failures int
	err      error
	block    chan struct{} // if set, each call waits for it (or for ctx)

	mu    sync.Mutex
	calls []string
}

func (f *fakeNotifier) Name() string { return f.name }

func (f *fakeNotifier) call(ctx context.Context, what string) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, what)
	if len(f.calls) <= f.failures {
		return f.err
	}
	return nil
}

func (f *fakeNotifier) Announce(ctx context.Context, a Announcement) error {
	what := "announce " + a.ID
	for _, x := range a.Also {
		what += " " + x.ID
	}
	if a.Held > 1 {
		what += fmt.Sprintf(" (%d held)", a.Held)
	}
	return f.call(ctx, what)
}

func (f *fakeNotifier) Decided(ctx context.Context, a approval.Approval) error {
	return f.call(ctx, "decided "+a.ID+" "+string(a.State)+" by "+a.DecidedBy)
}

func (f *fakeNotifier) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func notifyApproval(notify ...string) approval.Approval {
	now := time.Now()
	return approval.Approval{
		ID: approval.NewID(), State: approval.Pending, Agent: "spiffe://example.org/agent/helpdesk", Rule: "reset-password",
		Reason: "Resets a user's password", Method: "POST", Host: "idp.example.com", Path: "/users/42/reset",
		Body: "{\n  \"reason\": \"locked out\"\n}", ContentType: "application/json",
		Approvers: []string{"group:it-admins"}, Notify: notify,
		CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute), UseWithin: 15 * time.Minute,
	}
}

func TestNotifyRetriesWithBackoffThenDelivers(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops", failures: 2, err: errors.New("connection refused")}
	d.Set(n)

	a := notifyApproval("ops")
	d.Enqueue(a)
	rec.waitOutcome(t, "delivered")

	sleeps, outcomes := rec.snapshot()
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second}, sleeps); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	want := []string{"ops approval.requested retry", "ops approval.requested retry", "ops approval.requested delivered"}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if got := n.got(); len(got) != 3 {
		t.Errorf("calls = %q, want 3 attempts", got)
	}
	out := logs.String()
	if strings.Count(out, "notification failed; retrying") != 2 || !strings.Contains(out, "connection refused") {
		t.Errorf("each failure is logged with its error; log:\n%s", out)
	}
	if !strings.Contains(out, "delivered after retrying") {
		t.Errorf("the late delivery is logged; log:\n%s", out)
	}
}

func TestNotifyGivesUpLoudlyAfterAllAttempts(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops", failures: 1000, err: errors.New("503 Service Unavailable")}
	d.Set(n)

	a := notifyApproval("ops")
	d.Enqueue(a)
	rec.waitOutcome(t, "failed")

	sleeps, _ := rec.snapshot()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if diff := cmp.Diff(want, sleeps); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	if got := n.got(); len(got) != 5 {
		t.Errorf("attempts = %d, want 5", len(got))
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "NOTIFICATION NOT DELIVERED") ||
		!strings.Contains(out, "all 5 attempts failed") || !strings.Contains(out, a.ID) {
		t.Errorf("giving up is logged as an error naming the approval; log:\n%s", out)
	}
}

func TestNotifyBackoffIsCapped(t *testing.T) {
	d := NewDispatcher(DispatcherConfig{Attempts: 10})
	defer d.Close(context.Background())
	var got []time.Duration
	for attempt := 1; attempt <= 8; attempt++ {
		got = append(got, d.backoff(attempt, errors.New("x")))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	if got := d.backoff(1, &retryAfterError{err: errors.New("429"), after: 20 * time.Second}); got != 20*time.Second {
		t.Errorf("a rate limit's Retry-After is honoured: got %v", got)
	}
}

func TestNotifyPermanentFailureIsNotRetried(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	n := &fakeNotifier{name: "ops", failures: 1000, err: Permanent(errors.New("channel_not_found"))}
	d.Set(n)
	d.Enqueue(notifyApproval("ops"))
	rec.waitOutcome(t, "failed")
	if sleeps, _ := rec.snapshot(); len(sleeps) != 0 {
		t.Errorf("slept %v before giving up on a permanent failure", sleeps)
	}
	if got := n.got(); len(got) != 1 {
		t.Errorf("attempts = %d, want 1", len(got))
	}
	if out := logs.String(); !strings.Contains(out, "the failure is permanent") || !strings.Contains(out, "channel_not_found") {
		t.Errorf("log:\n%s", out)
	}
}

func TestNotifyEnqueueNeverBlocks(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	cfg := rec.config(logs.logger())
	cfg.QueueSize = 4
	d := NewDispatcher(cfg)
	hang := &fakeNotifier{name: "slow", block: make(chan struct{})}
	d.Set(hang)

	start := time.Now()
	for range 50 {
		d.Enqueue(notifyApproval("slow"))
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("50 Enqueue calls against a hung notifier took %v", took)
	}
	_, outcomes := rec.snapshot()
	dropped := 0
	for _, o := range outcomes {
		if strings.HasSuffix(o, " dropped") {
			dropped++
		}
	}
	// One may be in the worker's hands, four queued: the rest are dropped, and said to be.
	if dropped < 45 {
		t.Errorf("dropped %d of 50, want at least 45", dropped)
	}
	if out := logs.String(); !strings.Contains(out, "queue is full") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("a full queue is logged as an error; log:\n%s", out)
	}
	close(hang.block)
	d.Close(context.Background())
	if got := len(hang.got()); got < 4 || got > 5 {
		t.Errorf("delivered %d, want the queued 4 or 5", got)
	}
}

func TestNotifyAnnouncesBeforeDecisionAndOnlyToNamedNotifiers(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	defer d.Close(context.Background())
	ops, sec := &fakeNotifier{name: "ops"}, &fakeNotifier{name: "security"}
	d.Set(ops, sec)

	a := notifyApproval("ops", "nowhere")
	d.Enqueue(a)
	a.State, a.DecidedBy = approval.Approved, "alice"
	d.Decided(a)
	rec.waitOutcome(t, "ops approval.approved delivered")

	want := []string{"announce " + a.ID, "decided " + a.ID + " approved by alice"}
	if diff := cmp.Diff(want, ops.got()); diff != "" {
		t.Errorf("ops calls (-want +got):\n%s", diff)
	}
	if got := sec.got(); len(got) != 0 {
		t.Errorf("a notifier the approval does not name was told: %q", got)
	}
	if out := logs.String(); !strings.Contains(out, `notifier=nowhere`) || !strings.Contains(out, "no notifier of that name") {
		t.Errorf("a notify name with no notifier is logged; log:\n%s", out)
	}
}

func TestNotifyCloseDeliversQueuedThenDrops(t *testing.T) {
	var logs logBuffer
	rec := newNotifyRecorder()
	d := NewDispatcher(rec.config(logs.logger()))
	n := &fakeNotifier{name: "ops"}
	d.Set(n)
	for range 3 {
		d.Enqueue(notifyApproval("ops"))
	}
	d.Close(context.Background())
	if got := len(n.got()); got != 3 {
		t.Errorf("Close delivered %d of 3 queued", got)
	}
	d.Enqueue(notifyApproval("ops"))
	if out := logs.String(); !strings.Contains(out, "shut down") {
		t.Errorf("an announcement after Close is logged as dropped; log:\n%s", out)
	}
}

func TestNotifyCloseGivesUpAtDeadline(t *testing.T) {
	var logs logBuffer
	d := NewDispatcher(DispatcherConfig{Log: logs.logger()})
	hang := &fakeNotifier{name: "slow", block: make(chan struct{})}
	d.Set(hang)
	a, b := notifyApproval("slow"), notifyApproval("slow")
	d.Enqueue(a)
	d.Enqueue(b)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d.Close(ctx)
	out := logs.String()
	if !strings.Contains(out, a.ID) || !strings.Contains(out, b.ID) || !strings.Contains(out, "NOTIFICATION NOT DELIVERED") {
		t.Errorf("each notification lost at shutdown is logged; log:\n%s", out)
	}
}

func slackNotifierConfig(name string, s *policyv1.SlackNotifier) *policyv1.Notifier {
	return &policyv1.Notifier{Name: name, Kind: &policyv1.Notifier_Slack{Slack: s}}
}

func webhookNotifierConfig(name, url, env string) *policyv1.Notifier {
	return &policyv1.Notifier{Name: name, Kind: &policyv1.Notifier_Webhook{Webhook: &policyv1.WebhookNotifier{Url: url, SecretEnv: env}}}
}

// fakeSlackBuilder builds stand-ins for Slack notifiers, reading the secrets that slack.Builder
// reads.
func fakeSlackBuilder(name string, c *policyv1.SlackNotifier, secret Secret, _ *http.Client) (Notifier, error) {
	for _, f := range [][2]string{{"bot_token_env", c.GetBotTokenEnv()}, {"webhook_url_env", c.GetWebhookUrlEnv()},
		{"signing_secret_env", c.GetSigningSecretEnv()}} {
		if _, err := secret(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	return &fakeNotifier{name: name}, nil
}

// TestNotifiersLoadFromPolicy: the slack package's tests load real Slack notifiers the same way.
func TestNotifiersLoadFromPolicy(t *testing.T) {
	env := map[string]string{
		"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "shh", "SLACK_HOOK": "https://hooks.example.com/T/B/x",
		"HOOK_SECRET": "s3cret",
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	d := NewDispatcher(DispatcherConfig{Getenv: getenv, Slack: fakeSlackBuilder})
	defer d.Close(context.Background())
	cfgs := []*policyv1.Notifier{
		slackNotifierConfig("ops-slack", &policyv1.SlackNotifier{Channel: "C024BE91L", BotTokenEnv: "SLACK_BOT_TOKEN", SigningSecretEnv: "SLACK_SIGNING_SECRET"}),
		slackNotifierConfig("hook-slack", &policyv1.SlackNotifier{WebhookUrlEnv: "SLACK_HOOK"}),
		webhookNotifierConfig("siem", "https://siem.example.com/hook", "HOOK_SECRET"),
	}
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"hook-slack", "ops-slack", "siem"}, d.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	var names []string
	for _, n := range d.Notifiers() {
		names = append(names, n.Name())
	}
	if diff := cmp.Diff(d.Names(), names); diff != "" {
		t.Errorf("Notifiers (-Names +got):\n%s", diff)
	}
	d.mu.Lock()
	before := map[string]*lane{}
	for k, v := range d.lanes {
		before[k] = v
	}
	d.mu.Unlock()

	// The same policy again (a reload): every notifier is kept, queue and all.
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	// A changed secret replaces that notifier only: a webhook's, and a Slack notifier's.
	env["HOOK_SECRET"] = "rotated"
	env["SLACK_HOOK"] = "https://hooks.example.com/T/B/y"
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	for name, l := range d.lanes {
		if kept := before[name] == l; kept != (name == "ops-slack") {
			t.Errorf("%s: kept=%v after reload", name, kept)
		}
	}
	d.mu.Unlock()

	// A missing variable fails the load, names the variable, and changes nothing.
	delete(env, "SLACK_SIGNING_SECRET")
	delete(env, "HOOK_SECRET")
	err := d.Load(cfgs)
	if err == nil || !strings.Contains(err.Error(), "SLACK_SIGNING_SECRET") || !strings.Contains(err.Error(), "HOOK_SECRET") ||
		!strings.Contains(err.Error(), `notifier "siem"`) || !strings.Contains(err.Error(), `notifier "ops-slack"`) {
		t.Errorf("Load with missing variables: %v", err)
	}
	if len(d.Names()) != 3 {
		t.Errorf("a failed Load changed the notifiers: %q", d.Names())
	}
	if err := d.Load(nil); err != nil || len(d.Names()) != 0 || len(d.Notifiers()) != 0 {
		t.Errorf("Load(nil): %v, %q", err, d.Names())
	}
}

func TestNotifiersLoadRefusesBadConfigs(t *testing.T) {
	getenv := func(k string) (string, bool) { return "value-of-" + k, true }
	for _, tc := range []struct {
		cfg  *policyv1.Notifier
		want string
	}{
		{webhookNotifierConfig("w", "http://siem.example.com/hook", "S"), "https"},
		{webhookNotifierConfig("w", "ftp://127.0.0.1/hook", "S"), "https"},
		{webhookNotifierConfig("w", "https://siem.example.com/hook", ""), "secret_env is required"},
		{&policyv1.Notifier{Name: "x"}, "set slack or webhook"},
		// A Slack notifier without a Slack builder (slack.Builder's own cases are in its tests).
		{slackNotifierConfig("s", &policyv1.SlackNotifier{Channel: "C1", BotTokenEnv: "T"}), "DispatcherConfig.Slack"},
	} {
		d := NewDispatcher(DispatcherConfig{Getenv: getenv})
		err := d.Load([]*policyv1.Notifier{tc.cfg})
		d.Close(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	d := NewDispatcher(DispatcherConfig{Getenv: getenv})
	defer d.Close(context.Background())
	if err := d.Load([]*policyv1.Notifier{webhookNotifierConfig("w", "http://127.0.0.1:9/hook", "S")}); err != nil {
		t.Errorf("http to a loopback address is allowed: %v", err)
	}
}

func TestNotifierErrorsClassify(t *testing.T) {
	base := errors.New("boom")
	if IsPermanent(base) || !IsPermanent(Permanent(base)) || !IsPermanent(fmt.Errorf("wrapped: %w", Permanent(base))) {
		t.Error("IsPermanent")
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}
