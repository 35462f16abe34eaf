// Package policy decides whether an agent may make a request. A policy is written as YAML
// against the agentauthz.policy.v1 schema, loaded strictly, and compiled once into an immutable
// Snapshot; deciding reads only the snapshot and never parses or compiles anything.
//
// The package knows nothing of Envoy: its input is a Request and its output a
// decision.Decision.
package policy

import (
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// Snapshot is a compiled policy. It is immutable and safe for concurrent use.
type Snapshot struct {
	revision     string
	trustDomains map[spiffeid.TrustDomain]struct{}
	// shadowTrustDomains are named by shadow files; they are trusted in shadow evaluation only.
	shadowTrustDomains map[spiffeid.TrustDomain]struct{}
	agents             map[spiffeid.ID]*agent
	hosts              map[string]*host
	scopeIndex         map[string]int
	scopeNames         []string
	// hasShadow is set when any route is a shadow route.
	hasShadow bool
	// notifiers announce held requests.
	notifiers []*policyv1.Notifier
	// mcp are the policy's MCP servers, by name.
	mcp map[string]*mcpServer
	// oauthIssuers are the OAuth issuers, in policy order; oauthAgents maps their subjects to
	// agents.
	oauthIssuers []*accesstoken.Issuer
	oauthAgents  map[oauthSubject]spiffeid.ID
	// openapi are the hosts' OpenAPI documents, with what the policy grants of each.
	openapi []*openAPIHost
	// lint is what Lint reports; deciding never reads it.
	lint *lintFacts
	// responses are the response rules of routes and MCP tools, by key (responseRules.key).
	responses map[string]*responseRules
}

// Notifiers returns the policy's notifier configurations. They must not be modified.
func (s *Snapshot) Notifiers() []*policyv1.Notifier { return s.notifiers }

// Revision identifies the policy files the snapshot was compiled from.
func (s *Snapshot) Revision() string { return s.revision }

// trusts reports whether agents of td are accepted, in shadow evaluation or not.
func (s *Snapshot) trusts(td spiffeid.TrustDomain, shadow bool) bool {
	if _, ok := s.trustDomains[td]; ok {
		return true
	}
	_, ok := s.shadowTrustDomains[td]
	return shadow && ok
}

// Stats counts what the snapshot holds.
type Stats struct{ Agents, Hosts, Routes, MCPServers, MCPTools int }

// Stats counts the snapshot's agents, hosts and routes.
func (s *Snapshot) Stats() Stats {
	st := Stats{Agents: len(s.agents), Hosts: len(s.hosts), MCPServers: len(s.mcp)}
	for _, srv := range s.mcp {
		st.MCPTools += len(srv.tools)
	}
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
		count(h.shadowRoot)
	}
	return st
}

type agent struct {
	id spiffeid.ID
	// live agents are defined in an ordinary policy file; the others only in shadow files.
	live   bool
	scopes []uint64 // bit set over Snapshot.scopeNames
	// shadowScopes adds the scopes shadow files grant; nil when they grant none.
	shadowScopes []uint64
}

func grantBit(set []uint64, scope int) []uint64 {
	for len(set) <= scope/64 {
		set = append(set, 0)
	}
	set[scope/64] |= 1 << (scope % 64)
	return set
}

func (a *agent) grant(scope int) {
	a.scopes = grantBit(a.scopes, scope)
	if a.shadowScopes != nil {
		a.shadowScopes = grantBit(a.shadowScopes, scope)
	}
}

func (a *agent) grantShadow(scope int) {
	if a.shadowScopes == nil {
		a.shadowScopes = append([]uint64{}, a.scopes...)
	}
	a.shadowScopes = grantBit(a.shadowScopes, scope)
}

// holds reports whether the agent holds scope, in shadow evaluation or not.
func (a *agent) holds(scope int, shadow bool) bool {
	set := a.scopes
	if shadow && a.shadowScopes != nil {
		set = a.shadowScopes
	}
	w := scope / 64
	return w < len(set) && set[w]&(1<<(scope%64)) != 0
}

type host struct {
	name string
	// live hosts are defined in an ordinary policy file; the others only in shadow files.
	live       bool
	root       *node // ordinary routes
	shadowRoot *node // shadow routes
	grant      *decision.Grant
	// routes in policy order, for explanations.
	routes []*route
	// jwt, when set, accepts JWT-SVIDs from agents without an X.509 identity.
	jwt *JWTSVIDConfig
	// oauth, when set, accepts OAuth access tokens.
	oauth *OAuthConfig
	// refuse are the headers the host refuses beside overrideHeaders (refuse_headers).
	refuse []string
	// documented holds every operation of the host's OpenAPI document, granted or not, by
	// method and path shape: a route written by hand may not take one's place.
	documented *node
}

// Store holds the snapshot in force, and what became of the last attempt to load a new one.
// Swapping in a snapshot is atomic: a decision in flight finishes on the snapshot it started
// with, and no decision waits for a load.
type Store struct {
	current atomic.Pointer[Snapshot]
	failure atomic.Pointer[LoadFailure]
}

// LoadFailure records a load that failed while an older snapshot kept serving.
type LoadFailure struct {
	At       time.Time
	Problems []string
}

// NewStore returns a Store with snap in force.
func NewStore(snap *Snapshot) *Store {
	s := &Store{}
	s.current.Store(snap)
	return s
}

// Load returns the snapshot in force, or nil when none was ever loaded.
func (s *Store) Load() *Snapshot { return s.current.Load() }

// Swap puts a new snapshot in force, clears the last failure and returns the previous one.
func (s *Store) Swap(snap *Snapshot) *Snapshot {
	s.failure.Store(nil)
	return s.current.Swap(snap)
}

// Failed records a failed load; the snapshot in force stays.
func (s *Store) Failed(f LoadFailure) { s.failure.Store(&f) }

// LastFailure returns the failure of the last load, or nil if it succeeded.
func (s *Store) LastFailure() *LoadFailure { return s.failure.Load() }

// JWTSVIDConfig says how a host accepts JWT-SVIDs.
type JWTSVIDConfig struct {
	Audiences []string
	// Header holds the token: "authorization" as "Bearer <token>", or the bare token.
	Header string
}

// JWTSVID returns how the host named by an :authority accepts JWT-SVIDs, or nil when it does not.
func (s *Snapshot) JWTSVID(authority string) *JWTSVIDConfig {
	if h := s.hosts[hostKey(authority)]; h != nil && h.live {
		return h.jwt
	}
	return nil
}
