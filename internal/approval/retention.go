package approval

import (
	"context"
	"log/slog"
	"time"
)

// Retention says how long ended approvals are kept and how often the store is swept.
type Retention struct {
	// Keep is how long an approval stays in the store after it ended (used, denied, expired).
	Keep time.Duration
	// Every is the time between sweeps.
	Every time.Duration
}

// Maintain sweeps store until ctx ends: it purges approvals that ended more than r.Keep ago and
// reports how many requests are pending to pending (which may be nil).
func Maintain(ctx context.Context, store Store, r Retention, pending func(int), log *slog.Logger) {
	tick := time.NewTicker(r.Every)
	defer tick.Stop()
	for {
		now := time.Now()
		if _, err := store.Purge(ctx, now.Add(-r.Keep)); err != nil && ctx.Err() == nil && log != nil {
			log.Warn("purging old approvals failed", "error", err.Error())
		}
		if pending != nil {
			if p, err := store.List(ctx, Query{State: Pending, Limit: 1}, now); err == nil {
				pending(len(p.Approvals) + p.More)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
