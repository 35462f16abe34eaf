// Package extauthz is agentauthz's Envoy edge: it serves envoy.service.auth.v3.Authorization,
// reads each CheckRequest exactly as Envoy fills it into a policy.Request, asks the policy in
// force, and turns the decision into Envoy's CheckResponse. It decides nothing itself.
package extauthz

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/decision"
	"github.com/agentauthz/agentauthz/policy"
)

// Server answers Envoy's Check calls from the policy in a Store.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	store *policy.Store
	log   *slog.Logger
	ids   idSource
	resp  responder
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server deciding from store. log receives failures; nil discards them.
func New(store *policy.Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: store, log: log}
	s.ids.init()
	return s
}

// Check decides one request. It answers every request, failures included, with a decision:
// the gRPC error path is left for transport failures, so Envoy's status_on_error is never the
// only thing an agent sees.
func (s *Server) Check(ctx context.Context, cr *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	id := s.ids.next()
	agent := ""
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("check panicked; answered with a fail-closed deny",
				"decision_id", id, "panic", p, "stack", string(debug.Stack()))
			d := decision.Denied(decision.CodeInternal, "Authorization failed internally; retry later.")
			resp = s.resp.respond(&d, id, agent)
		}
	}()
	d := s.decide(ctx, cr, &agent)
	return s.resp.respond(&d, id, agent), nil
}

// decide reads the request and asks the policy; agent is set once the identity is known.
func (s *Server) decide(ctx context.Context, cr *authv3.CheckRequest, agent *string) decision.Decision {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return decision.Denied(decision.CodeDeadlineExceeded, "Authorization timed out; retry later.")
		}
		return decision.Denied(decision.CodeInternal, "The check was cancelled.")
	}
	snap := s.store.Load()
	if snap == nil {
		return decision.Denied(decision.CodePolicyNotLoaded, "Authorization is not ready; retry later.")
	}
	req, deny := ReadRequest(cr)
	if !req.Agent.IsZero() {
		// The principal parsed as a SPIFFE ID, so it is that ID's canonical text.
		*agent = cr.GetAttributes().GetSource().GetPrincipal()
	}
	if deny != nil {
		return *deny
	}
	return snap.Decide(&req)
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
