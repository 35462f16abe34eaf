// Command authzbench measures agentauthz against the physics of its architecture: a no-op
// ext_authz server, built from the same grpc-go with the same transport settings and garbage
// collector target as agentauthz serve (server.GRPCOptions, server.SetGC), that answers OK
// without looking at the request. Every set-up runs as its own process; the harness drives them
// alternately with the same requests and prints ratios measured in one run, since absolute
// figures on a shared machine drift:
//
//   - closed loop at a fixed concurrency: throughput, the median of alternating rounds;
//   - open loop at a fixed rate (half the no-op set-up's saturation throughput): latency
//     p50/p99/p99.9.
//
// Two modes:
//
//	go run ./cmd/authzbench -d 5s -c 32 -rounds 3          # gRPC: Check calls straight to each server
//	go run ./cmd/authzbench envoy -d 5s -c 64 -rounds 3    # HTTP requests through real Envoy
//
// The gRPC mode compares the no-op server with agentauthz (demo policy) with its decision log
// off and on (on is serve's default: JSON lines on stdout, here into a file), and reports each
// agentauthz's resident memory, and that of agentauthz serving a 10,000-agent, 10,000-route
// policy under load. The envoy mode runs envoy/front-proxy.yaml as shipped (only addresses
// rewritten) with SPIRE issuing every SVID, in front of a trivial upstream, once without its
// ext_authz filter, once with the no-op server, twice with agentauthz serving the demo policy
// without its response rules, decision log off and on, and, on the scenarios whose route has a
// response rule, once with agentauthz serving the demo policy as shipped, which adds the
// response guard (see envoy.go and policyvariant.go).
//
// Both modes build agentauthz with -tags pprof, which adds a loopback listener for Go's
// profiles and runtime CPU accounting and changes nothing on the request path: allocations per
// Check and the garbage collector's share of CPU come from the runtime itself. -profile DIR
// also saves CPU and allocation profiles of agentauthz (decision log on; in the envoy mode also
// agentauthz-guarded where it runs) under the load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "noop":
			os.Exit(serveNoop(os.Args[2:]))
		case "envoy":
			os.Exit(runEnvoy(os.Args[2:]))
		}
	}
	os.Exit(runGRPC(os.Args[1:]))
}

// common are the flags both modes take.
type common struct {
	dur     time.Duration
	conc    int
	rounds  int
	bin     string
	profile string
	json    string
	// serveArgs are added to every agentauthz serve the harness starts (-serve-arg).
	serveArgs multiArg
}

// multiArg collects a repeatable flag.
type multiArg []string

func (m *multiArg) String() string     { return strings.Join(*m, " ") }
func (m *multiArg) Set(s string) error { *m = append(*m, s); return nil }

func (c *common) register(fs *flag.FlagSet, conc int) {
	fs.DurationVar(&c.dur, "d", 5*time.Second, "duration of each measurement")
	fs.IntVar(&c.conc, "c", conc, "callers in the closed loop")
	fs.IntVar(&c.rounds, "rounds", 3, "alternating rounds; the median is reported")
	fs.StringVar(&c.bin, "agentauthz", "", "agentauthz binary built with -tags pprof (default: built from ./cmd/agentauthz)")
	fs.StringVar(&c.profile, "profile", "", "save CPU and allocation profiles of agentauthz (decision log on, and agentauthz-guarded in the envoy mode) under load into this directory")
	fs.StringVar(&c.json, "json", "", "also write the results as JSON to this file")
	fs.Var(&c.serveArgs, "serve-arg", "an argument added to every agentauthz serve, such as --memory-limit=32MiB (repeatable)")
}

// buildAgentauthz builds agentauthz with -tags pprof into dir, unless a binary was given.
func (c *common) buildAgentauthz(dir string) error {
	if c.bin != "" {
		abs, err := filepath.Abs(c.bin)
		c.bin = abs
		return err
	}
	c.bin = filepath.Join(dir, "agentauthz")
	if b, err := exec.Command("go", "build", "-tags", "pprof", "-o", c.bin, "./cmd/agentauthz").CombinedOutput(); err != nil {
		return fmt.Errorf("building agentauthz (run from the repository root): %v\n%s", err, b)
	}
	return nil
}

// selected keeps the scenarios only names (comma-separated; all when empty).
func selected[T any](all []T, only string, name func(T) string) []T {
	if only == "" {
		return all
	}
	var out []T
	for _, sc := range all {
		for _, n := range strings.Split(only, ",") {
			if strings.TrimSpace(n) == name(sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// medianOf is the median of f over the closed-loop results of target and scenario.
func medianOf(all []result, target, scenario string, f func(result) float64) float64 {
	var v []float64
	for _, r := range all {
		if r.Mode == "closed" && r.Target == target && r.Scenario == scenario {
			v = append(v, f(r))
		}
	}
	return median(v)
}

// memoryRow is a server's line of the memory table: under each scenario's closed-loop load,
// median of rounds, the largest RSS (its anonymous part) and, at the end of the run, the live
// heap and all the memory Go's runtime holds; then its peak RSS over the whole run. A scenario
// the target did not run is blank.
func memoryRow(all []result, target string, scenarios []string, peak int64) string {
	row := fmt.Sprintf("%-24s", target)
	for _, sc := range scenarios {
		if !slices.ContainsFunc(all, func(r result) bool { return r.Mode == "closed" && r.Target == target && r.Scenario == sc }) {
			row += fmt.Sprintf(" %26s", "")
			continue
		}
		row += fmt.Sprintf(" %6.1f (%5.1f) %5.1f/%5.1f", medianOf(all, target, sc, func(r result) float64 { return r.RSS }),
			medianOf(all, target, sc, func(r result) float64 { return r.RSSAnon }),
			medianOf(all, target, sc, func(r result) float64 { return r.HeapLive }),
			medianOf(all, target, sc, func(r result) float64 { return r.GoMemory }))
	}
	return row + fmt.Sprintf(" %8.1f\n", mib(peak))
}

// memoryClasses sums the runtime's memory classes (runtimeprobe.Metrics) into what the
// breakdown shows, MiB: the heap's objects (live and not yet collected), its other spans in use
// or free but still held, what it returned to the system, goroutine stacks, the runtime's own
// structures, and the heap goal and soft limit that bound it.
func memoryClasses(rt runtimeStats) map[string]float64 {
	m := func(keys ...string) float64 {
		sum := 0.0
		for _, k := range keys {
			sum += rt["/memory/classes/"+k+":bytes"]
		}
		return sum / (1 << 20)
	}
	return map[string]float64{
		"objects":    m("heap/objects"),
		"unused":     m("heap/unused"),
		"free":       m("heap/free"),
		"released":   m("heap/released"),
		"stacks":     m("heap/stacks", "os-stacks"),
		"runtime":    m("metadata/other", "metadata/mspan/inuse", "metadata/mspan/free", "metadata/mcache/inuse", "metadata/mcache/free", "profiling/buckets", "other"),
		"goal":       rt["/gc/heap/goal:bytes"] / (1 << 20),
		"limit":      rt["/gc/gomemlimit:bytes"] / (1 << 20),
		"goroutines": rt["/sched/goroutines:goroutines"],
	}
}

// memoryBreakdown prints, for each target and scenario, the medians of memoryClasses over the
// closed-loop rounds.
func memoryBreakdown(all []result, targets, scenarios []string) string {
	classes := []string{"objects", "unused", "free", "released", "stacks", "runtime", "goal", "limit", "goroutines"}
	out := "\nGo runtime memory at the end of each closed-loop run, MiB (median of rounds): heap objects, heap unused and free (held, may be resident), released to the system, goroutine stacks, runtime structures; heap goal, soft limit (none when huge); goroutines\n"
	out += fmt.Sprintf("%-24s %-14s", "server", "scenario")
	for _, c := range classes {
		out += fmt.Sprintf(" %9s", c)
	}
	out += "\n"
	for _, t := range targets {
		for _, name := range scenarios {
			if !slices.ContainsFunc(all, func(r result) bool { return r.Target == t && r.Scenario == name && r.GoClasses != nil }) {
				continue
			}
			out += fmt.Sprintf("%-24s %-14s", t, name)
			for _, c := range classes {
				v := medianOf(all, t, name, func(r result) float64 { return r.GoClasses[c] })
				if c == "limit" && v > 1<<20 {
					out += fmt.Sprintf(" %9s", "none")
					continue
				}
				out += fmt.Sprintf(" %9.1f", v)
			}
			out += "\n"
		}
	}
	return out
}

func percentile(l []time.Duration, q float64) float64 {
	if len(l) == 0 {
		return 0
	}
	return float64(l[int(q*float64(len(l)-1))].Nanoseconds()) / 1e3
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback always has a free port
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 50ms until it returns nil, or within has passed.
func waitFor(ctx context.Context, what string, within time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// onSignal holds what to undo if the harness is interrupted.
var onSignal struct {
	sync.Mutex
	undo []func()
}

// atInterrupt runs undo, last registered first, if SIGINT or SIGTERM ends the harness.
func atInterrupt(undo func()) {
	onSignal.Lock()
	defer onSignal.Unlock()
	if onSignal.undo == nil {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			onSignal.Lock()
			for i := len(onSignal.undo) - 1; i >= 0; i-- {
				onSignal.undo[i]()
			}
			os.Exit(130)
		}()
	}
	onSignal.undo = append(onSignal.undo, undo)
}

// say prints a line to stdout and, for the record, to the log of the run.
func say(format string, args ...any) {
	fmt.Printf(format, args...)
}

// machine describes where the run happens: CPUs and the load average now.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs online; load average %s", model, numCPU(), loadAvg())
}

func numCPU() int { return runtime.NumCPU() }
