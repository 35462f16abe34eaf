// Package server runs agentauthz's listeners: the gRPC listener (Envoy's ext_authz v3
// Authorization service, Envoy's ext_proc ExternalProcessor when configured, gRPC health and
// server reflection), the HTTP listener (health,
// readiness, metrics, the approval API and console, Slack's interactions, and the AuthZEN API
// when configured) and, when configured, a listener of the AuthZEN API's own. Each is served
// over TLS, or in plaintext on loopback, or in plaintext elsewhere only when told Insecure. Both
// front doors answer with one engine. `agentauthz serve` and the end-to-end tests start the
// same Server.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/httpapi"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// Defaults for the listeners: loopback only.
const (
	DefaultGRPCAddr = "127.0.0.1:9001"
	DefaultHTTPAddr = "127.0.0.1:9002"
)

// Config says where to listen and what to serve.
type Config struct {
	// GRPCAddr is host:port, or unix:/path for a unix socket.
	GRPCAddr string
	// GRPCSocket sets the unix socket's mode and group (a unix GRPCAddr only).
	GRPCSocket SocketAccess
	// HTTPAddr is host:port of the HTTP listener (health, readiness, metrics, the approval API
	// and console, Slack's interactions, AuthZEN); empty disables it. Plaintext on a
	// non-loopback address needs Insecure.
	HTTPAddr string
	// HTTPTLS, when set, serves the HTTP listener over it (TLS 1.2 or later whatever it says):
	// a certificate from files (CertFiles.GetCertificate) or agentauthz's X.509-SVID.
	HTTPTLS *tls.Config
	// Insecure allows plaintext gRPC, HTTP and AuthZEN listeners on non-loopback addresses.
	Insecure bool
	// TLS, when set, serves gRPC over it (SPIFFE mTLS: only the configured clients may call).
	TLS *tls.Config
	// JWTBundles validate agents' JWT-SVIDs where the policy accepts them.
	JWTBundles jwtbundle.Source
	// OAuthKeys find the keys of OAuth issuers the policy names without a JWKS file
	// (oauthkeys.Cache); nil means the policy's keys only.
	OAuthKeys accesstoken.Keys
	// Store holds the policy in force.
	Store *policy.Store
	Log   *slog.Logger
	// DrainTimeout bounds how long Shutdown waits for in-flight checks.
	DrainTimeout time.Duration
	// Metrics are recorded for every check; Gatherer, when set, is served on /metrics.
	Metrics  *metrics.Metrics
	Gatherer prometheus.Gatherer
	// Decisions records every decision; nil records none.
	Decisions engine.DecisionLog
	// RedactQuery names query parameters whose values the decision log never shows.
	RedactQuery *redact.Query
	// CheckTimeout bounds one Check (engine.DefaultTimeout when zero).
	CheckTimeout time.Duration
	// Approvals holds requests for approval; APIHandler, when set, serves the approval API and
	// console on the HTTP listener.
	Approvals  engine.Approvals
	APIHandler func(mux *http.ServeMux)
	// AuthZEN, when set, serves the AuthZEN Authorization API (package authzen) over the same
	// engine as Check: on the HTTP listener (bearer tokens only: it asks for no client
	// certificate), and on AuthZENAddr when that is set.
	AuthZEN *authzen.Config
	// AuthZENAddr is host:port for a listener serving the AuthZEN API alone. Plaintext on a
	// non-loopback address needs Insecure.
	AuthZENAddr string
	// AuthZENTLS, when set, serves AuthZENAddr over TLS (authzen.TLSConfig): callers may then
	// authenticate with a SPIFFE client certificate as well as a token.
	AuthZENTLS *tls.Config
	// MCPLists decides what agents see of MCP servers' answers to the list methods, which the
	// gRPC listener serves Envoy's External Processing API (package extproc) for, next to
	// ext_authz. Nil means the engine's: the policy in force (engine.(*Engine).FilterList).
	MCPLists extproc.Lists
	// Reflection serves gRPC server reflection on the gRPC listener, for tools such as grpcurl
	// to list and call its services without their .proto files. Off unless set: it tells anyone
	// who reaches the listener every service and message it accepts.
	Reflection bool
	// Tracer makes a span of each decision (engine.Config.Tracer), a child of the trace context
	// in the gRPC call's metadata (Envoy's ext_authz span, when Envoy traces) or else in the
	// request's headers; nil traces nothing.
	Tracer trace.Tracer
}

// Server is a running agentauthz.
type Server struct {
	cfg      Config
	grpc     *grpc.Server
	health   *health.Server
	http     *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	authzen  *http.Server
	azLis    net.Listener
	serveErr chan error
	// draining is closed when Shutdown begins: it ends health Watch streams.
	draining  chan struct{}
	drainOnce sync.Once
}

// Start opens the listeners and starts serving. It returns once both listen.
func Start(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 15 * time.Second
	}
	network, addr, err := SplitAddr(cfg.GRPCAddr)
	if err != nil {
		return nil, err
	}
	if err := RefusePlaintext("gRPC", cfg.GRPCAddr, cfg.TLS != nil, cfg.Insecure); err != nil {
		return nil, err
	}
	if network == "tcp" && !isLoopback(addr) && cfg.TLS == nil {
		cfg.Log.Warn("serving plaintext gRPC on a non-loopback address: anyone who reaches it can ask for decisions", "addr", addr)
	}
	if cfg.HTTPAddr != "" {
		if err := RefusePlaintext("HTTP", cfg.HTTPAddr, cfg.HTTPTLS != nil, cfg.Insecure); err != nil {
			return nil, err
		}
		if cfg.HTTPTLS == nil && !isLoopback(cfg.HTTPAddr) {
			cfg.Log.Warn("serving plaintext HTTP on a non-loopback address: approvers' tokens, console sessions and AuthZEN PEP tokens cross the network in the clear",
				"addr", cfg.HTTPAddr)
		}
	} else if cfg.HTTPTLS != nil {
		return nil, errors.New("server: HTTP TLS needs an HTTP listener address")
	}
	if err := CheckSocketAccess(cfg.GRPCAddr, cfg.GRPCSocket); err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := removeStaleSocket(addr); err != nil {
			return nil, err
		}
		if cfg.GRPCSocket.Mode&0o002 != 0 {
			cfg.Log.Warn("the gRPC socket lets every user write to it: anyone on this host who can reach its directory can ask for decisions",
				"addr", addr, "mode", fmt.Sprintf("%04o", uint32(cfg.GRPCSocket.Mode)))
		}
	}
	if err := checkAuthZEN(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, serveErr: make(chan error, 3)}
	if network == "unix" {
		if s.grpcLis, err = listenUnix(addr, cfg.GRPCSocket); err != nil {
			return nil, err
		}
	} else if s.grpcLis, err = net.Listen(network, addr); err != nil {
		return nil, fmt.Errorf("server: gRPC listener: %w", err)
	}
	if cfg.HTTPAddr != "" {
		s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			s.grpcLis.Close()
			return nil, fmt.Errorf("server: HTTP listener: %w", err)
		}
	}
	if cfg.AuthZENAddr != "" {
		s.azLis, err = net.Listen("tcp", cfg.AuthZENAddr)
		if err != nil {
			s.grpcLis.Close()
			if s.httpLis != nil {
				s.httpLis.Close()
			}
			return nil, fmt.Errorf("server: AuthZEN listener: %w", err)
		}
	}

	opts := GRPCOptions(cfg.TLS)
	if cfg.Tracer != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(traceCalls))
	}
	s.grpc = grpc.NewServer(opts...)
	// One engine behind every front door: the same decisions, approvals, shadow rules, metrics
	// and decision log whether Envoy or an AuthZEN PEP asks.
	eng := engine.New(engine.Config{
		Store:       cfg.Store,
		Log:         cfg.Log,
		Metrics:     cfg.Metrics,
		Decisions:   cfg.Decisions,
		RedactQuery: cfg.RedactQuery,
		Timeout:     cfg.CheckTimeout,
		Approvals:   cfg.Approvals,
		JWTBundles:  cfg.JWTBundles,
		OAuthKeys:   cfg.OAuthKeys,
		Tracer:      cfg.Tracer,
	})
	authv3.RegisterAuthorizationServer(s.grpc, extauthz.New(eng))
	lists := cfg.MCPLists
	if lists == nil {
		lists = engineLists{eng}
	}
	extprocv3.RegisterExternalProcessorServer(s.grpc, extproc.New(extproc.Config{
		Lists: lists, Responses: engineResponses{eng}, Log: cfg.Log, Metrics: cfg.Metrics}))
	s.health = health.NewServer()
	s.draining = make(chan struct{})
	healthpb.RegisterHealthServer(s.grpc, &healthService{Server: s.health, draining: s.draining})
	if cfg.Reflection {
		reflection.Register(s.grpc)
	}
	s.SetReady(cfg.Store.Load() != nil)
	go func() { s.serveErr <- s.grpc.Serve(s.grpcLis) }()

	if s.httpLis != nil {
		mux := http.NewServeMux()
		httpapi.Health{Store: cfg.Store, Draining: s.draining}.Register(mux)
		if cfg.APIHandler != nil {
			cfg.APIHandler(mux)
		}
		if cfg.AuthZEN != nil {
			az := *cfg.AuthZEN
			az.VerifiedClientCerts = false // plaintext: no client certificates
			authzen.New(eng, az).Register(mux)
		}
		if cfg.Gatherer != nil {
			mux.Handle("GET /metrics", metrics.Handler(cfg.Gatherer))
		}
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			IdleTimeout: 2 * time.Minute,
			ErrorLog:    slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)} // TLS handshakes refused
		serve := func() error { return s.http.Serve(s.httpLis) }
		if cfg.HTTPTLS != nil {
			s.http.TLSConfig = minTLS12(cfg.HTTPTLS)
			serve = func() error { return s.http.ServeTLS(s.httpLis, "", "") } // the certificate is in TLSConfig
		}
		go func() {
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- err
			}
		}()
	}
	if s.azLis != nil {
		mux := http.NewServeMux()
		az := *cfg.AuthZEN
		az.VerifiedClientCerts = cfg.AuthZENTLS != nil
		authzen.New(eng, az).Register(mux)
		s.authzen = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			IdleTimeout: 2 * time.Minute,
			ErrorLog:    slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)} // TLS handshakes refused
		lis := s.azLis
		if cfg.AuthZENTLS != nil {
			lis = tls.NewListener(lis, cfg.AuthZENTLS)
		}
		go func() {
			if err := s.authzen.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- err
			}
		}()
	}
	return s, nil
}

// GRPCOptions are the transport settings agentauthz serves gRPC with, over tlsConfig when it is
// not nil. Load harnesses give their no-op ceiling the same, so that a comparison measures the
// authorization work and nothing else.
func GRPCOptions(tlsConfig *tls.Config) []grpc.ServerOption {
	// Checks run on a fixed set of worker goroutines instead of one new goroutine per stream:
	// a Check's call depth grows a fresh goroutine's stack, and copying stacks cost about a
	// sixth of the CPU under load; a worker's stack stays grown. A stream that finds every
	// worker busy gets a goroutine of its own, so there are enough workers for the checks Envoy
	// keeps in flight, not just one per CPU.
	opts := []grpc.ServerOption{grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0))))}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	return opts
}

// DefaultGCPercent is the garbage collector's target serve runs with unless GOGC is set: the
// live heap is small (the policy, in-flight checks) and nearly every allocation is per request,
// so collecting at 5x the live heap instead of 2x spends far less CPU on GC for a few more MB.
const DefaultGCPercent = 400

// SetGC sets the garbage collector as serve runs it: DefaultGCPercent, unless GOGC is set.
func SetGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}

// checkAuthZEN refuses an AuthZEN listener without the API, TLS without the listener, and
// plaintext on a non-loopback address without Insecure: bearer tokens would cross the network
// in the clear.
func checkAuthZEN(cfg *Config) error {
	switch {
	case cfg.AuthZENAddr == "" && cfg.AuthZENTLS != nil:
		return errors.New("server: AuthZEN TLS needs an AuthZEN listener address")
	case cfg.AuthZENAddr == "":
		return nil
	case cfg.AuthZEN == nil:
		return errors.New("server: an AuthZEN listener needs the AuthZEN configuration")
	}
	if _, _, err := net.SplitHostPort(cfg.AuthZENAddr); err != nil {
		return fmt.Errorf("server: AuthZEN listener %q is not host:port", cfg.AuthZENAddr)
	}
	if err := RefusePlaintext("AuthZEN", cfg.AuthZENAddr, cfg.AuthZENTLS != nil, cfg.Insecure); err != nil {
		return err
	}
	if cfg.AuthZENTLS == nil && !isLoopback(cfg.AuthZENAddr) {
		cfg.Log.Warn("serving plaintext AuthZEN on a non-loopback address: PEP tokens cross the network in the clear", "addr", cfg.AuthZENAddr)
	}
	return nil
}

// plaintextHints say how to serve each listener with TLS instead.
var plaintextHints = map[string]string{
	"gRPC": "use a loopback address or a unix socket, or pass --insecure",
	"HTTP": "serve it with TLS (--http-tls-cert and --http-tls-key, or --http-tls-spiffe) or on loopback " +
		"(behind a TLS-terminating proxy on this host, with --http-behind-tls-proxy), or pass --insecure",
	"AuthZEN": "serve it with SPIFFE TLS (--spiffe-socket) or on loopback, or pass --insecure",
}

// RefusePlaintext is Start's refusal to serve listener ("gRPC", "HTTP" or "AuthZEN") on addr
// without TLS: nil on a loopback address or a unix socket (unix:/path), with TLS, or when
// insecure allows it; otherwise the one-line error saying what to do. Callers check it before
// opening anything, so that the refusal is the only thing said.
func RefusePlaintext(listener, addr string, tls, insecure bool) error {
	if tls || insecure || strings.HasPrefix(addr, "unix:") || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("server: refusing plaintext %s on non-loopback address %s; %s", listener, addr, plaintextHints[listener])
}

// minTLS12 is c, never below TLS 1.2.
func minTLS12(c *tls.Config) *tls.Config {
	c = c.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

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

// GRPCAddr is the address the gRPC listener is bound to.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr is the address the HTTP listener is bound to, or nil.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// AuthZENAddr is the address the AuthZEN listener of its own is bound to, or nil.
func (s *Server) AuthZENAddr() net.Addr {
	if s.azLis == nil {
		return nil
	}
	return s.azLis.Addr()
}

// Err delivers the first error of a listener that stopped on its own.
func (s *Server) Err() <-chan error { return s.serveErr }

// Shutdown stops accepting checks, lets in-flight ones finish (up to DrainTimeout), then stops.
func (s *Server) Shutdown() {
	s.drainOnce.Do(func() { close(s.draining) })
	s.SetReady(false)
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.DrainTimeout):
		s.cfg.Log.Warn("drain timed out; stopping with checks in flight")
		s.grpc.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.authzen != nil {
		_ = s.authzen.Shutdown(ctx) // best effort: lets evaluations in flight finish
	}
	if s.http != nil {
		_ = s.http.Shutdown(ctx) // best effort: health probes, approvals, evaluations in flight
	}
}

// SplitAddr reads "host:port" as TCP and "unix:/path" as a unix socket.
func SplitAddr(a string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		if p == "" {
			return "", "", fmt.Errorf("server: %q: a unix socket needs a path, like unix:/run/agentauthz.sock", a)
		}
		return "unix", p, nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return "", "", fmt.Errorf("server: %q is not host:port or unix:/path", a)
	}
	return "tcp", a, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// removeStaleSocket removes a unix socket left by a previous run, but nothing else.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("server: %s exists and is not a socket", path)
	}
	return os.Remove(path)
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

// engineLists is the engine's filtering of MCP list answers, as the ext_proc front door asks
// for it.
type engineLists struct{ e *engine.Engine }

func (l engineLists) FilterMCPList(ctx context.Context, req extproc.ListRequest) extproc.ListResult {
	res := l.e.FilterList(ctx, engine.List{Agent: req.Agent, Server: req.Server, Method: req.Method,
		DecisionID: req.DecisionID, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Body: req.Body})
	return extproc.ListResult{Body: res.Body, ContentType: res.ContentType, Outcome: res.Outcome, Reason: res.Reason}
}

// engineResponses is the engine's response rules, as the ext_proc front door asks for them.
type engineResponses struct{ e *engine.Engine }

func (r engineResponses) FilterResponse(ctx context.Context, req extproc.ResponseRequest) extproc.ResponseAnswer {
	res := r.e.FilterResponse(ctx, engine.ResponseInput{Rule: req.Rule, Agent: req.Agent, DecisionID: req.DecisionID,
		Status: req.Status, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Body: req.Body})
	return extproc.ResponseAnswer{Status: res.Status, Body: res.Body, ContentType: res.ContentType, Changed: res.Changed}
}
