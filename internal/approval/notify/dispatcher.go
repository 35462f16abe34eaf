package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

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
