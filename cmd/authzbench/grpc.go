package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/policytest"
)

func numCPU() int { return runtime.NumCPU() }

type scenario struct {
	name string
	req  *authv3.CheckRequest
	// raw is req marshalled once: the load loop sends these bytes and does not decode the
	// answer (a frame of raw bytes), so the client's cost is the same whichever server answers;
	// decoding the answer is Envoy's cost, not the server's.
	raw []byte
	// alt, when set, are further requests sent in turn with raw (the scale policy's many
	// agents and routes).
	alt [][]byte
}

const (
	helpdeskAgent = "spiffe://acme.internal/agent/helpdesk"
	biAgent       = "spiffe://acme.internal/agent/bi"
)

// json4k is the 4 KB comment the JSON body scenarios send: the demo's comment JSON Schema
// validates it.
var json4k = `{"body":"` + strings.Repeat("Restarted the VPN client. ", 150) + `"}`

// graphqlBody is the BI agent's revenue query, as the demo agent sends it.
var graphqlBody = func() string {
	b, _ := json.Marshal(map[string]string{"query": demoagent.RevenueQuery}) // strings always marshal
	return string(b)
}()

func grpcScenarios() []scenario {
	hdr := map[string]string{
		"authorization":     "Bearer agent-own-token",
		"user-agent":        "agent-runtime/1.0",
		"x-request-id":      "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35",
		"x-forwarded-proto": "https",
		"accept":            "application/json",
	}
	withCT := map[string]string{"content-type": "application/json"}
	for k, v := range hdr {
		withCT[k] = v
	}
	list := []scenario{
		{name: "header-only", req: extauthz.HTTPRequest{Principal: helpdeskAgent, Host: "helpdesk.acme.internal",
			Path: "/v1/tickets/4711", Headers: hdr}.CheckRequest()},
		{name: "json-4k", req: extauthz.HTTPRequest{Principal: helpdeskAgent, Method: "POST", Host: "helpdesk.acme.internal",
			Path: "/v1/tickets/4711/comments", Headers: withCT, Body: json4k}.CheckRequest()},
		{name: "graphql", req: extauthz.HTTPRequest{Principal: biAgent, Method: "POST", Host: "bi.acme.internal",
			Path: "/graphql", Headers: withCT, Body: graphqlBody}.CheckRequest()},
		{name: "mcp-tools-call", req: mcpRequest(hdr).CheckRequest()},
	}
	for i := range list {
		list[i].raw = mustMarshal(list[i].req)
	}
	return list
}

// The scale policy: policytest.ScalePolicy's size.
const scaleAgents, scaleHosts, scaleRoutes = 10000, 100, 100

// scaleScenario cycles through 4096 allowed requests of different agents and routes.
func scaleScenario() scenario {
	var sc scenario
	sc.name = "scale"
	for i := range 4096 {
		agent, host, path := policytest.ScaleRequest(i*7919, scaleAgents, scaleHosts, scaleRoutes)
		req := extauthz.HTTPRequest{Principal: agent, Host: host, Path: path,
			Headers: map[string]string{"x-request-id": fmt.Sprintf("scale-%d", i), "user-agent": "agent-runtime/1.0"}}.CheckRequest()
		if i == 0 {
			sc.req = req
			sc.raw = mustMarshal(req)
		} else {
			sc.alt = append(sc.alt, mustMarshal(req))
		}
	}
	return sc
}

// mcpComment is the 1 KB comment the MCP scenario's add_comment call carries.
var mcpComment = strings.Repeat("The VPN gateway was restarted and the user reconnected. ", 18)[:990]

// mcpRequest is the helpdesk agent's MCP tools/call of add_comment with 1 KB of arguments, as
// the MCP client of the demo sends it: the demo policy checks the JSON-RPC message and the
// arguments against the tool's inputSchema.
func mcpRequest(hdr map[string]string) extauthz.HTTPRequest {
	req := extauthz.HTTPRequest{Principal: helpdeskAgent, Method: "POST", Host: "mcp.acme.internal", Path: "/mcp",
		Headers: map[string]string{}}
	for k, v := range hdr {
		req.Headers[k] = v
	}
	call := policytest.MCP{Tool: "add_comment", Arguments: map[string]any{"ticket_id": "4711", "body": mcpComment}}
	if err := call.Apply(&req); err != nil {
		panic(err) // a tool call with arguments always applies
	}
	return req
}

func mustMarshal(m proto.Message) []byte {
	raw, err := proto.Marshal(m)
	if err != nil {
		panic(err) // a CheckRequest built here always marshals
	}
	return raw
}

// result is one measurement of one target.
type result struct {
	Target   string  `json:"target"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`
	Round    int     `json:"round"`
	RPS      float64 `json:"rps"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	P999us   float64 `json:"p999_us"`
	Errors   int64   `json:"errors"`
	Wrong    int64   `json:"wrong_answers"`
	// CPUus is CPU time per request of each process of the set-up (server, envoy), µs.
	CPUus map[string]float64 `json:"cpu_us_per_request,omitempty"`
	// AllocsPerCheck and GCShare are agentauthz's, from its runtime: heap allocations per
	// request, and the garbage collector's share of the CPU it used.
	AllocsPerCheck float64 `json:"allocs_per_check,omitempty"`
	BytesPerCheck  float64 `json:"bytes_per_check,omitempty"`
	GCShare        float64 `json:"gc_share,omitempty"`
	// RSS is the server's largest resident set during the run, and its anonymous part, MiB.
	RSS     float64 `json:"rss_mib,omitempty"`
	RSSAnon float64 `json:"rss_anon_mib,omitempty"`
	// HeapLive and GoMemory are the runtime's live heap after the last collection and all the
	// memory it holds, at the end of the run, MiB.
	HeapLive float64 `json:"heap_live_mib,omitempty"`
	GoMemory float64 `json:"go_memory_mib,omitempty"`
	// GoClasses is what the runtime's memory is made of at the end of the run (memoryClasses).
	GoClasses map[string]float64 `json:"go_memory_classes,omitempty"`
	Load      string             `json:"load_average"`
}

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

// measureClosed runs the closed loop against s and adds the server's CPU per request and,
// for agentauthz, its runtime's allocations per request and GC share.
func names(targets []*target) []string {
	var l []string
	for _, t := range targets {
		l = append(l, t.name)
	}
	return l
}

func measureClosed(s *target, sc scenario, conc int, dur time.Duration) result {
	cpu0, _ := cpuTime(s.pid())
	var rt0 runtimeStats
	if s.pprofAddr != "" {
		rt0, _ = readRuntime(s.pprofAddr)
	}
	rss := sampleRSS(s.pid())
	res := closedLoop(s.pool, sc, conc, dur)
	rssMax, anon := rss.Max()
	res.RSS, res.RSSAnon = mib(rssMax), mib(anon)
	cpu1, _ := cpuTime(s.pid())
	res.Target = s.name
	n := res.RPS * dur.Seconds()
	res.CPUus = map[string]float64{"server": float64((cpu1 - cpu0).Microseconds()) / n}
	if rt0 != nil {
		if rt1, err := readRuntime(s.pprofAddr); err == nil {
			share, allocs, bytes := gcShare(rt0, rt1)
			res.GCShare, res.AllocsPerCheck, res.BytesPerCheck = share, allocs/n, bytes/n
			res.HeapLive, res.GoMemory = rt1["/gc/heap/live:bytes"]/(1<<20), rt1["/memory/classes/total:bytes"]/(1<<20)
			res.GoClasses = memoryClasses(rt1)
		}
	}
	res.Load = loadAvg()
	return res
}

// profileUnderLoad saves a CPU and an allocation profile of s while load runs.
func profileUnderLoad(c common, s *target, sc scenario, load func()) error {
	if err := os.MkdirAll(c.profile, 0o755); err != nil {
		return err
	}
	seconds := max(1, int(c.dur.Seconds())-1)
	errs := make(chan error, 1)
	go func() {
		errs <- fetchProfile(s.pprofAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), filepath.Join(c.profile, s.name+"-"+sc.name+".cpu.pprof"))
	}()
	load()
	if err := <-errs; err != nil {
		return err
	}
	return fetchProfile(s.pprofAddr, "/debug/pprof/allocs", filepath.Join(c.profile, s.name+"-"+sc.name+".allocs.pprof"))
}

// pool spreads calls over a few HTTP/2 connections, as Envoy does.
type pool struct {
	clients []authv3.AuthorizationClient
	conns   []*grpc.ClientConn
	next    atomic.Uint64
}

// rawCodec passes bytes through: requests are marshalled once, answers not decoded. Of an
// answer it keeps the first two bytes, which say whether it is an OK.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[2]byte)) = [2]byte{}
	copy((*(v.(*[2]byte)))[:], data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// check sends a pre-marshalled CheckRequest and reports whether the answer is an OK: the first
// bytes of a CheckResponse are its status, and an OK status is empty (code 0 is not encoded).
func (p *pool) check(raw []byte) (bool, error) {
	cc := p.conns[p.next.Add(1)%uint64(len(p.conns))]
	var out [2]byte
	err := cc.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", &raw, &out, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return false, err
	}
	// field 1 (status), wire type 2: 0x0a, then its length; an OK status is empty: "0a 00".
	return out == [2]byte{0x0a, 0x00}, nil
}

func dialPool(addr string, n int) *pool {
	p := &pool{}
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err) // grpc.NewClient only fails on a malformed target, which freeAddr never makes
		}
		p.clients = append(p.clients, authv3.NewAuthorizationClient(cc))
		p.conns = append(p.conns, cc)
	}
	return p
}

func (p *pool) client() authv3.AuthorizationClient {
	return p.clients[p.next.Add(1)%uint64(len(p.clients))]
}

// verify checks that agentauthz allows every request of sc.
func verify(p *pool, sc scenario) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reqs := append([][]byte{sc.raw}, sc.alt...)
	for _, raw := range reqs {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return err
		}
		resp, err := p.client().Check(ctx, &req, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("%s: agentauthz denied %s%s: %s", sc.name, req.GetAttributes().GetRequest().GetHttp().GetHost(),
				req.GetAttributes().GetRequest().GetHttp().GetPath(), resp.GetDeniedResponse().GetBody())
		}
	}
	return nil
}

// firstError keeps the first error of a run, to say what failed.
type firstError struct {
	once sync.Once
	err  error
}

func (f *firstError) set(err error) { f.once.Do(func() { f.err = err }) }

func (f *firstError) report(sc scenario, mode string, n int64) {
	if f.err != nil {
		fmt.Fprintf(os.Stderr, "authzbench: %s %s: %d errors, the first: %v\n", sc.name, mode, n, f.err)
	}
}

func closedLoop(p *pool, sc scenario, conc int, dur time.Duration) result {
	var done, errs, wrong atomic.Int64
	var first firstError
	lat := make([][]time.Duration, conc)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := i; ctx.Err() == nil; k += conc {
				raw := sc.raw
				if len(sc.alt) > 0 && k%(len(sc.alt)+1) > 0 {
					raw = sc.alt[k%(len(sc.alt)+1)-1]
				}
				t0 := time.Now()
				ok, err := p.check(raw)
				switch {
				case err != nil:
					errs.Add(1)
					first.set(err)
				case !ok:
					wrong.Add(1)
				}
				lat[i] = append(lat[i], time.Since(t0))
				done.Add(1)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	first.report(sc, "closed loop", errs.Load())
	res := latencies(flatten(lat))
	res.Scenario, res.Mode = sc.name, "closed"
	res.RPS = float64(done.Load()) / elapsed.Seconds()
	res.Errors, res.Wrong = errs.Load(), wrong.Load()
	return res
}

// maxInFlight bounds the requests an open loop has outstanding.
const maxInFlight = 1024

func openLoop(p *pool, sc scenario, rate float64, dur time.Duration) result {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(dur / interval)
	lat := make([]time.Duration, n)
	var errs, wrong atomic.Int64
	var first firstError
	var wg sync.WaitGroup
	// At most maxInFlight requests are outstanding, so that a server slower than the rate (the
	// machine busier than when saturation was measured) fills no memory without bound; a
	// request waiting for a slot is late, and its latency, counted from its scheduled start,
	// says so.
	slots := make(chan struct{}, maxInFlight)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		slots <- struct{}{}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer func() { <-slots; wg.Done() }()
			ok, err := p.check(sc.raw)
			switch {
			case err != nil:
				errs.Add(1)
				first.set(err)
			case !ok:
				wrong.Add(1)
			}
			lat[i] = time.Since(due) // from the scheduled start: stalls are not hidden
		}(i, due)
	}
	wg.Wait()
	first.report(sc, "open loop", errs.Load())
	res := latencies(lat)
	res.Scenario, res.Mode, res.RPS = sc.name, "open", rate
	res.Errors, res.Wrong = errs.Load(), wrong.Load()
	res.Load = loadAvg()
	return res
}

func flatten(ls [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

func latencies(l []time.Duration) result {
	slices.Sort(l)
	return result{P50us: percentile(l, 0.50), P99us: percentile(l, 0.99), P999us: percentile(l, 0.999)}
}
