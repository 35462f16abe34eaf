package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentauthz/agentauthz/demo"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/server"
)

func runServe(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file or directory (default: the embedded demo policy)")
	grpcAddr := fs.String("grpc-addr", server.DefaultGRPCAddr, "gRPC listen address, host:port or unix:/path")
	httpAddr := fs.String("http-addr", server.DefaultHTTPAddr, "HTTP listen address for /healthz and /readyz; empty disables it")
	insecure := fs.Bool("insecure", false, "allow plaintext gRPC on a non-loopback address")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
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

	srv, err := server.Start(server.Config{
		GRPCAddr: *grpcAddr,
		HTTPAddr: *httpAddr,
		Insecure: *insecure,
		Store:    store,
		Log:      log,
	})
	if err != nil {
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

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("draining in-flight checks before exit", "signal", s.String())
		srv.Shutdown()
		return exitOK
	case err := <-srv.Err():
		log.Error("listener failed", "error", err.Error())
		srv.Shutdown()
		return exitUsage
	}
}

// loadPolicy loads the policy at path, or the embedded demo policy when path is empty.
func loadPolicy(path string, log *slog.Logger) (*policy.Snapshot, error) {
	if path == "" {
		return demo.Load(log)
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		return nil, err
	}
	return policy.Load(files, policy.Options{})
}
