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
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

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
