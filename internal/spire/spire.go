// Package spire runs a real SPIRE server and agent (spire-server and spire-agent, Version) as
// child processes: it writes their configurations, starts them, attests the agent with a join
// token, creates registration entries, waits for the Workload API to serve SVIDs, and stops
// them. Tests (internal/spiffetest, compose) and the demo's local stack (cmd/demo-stack) use it;
// internal/spire/spiretest adapts it to tests.
//
//	s, err := spire.Start(ctx, spire.Options{Dir: dir})
//	defer s.Stop()
//	s.Register(ctx, spire.Entry{ID: id, Selectors: []string{"unix:path:" + bin}})
//
// The processes run in their own process groups and die with the caller (internal/childproc).
package spire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/childproc"
)

// stopGrace is how long a SPIRE process has to exit after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// Options configure Start. Dir is required.
type Options struct {
	// Dir holds the configurations, state, sockets and logs. Unix socket paths are short (about
	// 100 bytes): use a short directory, such as one from os.MkdirTemp("", ...).
	Dir string
	// Binaries are the SPIRE programs; zero means FindBinaries.
	Binaries Binaries
	// TrustDomain is the trust domain; zero means acme.internal, the demo's.
	TrustDomain spiffeid.TrustDomain
	// Node is the SPIFFE ID the join token gives the agent's node (an alias of its agent ID), the
	// parent of the entries Register creates; zero means spiffe://TRUST-DOMAIN/node.
	Node spiffeid.ID
	// ServerConfig and AgentConfig render the configurations; nil means DefaultServerConfig and
	// DefaultAgentConfig.
	ServerConfig func(ServerParams) ([]byte, error)
	AgentConfig  func(AgentParams) ([]byte, error)
}

// SPIRE is a running server and agent.
type SPIRE struct {
	Server *Server
	Agent  *Agent
	// TrustDomain and Node are Options'.
	TrustDomain spiffeid.TrustDomain
	Node        spiffeid.ID
}

// Start starts a SPIRE server on a free loopback port and an agent attested to it with a fresh
// join token, and returns once both answer their health checks. ctx bounds the start, not the
// processes' lives: Stop ends them. On error, whatever was started is stopped.
func Start(ctx context.Context, opts Options) (_ *SPIRE, err error) {
	if opts.Dir == "" {
		return nil, errors.New("spire: Options.Dir is empty")
	}
	if opts.Binaries == (Binaries{}) {
		if opts.Binaries, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	if opts.TrustDomain.IsZero() {
		opts.TrustDomain = spiffeid.RequireTrustDomainFromString("acme.internal")
	}
	if opts.Node.IsZero() {
		opts.Node = spiffeid.RequireFromPath(opts.TrustDomain, "/node")
	}
	if opts.ServerConfig == nil {
		opts.ServerConfig = DefaultServerConfig
	}
	if opts.AgentConfig == nil {
		opts.AgentConfig = DefaultAgentConfig
	}
	s := &SPIRE{TrustDomain: opts.TrustDomain, Node: opts.Node}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	sp := ServerParams{
		TrustDomain: opts.TrustDomain.Name(),
		BindAddress: "127.0.0.1",
		BindPort:    port,
		Socket:      filepath.Join(opts.Dir, "server.sock"),
		DataDir:     filepath.Join(opts.Dir, "server"),
	}
	conf, err := opts.ServerConfig(sp)
	if err != nil {
		return nil, err
	}
	if s.Server, err = StartServer(ctx, opts.Binaries.Server, opts.Dir, conf, sp.Socket); err != nil {
		return nil, err
	}

	// The agent trusts the server through the bundle the server prints, not insecure_bootstrap.
	bundle, err := s.Server.Run(ctx, "bundle", "show")
	if err != nil {
		return nil, err
	}
	ap := AgentParams{
		TrustDomain:   opts.TrustDomain.Name(),
		ServerAddress: sp.BindAddress,
		ServerPort:    sp.BindPort,
		Socket:        filepath.Join(opts.Dir, "agent.sock"),
		DataDir:       filepath.Join(opts.Dir, "agent"),
		TrustBundle:   filepath.Join(opts.Dir, "bundle.pem"),
	}
	if err := os.WriteFile(ap.TrustBundle, []byte(bundle), 0o600); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	if ap.JoinToken, err = s.Server.JoinToken(ctx, opts.Node, 10*time.Minute); err != nil {
		return nil, err
	}
	if conf, err = opts.AgentConfig(ap); err != nil {
		return nil, err
	}
	if s.Agent, err = StartAgent(ctx, opts.Binaries.Agent, opts.Dir, conf, ap.Socket); err != nil {
		return nil, err
	}
	return s, nil
}

// Register creates a registration entry whose parent is the agent's node (Options.Node)
// unless e.Parent says otherwise.
func (s *SPIRE) Register(ctx context.Context, e Entry) (string, error) {
	if e.Parent.IsZero() {
		e.Parent = s.Node
	}
	return s.Server.CreateEntry(ctx, e)
}

// Stop stops the agent, then the server. It returns an error if one had to be killed.
func (s *SPIRE) Stop() error {
	var errs []error
	if s.Agent != nil {
		errs = append(errs, s.Agent.Stop())
	}
	if s.Server != nil {
		errs = append(errs, s.Server.Stop())
	}
	return errors.Join(errs...)
}

// Server is a running spire-server.
type Server struct {
	bin    string
	socket string
	proc   *childproc.Proc
}

// StartServer writes config to dir/server.conf, runs spire-server with it (its output in
// dir/spire-server.log), and returns once it answers its health check on socket, the admin API
// socket config names.
func StartServer(ctx context.Context, bin, dir string, config []byte, socket string) (*Server, error) {
	p, err := startProcess(ctx, "spire-server", bin, dir, "server.conf", config, socket)
	if err != nil {
		return nil, err
	}
	return &Server{bin: bin, socket: socket, proc: p}, nil
}

// Socket is the admin API's socket path.
func (s *Server) Socket() string { return s.socket }

// Process is the server's process.
func (s *Server) Process() *childproc.Proc { return s.proc }

// Stop stops the server.
func (s *Server) Stop() error { return s.proc.Stop(stopGrace) }

// Run runs the spire-server command line against this server (-socketPath added) and returns
// its standard output.
func (s *Server) Run(ctx context.Context, args ...string) (string, error) {
	return runCLI(ctx, s.bin, append(args, "-socketPath", s.socket)...)
}

// JoinToken generates a join token for one agent, valid for ttl, whose node gets the alias
// node.
func (s *Server) JoinToken(ctx context.Context, node spiffeid.ID, ttl time.Duration) (string, error) {
	out, err := s.Run(ctx, "token", "generate", "-spiffeID", node.String(), "-ttl", strconv.Itoa(int(ttl/time.Second)))
	if err != nil {
		return "", err
	}
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok || token == "" {
		return "", fmt.Errorf("spire: spire-server token generate printed %q, want Token: <token>", out)
	}
	return token, nil
}

// Entry is a registration entry.
type Entry struct {
	// ID is the SPIFFE ID the entry issues; Parent the node or agent ID it is issued under.
	ID, Parent spiffeid.ID
	// Selectors are type:value pairs, such as unix:path:/usr/bin/envoy or unix:uid:1000.
	Selectors []string
	// X509SVIDTTL is the lifetime of its X.509-SVIDs; zero is the server's default.
	X509SVIDTTL time.Duration
}

var entryID = regexp.MustCompile(`(?m)^Entry ID\s+:\s+(\S+)$`)

// CreateEntry creates a registration entry and returns its entry ID.
func (s *Server) CreateEntry(ctx context.Context, e Entry) (string, error) {
	if e.ID.IsZero() || e.Parent.IsZero() || len(e.Selectors) == 0 {
		return "", fmt.Errorf("spire: entry %+v needs an ID, a parent and selectors", e)
	}
	args := []string{"entry", "create", "-parentID", e.Parent.String(), "-spiffeID", e.ID.String()}
	for _, sel := range e.Selectors {
		args = append(args, "-selector", sel)
	}
	if e.X509SVIDTTL > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(e.X509SVIDTTL/time.Second)))
	}
	out, err := s.Run(ctx, args...)
	if err != nil {
		return "", err
	}
	m := entryID.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("spire: entry create printed no entry ID:\n%s", out)
	}
	return m[1], nil
}

// Agent is a running spire-agent.
type Agent struct {
	bin    string
	socket string
	proc   *childproc.Proc
}

// StartAgent writes config to dir/agent.conf, runs spire-agent with it (its output in
// dir/spire-agent.log), and returns once it answers its health check on socket, the Workload
// API socket config names.
func StartAgent(ctx context.Context, bin, dir string, config []byte, socket string) (*Agent, error) {
	p, err := startProcess(ctx, "spire-agent", bin, dir, "agent.conf", config, socket)
	if err != nil {
		return nil, err
	}
	return &Agent{bin: bin, socket: socket, proc: p}, nil
}

// Socket is the Workload API's socket path.
func (a *Agent) Socket() string { return a.socket }

// Addr is the Workload API's address as go-spiffe and --spiffe-socket take it: unix:///path.
func (a *Agent) Addr() string { return "unix://" + a.socket }

// Process is the agent's process.
func (a *Agent) Process() *childproc.Proc { return a.proc }

// Stop stops the agent.
func (a *Agent) Stop() error { return a.proc.Stop(stopGrace) }

// WaitForSVIDs waits until the Workload API serves the calling process an X.509-SVID for
// every one of ids (the agent learns new entries from the server every few seconds).
func (a *Agent) WaitForSVIDs(ctx context.Context, ids ...spiffeid.ID) error {
	return poll(ctx, "the Workload API to serve "+fmt.Sprint(ids), a.proc, func() error {
		fetch, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		x509Ctx, err := workloadapi.FetchX509Context(fetch, workloadapi.WithAddr(a.Addr()))
		if err != nil {
			return err
		}
		var have []spiffeid.ID
		for _, svid := range x509Ctx.SVIDs {
			have = append(have, svid.ID)
		}
		for _, id := range ids {
			if !slices.Contains(have, id) {
				return fmt.Errorf("it serves %v, not yet %s", have, id)
			}
		}
		return nil
	})
}

// WaitForIssued waits until the agent holds an X.509-SVID for every one of ids, as its log
// says ("Creating X509-SVID"): once it does, a workload entitled to one is served at once. A
// workload that asks earlier is refused, and Envoy, refused its SDS secrets, retries only after
// a back-off; so register Envoy and wait for this before starting it.
func (a *Agent) WaitForIssued(ctx context.Context, ids ...spiffeid.ID) error {
	return poll(ctx, "the SPIRE agent to hold SVIDs for "+fmt.Sprint(ids), a.proc, func() error {
		log, err := os.ReadFile(a.proc.LogPath())
		if err != nil {
			return err
		}
		for _, id := range ids {
			if !issued(string(log), id) {
				return fmt.Errorf("no X509-SVID for %s yet", id)
			}
		}
		return nil
	})
}

// issued reports whether an agent log records creating an X.509-SVID for id.
func issued(log string, id spiffeid.ID) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="Creating X509-SVID"`) && strings.Contains(line, `spiffe_id="`+id.String()+`"`) {
			return true
		}
	}
	return false
}

// startProcess writes a SPIRE configuration into dir, runs bin with it, and waits until it
// answers `healthcheck` on socket.
func startProcess(ctx context.Context, name, bin, dir, confName string, config []byte, socket string) (*childproc.Proc, error) {
	confPath := filepath.Join(dir, confName)
	if err := os.WriteFile(confPath, config, 0o600); err != nil {
		return nil, fmt.Errorf("spire: %w", err)
	}
	p, err := childproc.Start(childproc.Spec{
		Name: name, Path: bin, Args: []string{"run", "-config", confPath},
		Log: filepath.Join(dir, name+".log"),
	})
	if err != nil {
		return nil, err
	}
	err = poll(ctx, name+" healthcheck", p, func() error {
		_, err := runCLI(ctx, bin, "healthcheck", "-socketPath", socket)
		return err
	})
	if err != nil {
		_ = p.Stop(stopGrace)
		return nil, fmt.Errorf("%w\n%s (%s), last lines:\n%s", err, name, p.LogPath(), p.Tail(30))
	}
	return p, nil
}

// poll runs cond until it succeeds, p exits, or ctx ends.
func poll(ctx context.Context, what string, p *childproc.Proc, cond func() error) error {
	delay := 50 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if done, exitErr := p.Exited(); done {
			return fmt.Errorf("spire: waiting for %s: %s exited (%v); last error: %v", what, p.Name(), exitErr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("spire: waiting for %s: %w; last error: %v", what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// runCLI runs a SPIRE command line and returns its standard output.
func runCLI(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("spire: %s %s: %v: %s%s", filepath.Base(bin), strings.Join(args, " "),
			err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("spire: a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
