package slack

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
)

// The helpers of notify's tests, for Slack notifiers through a notify.Dispatcher.

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
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		for _, o := range r.outcomes {
			if strings.Contains(o, want) {
				r.mu.Unlock()
				return
			}
		}
		got := append([]string(nil), r.outcomes...)
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("no outcome %q; got %q", want, got)
		}
	}
}

// config is a dispatcher's that announces each request at once.
func (r *notifyRecorder) config(log *slog.Logger) notify.DispatcherConfig {
	return notify.DispatcherConfig{Log: log, Sleep: r.sleep, Observe: r.observe, Coalesce: -1}
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
