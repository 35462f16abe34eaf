// Package policy decides whether an agent may make a request. A policy is written as YAML
// against the agentauthz.policy.v1 schema, loaded strictly, and compiled once into an immutable
// Snapshot; deciding reads only the snapshot and never parses or compiles anything.
//
// The package knows nothing of Envoy: its input is a Request and its output a
// decision.Decision.
package policy

import (
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/decision"
)

// Snapshot is a compiled policy. It is immutable and safe for concurrent use.
type Snapshot struct {
	revision     string
	trustDomains map[spiffeid.TrustDomain]struct{}
	agents       map[spiffeid.ID]*agent
	hosts        map[string]*host
	scopeIndex   map[string]int
	scopeNames   []string
}

// Revision identifies the policy files the snapshot was compiled from.
func (s *Snapshot) Revision() string { return s.revision }

// Stats counts what the snapshot holds.
type Stats struct{ Agents, Hosts, Routes int }

// Stats counts the snapshot's agents, hosts and routes.
func (s *Snapshot) Stats() Stats {
	st := Stats{Agents: len(s.agents), Hosts: len(s.hosts)}
	var count func(n *node)
	count = func(n *node) {
		st.Routes += len(n.routes)
		for _, c := range n.literal {
			count(c)
		}
		if n.param != nil {
			count(n.param)
		}
	}
	for _, h := range s.hosts {
		count(h.root)
	}
	return st
}

type agent struct {
	id     spiffeid.ID
	scopes []uint64 // bit set over Snapshot.scopeNames
}

func (a *agent) grant(scope int) {
	for len(a.scopes) <= scope/64 {
		a.scopes = append(a.scopes, 0)
	}
	a.scopes[scope/64] |= 1 << (scope % 64)
}

func (a *agent) holds(scope int) bool {
	w := scope / 64
	return w < len(a.scopes) && a.scopes[w]&(1<<(scope%64)) != 0
}

type host struct {
	name  string
	root  *node
	grant *decision.Grant
}

// Store holds the snapshot in force. Swapping in a new one is atomic: a decision in flight
// finishes on the snapshot it started with.
type Store struct {
	current atomic.Pointer[Snapshot]
}

// Load returns the snapshot in force, or nil when none was ever loaded.
func (s *Store) Load() *Snapshot { return s.current.Load() }

// Swap puts a new snapshot in force and returns the previous one.
func (s *Store) Swap(snap *Snapshot) *Snapshot { return s.current.Swap(snap) }
