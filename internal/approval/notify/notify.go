// Package notify tells people about held requests and what became of them, off the Check
// path: the Notifier interface, the Dispatcher that queues and retries each notifier's
// deliveries, and the signed webhook notifier. Other notifiers (slack) live in their own
// packages; cmd hands the Dispatcher the builders of those a policy may name.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/internal/approval"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// Notifier tells people about held requests (Announce) and what became of them (Decided).
// Both are called from a Dispatcher's worker, never from the Check path, one call at a time
// per notifier, with a deadline in ctx. An error is retried with backoff unless it is
// Permanent.
type Notifier interface {
	Name() string
	Announce(ctx context.Context, a Announcement) error
	Decided(ctx context.Context, a approval.Approval) error
}

// Announcement is a newly held request to announce, with the other requests of the same agent
// and rule held in the same burst (DispatcherConfig.Coalesce), which it announces too: one
// message for the burst, not one each.
type Announcement struct {
	approval.Approval
	// Also are the burst's other requests, oldest first: at most MaxAlso of them.
	Also []approval.Approval
	// Held is how many requests the burst holds, this one included; 0 means 1.
	Held int
}

// MaxAlso bounds the requests an Announcement lists besides its own.
const MaxAlso = 50

// Count is how many requests a announces: Held, at least 1.
func (a Announcement) Count() int { return max(a.Held, 1) }

// Event types, as the webhook notifier sends them and as Dispatcher.Observe reports them.
const (
	EventRequested = "approval.requested"
	EventApproved  = "approval.approved"
	EventDenied    = "approval.denied"
)

// eventOf is the event type of a's decision.
func eventOf(a approval.Approval) string {
	if a.State == approval.Denied {
		return EventDenied
	}
	return EventApproved
}

// Outcomes Dispatcher.Observe reports.
const (
	// OutcomeDelivered: the notifier accepted the notification.
	OutcomeDelivered = "delivered"
	// OutcomeRetry: an attempt failed and another is scheduled.
	OutcomeRetry = "retry"
	// OutcomeFailed: the last attempt failed, or the failure was permanent: given up.
	OutcomeFailed = "failed"
	// OutcomeDropped: never attempted: the queue was full, no notifier has that name, or the
	// dispatcher was closed.
	OutcomeDropped = "dropped"
)

// Permanent marks err as one that retrying cannot fix (an unknown channel, a revoked token, a
// URL that answers 404): the Dispatcher gives up at once, and says so.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter marks err as one whose receiver asked for at least the wait after before the next
// attempt (a rate limit's Retry-After).
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: after}
}

// retryAfterError asks for at least a given wait before the next attempt (a rate limit).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// DispatcherConfig configures a Dispatcher. Zero values take the defaults.
type DispatcherConfig struct {
	Log *slog.Logger
	// QueueSize bounds each notifier's queue (default 1024). When it is full a notification is
	// dropped, logged as an error and observed as OutcomeDropped: the Check never waits.
	QueueSize int
	// Attempts is how many times one notification is tried (default 5).
	Attempts int
	// MinBackoff and MaxBackoff bound the doubling wait between attempts (default 1s, 30s).
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one attempt (default 15s).
	Timeout time.Duration
	// Sleep waits d, or until ctx ends (returning its error); injected by tests. nil waits on
	// a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Observe is told each outcome, for metrics; may be nil. It must not block.
	Observe func(notifier, event, outcome string)
	// Getenv reads the secrets notifiers name; nil means os.LookupEnv.
	Getenv func(name string) (string, bool)
	// HTTPClient makes the notifiers' requests; nil means a client with a 15s timeout.
	HTTPClient *http.Client
	// Slack builds the Slack notifiers a policy names (slack.Builder). Nil: a policy with a
	// Slack notifier fails to load.
	Slack SlackBuilder
	// Coalesce is how long the announcement of a held request waits for other requests of the
	// same agent and rule to join it (default 2s): a burst of them is one Announcement, saying
	// how many. Negative announces each at once.
	Coalesce time.Duration
}

// DefaultCoalesce is DispatcherConfig.Coalesce's default.
const DefaultCoalesce = 2 * time.Second

// Secret reads the secret in the environment variable name, which the configuration field
// names (e.g. bot_token_env). An empty name is no secret: "". A variable that is unset or empty
// is an error that names it. The Dispatcher keeps what is read, so that a notifier whose secret
// changes is replaced on the next Load.
type Secret func(field, name string) (string, error)

// SlackBuilder builds one Slack notifier from its policy configuration, reading its secrets with
// secret and sending with hc.
type SlackBuilder func(name string, c *policyv1.SlackNotifier, secret Secret, hc *http.Client) (Notifier, error)

// Dispatcher delivers notifications off the Check path. Each notifier has its own bounded
// queue and worker, so that a slow or failing receiver delays only its own notifications, and
// a request's announcement reaches a notifier before its decision does. A failed delivery is
// retried with exponential backoff; every failure is logged, and so is giving up.
type Dispatcher struct {
	cfg DispatcherConfig
	log *slog.Logger

	ctx    context.Context // ends when Close stops waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // held while sending to lanes, and while replacing or closing them
	lanes  map[string]*lane
	closed bool

	bursts bursts // announcements waiting for others to join them
}

// lane is one notifier's queue and worker.
type lane struct {
	n   Notifier
	key string // identifies the notifier's configuration and secrets, to keep it across reloads
	q   chan job
}

type job struct {
	event string
	a     approval.Approval
	also  []approval.Approval // an announcement's burst (Announcement.Also)
	held  int
}

// NewDispatcher returns a Dispatcher with no notifiers; Load or Set adds them.
func NewDispatcher(cfg DispatcherConfig) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.LookupEnv
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{cfg: cfg, log: cfg.Log, ctx: ctx, cancel: cancel, lanes: map[string]*lane{}}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Enqueue queues the announcement of a newly held request for each notifier a.Notify names,
// once the requests of the same agent and rule held within Coalesce have joined it. It never
// blocks: it is approval.Gate.Announce.
func (d *Dispatcher) Enqueue(a approval.Approval) {
	if d.cfg.Coalesce < 0 {
		d.enqueue(job{event: EventRequested, a: a})
		return
	}
	d.bursts.add(a, d.cfg.Coalesce, d.enqueue)
}

// Decided queues the news of a's decision for each notifier a.Notify names, after its
// announcement if that is still waiting for its burst. It never blocks: it is api.API.Decided.
func (d *Dispatcher) Decided(a approval.Approval) {
	d.bursts.flushHolding(a.ID, d.enqueue)
	d.enqueue(job{event: eventOf(a), a: a})
}

func (d *Dispatcher) enqueue(j job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range j.a.Notify {
		l := d.lanes[name]
		switch {
		case d.closed:
			d.dropped(name, j, "the dispatcher is shut down")
		case l == nil:
			d.dropped(name, j, "no notifier of that name is configured")
		default:
			select {
			case l.q <- j:
			default:
				d.dropped(name, j, fmt.Sprintf("its queue is full (%d waiting)", cap(l.q)))
			}
		}
	}
}

func (d *Dispatcher) dropped(name string, j job, why string) {
	d.log.Error("NOTIFICATION DROPPED: "+why+"; approvers were not told",
		append([]any{"notifier", name, "event", j.event}, j.ids()...)...)
	d.observe(name, j.event, OutcomeDropped)
}

// ids are the log attributes naming the approvals of j: approval_id, and for a burst how many
// it holds and the others' ids.
func (j job) ids() []any {
	attrs := []any{"approval_id", j.a.ID}
	if j.held > 1 {
		also := make([]string, len(j.also))
		for i, a := range j.also {
			also[i] = a.ID
		}
		attrs = append(attrs, "held", j.held, "also", strings.Join(also, ","))
	}
	return attrs
}

func (d *Dispatcher) observe(name, event, outcome string) {
	if d.cfg.Observe != nil {
		d.cfg.Observe(name, event, outcome)
	}
}

// Set puts ns in force in place of the notifiers there were. A notifier already in force (the
// same value) keeps its queue; one replaced or removed first delivers what it has queued.
func (d *Dispatcher) Set(ns ...Notifier) {
	lanes := make(map[string]*lane, len(ns))
	for _, n := range ns {
		lanes[n.Name()] = &lane{n: n, key: fmt.Sprintf("%p", n)}
	}
	d.swap(lanes)
}

// Load builds the notifiers of a policy (policy.Snapshot.Notifiers), reading their secrets
// from the environment, and puts them in force. A notifier whose configuration and secrets are
// unchanged is kept, with what it has queued and the Slack messages it can still update. If
// any notifier cannot be built (a secret's environment variable is not set, a URL is not
// allowed) Load changes nothing and returns every problem, naming the variable.
func (d *Dispatcher) Load(cfgs []*policyv1.Notifier) error {
	lanes := make(map[string]*lane, len(cfgs))
	var problems []string
	for _, c := range cfgs {
		n, key, err := d.build(c)
		if err != nil {
			problems = append(problems, fmt.Sprintf("notifier %q: %v", c.GetName(), err))
			continue
		}
		lanes[c.GetName()] = &lane{n: n, key: key} // swap keeps the running one if key is unchanged
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.swap(lanes)
	return nil
}

// build makes one notifier from its configuration. key changes when the configuration or a
// secret does.
func (d *Dispatcher) build(c *policyv1.Notifier) (n Notifier, key string, err error) {
	var secrets []string
	env := func(field, name string) (string, error) {
		if name == "" {
			return "", nil
		}
		v, ok := d.cfg.Getenv(name)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s (%s) is not set", name, field)
		}
		secrets = append(secrets, v)
		return v, nil
	}
	switch {
	case c.GetSlack() != nil:
		if d.cfg.Slack == nil {
			return nil, "", errors.New("slack: no Slack notifiers can be built here (DispatcherConfig.Slack is not set)")
		}
		n, err = d.cfg.Slack(c.GetName(), c.GetSlack(), env, d.cfg.HTTPClient)
	case c.GetWebhook() != nil:
		w := c.GetWebhook()
		if w.GetSecretEnv() == "" {
			return nil, "", errors.New("webhook: secret_env is required")
		}
		var secret string
		if secret, err = env("secret_env", w.GetSecretEnv()); err != nil {
			return nil, "", err
		}
		n, err = NewWebhook(WebhookConfig{Name: c.GetName(), URL: w.GetUrl(), Secret: secret, HTTPClient: d.cfg.HTTPClient})
	default:
		return nil, "", errors.New("set slack or webhook")
	}
	if err != nil {
		return nil, "", err
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	h.Write(raw)
	for _, s := range secrets {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// swap puts lanes in force: lanes already running with the same key are kept, new ones start,
// and the rest stop once they have delivered what they hold.
func (d *Dispatcher) swap(lanes map[string]*lane) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for name, l := range d.lanes {
		if nl := lanes[name]; nl != nil && nl.key == l.key {
			lanes[name] = l
			continue
		}
		close(l.q)
	}
	for _, l := range lanes {
		if l.q == nil {
			l.q = make(chan job, d.cfg.QueueSize)
			d.wg.Add(1)
			go d.run(l)
		}
	}
	d.lanes = lanes
}

// Names returns the names of the notifiers in force, sorted.
func (d *Dispatcher) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.lanes))
	for name := range d.lanes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Notifiers returns the notifiers in force, sorted by name.
func (d *Dispatcher) Notifiers() []Notifier {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns := make([]Notifier, 0, len(d.lanes))
	for _, l := range d.lanes {
		ns = append(ns, l.n)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].Name() < ns[j].Name() })
	return ns
}

// Close stops taking notifications and waits, until ctx ends, for the queued ones to be
// delivered; then it abandons the rest, logging each.
func (d *Dispatcher) Close(ctx context.Context) {
	d.bursts.flushAll(d.enqueue)
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, l := range d.lanes {
			close(l.q)
		}
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.cancel() // ends backoff waits and attempts in flight; the workers log what is lost
		<-done
	}
	d.cancel()
}

func (d *Dispatcher) run(l *lane) {
	defer d.wg.Done()
	for j := range l.q {
		if d.ctx.Err() != nil {
			d.log.Error("NOTIFICATION NOT DELIVERED: abandoned at shutdown; approvers were not told",
				append([]any{"notifier", l.n.Name(), "event", j.event}, j.ids()...)...)
			d.observe(l.n.Name(), j.event, OutcomeFailed)
			continue
		}
		d.deliver(l.n, j)
	}
}

// deliver tries one notification until it is delivered, fails permanently, or runs out of
// attempts.
func (d *Dispatcher) deliver(n Notifier, j job) {
	name := n.Name()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.Timeout)
		var err error
		if j.event == EventRequested {
			err = n.Announce(ctx, Announcement{Approval: j.a, Also: j.also, Held: j.held})
		} else {
			err = n.Decided(ctx, j.a)
		}
		cancel()
		if err == nil {
			if attempt > 1 {
				d.log.Info("notification delivered after retrying", append([]any{"notifier", name, "event", j.event,
					"attempts", attempt}, j.ids()...)...)
			}
			d.observe(name, j.event, OutcomeDelivered)
			return
		}
		why := ""
		switch {
		case IsPermanent(err):
			why = "the failure is permanent"
		case attempt >= d.cfg.Attempts:
			why = fmt.Sprintf("all %d attempts failed", attempt)
		case d.ctx.Err() != nil:
			why = "shutting down"
		}
		if why == "" {
			wait := d.backoff(attempt, err)
			d.log.Warn("notification failed; retrying", append([]any{"notifier", name, "event", j.event,
				"attempt", attempt, "retry_in", wait.String(), "error", err.Error()}, j.ids()...)...)
			d.observe(name, j.event, OutcomeRetry)
			if d.cfg.Sleep(d.ctx, wait) == nil {
				continue
			}
			why = "shutting down"
		}
		d.log.Error("NOTIFICATION NOT DELIVERED: giving up ("+why+"); approvers were not told",
			append([]any{"notifier", name, "event", j.event, "attempts", attempt, "error", err.Error()}, j.ids()...)...)
		d.observe(name, j.event, OutcomeFailed)
		return
	}
}

// backoff is the wait after the given failed attempt: MinBackoff doubling up to MaxBackoff, or
// longer if the receiver asked (a rate limit), up to twice MaxBackoff.
func (d *Dispatcher) backoff(attempt int, err error) time.Duration {
	wait := d.cfg.MinBackoff
	for i := 1; i < attempt && wait < d.cfg.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, d.cfg.MaxBackoff)
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > wait {
		wait = min(ra.after, 2*d.cfg.MaxBackoff)
	}
	return wait
}
