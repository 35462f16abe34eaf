package approval

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is a Store in process memory: for tests and for a single replica that may lose
// pending approvals on restart.
type Memory struct {
	mu   sync.Mutex
	byID map[string]Approval
	// live indexes the newest approval of each agent and digest, for Hold.
	live map[[2]string]string
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{byID: map[string]Approval{}, live: map[[2]string]string{}}
}

// Hold implements Store.
func (m *Memory) Hold(_ context.Context, a Approval, now time.Time) (Approval, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]string{a.Agent, a.Digest}
	if x, ok := m.byID[m.live[key]]; ok {
		if st := x.Current(now); st == Pending || st == Approved {
			return x.At(now), false, nil
		}
	}
	a.State = Pending
	m.byID[a.ID] = a
	m.live[key] = a.ID
	return a, true, nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, id string, now time.Time) (Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byID[id]
	if !ok {
		return Approval{}, ErrNotFound
	}
	return a.At(now), nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, state State, now time.Time) ([]Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Approval
	for _, a := range m.byID {
		if a = a.At(now); state == "" || a.State == state {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Decide implements Store.
func (m *Memory) Decide(_ context.Context, id string, v Verdict, now time.Time) (Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byID[id]
	if !ok {
		return Approval{}, ErrNotFound
	}
	if err := decideCheck(a, now); err != nil {
		return a.At(now), err
	}
	a = apply(a, v, now)
	m.byID[id] = a
	return a, nil
}

// Consume implements Store.
func (m *Memory) Consume(_ context.Context, id, agent, digest string, now time.Time) (Approval, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byID[id]
	if !ok {
		return Approval{}, ErrNotFound
	}
	if err := consumeCheck(a, agent, digest, now); err != nil {
		if err == ErrMismatch {
			return Approval{}, err // reveal nothing of another agent's approval
		}
		return a.At(now), err
	}
	a.State, a.UsedAt = Used, now
	m.byID[id] = a
	return a, nil
}

// Purge implements Store.
func (m *Memory) Purge(_ context.Context, cutoff time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, a := range m.byID {
		if ended(a, cutoff) {
			delete(m.byID, id)
			if key := [2]string{a.Agent, a.Digest}; m.live[key] == id {
				delete(m.live, key)
			}
			n++
		}
	}
	return n, nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }

// ended reports whether a ended before cutoff.
func ended(a Approval, cutoff time.Time) bool {
	switch a.Current(cutoff) {
	case Denied:
		return a.DecidedAt.Before(cutoff)
	case Used:
		return a.UsedAt.Before(cutoff)
	case Expired:
		return true
	}
	return false
}
