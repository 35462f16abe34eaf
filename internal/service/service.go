// Package service runs agentauthz as `agentauthz serve` does: it loads the policy, opens the
// decision log, the approval store, approvers and notifiers and agentauthz's SPIFFE sources,
// builds the decision engine over them, serves it on the gRPC and HTTP listeners (Envoy's
// ext_authz and the AuthZEN API, over the same engine), reloads the policy on change, and drains
// on shutdown. cmd/agentauthz only turns flags into a Config.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/internal/reload"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/tracing"
	"github.com/agentauthz/agentauthz/policy"
)

// Config is what `agentauthz serve` is told.
type Config struct {
	// PolicyPath is the policy file or directory; empty serves the embedded demo policy (which
	// also adds the demo approver).
	PolicyPath string
	// GRPCAddr and HTTPAddr are the listeners (see server.Config); Insecure allows plaintext
	// listeners on non-loopback addresses.
	GRPCAddr, HTTPAddr string
	Insecure           bool
	// GRPCSocket sets the mode and group of a unix-socket GRPCAddr.
	GRPCSocket server.SocketAccess
	// GRPCReflection serves gRPC server reflection on the gRPC listener (server.Config).
	GRPCReflection bool
	// HTTP secures the HTTP listener: TLS, and a TLS-terminating proxy in front.
	HTTP HTTPConfig
	// DecisionLog is where the decision log goes: a file, "-" for Stdout, or "off".
	DecisionLog string
	// DecisionLogChain keys, rotates and exports the decision log's chain.
	DecisionLogChain DecisionLogConfig
	// Stdout receives the decision log for "-"; nil means os.Stdout.
	Stdout io.Writer
	// RedactQuery names query parameters whose values are never shown: not in the decision log,
	// nor in approvals (the approvals API, console, CLI, notifications, approval events).
	RedactQuery []string
	// CheckTimeout bounds one Check; zero means engine.DefaultTimeout.
	CheckTimeout time.Duration
	SPIFFE       SPIFFEConfig
	Approvals    ApprovalConfig
	AuthZEN      AuthZENConfig
	// Tracing exports a span of each decision over OTLP; the zero value traces nothing.
	Tracing tracing.Config
	// Log receives the server log; nil discards it.
	Log *slog.Logger
}

// Service is a running agentauthz.
type Service struct {
	cfg       Config
	log       *slog.Logger
	store     *policy.Store
	metrics   *metrics.Metrics
	decisions *decisionLog
	spiffe    *spiffe
	appr      *approvals
	certs     *server.CertFiles // the HTTP listener's certificate files, or nil
	srv       *server.Server
	reloader  *reload.Reloader
	oauthKeys *oauthkeys.Cache
	tracing   *tracing.Provider // nil when tracing is off
}

// Start loads the policy and starts serving. A policy that does not load is returned as
// policy.Problems; nothing is left open on error.
func Start(cfg Config) (_ *Service, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	s := &Service{cfg: cfg, log: cfg.Log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := cfg.checkListeners(); err != nil {
		return nil, err
	}
	if err := cfg.Tracing.Check(); err != nil {
		return nil, err
	}
	if s.certs, err = openHTTPTLS(cfg.HTTP, cfg.Log); err != nil {
		return nil, err
	}
	snap, err := loadPolicy(cfg.PolicyPath, cfg.Log)
	debug.FreeOSMemory() // what loading allocated, beyond the snapshot, back to the system (see reload)
	if err != nil {
		return nil, err
	}
	s.store = policy.NewStore(snap)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	timeout := cfg.CheckTimeout
	if timeout == 0 {
		timeout = engine.DefaultTimeout
	}
	s.metrics = metrics.New(reg, metrics.WithCheckTimeout(timeout))
	s.metrics.Reload(true, snap.Revision())

	// OAuth issuers' keys: fetching starts now, and again for each reloaded policy before it is
	// put in force, so that requests find them cached.
	s.oauthKeys = oauthkeys.New(oauthkeys.Config{Log: cfg.Log, Observe: s.metrics.OAuthKeyFetch})
	s.oauthKeys.Prepare(snap.OAuthIssuers())

	if s.decisions, err = openDecisionLog(cfg, s.metrics); err != nil {
		return nil, fmt.Errorf("--decision-log: %v", err)
	}
	var decisionSink engine.DecisionLog // stays a nil interface when the log is off
	var events approval.EventLog
	if s.decisions != nil {
		decisionSink, events = s.decisions.queue, s.decisions.queue
	}
	if s.spiffe, err = openSPIFFE(context.Background(), cfg.SPIFFE); err != nil {
		return nil, err
	}
	if s.appr, err = openApprovals(cfg.Approvals, cfg.PolicyPath == "", events, s.metrics, cfg.Log); err != nil {
		return nil, err
	}
	s.appr.behindTLSProxy = cfg.HTTP.BehindTLSProxy
	if err := s.appr.startNotifiers(snap.Notifiers(), s.metrics, cfg.Log); err != nil {
		return nil, err
	}
	az, err := openAuthZEN(cfg.AuthZEN, s.spiffe, cfg.PolicyPath == "", cfg.Log)
	if err != nil {
		return nil, err
	}
	var azTLS *tls.Config
	if cfg.AuthZEN.Addr != "" {
		azTLS = s.spiffe.authzenTLS
	}
	redactQuery := redact.NewQuery(cfg.RedactQuery...)
	s.appr.gate.RedactQuery = redactQuery // approvals show the path as the decision log does
	httpTLS, httpTLSFrom := s.httpTLS()
	if s.tracing, err = tracing.Start(context.Background(), cfg.Tracing); err != nil {
		return nil, err
	}
	if cfg.Tracing.PlaintextOffHost() {
		cfg.Log.Warn("exporting spans in plaintext to another host: agents, hosts and decision ids cross the network in the clear",
			"otlp_traces_endpoint", cfg.Tracing.Endpoint)
	}
	s.srv, err = server.Start(server.Config{
		GRPCAddr:     cfg.GRPCAddr,
		GRPCSocket:   cfg.GRPCSocket,
		HTTPAddr:     cfg.HTTPAddr,
		HTTPTLS:      httpTLS,
		Insecure:     cfg.Insecure,
		Store:        s.store,
		Log:          cfg.Log,
		Metrics:      s.metrics,
		Gatherer:     reg,
		Decisions:    decisionSink,
		RedactQuery:  redactQuery,
		CheckTimeout: cfg.CheckTimeout,
		Approvals:    s.appr.gate,
		TLS:          s.spiffe.tls,
		JWTBundles:   s.spiffe.bundles,
		OAuthKeys:    s.oauthKeys,
		APIHandler:   s.register,
		AuthZEN:      az,
		AuthZENAddr:  cfg.AuthZEN.Addr,
		AuthZENTLS:   azTLS,
		Reflection:   cfg.GRPCReflection,
		Tracer:       s.tracing.Tracer(),
	})
	if err != nil {
		return nil, err
	}
	if cfg.PolicyPath != "" {
		s.reloader = &reload.Reloader{
			Path:    cfg.PolicyPath,
			Load:    s.withOAuthKeys(s.appr.withNotifiers(loadFiles)),
			Store:   s.store,
			Log:     cfg.Log,
			Metrics: s.metrics,
		}
	}
	st := snap.Stats()
	source := cfg.PolicyPath
	if source == "" {
		source = "embedded demo policy"
	}
	cfg.Log.Info("agentauthz serving",
		"grpc_addr", s.srv.GRPCAddr().String(), "http_addr", fmt.Sprint(s.srv.HTTPAddr()), "http_tls", httpTLSFrom,
		"authzen_addr", fmt.Sprint(s.srv.AuthZENAddr()), "otlp_traces_endpoint", cfg.Tracing.Endpoint,
		"policy", source, "policy_revision", snap.Revision(),
		"agents", st.Agents, "hosts", st.Hosts, "routes", st.Routes)
	return s, nil
}

// Server is the running listeners.
func (s *Service) Server() *server.Server { return s.srv }

// Run serves until ctx ends or a listener fails, reloading the policy when its files change and
// at each value from reloads (SIGHUP), as well as the HTTP listener's certificate files, then
// drains in-flight checks and closes everything.
func (s *Service) Run(ctx context.Context, reloads <-chan os.Signal) error {
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	if s.certs != nil {
		reloads = s.reloadCerts(watchCtx, reloads)
	}
	go s.appr.maintain(watchCtx, s.metrics, s.log)
	if s.decisions != nil {
		go s.decisions.logHeads(watchCtx, s.cfg.DecisionLogChain.HeadEvery, s.log)
	}
	if s.reloader != nil {
		go func() {
			if err := s.reloader.Watch(watchCtx, reloads); err != nil {
				s.log.Error("cannot watch the policy; reload with SIGHUP only", "error", err.Error())
				for {
					select {
					case <-watchCtx.Done():
						return
					case <-reloads:
						_ = s.reloader.Reload("signal") // recorded and logged by Reload
					}
				}
			}
		}()
	} else {
		go func() {
			for {
				select {
				case <-watchCtx.Done():
					return
				case <-reloads:
					s.log.Info("the embedded demo policy does not reload; serve --policy DIR to edit policy live")
				}
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("draining in-flight checks before exit")
	case err = <-s.srv.Err():
		s.log.Error("listener failed", "error", err.Error())
	}
	s.close()
	return err
}

// reloadCerts reloads the HTTP listener's certificate files at each value from reloads, then
// passes the value on to the policy's reloader.
func (s *Service) reloadCerts(ctx context.Context, reloads <-chan os.Signal) <-chan os.Signal {
	out := make(chan os.Signal, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-reloads:
				_ = s.certs.Reload() // logged by Reload; the last good certificate keeps serving
				select {
				case out <- sig:
				default: // a reload is pending already
				}
			}
		}
	}()
	return out
}

// close drains the server and closes what Start opened, in reverse order.
func (s *Service) close() {
	if s.srv != nil {
		s.srv.Shutdown()
	}
	if s.appr != nil {
		if s.appr.notify != nil {
			s.appr.stopNotifiers()
		}
		if err := s.appr.store.Close(); err != nil {
			s.log.Error("closing the approval store", "error", err.Error())
		}
	}
	if s.spiffe != nil {
		s.spiffe.Close()
	}
	if s.decisions != nil {
		s.decisions.close(s.log)
	}
	if s.tracing != nil {
		// The spans of the last decisions, sent while the receiver answers.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.tracing.Shutdown(ctx); err != nil {
			s.log.Warn("spans not exported at exit", "error", err.Error())
		}
	}
}

// register adds the approval API and console, and the decision log's head, to the HTTP listener.
func (s *Service) register(mux *http.ServeMux) {
	s.appr.register(mux)
	if s.decisions != nil {
		s.decisions.register(mux, s.appr.api.Authenticate)
	}
}

// loadPolicy loads the policy at path, or the embedded demo policy when path is empty.
func loadPolicy(path string, log *slog.Logger) (*policy.Snapshot, error) {
	if path == "" {
		return demo.Load(log)
	}
	return loadFiles(path)
}

// loadFiles reads and compiles the policy at path, reading its credentials.
func loadFiles(path string) (*policy.Snapshot, error) {
	files, err := policy.ReadPath(path)
	if err != nil {
		return nil, err
	}
	return policy.Load(files, policy.Options{})
}

// withOAuthKeys wraps a policy loader so that the keys of a loaded policy's OAuth issuers are
// being fetched before it is put in force.
func (s *Service) withOAuthKeys(load func(string) (*policy.Snapshot, error)) func(string) (*policy.Snapshot, error) {
	return func(path string) (*policy.Snapshot, error) {
		snap, err := load(path)
		if err == nil {
			s.oauthKeys.Prepare(snap.OAuthIssuers())
		}
		return snap, err
	}
}

// IsPolicyProblem reports whether err is a policy that did not load, and its problems.
func IsPolicyProblem(err error) (policy.Problems, bool) {
	var problems policy.Problems
	ok := errors.As(err, &problems)
	return problems, ok
}
