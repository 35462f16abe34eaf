// Package extauthz is agentauthz's Envoy edge: it serves envoy.service.auth.v3.Authorization,
// reads each CheckRequest exactly as Envoy fills it into a policy.Request, asks the policy in
// force, and turns the decision into Envoy's CheckResponse. It decides nothing itself.
package extauthz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// Server answers Envoy's Check calls from the policy in a Store.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	cfg  Config
	ids  idSource
	resp responder
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// DecisionLog records every decision; audit.Log and audit.Queue are ones.
type DecisionLog interface {
	Decision(audit.Decision) error
}

// Config is what a Server needs. Only Store is required.
type Config struct {
	Store *policy.Store
	// Log receives failures; nil discards them.
	Log *slog.Logger
	// Metrics count decisions and their latency; nil records nothing.
	Metrics *metrics.Metrics
	// Decisions records every decision; nil records none.
	Decisions DecisionLog
	// RedactQuery names query parameters whose values the decision log never shows.
	RedactQuery map[string]bool
	// Approvals holds requests the policy requires approval for; nil refuses them.
	Approvals *approval.Gate
	// JWTBundles validate JWT-SVIDs on hosts whose policy accepts them; nil refuses every token.
	JWTBundles jwtbundle.Source
	// Timeout bounds one Check: a decision not reached in time is a deadline_exceeded deny.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
}

// DefaultTimeout bounds a Check when Config.Timeout is zero. Envoy's own ext_authz timeout
// should be a little longer, so that the agent gets agentauthz's answer.
const DefaultTimeout = 200 * time.Millisecond

// New returns a Server deciding from store. log receives failures; nil discards them.
func New(store *policy.Store, log *slog.Logger) *Server {
	return NewServer(Config{Store: store, Log: log})
}

// NewServer returns a Server with cfg.
func NewServer(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Server{cfg: cfg}
	s.ids.init()
	return s
}

// Check decides one request. It answers every request, failures included, with a decision:
// the gRPC error path is left for transport failures, so Envoy's status_on_error is never the
// only thing an agent sees.
func (s *Server) Check(ctx context.Context, cr *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	start := s.cfg.Clock()
	id := s.ids.next()
	agent := ""
	var d decision.Decision
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Log.Error("check panicked; answered with a fail-closed deny",
				"decision_id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d = decision.Denied(decision.CodeInternal, "Authorization failed internally; retry later.")
			resp = s.resp.respond(&d, id, agent)
		}
		s.record(cr, &d, id, agent, start)
	}()
	d = s.decide(ctx, cr, &agent)
	if d.Outcome == decision.Allow && d.Approval == nil && s.cfg.Clock().Sub(start) > s.cfg.Timeout {
		// Too late to be trusted as an answer: fail closed. An allow that used an approval is
		// kept: the approval is spent, and refusing now would waste the approver's decision.
		d = decision.Denied(decision.CodeDeadlineExceeded, "Authorization timed out; retry later.")
	}
	return s.resp.respond(&d, id, agent), nil
}

// record counts and logs an answered decision.
func (s *Server) record(cr *authv3.CheckRequest, d *decision.Decision, id, agent string, start time.Time) {
	took := s.cfg.Clock().Sub(start)
	s.cfg.Metrics.Check(d, took)
	if d.ShadowRule != "" {
		s.cfg.Metrics.Shadow(d.ShadowRule, d.ShadowCode)
	}
	if s.cfg.Decisions == nil {
		return
	}
	httpReq := cr.GetAttributes().GetRequest().GetHttp()
	rec := audit.Decision{
		ID:        id,
		RequestID: httpReq.GetId(),
		Agent:     agent,
		Host:      httpReq.GetHost(),
		Method:    httpReq.GetMethod(),
		Path:      audit.RedactQuery(httpReq.GetPath(), s.cfg.RedactQuery),
		Rule:      d.Rule,
		Outcome:   d.Outcome.String(),
		Code:      string(d.Code),
		Status:    d.Status(),
		Latency:   took,
	}
	if snap := s.cfg.Store.Load(); snap != nil {
		rec.PolicyRevision = snap.Revision()
	}
	if rec.Code == "" {
		rec.Code = string(decision.CodeInternal)
	}
	if body := bodyOf(httpReq); len(body) > 0 {
		sum := sha256.Sum256(body)
		rec.BodyDigest = "sha256:" + hex.EncodeToString(sum[:])
	}
	if d.ShadowRule != "" {
		rec.ShadowRule, rec.ShadowCode, rec.ShadowOutcome = d.ShadowRule, string(d.ShadowCode), d.ShadowOutcome.String()
	}
	if err := s.cfg.Decisions.Decision(rec); err != nil {
		s.cfg.Log.Error("decision not recorded", "decision_id", id, "error", err.Error())
	}
}

func bodyOf(h *authv3.AttributeContext_HttpRequest) []byte {
	if raw := h.GetRawBody(); len(raw) > 0 {
		return raw
	}
	return []byte(h.GetBody())
}

// decide reads the request and asks the policy; agent is set once the identity is known.
func (s *Server) decide(ctx context.Context, cr *authv3.CheckRequest, agent *string) decision.Decision {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return decision.Denied(decision.CodeDeadlineExceeded, "Authorization timed out; retry later.")
		}
		return decision.Denied(decision.CodeInternal, "The check was cancelled.")
	}
	snap := s.cfg.Store.Load()
	if snap == nil {
		return decision.Denied(decision.CodePolicyNotLoaded, "Authorization is not ready; retry later.")
	}
	req, deny := ReadRequest(cr)
	switch {
	case deny == nil && req.Agent.IsZero():
		if jc := snap.JWTSVID(req.Host); jc != nil {
			deny = jwtIdentity(&req, jc, s.cfg.JWTBundles)
		}
		if !req.Agent.IsZero() {
			*agent = req.Agent.String()
		}
	case !req.Agent.IsZero():
		// The principal parsed as a SPIFFE ID, so it is that ID's canonical text.
		*agent = cr.GetAttributes().GetSource().GetPrincipal()
	}
	return s.finish(ctx, snap, &req, deny)
}

// finish asks the policy, then the approval gate for held requests.
func (s *Server) finish(ctx context.Context, snap *policy.Snapshot, req *policy.Request, deny *decision.Decision) decision.Decision {
	if deny != nil {
		return *deny
	}
	d := snap.Decide(req)
	if d.Code == decision.CodeApprovalRequired {
		if s.cfg.Approvals == nil {
			s.cfg.Log.Error("the policy holds requests for approval, but no approval store is configured", "rule", d.Rule)
			return decision.Denied(decision.CodeInternal, "Authorization cannot hold requests for approval here; retry later.")
		}
		ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		d = s.cfg.Approvals.Resolve(ctx, req, d)
	}
	return d
}

// idSource makes decision ids: a random per-process prefix and a counter, unique without a
// system call per decision.
type idSource struct {
	prefix [8]byte
	n      atomic.Uint64
}

func (g *idSource) init() {
	var seed [16]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms
	copy(g.prefix[:], seed[:8])
	g.n.Store(binary.BigEndian.Uint64(seed[8:]) >> 16)
}

func (g *idSource) next() string {
	var b [16]byte
	copy(b[:8], g.prefix[:])
	binary.BigEndian.PutUint64(b[8:], g.n.Add(1))
	return hex.EncodeToString(b[:])
}
