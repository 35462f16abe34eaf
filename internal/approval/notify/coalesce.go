package notify

import (
	"strings"
	"sync"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// bursts holds the announcements of newly held requests for a short while, so that the
// requests one agent gets held under one rule in a burst are announced once, together: an
// agent that asks for many approvals at once costs approvers one message, not one each.
type bursts struct {
	mu     sync.Mutex
	byKey  map[string]*burst // by agent, rule and notifiers
	holder map[string]*burst // by the id of each approval in a burst
}

// burst is one announcement waiting for others to join it.
type burst struct {
	key   string
	first approval.Approval
	also  []approval.Approval // at most MaxAlso
	held  int
	timer *time.Timer
}

// burstKey groups the requests announced together: the same agent and rule, told to the same
// notifiers.
func burstKey(a approval.Approval) string {
	return strings.Join([]string{a.Agent, a.Rule, strings.Join(a.Notify, "\x00")}, "\x01")
}

func (b *burst) job() job {
	return job{event: EventRequested, a: b.first, also: b.also, held: b.held}
}

// add puts a's announcement in its burst, starting one that send takes after window.
func (bs *bursts) add(a approval.Approval, window time.Duration, send func(job)) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.byKey == nil {
		bs.byKey, bs.holder = map[string]*burst{}, map[string]*burst{}
	}
	key := burstKey(a)
	if b := bs.byKey[key]; b != nil {
		b.held++
		if len(b.also) < MaxAlso {
			b.also = append(b.also, a)
			bs.holder[a.ID] = b
		}
		return
	}
	b := &burst{key: key, first: a, held: 1}
	bs.byKey[key], bs.holder[a.ID] = b, b
	b.timer = time.AfterFunc(window, func() {
		if bs.take(b) {
			send(b.job())
		}
	})
}

// take removes b, if it is still waiting, and says whether it was.
func (bs *bursts) take(b *burst) bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.byKey[b.key] != b {
		return false
	}
	b.timer.Stop()
	delete(bs.byKey, b.key)
	delete(bs.holder, b.first.ID)
	for _, a := range b.also {
		delete(bs.holder, a.ID)
	}
	return true
}

// flushHolding sends, now, the burst that holds the announcement of approval id, if one does:
// before news of its decision.
func (bs *bursts) flushHolding(id string, send func(job)) {
	bs.mu.Lock()
	b := bs.holder[id]
	bs.mu.Unlock()
	if b != nil && bs.take(b) {
		send(b.job())
	}
}

// flushAll sends every waiting burst now: at shutdown.
func (bs *bursts) flushAll(send func(job)) {
	bs.mu.Lock()
	var all []*burst
	for _, b := range bs.byKey {
		all = append(all, b)
	}
	bs.mu.Unlock()
	for _, b := range all {
		if bs.take(b) {
			send(b.job())
		}
	}
}
