package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire"
)

// The envoy mode runs the deployment envoy/front-proxy.yaml describes, on loopback:
//
//	load generator (as the agents, mTLS with their X.509-SVIDs)
//	  → Envoy (front-proxy.yaml: only addresses, ports and the SDS socket rewritten)
//	      → ext_authz over SPIFFE mTLS → the no-op server, or agentauthz (demo policy)
//	      → ext_proc (the response guard, where a response rule applies) → agentauthz
//	      → the trivial upstream (SPIFFE mTLS, as the helpdesk and BI backends)
//
// Real SPIRE (server and agent) issues every SVID: Envoy's and its trust bundle over SDS,
// agentauthz's and the no-op server's over the Workload API, the agents' and the upstream's to
// this program. Five Envoys run side by side, one per set-up, and the load alternates between
// them:
//
//   - none: front-proxy.yaml without its ext_authz and ext_proc filters (the cost of the proxy
//     alone);
//   - noop: with the no-op ext_authz server (the cost of ext_authz itself);
//   - agentauthz-log-off: with agentauthz serving the demo policy without its response rules
//     (policyvariant.go), its decision log off;
//   - agentauthz: the same, decision log on as serve runs by default (stdout, into a file);
//   - agentauthz-guarded: agentauthz serving the demo policy as shipped, decision log on, only
//     on the scenarios whose route has a response rule there: it adds the response guard's
//     ext_proc round trip, which the others never make.
//
// The load generator is vegeta (github.com/tsenart/vegeta), a maintained Go load library:
// closed loop with a fixed number of workers for throughput (-rate=0 -max-workers=N in its own
// terms), and a constant-rate open loop for latency, which starts more workers rather than
// let a slow answer delay the next request. It runs in this process, over HTTP/1.1 keep-alive
// connections (one per worker), each presenting the agent's X.509-SVID: Envoy's listener
// requires a client certificate whose URI SAN is an agent's SPIFFE ID, which wrk cannot present.

// setup is one Envoy and the ext_authz server behind it (none for "none").
type setup struct {
	name   string
	server *childproc.Proc // nil for none
	pprof  string          // agentauthz's profiling address
	envoy  *childproc.Proc
	addr   string // Envoy's agents' listener
	admin  string
	client map[string]*http.Client // per agent
	// guardedOnly: the set-up runs only the scenarios whose route has a response rule.
	guardedOnly bool
}

var (
	envoyID      = spiffeid.RequireFromString("spiffe://acme.internal/envoy")
	agentauthzID = spiffeid.RequireFromString("spiffe://acme.internal/agentauthz")
	helpdeskID   = spiffeid.RequireFromString(helpdeskAgent)
	biID         = spiffeid.RequireFromString(biAgent)
	helpdeskAPI  = spiffeid.RequireFromString("spiffe://acme.internal/api/helpdesk")
	biAPI        = spiffeid.RequireFromString("spiffe://acme.internal/api/bi")
)

// runs reports whether set-up s runs scenario sc.
func (s *setup) runs(sc httpScenario) bool { return sc.guarded || !s.guardedOnly }

// running is the set-ups that run sc, in order.
func running(setups []*setup, sc httpScenario) []*setup {
	var out []*setup
	for _, s := range setups {
		if s.runs(sc) {
			out = append(out, s)
		}
	}
	return out
}

// The set-ups' names.
const (
	setupNone       = "none"
	setupNoop       = "noop"
	setupLogOff     = "agentauthz-log-off"
	setupAgentauthz = "agentauthz"
	setupGuarded    = "agentauthz-guarded"
)

func runEnvoy(args []string) int {
	fs := flag.NewFlagSet("authzbench envoy", flag.ContinueOnError)
	var c common
	c.register(fs, 64)
	concurrency := fs.Int("concurrency", 2, "Envoy worker threads (--concurrency)")
	config := fs.String("config", "envoy/front-proxy.yaml", "the Envoy configuration to run")
	only := fs.String("only", "", "comma-separated scenarios to run (default: all)")
	if fs.Parse(args) != nil {
		return 2
	}
	if err := envoyMode(c, *concurrency, *config, *only); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench envoy:", err)
		return 1
	}
	return 0
}

func envoyMode(c common, concurrency int, configPath, only string) error {
	ctx := context.Background()
	src, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("%v (run from the repository root, or give -config)", err)
	}
	envoyBin, err := envoyproc.Find()
	if err != nil {
		return err
	}
	spireBins, err := spire.FindBinaries()
	if err != nil {
		return err
	}
	// Unix socket paths must be short: a directory in /tmp.
	dir, err := os.MkdirTemp("/tmp", "authzbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	atInterrupt(func() { os.RemoveAll(dir) })
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return err
	}
	if err := c.buildAgentauthz(dir); err != nil {
		return err
	}
	// The policies: the demo's without its response rules, loaded here as serve --policy will
	// load it, and as shipped; each scenario's request decided by both.
	policyDir := filepath.Join(dir, "policy")
	removed, err := writeUnguardedDemo(policyDir)
	if err != nil {
		return fmt.Errorf("writing the demo policy without its response rules: %v", err)
	}
	unguarded, err := loadPolicyDir(policyDir, serveEnv)
	if err != nil {
		return fmt.Errorf("the demo policy without its response rules, in %s, does not load: %v", policyDir, err)
	}
	shipped, err := loadShippedDemo()
	if err != nil {
		return fmt.Errorf("the demo policy: %v", err)
	}
	scenarios := selected(httpScenarios(), only, func(sc httpScenario) string { return sc.name })
	if err := markGuarded(scenarios, shipped, unguarded); err != nil {
		return err
	}
	setups := []*setup{{name: setupNone}, {name: setupNoop}, {name: setupLogOff}, {name: setupAgentauthz}}
	var guarded []string
	for _, sc := range scenarios {
		if sc.guarded {
			guarded = append(guarded, sc.name)
		}
	}
	if len(guarded) > 0 {
		setups = append(setups, &setup{name: setupGuarded, guardedOnly: true})
	}
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		return err
	}
	envoyExe, err := childproc.ProgramBehind(envoyBin, "--version")
	if err != nil {
		return err
	}
	say("machine: %s\n", machine())
	say("%s and %s serve the demo policy without its response rules (%d removed); %s serves it as shipped, on the scenarios with a response rule: %s\n",
		setupLogOff, setupAgentauthz, removed, setupGuarded, orNone(guarded))
	say("starting SPIRE, the upstream, the ext_authz servers and %d Envoys (%d workers each) in %s\n", len(setups), concurrency, dir)

	sp, err := spire.Start(ctx, spire.Options{Dir: dir, Binaries: spireBins})
	if err != nil {
		return err
	}
	defer sp.Stop()
	atInterrupt(func() { _ = sp.Stop() })
	// This program stands for the agents and the upstream APIs, and runs the no-op server,
	// which serves as agentauthz does: it is registered under each of those IDs.
	for _, e := range []struct {
		id  spiffeid.ID
		bin string
	}{{envoyID, envoyExe}, {agentauthzID, c.bin}, {agentauthzID, self}, {helpdeskID, self}, {biID, self}, {helpdeskAPI, self}, {biAPI, self}} {
		if _, err := sp.Register(ctx, spire.Entry{ID: e.id, Selectors: []string{"unix:path:" + e.bin}}); err != nil {
			return err
		}
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := sp.Agent.WaitForSVIDs(wait, agentauthzID, helpdeskID, biID, helpdeskAPI, biAPI); err != nil {
		return err
	}
	if err := sp.Agent.WaitForIssued(wait, envoyID); err != nil {
		return err
	}
	x509ctx, err := workloadapi.FetchX509Context(wait, workloadapi.WithAddr(sp.Agent.Addr()))
	if err != nil {
		return err
	}
	svid := func(id spiffeid.ID) *x509svid.SVID {
		for _, s := range x509ctx.SVIDs {
			if s.ID == id {
				return s
			}
		}
		panic("no SVID for " + id.String()) // WaitForSVIDs saw every one
	}
	bundles := x509ctx.Bundles

	up := &upstream{}
	helpdeskAddr, err := up.serve(svid(helpdeskAPI), bundles)
	if err != nil {
		return err
	}
	biAddr, err := up.serve(svid(biAPI), bundles)
	if err != nil {
		return err
	}

	var procs []*childproc.Proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Stop(10 * time.Second)
		}
	}()
	startProc := func(spec childproc.Spec) (*childproc.Proc, error) {
		spec.Log = filepath.Join(dir, spec.Name+".log")
		p, err := childproc.Start(spec)
		if err == nil {
			procs = append(procs, p)
			atInterrupt(func() { _ = p.Stop(5 * time.Second) })
		}
		return p, err
	}
	serverAddr := map[string]string{}
	for _, s := range setups[1:] {
		addr := freeAddr()
		serverAddr[s.name] = addr
		if s.name == setupNoop {
			if s.server, err = startProc(childproc.Spec{Name: s.name, Path: self, Args: []string{"noop", "-addr", addr,
				"-spiffe-socket", sp.Agent.Addr(), "-id", agentauthzID.String(), "-allowed", envoyID.String()}}); err != nil {
				return err
			}
			continue
		}
		decisionLog := "-"
		if s.name == setupLogOff {
			decisionLog = "off"
		}
		s.pprof = freeAddr()
		httpAddr := freeAddr()
		args := []string{"serve", "--grpc-addr", addr, "--http-addr", httpAddr,
			"--spiffe-socket", sp.Agent.Addr(), "--grpc-allowed-clients", envoyID.String(),
			"--decision-log", decisionLog, "--data-dir", filepath.Join(dir, s.name+"-data"), "--log-level", "error"}
		if s.name != setupGuarded {
			args = append(args, "--policy", policyDir)
		}
		if s.server, err = startProc(childproc.Spec{Name: s.name, Path: c.bin, Args: append(args, c.serveArgs...),
			Env: append(append([]string(nil), serveEnv...), "AGENTAUTHZ_PPROF_ADDR="+s.pprof)}); err != nil {
			return err
		}
		if err := waitFor(ctx, s.name+" /readyz", time.Minute, func() error { return httpOK("http://" + httpAddr + "/readyz") }); err != nil {
			return fmt.Errorf("%v\n%s", err, s.server.Tail(20))
		}
	}
	for _, s := range setups {
		s.addr, s.admin = freeAddr(), freeAddr()
		authz := serverAddr[s.name]
		if authz == "" {
			authz = serverAddr[setupNoop] // the cluster stays, unused
		}
		conf, err := renderFrontProxy(src, s, authz, helpdeskAddr, biAddr, sp.Agent.Socket())
		if err != nil {
			return err
		}
		path := filepath.Join(dir, "envoy-"+s.name+".yaml")
		if err := os.WriteFile(path, conf, 0o600); err != nil {
			return err
		}
		// Envoy's access log (stdout) and its own log go to a file, as a deployment keeps them.
		if s.envoy, err = startProc(childproc.Spec{Name: "envoy-" + s.name, Path: envoyBin, Args: []string{"-c", path,
			"--disable-hot-restart", "--concurrency", strconv.Itoa(concurrency), "--log-level", "error"}}); err != nil {
			return err
		}
	}
	for _, s := range setups {
		if err := waitFor(ctx, "envoy-"+s.name+" to serve", 2*time.Minute, func() error { return envoyReady(s) }); err != nil {
			return fmt.Errorf("%v\n%s", err, s.envoy.Tail(20))
		}
		s.client = map[string]*http.Client{}
		for _, agent := range []spiffeid.ID{helpdeskID, biID} {
			s.client[agent.String()] = agentClient(svid(agent), bundles, s.addr, c.conc)
		}
	}
	for _, sc := range scenarios {
		for _, s := range running(setups, sc) {
			if err := verifyHTTP(s, sc); err != nil {
				return err
			}
		}
	}
	say("ready; load average %s\n", loadAvg())

	var all []result
	say("\nclosed loop through Envoy, %d workers (HTTP/1.1 keep-alive connections), %s per run, %d rounds (median); CPU µs per request from /proc;\n",
		c.conc, c.dur, c.rounds)
	say("log off and log on serve the demo policy without its response rules; guarded serves it as shipped (only where a response rule applies),\n")
	say("g/noop and g/on are its throughput over noop's and log on's: the response guard's cost\n")
	say("%-15s %8s %8s %8s %8s %8s %10s %9s %9s %8s %8s %8s | %-29s | %-29s | %7s %6s  %s\n", "scenario", "none", "noop", "log off", "log on", "guarded",
		"noop/none", "off/noop", "on/noop", "on/off", "g/noop", "g/on", "envoy µs: none noop off on", "server µs: noop off on", "allocs", "GC %", "load")
	saturation := map[string]float64{}
	for _, sc := range scenarios {
		active := running(setups, sc)
		for _, s := range active {
			measureHTTP(s, sc, c.conc, vegeta.Rate{}, time.Second) // warm up: connections, stacks, caches
		}
		rps, envoyCPU, serverCPU := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
		var allocs, gc []float64
		for r := 0; r < c.rounds; r++ {
			for i := range active {
				s := active[(i+r)%len(active)] // each set-up goes first in turn
				res := measureHTTP(s, sc, c.conc, vegeta.Rate{}, c.dur)
				res.Round = r
				all = append(all, res)
				rps[s.name] = append(rps[s.name], res.RPS)
				envoyCPU[s.name] = append(envoyCPU[s.name], res.CPUus["envoy"])
				serverCPU[s.name] = append(serverCPU[s.name], res.CPUus["server"])
				if s.name == setupAgentauthz {
					allocs, gc = append(allocs, res.AllocsPerCheck), append(gc, res.GCShare)
				}
			}
		}
		m := func(name string) float64 { return median(rps[name]) }
		saturation[sc.name] = m(setupNoop)
		say("%-15s %8.0f %8.0f %8.0f %8.0f %8s %10.2f %9.2f %9.2f %8.2f %8s %8s | %6.0f %6.0f %6.0f %6.0f | %8.0f %8.0f %8.0f | %7.1f %6.1f  %s\n", sc.name,
			m(setupNone), m(setupNoop), m(setupLogOff), m(setupAgentauthz), ifRan(sc.guarded, "%.0f", m(setupGuarded)),
			m(setupNoop)/m(setupNone), m(setupLogOff)/m(setupNoop), m(setupAgentauthz)/m(setupNoop), m(setupAgentauthz)/m(setupLogOff),
			ifRan(sc.guarded, "%.2f", m(setupGuarded)/m(setupNoop)), ifRan(sc.guarded, "%.2f", m(setupGuarded)/m(setupAgentauthz)),
			median(envoyCPU[setupNone]), median(envoyCPU[setupNoop]), median(envoyCPU[setupLogOff]), median(envoyCPU[setupAgentauthz]),
			median(serverCPU[setupNoop]), median(serverCPU[setupLogOff]), median(serverCPU[setupAgentauthz]),
			median(allocs), 100*median(gc), loadAvg())
		if c.profile != "" {
			for _, s := range active {
				if s.name != setupAgentauthz && s.name != setupGuarded {
					continue
				}
				t := &target{name: s.name, pprofAddr: s.pprof}
				if err := profileUnderLoad(c, t, scenario{name: sc.name}, func() { measureHTTP(s, sc, c.conc, vegeta.Rate{}, c.dur) }); err != nil {
					fmt.Fprintln(os.Stderr, "authzbench: profile:", err)
				}
			}
		}
	}

	say("\nCPU per request through Envoy, µs (closed loop, median of rounds): what each set-up costs the host, load generator aside;\n")
	say("the capacity ratio is noop's Envoy+server CPU over the set-up's, what throughput would be where Envoy and the server had the cores to themselves\n")
	say("%-15s %-20s %8s %8s %8s %10s %9s\n", "scenario", "set-up", "envoy", "server", "sum", "loadgen", "capacity")
	for _, sc := range scenarios {
		cpu := func(target, k string) float64 {
			return medianOf(all, target, sc.name, func(r result) float64 { return r.CPUus[k] })
		}
		base := cpu(setupNoop, "envoy") + cpu(setupNoop, "server")
		for _, s := range running(setups, sc) {
			sum := cpu(s.name, "envoy") + cpu(s.name, "server")
			say("%-15s %-20s %8.1f %8.1f %8.1f %10.1f %9.2f\n", sc.name, s.name, cpu(s.name, "envoy"), cpu(s.name, "server"), sum,
				cpu(s.name, "loadgen+upstream"), base/sum)
		}
	}

	say("\nopen loop through Envoy at half the noop set-up's saturation rate, %s per run, %d rounds (median of each percentile)\n", c.dur, c.rounds)
	say("%-15s %-20s %7s %8s %9s %9s %9s %12s %12s  %s\n", "scenario", "set-up", "rate", "achieved", "p50 µs", "p99 µs", "p99.9 µs", "+p50 vs noop", "+p99 vs noop", "load")
	for _, sc := range scenarios {
		active := running(setups, sc)
		rate := saturation[sc.name] / 2
		p := map[string][4][]float64{}
		for r := 0; r < c.rounds; r++ {
			for i := range active {
				s := active[(i+r)%len(active)]
				res := measureHTTP(s, sc, c.conc, vegeta.Rate{Freq: int(rate), Per: time.Second}, c.dur)
				res.Round = r
				all = append(all, res)
				v := p[s.name]
				v[0], v[1], v[2], v[3] = append(v[0], res.P50us), append(v[1], res.P99us), append(v[2], res.P999us), append(v[3], res.RPS)
				p[s.name] = v
			}
		}
		for _, s := range active {
			v, n := p[s.name], p[setupNoop]
			say("%-15s %-20s %7.0f %8.0f %9.0f %9.0f %9.0f %12.0f %12.0f  %s\n", sc.name, s.name, rate, median(v[3]), median(v[0]), median(v[1]), median(v[2]),
				median(v[0])-median(n[0]), median(v[1])-median(n[1]), loadAvg())
		}
	}

	say("\nresident memory, MiB: the largest RSS (its anonymous part) sampled during the closed-loop runs, live heap/Go runtime total at the end of the run, median of rounds; the peak RSS over the whole run\n")
	say("%-24s %26s %26s %26s %8s\n", "server", "header-only", "json-4k", "graphql", "peak")
	for _, s := range setups {
		if s.server != nil {
			m, _ := memoryOf(s.server.PID())
			say("%s", memoryRow(all, s.name, []string{"header-only", "json-4k", "graphql"}, m.Peak))
		}
	}
	var servers []string
	for _, s := range setups {
		if s.server != nil {
			servers = append(servers, s.name)
		}
	}
	say("%s", memoryBreakdown(all, servers, []string{"header-only", "json-4k", "graphql"}))
	for _, s := range setups {
		if s.name == setupAgentauthz {
			m, _ := memoryOf(s.envoy.PID())
			say("%-24s %6.1f MiB / %6.1f MiB (for scale)\n", "envoy (agentauthz)", mib(m.RSS), mib(m.Peak))
		}
	}

	bad := int64(0)
	for _, r := range all {
		bad += r.Errors
	}
	say("\nupstream received %d requests; failed requests: %d\n", up.requests.Load(), bad)
	if c.json != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(c.json, b, 0o644); err != nil {
			return err
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d requests failed", bad)
	}
	return nil
}

// ifRan is v in format where the set-up ran, else blank.
func ifRan(ran bool, format string, v float64) string {
	if !ran {
		return ""
	}
	return fmt.Sprintf(format, v)
}

// orNone is names joined with commas, or "none".
func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
