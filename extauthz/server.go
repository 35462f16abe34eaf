// Package extauthz is agentauthz's Envoy front door: it serves envoy.service.auth.v3.Authorization,
// reads each CheckRequest exactly as Envoy fills it into the engine's facts, and turns the
// engine's decision into Envoy's CheckResponse. It decides nothing itself.
package extauthz

import (
	"context"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
)

// Server answers Envoy's Check calls with the engine's decisions.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	engine *engine.Engine
	resp   responder
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// DefaultTimeout bounds a Check when the engine's timeout is not set. Envoy's own ext_authz
// timeout should be a little longer, so that the agent gets agentauthz's answer.
const DefaultTimeout = engine.DefaultTimeout

// New returns a Server answering with e's decisions.
func New(e *engine.Engine) *Server {
	return &Server{engine: e}
}

// NewForStore returns a Server deciding from store with the engine's defaults: no approvals, no
// decision log, no metrics.
func NewForStore(store *policy.Store) *Server {
	return New(engine.New(engine.Config{Store: store}))
}

// Check decides one request. It answers every request, failures included, with a decision:
// the gRPC error path is left for transport failures, so Envoy's status_on_error is never the
// only thing an agent sees.
func (s *Server) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	st := &checkState{}
	st.read(cr)
	res := s.engine.Decide(ctx, &st.req)
	return s.resp.respond(&res, isGRPC(st.req.Headers)), nil
}

// isGRPC reports whether the request is a gRPC call as Envoy tells one (a content-type of
// exactly application/grpc, or application/grpc+<codec>; not gRPC-Web), whose local replies,
// agentauthz's denials among them, Envoy sends as gRPC errors.
func isGRPC(h policy.Headers) bool {
	if h == nil {
		return false
	}
	ct, n := h.Get("content-type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return n == 1 && ok && (rest == "" || rest[0] == '+')
}
