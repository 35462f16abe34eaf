// Package engine is agentauthz's decision pipeline, the same behind every front door. A front
// door (the Envoy ext_authz adapter, `agentauthz check`, `agentauthz test`) reads its own wire
// form into a Request; the engine establishes the caller's identity, asks the policy in force,
// holds or spends approvals, enforces the deadline, evaluates shadow rules, counts and records
// the decision, and returns one Result. Front doors only translate: the same request gets the
// same answer through each of them.
//
// The engine knows no transport and no storage: approvals reach it through the Approvals
// interface, the decision log through DecisionLog.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// DefaultTimeout bounds one decision when Config.Timeout is zero. Envoy's own ext_authz timeout
// should be a little longer, so that the agent gets agentauthz's answer.
const DefaultTimeout = 200 * time.Millisecond

// Approvals turns the policy's approval_required decisions into held requests and approved
// retries into one allow each. approval.Gate is the implementation; any other decision passes
// through unchanged.
type Approvals interface {
	Resolve(ctx context.Context, r *policy.Request, d decision.Decision) decision.Decision
}

// DecisionLog records every decision; audit.Log and audit.Queue are ones.
type DecisionLog interface {
	Decision(audit.Decision) error
}

// Config is what an Engine needs. Only Store is required.
type Config struct {
	// Store holds the policy in force.
	Store *policy.Store
	// Log receives failures; nil discards them.
	Log *slog.Logger
	// Metrics count decisions and their latency; nil records nothing.
	Metrics *metrics.Metrics
	// Decisions records every decision; nil records none.
	Decisions DecisionLog
	// RedactQuery names query parameters whose values the decision log never shows; nil shows
	// every value.
	RedactQuery *redact.Query
	// Approvals holds requests the policy requires approval for; nil refuses them.
	Approvals Approvals
	// JWTBundles validate JWT-SVIDs on hosts whose policy accepts them; nil refuses every token.
	JWTBundles jwtbundle.Source
	// OAuthKeys find the keys of OAuth issuers whose keys the policy does not hold
	// (oauthkeys.Cache fetches them); nil means the policy's keys only.
	OAuthKeys accesstoken.Keys
	// Timeout bounds one decision: a decision not reached in time is a deadline_exceeded deny.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	// Tracer makes one span per decision (tracing.(*Provider).Tracer), a child of the span in
	// Decide's context when the front door's transport carried one, or else of the W3C trace
	// context (traceparent) in the request's headers; nil traces nothing, at no cost.
	Tracer trace.Tracer
}

// Engine decides requests. It is safe for concurrent use.
type Engine struct {
	cfg Config
	ids idSource
}

// New returns an Engine with cfg.
func New(cfg Config) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	e := &Engine{cfg: cfg}
	e.ids.init()
	return e
}

// Timeout is the deadline of one decision.
func (e *Engine) Timeout() time.Duration { return e.cfg.Timeout }

// Request is the facts of one request, as a front door read them. Each is read once, here, and
// handed to every stage that needs it.
type Request struct {
	// Principal is the caller's X.509 identity as the front door verified it (Envoy's
	// source.principal, the URI SAN of the peer certificate): SPIFFE ID text, or empty. It never
	// comes from a request header.
	Principal string
	// Method, Host and Target (the raw path with its query) are the request line, as sent.
	Method, Host, Target string
	// Headers are the request headers; nil means none.
	Headers policy.Headers
	// Body is the request body as forwarded; it may share memory with the front door's message
	// and is never written to.
	Body []byte
	// BodyPartial is set when the proxy cut the body short.
	BodyPartial bool
	// RequestID is the proxy's id of the request (x-request-id), for the record.
	RequestID string
	// Unreadable is the front door's refusal of a request it could not read as one request
	// (contradicting or missing parts). The engine records it and answers with it.
	Unreadable *decision.Decision
	// Explain asks for the policy's reasoning, step by step, in Result.Explain.
	Explain bool

	// policy is the request as the policy reads it, filled by Decide; token is the access token
	// it points to, when one was validated.
	policy policy.Request
	token  accesstoken.Token
}

// Result is the engine's answer to one request.
type Result struct {
	// Decision is what to enforce. Its zero value denies.
	Decision decision.Decision
	// ID identifies this decision in the answer, the decision log and the server log.
	ID string
	// Agent is the caller's SPIFFE ID once established; empty before.
	Agent string
	// Source is where Agent came from (SourceX509, SourceJWTSVID, SourceOAuth); empty before.
	Source string
	// Issuer and Subject are the issuer URL and subject of a validated OAuth access token,
	// whether it identified the agent or agreed with its certificate; never the token itself.
	Issuer, Subject string
	// Revision is the revision of the policy that decided; empty when none was in force.
	Revision string
	// Explain is the policy's reasoning, when Request.Explain asked for it.
	Explain []string
}

var (
	errNoApprovals = errors.New("the policy holds requests for approval, but no approval store is configured")
)

// Decide answers one request. It always answers, failures included: a panic, a missing
// policy, a failing approval store or a late decision become denials with their reason, and
// every answer is counted and recorded.
func (e *Engine) Decide(ctx context.Context, r *Request) (res Result) {
	start := e.cfg.Clock()
	res.ID = e.ids.next()
	var snap *policy.Snapshot
	var span trace.Span // nil unless tracing
	if e.cfg.Tracer != nil {
		ctx, span = e.startSpan(ctx, r)
	}
	defer func() {
		if p := recover(); p != nil {
			res.Decision = decision.Failed(decision.CodeInternal, "Authorization failed internally; retry later.",
				fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
		if c := res.Decision.Cause; c != nil {
			e.cfg.Log.Error("internal failure; answered with a fail-closed deny",
				"decision_id", res.ID, "code", string(res.Decision.Code), "rule", res.Decision.Rule, "error", c.Error())
		}
		if snap != nil {
			res.Revision = snap.Revision()
		}
		e.record(r, &res, start)
		if span != nil {
			endSpan(span, r, &res)
		}
	}()
	snap = e.cfg.Store.Load()
	res.Decision = e.decide(ctx, snap, r, &res)
	if res.Decision.Outcome == decision.Allow && res.Decision.Approval == nil && e.cfg.Clock().Sub(start) > e.cfg.Timeout {
		// Too late to be trusted as an answer: fail closed. An allow that used an approval is
		// kept: the approval is spent, and refusing now would waste the approver's decision.
		res.Decision = decision.Denied(decision.CodeDeadlineExceeded, "Authorization timed out; retry later.")
	}
	return res
}

// decide runs the pipeline: cancellation, policy in force, identity, the front door's refusal,
// policy, approval.
func (e *Engine) decide(ctx context.Context, snap *policy.Snapshot, r *Request, res *Result) decision.Decision {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return decision.Denied(decision.CodeDeadlineExceeded, "Authorization timed out; retry later.")
		}
		return decision.Failed(decision.CodeInternal, "The check was cancelled.", err)
	}
	if snap == nil {
		return decision.Denied(decision.CodePolicyNotLoaded, "Authorization is not ready; retry later.")
	}
	// The policy's view of the request lives in r: the policy keeps pointers to it, and one
	// allocation for the front door's facts then holds both.
	req := &r.policy
	*req = policy.Request{
		Method: r.Method, Host: r.Host, Target: r.Target, Headers: r.Headers,
		Body: r.Body, BodyPartial: r.BodyPartial,
	}
	if req.Headers == nil {
		req.Headers = noHeaders{}
	}
	// The certificate's identity is established first, so that even a refused request is
	// recorded with the agent that sent it.
	if r.Principal != "" {
		id, err := spiffeid.FromString(r.Principal)
		if err != nil {
			return decision.Denied(decision.CodeIdentityInvalid,
				"Your certificate's identity is not a SPIFFE ID; use your SPIFFE certificate.")
		}
		req.Agent = id
		res.Agent, res.Source = id.String(), SourceX509
	}
	if r.Unreadable != nil {
		return *r.Unreadable
	}
	if oc := snap.OAuth(req.Host); oc != nil {
		// A resource's metadata is public: it tells a client without a token how to get one.
		if d, ok := oc.Metadata(req.Method, req.Target); ok {
			return d
		}
		// On a host that accepts access tokens, a token identifies the agent, or must agree with
		// its certificate.
		if deny := e.oauthIdentity(ctx, snap, oc, r, res); deny != nil {
			return *deny
		}
	} else if req.Agent.IsZero() {
		// Without a certificate, a JWT-SVID identifies the agent on a host whose policy accepts
		// them; without either, the policy refuses the request for lack of identity.
		if jc := snap.JWTSVID(req.Host); jc != nil {
			if deny := jwtIdentity(req, jc, e.cfg.JWTBundles); deny != nil {
				return *deny
			}
			if !req.Agent.IsZero() {
				res.Agent, res.Source = req.Agent.String(), SourceJWTSVID
			}
		}
	}
	var d decision.Decision
	if r.Explain {
		d, res.Explain = snap.Explain(req)
		res.Explain = append(explainIdentity(res), res.Explain...)
	} else {
		d = snap.Decide(req)
	}
	if d.Code == decision.CodeApprovalRequired {
		if e.cfg.Approvals == nil {
			return decision.Failed(decision.CodeInternal, "Authorization cannot hold requests for approval here; retry later.", errNoApprovals)
		}
		ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
		d = e.cfg.Approvals.Resolve(ctx, req, d)
	}
	return d
}

// explainIdentity says where the agent's identity came from, when not from its certificate
// alone.
func explainIdentity(res *Result) []string {
	switch {
	case res.Source == SourceOAuth:
		return []string{"identity source: OAuth access token from " + res.Issuer + ", subject " + res.Subject}
	case res.Source == SourceX509 && res.Issuer != "":
		return []string{"identity source: X.509 certificate, with an access token from " + res.Issuer + " for the same agent"}
	case res.Source == SourceJWTSVID:
		return []string{"identity source: JWT-SVID"}
	}
	return nil
}

// noHeaders is a request without headers.
type noHeaders struct{}

func (noHeaders) Get(string) (string, int) { return "", 0 }

func (noHeaders) EachWithPrefix(string, func(string, string)) {}

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
