package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/service"
)

// serveOptions are the flags of agentauthz serve.
type serveOptions struct {
	cfg         service.Config
	logLevel    string
	memoryLimit server.MemoryLimit
	redact      string
	jwtBundles  multiFlag
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	cfg := &o.cfg
	fs.StringVar(&cfg.PolicyPath, "policy", "", "policy file or directory (default: the embedded demo policy)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", server.DefaultGRPCAddr, "gRPC listen address, host:port or unix:/path")
	fs.Var((*socketModeFlag)(&cfg.GRPCSocket.Mode), "grpc-socket-mode", "permission bits of the unix socket of --grpc-addr unix:/path, in octal: 0660 lets the socket's owner and group connect (connecting needs write permission); default: as the umask leaves them")
	fs.StringVar(&cfg.GRPCSocket.Group, "grpc-socket-group", "", "group (name or numeric gid) the unix socket of --grpc-addr belongs to, with --grpc-socket-mode: share it with the user Envoy runs as; agentauthz must be a member")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", server.DefaultHTTPAddr, "HTTP listen address, host:port, serving health (/healthz), readiness (/readyz), metrics (/metrics), the approvals API (/v1/approvals), the approvers' console (/approvals/), Slack interactions (/v1/slack/interactions), the decision log's head (/v1/decision-log/head) and the AuthZEN API (/access/v1/...); plaintext only on loopback unless --http-tls-cert, --http-tls-spiffe or --insecure; empty disables it")
	fs.StringVar(&cfg.HTTP.TLSCert, "http-tls-cert", "", "PEM certificate (chain) FILE: serve the HTTP listener over TLS 1.2+, reloaded when the file changes and on SIGHUP (with --http-tls-key)")
	fs.StringVar(&cfg.HTTP.TLSKey, "http-tls-key", "", "PEM private key FILE of --http-tls-cert")
	fs.BoolVar(&cfg.HTTP.TLSSPIFFE, "http-tls-spiffe", false, "serve the HTTP listener over TLS 1.2+ with agentauthz's X.509-SVID from --spiffe-socket (for API and AuthZEN clients that verify SVIDs; browsers do not trust it)")
	fs.BoolVar(&cfg.HTTP.BehindTLSProxy, "http-behind-tls-proxy", false, "browsers reach the HTTP listener through a TLS-terminating proxy: the console's session cookie is always Secure; nothing else is trusted from the proxy's headers")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow plaintext gRPC, HTTP and AuthZEN listeners on non-loopback addresses (tokens and sessions cross the network in the clear)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.memoryLimit = server.MemoryLimit{Auto: true}
	fs.Var((*memoryLimitFlag)(&o.memoryLimit), "memory-limit", "soft limit on the memory the Go runtime holds, such as 48MiB (units B, KiB, MiB, GiB, TiB): the garbage collector collects sooner near it; auto takes GOMEMLIMIT when set, else "+
		fmt.Sprintf("%.0f%%", 100*server.AutoMemoryFraction)+" of the cgroup's memory limit, else none; off sets none")
	fs.StringVar(&cfg.DecisionLog, "decision-log", "-", "where the tamper-evident decision log goes: a file, - for stdout, or off")
	dl := &cfg.DecisionLogChain
	fs.StringVar(&dl.KeyFile, "decision-log-key", "", "key FILE (32+ bytes) of a keyed decision log: records carry an HMAC only its holders can make; keep it where the log's writers cannot read it")
	fs.Var((*sizeFlag)(&dl.Rotate.Size), "decision-log-rotate-size", "start a new decision log file, chained to the last, before it grows past SIZE (e.g. 100MiB; 0 never)")
	fs.DurationVar(&dl.Rotate.Every, "decision-log-rotate-every", 0, "start a new decision log file, chained to the last, at the first record this long after the file was started (0 never)")
	fs.DurationVar(&dl.HeadEvery, "decision-log-head-every", service.DefaultHeadEvery, "how often the decision log's head goes to the server log when it moved (negative: at rotation and exit only)")
	fs.StringVar(&o.redact, "redact-query", "", "comma-separated query parameters whose values are never shown (decision log, approvals, notifications): names match case-insensitively, however encoded, after & or ;")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", engine.DefaultTimeout, "deadline of one Check; a later decision is a deny")
	fs.StringVar(&cfg.SPIFFE.Socket, "spiffe-socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "SPIFFE Workload API socket (unix:///path): serve gRPC over mTLS with agentauthz's SVID (and the HTTP listener over TLS with it, with --http-tls-spiffe)")
	fs.StringVar(&cfg.SPIFFE.AllowedClients, "grpc-allowed-clients", "", "comma-separated SPIFFE IDs that may call Check over mTLS (Envoy's)")
	fs.Var(&o.jwtBundles, "jwt-bundle", "TRUST_DOMAIN=FILE: a JWT bundle (JWKS) to validate agents' JWT-SVIDs (repeatable)")
	zf := &cfg.AuthZEN
	fs.StringVar(&zf.Addr, "authzen-addr", "", "host:port of a listener for the AuthZEN API alone (SPIFFE mTLS with --spiffe-socket); the API is always on --http-addr too")
	fs.StringVar(&zf.PEPTokens, "authzen-peps", "", "AuthZEN PEP tokens file: name and token_sha256 of each PEP that may ask about any agent")
	fs.StringVar(&zf.AllowedPEPs, "authzen-allowed-peps", "", "comma-separated SPIFFE IDs that are AuthZEN PEPs when they present their SVID on --authzen-addr")
	fs.StringVar(&zf.PDP, "authzen-pdp-url", "", "the PDP identifier in the AuthZEN metadata document, https://HOST[:PORT] (default: from each request)")
	af := &cfg.Approvals
	fs.StringVar(&af.DataDir, "data-dir", "agentauthz-data", "directory for the embedded approval store")
	fs.StringVar(&af.StoreDSN, "approval-store", "", "PostgreSQL DSN shared by replicas (default: the embedded store in --data-dir)")
	fs.StringVar(&af.Approvers, "approvers", "", "approvers file: name, groups and token_sha256 of each approver")
	fs.StringVar(&af.OIDCIssuer, "oidc-issuer", "", "OIDC issuer URL: approvers may also sign in with its ID tokens (discovery at start-up)")
	fs.StringVar(&af.OIDCClientID, "oidc-client-id", "", "the OIDC client id: the audience ID tokens must carry")
	fs.StringVar(&af.OIDCNameClaim, "oidc-name-claim", "email", "ID token claim naming the approver (user:NAME)")
	fs.StringVar(&af.OIDCGroupsClaim, "oidc-groups-claim", "groups", "ID token claim listing the approver's groups (group:NAME)")
	fs.StringVar(&af.SlackUsers, "slack-users", "", "Slack users file: the Slack member ID, name and groups of each approver who may click Approve or Deny in Slack")
	fs.StringVar(&af.ConsoleURL, "approvals-url", "", "the approval console's address as approvers reach it (https://host[:port][/prefix]), told to MCP clients whose call is held")
	fs.StringVar(&af.StateKeyFile, "mcp-state-key-file", "", "file holding the key (32 bytes or more) that signs the request state of MCP calls held for revision 2026-07-28 clients; replicas must share it (default: a key generated at start)")
	observabilityFlags(fs, cfg)
}

// runServe serves until SIGINT or SIGTERM.
func runServe(o *serveOptions, args []string, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "agentauthz serve: unexpected argument %q\n", args[0])
		return exitUsage
	}
	cfg := o.cfg
	cfg.SPIFFE.JWTBundles = o.jwtBundles
	cfg.RedactQuery = strings.Split(o.redact, ",")
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --log-level: %q is not debug, info, warn or error\n", o.logLevel)
		return exitUsage
	}
	// Check the addresses before loading anything, so that a typo is one line and binds nothing.
	if _, _, err := server.SplitAddr(cfg.GRPCAddr); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --grpc-addr: %v\n", err)
		return exitUsage
	}
	if err := server.CheckSocketAccess(cfg.GRPCAddr, cfg.GRPCSocket); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: --grpc-socket-mode, --grpc-socket-group: %s\n", strings.TrimPrefix(err.Error(), "server: "))
		return exitUsage
	}
	if cfg.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
			fmt.Fprintf(stderr, "agentauthz serve: --http-addr: %q is not host:port\n", cfg.HTTPAddr)
			return exitUsage
		}
	}
	if cfg.AuthZEN.Addr != "" {
		if _, _, err := net.SplitHostPort(cfg.AuthZEN.Addr); err != nil {
			fmt.Fprintf(stderr, "agentauthz serve: --authzen-addr: %q is not host:port\n", cfg.AuthZEN.Addr)
			return exitUsage
		}
	}
	// Flags that go together, and plaintext listeners refused, are usage: nothing is opened.
	if err := cfg.CheckFlags(); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	if err := cfg.Tracing.Check(); err != nil {
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitUsage
	}
	cfg.Log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	server.SetGC()
	limit, from := server.SetMemoryLimit(o.memoryLimit)
	startProfiling()

	svc, err := service.Start(cfg)
	if err != nil {
		if problems, ok := service.IsPolicyProblem(err); ok {
			for _, p := range problems {
				cfg.Log.Error("policy problem", "problem", p)
			}
			fmt.Fprintf(stderr, "agentauthz serve: the policy has %d problem(s); run agentauthz lint %s\n", len(problems), cfg.PolicyPath)
			return exitProblems
		}
		fmt.Fprintf(stderr, "agentauthz serve: %v\n", err)
		return exitError
	}
	cfg.Log.Info("memory limit", "bytes", limit, "from", from) // after Start: a refusal is one line
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx, hup); err != nil {
		return exitError
	}
	return exitOK
}

// socketModeFlag is a unix socket's permission bits in octal (server.ParseSocketMode).
type socketModeFlag fs.FileMode

func (m *socketModeFlag) String() string {
	if *m == 0 {
		return ""
	}
	return fmt.Sprintf("%04o", uint32(*m))
}

func (m *socketModeFlag) Type() string { return "MODE" }

func (m *socketModeFlag) Set(v string) error {
	mode, err := server.ParseSocketMode(v)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "server: "))
	}
	*m = socketModeFlag(mode)
	return nil
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Type() string       { return "string" }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// memoryLimitFlag is --memory-limit as a command-line flag.
type memoryLimitFlag server.MemoryLimit

func (f *memoryLimitFlag) String() string     { return (*server.MemoryLimit)(f).String() }
func (f *memoryLimitFlag) Set(s string) error { return (*server.MemoryLimit)(f).Set(s) }
func (f *memoryLimitFlag) Type() string       { return "size" }
