package stack

import (
	"crypto/rand"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/policy"
)

// AliceToken is the demo approver alice's (group it-admins) bearer token for the approvals API.
const AliceToken = "SENTINEL-alice-approver-token-0d3c4e"

// Authz is agentauthz as `agentauthz serve --spiffe-socket ...` runs it in front of the shipped
// front proxy: internal/server with a policy store (the demo policy), a memory approval store,
// the approvals API and console on the HTTP listener with alice as the demo approver, and gRPC
// over SPIFFE mTLS admitting only Envoy. It can be stopped and started again on the same
// addresses; the policy, approvals and decision record outlive a restart, as a store on disk
// would.
type Authz struct {
	t     testing.TB
	cfg   server.Config
	token string // the helpdesk API's credential the policy injects

	// Store holds the policy in force.
	Store *policy.Store
	// Approvals is the approval store.
	Approvals *memstore.Store
	// Decisions records every decision agentauthz made.
	Decisions *DecisionRecord
	// OAuthKeys are the fetched keys of the OAuth issuers the policy in force names.
	OAuthKeys *oauthkeys.Cache

	mu  sync.Mutex
	srv *server.Server
}

func startAuthz(t testing.TB, p *PKI, token string, checkTimeout time.Duration) *Authz {
	t.Helper()
	a := &Authz{t: t, token: token, Store: &policy.Store{}, Approvals: memstore.New(), Decisions: &DecisionRecord{},
		OAuthKeys: oauthkeys.New(oauthkeys.Config{})}
	a.ReloadDemo()
	approvers := &api.API{
		Store: a.Approvals,
		Auth:  signin.NewTokens(map[string]approval.Approver{AliceToken: {Name: "alice", Groups: []string{"it-admins"}}}),
	}
	a.cfg = server.Config{
		GRPCAddr:  "127.0.0.1:0",
		HTTPAddr:  "127.0.0.1:0",
		TLS:       p.ServerTLSFor(p.Issue(t, AgentauthzID), EnvoyID),
		Store:     a.Store,
		Decisions: a.Decisions,
		// MCP clients of revision 2026-07-28 are told the console's page of their held call,
		// at the address approvers would use, and given a signed request state.
		Approvals: &approval.Gate{Store: a.Approvals, ConsoleURL: ConsoleURL, StateKey: stateKey()},
		OAuthKeys: a.OAuthKeys,
		APIHandler: func(mux *http.ServeMux) {
			approvers.Register(mux)
			(&console.Console{API: approvers}).Register(mux)
		},
		CheckTimeout: checkTimeout,
		DrainTimeout: 5 * time.Second,
	}
	a.Start()
	// The ports are fixed from now on, so that Envoy's configuration stays right after a restart.
	a.cfg.GRPCAddr, a.cfg.HTTPAddr = a.srv.GRPCAddr().String(), a.srv.HTTPAddr().String()
	t.Cleanup(a.Stop)
	return a
}

// GRPCAddr is where agentauthz serves Envoy (host:port).
func (a *Authz) GRPCAddr() string { return a.cfg.GRPCAddr }

// ConsoleURL is the approval console's address as the stack tells MCP clients: the name
// approvers would reach it by. Tests reach it at ApprovalsURL.
const ConsoleURL = "https://agentauthz.acme.internal:9002"

// stateKey is a fresh key for held MCP calls' request states.
func stateKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails on supported platforms
	return k
}

// ApprovalsURL is agentauthz's HTTP listener: /v1/approvals, the console at /approvals/.
func (a *Authz) ApprovalsURL() string { return "http://" + a.cfg.HTTPAddr }

// Start starts agentauthz if it is stopped, on the addresses it had.
func (a *Authz) Start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		return
	}
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The port may be held for a moment after a stop; retry briefly.
		if a.srv, err = server.Start(a.cfg); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		a.t.Fatalf("stack: starting agentauthz: %v", err)
	}
}

// Stop stops agentauthz as SIGTERM does: in-flight checks drain, then both listeners close.
func (a *Authz) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		return
	}
	a.srv.Shutdown()
	a.srv = nil
}

// Restart stops agentauthz and starts it again on the same addresses.
func (a *Authz) Restart() {
	a.t.Helper()
	a.Stop()
	a.Start()
}

// SetDelay makes every check answer d late (zero: no delay), as an overloaded agentauthz would.
// The delay is spent in the decision record, which the engine writes before the answer is
// sent; the decision itself, and its own deadline (CheckTimeout), are unaffected, so this is
// agentauthz answering in time by its own clock but too late for Envoy. Health checks are not
// delayed.
func (a *Authz) SetDelay(d time.Duration) { a.Decisions.setDelay(d) }

// Reload compiles files and puts them in force, as a reload of --policy DIR does; the helpdesk
// credential is the stack's.
func (a *Authz) Reload(files []policy.File) *policy.Snapshot {
	a.t.Helper()
	snap, err := policy.Load(files, policy.Options{Secrets: a.secrets})
	if err != nil {
		a.t.Fatalf("stack: loading the policy: %v", err)
	}
	a.OAuthKeys.Prepare(snap.OAuthIssuers())
	a.Store.Swap(snap)
	return snap
}

// ReloadDemo puts the embedded demo policy in force.
func (a *Authz) ReloadDemo() *policy.Snapshot {
	a.t.Helper()
	return a.Reload(DemoFiles(a.t))
}

// secrets gives the helpdesk API's credential for the demo policy's only injected header.
func (a *Authz) secrets(policy.SecretRef) (string, error) { return a.token, nil }

// DemoFiles are the demo policy's files, for a test to edit before Reload.
func DemoFiles(t testing.TB) []policy.File {
	t.Helper()
	files, err := policy.ReadFS(demo.Files, demo.Dir)
	if err != nil {
		t.Fatalf("stack: reading the demo policy: %v", err)
	}
	return files
}

// DecisionRecord is agentauthz's decision log, kept in memory (engine.DecisionLog).
type DecisionRecord struct {
	mu     sync.Mutex
	recs   []audit.Decision
	events []Event
	delay  time.Duration
}

// Event is a record of another kind than a decision that agentauthz writes in the decision log
// (engine.EventLog): "response", what the response guard did with an answer, for one.
type Event struct {
	Kind  string
	Attrs map[string]slog.Value
}

// Write records an event, as the decision log would.
func (r *DecisionRecord) Write(kind string, attrs ...slog.Attr) error {
	e := Event{Kind: kind, Attrs: make(map[string]slog.Value, len(attrs))}
	for _, a := range attrs {
		e.Attrs[a.Key] = a.Value.Resolve()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Events returns the events of kind recorded so far, in order.
func (r *DecisionRecord) Events(kind string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Decision records d, after the delay SetDelay set.
func (r *DecisionRecord) Decision(d audit.Decision) error {
	r.mu.Lock()
	r.recs = append(r.recs, d)
	delay := r.delay
	r.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	return nil
}

func (r *DecisionRecord) setDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// All returns every decision recorded so far, in order.
func (r *DecisionRecord) All() []audit.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// Find returns the decision with the id, if any.
func (r *DecisionRecord) Find(id string) (audit.Decision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.recs {
		if d.ID == id {
			return d, true
		}
	}
	return audit.Decision{}, false
}
