// Package notify tells people about held requests and what became of them, off the Check
// path: the Notifier interface, the Dispatcher that queues and retries each notifier's
// deliveries, and the signed webhook notifier. Other notifiers (slack) live in their own
// packages; cmd hands the Dispatcher the builders of those a policy may name.
package notify

import (
	"context"
	"errors"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
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
