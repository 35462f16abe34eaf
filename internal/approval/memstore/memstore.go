// Package memstore is an approval.Store in process memory: for tests and for a single replica
// that may lose pending approvals on restart.
package memstore

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// Store keeps approvals in process memory.
type Store struct {
	mu   sync.Mutex
	byID map[string]approval.Approval
	// live indexes the newest approval of each agent and digest, for Hold.
	live map[[2]string]string
}

var _ approval.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{byID: map[string]approval.Approval{}, live: map[[2]string]string{}}
}

// Hold implements approval.Store. It counts the live approvals against lim among the newest
// of each request (live), the only ones that can be live.
func (s *Store) Hold(_ context.Context, a approval.Approval, body func() string, lim approval.Limits, now time.Time) (approval.Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := [2]string{a.Agent, a.Digest}
	if x, ok := s.byID[s.live[key]]; ok && (x.Live(now) || lim.DenialStands && x.DenialStanding(now)) {
		return x.At(now), false, nil
	}
	if lim.Any() {
		agents, rules := 0, 0
		for _, id := range s.live {
			if x := s.byID[id]; x.Live(now) {
				if x.Agent == a.Agent {
					agents++
				}
				if x.Rule == a.Rule {
					rules++
				}
			}
		}
		if err := lim.Check(agents, rules); err != nil {
			return approval.Approval{}, false, err
		}
	}
	if body != nil {
		a.Body = body()
	}
	a.State = approval.Pending
	s.byID[a.ID] = a
	s.live[key] = a.ID
	return a, true, nil
}

// Get implements approval.Store.
func (s *Store) Get(_ context.Context, id string, now time.Time) (approval.Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return approval.Approval{}, approval.ErrNotFound
	}
	return a.At(now), nil
}

// List implements approval.Store.
func (s *Store) List(_ context.Context, q approval.Query, now time.Time) (approval.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []approval.Approval
	for _, a := range s.byID {
		if a = a.At(now); (q.State == "" || a.State == q.State) && q.After.Before(a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, approval.ListOrder)
	return approval.Paginate(out, approval.Query{Limit: q.Limit}), nil
}

// Decide implements approval.Store.
func (s *Store) Decide(_ context.Context, id string, v approval.Verdict, now time.Time) (approval.Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return approval.Approval{}, approval.ErrNotFound
	}
	if err := a.CheckDecide(now); err != nil {
		return a.At(now), err
	}
	a = a.WithVerdict(v, now)
	s.byID[id] = a
	return a, nil
}

// Consume implements approval.Store.
func (s *Store) Consume(_ context.Context, id, agent, digest string, now time.Time) (approval.Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return approval.Approval{}, approval.ErrNotFound
	}
	if err := a.CheckConsume(agent, digest, now); err != nil {
		if err == approval.ErrMismatch {
			return approval.Approval{}, err // reveal nothing of another agent's approval
		}
		return a.At(now), err
	}
	a.State, a.UsedAt = approval.Used, now
	s.byID[id] = a
	return a, nil
}

// Purge implements approval.Store.
func (s *Store) Purge(_ context.Context, cutoff time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, a := range s.byID {
		if a.EndedBefore(cutoff) {
			delete(s.byID, id)
			if key := [2]string{a.Agent, a.Digest}; s.live[key] == id {
				delete(s.live, key)
			}
			n++
		}
	}
	return n, nil
}

// Close implements approval.Store.
func (s *Store) Close() error { return nil }
