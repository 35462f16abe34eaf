package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/reload"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/policy"
)

func runServe(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file or directory (default: the embedded demo policy)")
	grpcAddr := fs.String("grpc-addr", server.DefaultGRPCAddr, "gRPC listen address, host:port or unix:/path")
	httpAddr := fs.String("http-addr", server.DefaultHTTPAddr, "HTTP listen address for /healthz and /readyz; empty disables it")
	insecure := fs.Bool("insecure", false, "allow plaintext gRPC on a non-loopback address")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	decisionLog := fs.String("decision-log", "-", "where the tamper-evident decision log goes: a file, - for stdout, or off")
	redact := fs.String("redact-query", "", "comma-separated query parameters whose values the decision log never shows")
	checkTimeout := fs.Duration("check-timeout", engine.DefaultTimeout, "deadline of one Check; a later decision is a deny")
	var sf spiffeFlags
	fs.StringVar(&sf.socket, "spiffe-socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "SPIFFE Workload API socket (unix:///path): serve gRPC over mTLS with agentauthz's SVID")
	fs.StringVar(&sf.allowedClients, "grpc-allowed-clients", "", "comma-separated SPIFFE IDs that may call Check over mTLS (Envoy's)")
	fs.Var(&sf.jwtBundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate agents' JWT-SVIDs (repeatable)")
	var af approvalFlags
	fs.StringVar(&af.dataDir, "data-dir", "agentauthz-data", "directory for the embedded approval store")
	fs.StringVar(&af.storeDSN, "approval-store", "", "PostgreSQL DSN shared by replicas (default: the embedded store in --data-dir)")
	fs.StringVar(&af.approvers, "approvers", "", "approvers file: name, groups and token_sha256 of each approver")
	fs.StringVar(&af.oidcIssuer, "oidc-issuer", "", "OIDC issuer URL: approvers may also sign in with its ID tokens (discovery at start-up)")
	fs.StringVar(&af.oidcClientID, "oidc-client-id", "", "the OIDC client id: the audience ID tokens must carry")
	fs.StringVar(&af.oidcNameClaim, "oidc-name-claim", "email", "ID token claim naming the approver (user:NAME)")
	fs.StringVar(&af.oidcGroupsClaim, "oidc-groups-claim", "groups", "ID token claim listing the approver's groups (group:NAME)")
	fs.StringVar(&af.slackUsers, "slack-users", "", "Slack users file: the Slack member ID, name and groups of each approver who may click Approve or Deny in Slack")
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agentauthz serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --log-level: %q is not debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	// Check the addresses before loading anything, so that a typo is one line and binds nothing.
	if _, _, err := server.SplitAddr(*grpcAddr); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --grpc-addr: %v\n", err)
		return exitUsage
	}
	if *httpAddr != "" {
		if _, _, err := net.SplitHostPort(*httpAddr); err != nil {
			fmt.Fprintf(stderr, "agentauthz serve: --http-addr: %q is not host:port\n", *httpAddr)
			return exitUsage
		}
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GOGC") == "" {
		// The live heap is small (the policy, in-flight checks) and nearly every allocation is
		// per request: collecting at 5x the live heap instead of 2x spends far less CPU on GC
		// for a few more MB. GOGC overrides this.
		debug.SetGCPercent(400)
	}

	snap, err := loadPolicy(*policyPath, log)
	if err != nil {
		var problems policy.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				log.Error("policy problem", "problem", p)
			}
			fmt.Fprintf(stderr, "agentauthz serve: the policy has %d problem(s); run agentauthz lint %s\n", len(problems), *policyPath)
		} else {
			fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		}
		return exitUsage
	}
	store := &policy.Store{}
	store.Swap(snap)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	m.Reload(true, snap.Revision())

	decisions, err := openDecisionLog(*decisionLog, log)
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --decision-log: %v\n", err)
		return exitUsage
	}
	var decisionSink engine.DecisionLog // stays a nil interface when the log is off
	var events approval.EventLog
	if decisions != nil {
		decisionSink, events = decisions, decisions
	}
	sp, err := openSPIFFE(context.Background(), sf)
	if err != nil {
		closeDecisionLog(decisions, log)
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	defer sp.Close()
	appr, err := openApprovals(af, *policyPath == "", events, log)
	if err != nil {
		closeDecisionLog(decisions, log)
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	defer appr.store.Close()
	if err := appr.startNotifiers(snap.Notifiers(), reg, log); err != nil {
		closeDecisionLog(decisions, log)
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	defer appr.stopNotifiers()
	srv, err := server.Start(server.Config{
		GRPCAddr:     *grpcAddr,
		HTTPAddr:     *httpAddr,
		Insecure:     *insecure,
		Store:        store,
		Log:          log,
		Metrics:      m,
		Gatherer:     reg,
		Decisions:    decisionSink,
		RedactQuery:  splitSet(*redact),
		CheckTimeout: *checkTimeout,
		Approvals:    appr.gate,
		TLS:          sp.tls,
		JWTBundles:   sp.bundles,
		APIHandler:   appr.register,
	})
	if err != nil {
		closeDecisionLog(decisions, log)
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	st := snap.Stats()
	source := *policyPath
	if source == "" {
		source = "embedded demo policy"
	}
	log.Info("agentauthz serving",
		"grpc_addr", srv.GRPCAddr().String(), "http_addr", fmt.Sprint(srv.HTTPAddr()),
		"policy", source, "policy_revision", snap.Revision(),
		"agents", st.Agents, "hosts", st.Hosts, "routes", st.Routes)

	ctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go appr.maintain(ctx, m, log)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if *policyPath != "" {
		r := &reload.Reloader{
			Path:    *policyPath,
			Load:    appr.withNotifiers(loadFiles),
			Store:   store,
			Log:     log,
			Metrics: m,
		}
		go func() {
			if err := r.Watch(ctx, hup); err != nil {
				log.Error("cannot watch the policy; reload with SIGHUP only", "error", err.Error())
				for range hup {
					_ = r.Reload("signal") // recorded and logged by Reload
				}
			}
		}()
	} else {
		go func() {
			for range hup {
				log.Info("the embedded demo policy does not reload; serve --policy DIR to edit policy live")
			}
		}()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	code := exitOK
	select {
	case s := <-sig:
		log.Info("draining in-flight checks before exit", "signal", s.String())
	case err := <-srv.Err():
		log.Error("listener failed", "error", err.Error())
		code = exitUsage
	}
	srv.Shutdown()
	closeDecisionLog(decisions, log)
	return code
}

// openDecisionLog opens the decision log behind a queue, or returns nil for "off".
func openDecisionLog(where string, log *slog.Logger) (*audit.Queue, error) {
	var l *audit.Log
	switch where {
	case "off", "":
		return nil, nil
	case "-":
		l = audit.New(os.Stdout, audit.Options{})
	default:
		var err error
		if l, err = audit.Open(where, audit.Options{}); err != nil {
			return nil, err
		}
	}
	return audit.NewQueue(l, 4096, log), nil
}

func closeDecisionLog(q *audit.Queue, log *slog.Logger) {
	if q == nil {
		return
	}
	if err := q.Close(); err != nil {
		log.Error("closing the decision log", "error", err.Error())
	}
}

// splitSet reads a comma-separated list into a set.
func splitSet(s string) map[string]bool {
	set := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			set[part] = true
		}
	}
	return set
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
