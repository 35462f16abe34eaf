package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/agentauthz/agentauthz/internal/policytest"
)

// target is a process answering Check: the no-op server or an agentauthz.
type target struct {
	name      string
	cmd       *exec.Cmd
	grpcAddr  string
	pprofAddr string // agentauthz only
	pool      *pool
}

func (s *target) pid() int { return s.cmd.Process.Pid }

func runGRPC(args []string) int {
	fs := flag.NewFlagSet("authzbench", flag.ContinueOnError)
	var c common
	c.register(fs, 32)
	conns := fs.Int("conns", 2, "HTTP/2 connections to each server, as Envoy keeps")
	scale := fs.Bool("scale", true, "also measure agentauthz's memory with the 10,000-agent, 10,000-route policy")
	only := fs.String("only", "", "comma-separated scenarios to run (default: all)")
	latency := fs.Bool("latency", true, "also run the open loop for latency (false: throughput, CPU and memory only)")
	if fs.Parse(args) != nil {
		return 2
	}
	dir, err := os.MkdirTemp("", "authzbench")
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	atInterrupt(func() { os.RemoveAll(dir) })
	if err := c.buildAgentauthz(dir); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	debug.SetGCPercent(400) // the load generator's own collections add to every latency
	say("machine: %s\n", machine())

	var servers []*target
	defer func() {
		for _, s := range servers {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	}()
	start := func(s *target, cmd *exec.Cmd) error {
		s.cmd = cmd
		servers = append(servers, s)
		if err := cmd.Start(); err != nil {
			return err
		}
		atInterrupt(func() { _ = cmd.Process.Kill() })
		s.pool = dialPool(s.grpcAddr, *conns)
		return nil
	}
	noop := &target{name: "noop", grpcAddr: freeAddr(), pprofAddr: freeAddr()}
	self, _ := os.Executable()
	noopCmd := exec.Command(self, "noop", "-addr", noop.grpcAddr, "-pprof", noop.pprofAddr)
	noopCmd.Stderr = os.Stderr
	if err := start(noop, noopCmd); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	startAuthz := func(name, decisionLog string, extra ...string) (*target, error) {
		s := &target{name: name, grpcAddr: freeAddr(), pprofAddr: freeAddr()}
		httpAddr := freeAddr()
		args := append([]string{"serve", "--grpc-addr", s.grpcAddr, "--http-addr", httpAddr, "--decision-log", decisionLog,
			"--data-dir", filepath.Join(dir, name+"-data"), "--log-level", "error"}, extra...)
		args = append(args, c.serveArgs...)
		cmd := exec.Command(c.bin, args...)
		cmd.Env = append(os.Environ(), "AGENTAUTHZ_HELPDESK_TOKEN=bench-token", "AGENTAUTHZ_DEMO_APPROVER_TOKEN=bench",
			"AGENTAUTHZ_PPROF_ADDR="+s.pprofAddr)
		// The decision log on stdout, as serve's default writes it, into a file as a container
		// runtime would; the server log (stderr) beside it.
		out, err := os.Create(filepath.Join(dir, name+".out"))
		if err != nil {
			return nil, err
		}
		defer out.Close()
		cmd.Stdout = out
		cmd.Stderr = os.Stderr
		if err := start(s, cmd); err != nil {
			return nil, err
		}
		return s, waitFor(context.Background(), name+" /readyz", 60*time.Second, func() error { return httpOK("http://" + httpAddr + "/readyz") })
	}
	logOff, err := startAuthz("agentauthz-log-off", "off")
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	logOn, err := startAuthz("agentauthz", "-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	targets := []*target{noop, logOff, logOn}

	var all []result
	say("\nclosed loop, %d callers, %d connections per server, %s per run, %d rounds (median); CPU per check from /proc\n", c.conc, *conns, c.dur, c.rounds)
	say("%-12s %10s %10s %10s %9s %9s %9s %8s %8s %8s %13s %11s  %s\n", "scenario", "noop rps", "log off", "log on",
		"off/noop", "on/noop", "on/off", "noop µs", "off µs", "on µs", "allocs noop/on", "GC % noop/on", "load")
	saturation := map[string]float64{}
	scenarios := selected(grpcScenarios(), *only, func(sc scenario) string { return sc.name })
	for _, sc := range scenarios {
		for _, s := range targets {
			closedLoop(s.pool, sc, c.conc, time.Second) // warm up: connections, stacks, caches
		}
		for _, s := range targets[1:] {
			if err := verify(s.pool, sc); err != nil {
				fmt.Fprintln(os.Stderr, "authzbench:", err)
				return 1
			}
		}
		rps, cpu := map[string][]float64{}, map[string][]float64{}
		var allocs, gc, noopAllocs, noopGC []float64
		for r := 0; r < c.rounds; r++ {
			for i := range targets {
				s := targets[(i+r)%len(targets)] // each target goes first in turn
				res := measureClosed(s, sc, c.conc, c.dur)
				res.Round = r
				all = append(all, res)
				rps[s.name] = append(rps[s.name], res.RPS)
				cpu[s.name] = append(cpu[s.name], res.CPUus["server"])
				if s == logOn {
					allocs, gc = append(allocs, res.AllocsPerCheck), append(gc, res.GCShare)
				}
				if s == noop {
					noopAllocs, noopGC = append(noopAllocs, res.AllocsPerCheck), append(noopGC, res.GCShare)
				}
			}
		}
		n, off, on := median(rps["noop"]), median(rps[logOff.name]), median(rps[logOn.name])
		saturation[sc.name] = n
		say("%-12s %10.0f %10.0f %10.0f %9.2f %9.2f %9.2f %8.1f %8.1f %8.1f %6.1f/%6.1f %5.1f/%5.1f  %s\n", sc.name, n, off, on, off/n, on/n, on/off,
			median(cpu["noop"]), median(cpu[logOff.name]), median(cpu[logOn.name]), median(noopAllocs), median(allocs),
			100*median(noopGC), 100*median(gc), loadAvg())
		if c.profile != "" {
			for _, s := range targets {
				if err := profileUnderLoad(c, s, sc, func() { measureClosed(s, sc, c.conc, c.dur) }); err != nil {
					fmt.Fprintln(os.Stderr, "authzbench: profile:", err)
				}
			}
		}
	}

	say("\ncapacity from CPU per check (server only, client aside): noop's server CPU over agentauthz's\n")
	say("%-12s %9s %9s\n", "scenario", "log off", "log on")
	for _, sc := range scenarios {
		cpu := func(target string) float64 {
			return medianOf(all, target, sc.name, func(r result) float64 { return r.CPUus["server"] })
		}
		say("%-12s %9.2f %9.2f\n", sc.name, cpu("noop")/cpu(logOff.name), cpu("noop")/cpu(logOn.name))
	}

	if *latency {
		say("\nopen loop at half the no-op saturation rate, %s per run, %d rounds (median of each percentile)\n", c.dur, c.rounds)
		say("%-12s %-20s %8s %10s %10s %10s  %s\n", "scenario", "target", "rate", "p50 µs", "p99 µs", "p99.9 µs", "load")
		for _, sc := range scenarios {
			rate := saturation[sc.name] / 2
			p := map[string][3][]float64{}
			for r := 0; r < c.rounds; r++ {
				for i := range targets {
					s := targets[(i+r)%len(targets)]
					res := openLoop(s.pool, sc, rate, c.dur)
					res.Target, res.Round = s.name, r
					all = append(all, res)
					v := p[s.name]
					v[0], v[1], v[2] = append(v[0], res.P50us), append(v[1], res.P99us), append(v[2], res.P999us)
					p[s.name] = v
				}
			}
			for _, s := range targets {
				v := p[s.name]
				say("%-12s %-20s %8.0f %10.0f %10.0f %10.0f  %s\n", sc.name, s.name, rate, median(v[0]), median(v[1]), median(v[2]), loadAvg())
			}
		}
	}

	say("\nresident memory, MiB: the largest RSS (its anonymous part) sampled during the closed-loop runs, live heap/Go runtime total at the end of the run, median of rounds; the peak RSS over the whole run\n")
	say("%-24s %26s %26s %26s %8s\n", "server", "header-only", "json-4k", "graphql", "peak")
	for _, s := range targets {
		m, _ := memoryOf(s.pid())
		say("%s", memoryRow(all, s.name, []string{"header-only", "json-4k", "graphql"}, m.Peak))
	}
	say("%s", memoryBreakdown(all, names(targets), []string{"header-only", "json-4k", "graphql"}))
	if *scale {
		path := filepath.Join(dir, "scale.yaml")
		if err := os.WriteFile(path, policytest.ScalePolicy(scaleAgents, scaleHosts, scaleRoutes), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 2
		}
		big, err := startAuthz("agentauthz-10k", "-", "--policy", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "authzbench: the scale policy:", err)
			return 2
		}
		sc := scaleScenario()
		if err := verify(big.pool, sc); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 1
		}
		idle, _ := memoryOf(big.pid())
		for range c.rounds {
			all = append(all, measureClosed(big, sc, c.conc, c.dur))
		}
		m, _ := memoryOf(big.pid())
		say("%s", memoryRow(all, big.name, []string{"scale"}, m.Peak))
		say("  (10,000 agents, 10,000 routes: %.1f MiB (%.1f anonymous) with the policy loaded, before the load; under load %.0f rps, %.1f allocs/check, GC %.1f%%)\n",
			mib(idle.RSS), mib(idle.Anon), medianOf(all, big.name, "scale", func(r result) float64 { return r.RPS }),
			medianOf(all, big.name, "scale", func(r result) float64 { return r.AllocsPerCheck }),
			100*medianOf(all, big.name, "scale", func(r result) float64 { return r.GCShare }))
	}

	bad := int64(0)
	for _, r := range all {
		bad += r.Errors + r.Wrong
	}
	say("\nerrors and wrong answers: %d\n", bad)
	if c.json != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(c.json, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 2
		}
	}
	if bad > 0 {
		return 1
	}
	return 0
}

func names(targets []*target) []string {
	var l []string
	for _, t := range targets {
		l = append(l, t.name)
	}
	return l
}
