package server

import (
	"context"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// SetReady reports the service as serving, or not, over gRPC health.
func (s *Server) SetReady(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
	s.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, st)
}

// healthService is gRPC health, except that once the server drains, each Watch stream ends
// (Unavailable) as soon as its watcher has been told the service is not serving. A Watch stream
// never ends on its own, so an open one (gRPC client-side health checking keeps one) would
// otherwise hold GracefulStop for the whole DrainTimeout.
type healthService struct {
	*health.Server
	draining <-chan struct{}
}

func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, sent: make(chan struct{}, 1)}
	ws.last.Store(-1) // nothing sent yet
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-h.draining:
		case <-done:
			return
		}
		// Let the watcher hear NOT_SERVING (Shutdown sets it) before its stream ends.
		for st := ws.last.Load(); st == -1 || st == int32(healthpb.HealthCheckResponse_SERVING); st = ws.last.Load() {
			select {
			case <-ws.sent:
			case <-done:
				return
			}
		}
		cancel()
	}()
	err := h.Server.Watch(req, ws)
	select {
	case <-h.draining:
		return status.Error(codes.Unavailable, "agentauthz is shutting down")
	default:
		return err
	}
}

// watchStream is a health Watch stream with its own context, which notes the last status sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	last atomic.Int32
	sent chan struct{}
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	if err := w.Health_WatchServer.Send(r); err != nil {
		return err
	}
	w.last.Store(int32(r.GetStatus()))
	select {
	case w.sent <- struct{}{}:
	default:
	}
	return nil
}
