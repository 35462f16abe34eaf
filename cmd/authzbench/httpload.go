package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// httpScenario is one kind of request, as an agent sends it through Envoy.
type httpScenario struct {
	name   string
	agent  string
	target vegeta.Target
	// guarded: the demo policy as shipped has a response rule for this request (markGuarded).
	guarded bool
}

func httpScenarios() []httpScenario {
	h := func(kv ...string) http.Header {
		hdr := http.Header{"Accept": {"application/json"}, "User-Agent": {"agent-runtime/1.0"}}
		for i := 0; i < len(kv); i += 2 {
			hdr.Set(kv[i], kv[i+1])
		}
		return hdr
	}
	return []httpScenario{
		{name: "header-only", agent: helpdeskAgent, target: vegeta.Target{Method: "GET",
			URL: "https://helpdesk.acme.internal/v1/tickets/4711", Header: h()}},
		{name: "json-4k", agent: helpdeskAgent, target: vegeta.Target{Method: "POST",
			URL: "https://helpdesk.acme.internal/v1/tickets/4711/comments", Body: []byte(json4k), Header: h("Content-Type", "application/json")}},
		{name: "graphql", agent: biAgent, target: vegeta.Target{Method: "POST",
			URL: "https://bi.acme.internal/graphql", Body: []byte(graphqlBody), Header: h("Content-Type", "application/json")}},
		mcpScenario(),
	}
}

// mcpScenario is the MCP tools/call of the gRPC mode (mcpRequest) as an HTTP request to
// mcp.acme.internal, which front-proxy.yaml routes to the helpdesk API's cluster.
func mcpScenario() httpScenario {
	req := mcpRequest(nil)
	hdr := http.Header{"Accept": {"application/json, text/event-stream"}, "User-Agent": {"agent-runtime/1.0"}}
	for k, v := range req.Headers {
		hdr.Set(k, v)
	}
	return httpScenario{name: "mcp-tools-call", agent: helpdeskAgent, target: vegeta.Target{Method: "POST",
		URL: "https://mcp.acme.internal/mcp", Body: []byte(req.Body), Header: hdr}}
}

// agentClient is an HTTP/1.1 client presenting the agent's X.509-SVID, accepting only Envoy's,
// that connects to Envoy at addr whatever host a URL names, with up to conns connections.
func agentClient(svid *x509svid.SVID, bundles *x509bundle.Set, addr string, conns int) *http.Client {
	cfg := tlsconfig.MTLSClientConfig(svid, bundles, tlsconfig.AuthorizeID(envoyID))
	cfg.NextProtos = []string{"http/1.1"}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			TLSClientConfig:     cfg,
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// verifyHTTP sends sc once through s and wants 200 from the upstream.
func verifyHTTP(s *setup, sc httpScenario) error {
	req, err := sc.target.Request()
	if err != nil {
		return err
	}
	resp, err := s.client[sc.agent].Do(req)
	if err != nil {
		return fmt.Errorf("%s through %s: %v", sc.name, s.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != upstreamAnswer(req.URL.Path) {
		return fmt.Errorf("%s through %s: %s %s", sc.name, s.name, resp.Status, body)
	}
	return nil
}

// measureHTTP runs sc through s: closed loop with conc workers when rate is zero, else open
// loop at rate. It adds the CPU each process used per request and, for agentauthz, its
// runtime's allocations per check and GC share.
func measureHTTP(s *setup, sc httpScenario, conc int, rate vegeta.Rate, dur time.Duration) result {
	opts := []func(*vegeta.Attacker){vegeta.Client(s.client[sc.agent]), vegeta.Workers(uint64(conc))}
	mode := "open"
	if rate.Freq == 0 {
		mode = "closed"
		opts = append(opts, vegeta.MaxWorkers(uint64(conc)))
	} else {
		// Enough workers that a request never waits for one at the rate asked, few enough that
		// a machine busier than when saturation was measured fills no memory without bound:
		// the rate achieved then falls short, and the table shows it.
		opts = append(opts, vegeta.MaxWorkers(maxInFlight))
	}
	pids := map[string]int{"envoy": s.envoy.PID(), "loadgen+upstream": os.Getpid()}
	if s.server != nil {
		pids["server"] = s.server.PID()
	}
	cpu0 := map[string]time.Duration{}
	for k, pid := range pids {
		cpu0[k], _ = cpuTime(pid)
	}
	var rt0 runtimeStats
	var rss *rssSampler
	if s.pprof != "" {
		rt0, _ = readRuntime(s.pprof)
	}
	if s.server != nil {
		rss = sampleRSS(s.server.PID())
	}
	atk := vegeta.NewAttacker(opts...)
	var m vegeta.Metrics
	for r := range atk.Attack(vegeta.NewStaticTargeter(sc.target), rate, dur, "") {
		m.Add(r)
	}
	m.Close()
	var maxRSS, anon int64
	if rss != nil {
		maxRSS, anon = rss.Max()
	}
	res := result{RSS: mib(maxRSS), RSSAnon: mib(anon), Target: s.name, Scenario: sc.name, Mode: mode, RPS: m.Throughput, Load: loadAvg(),
		P50us: us(m.Latencies.Quantile(0.5)), P99us: us(m.Latencies.Quantile(0.99)), P999us: us(m.Latencies.Quantile(0.999)),
		Errors: int64(m.Requests) - int64(float64(m.Requests)*m.Success+0.5), CPUus: map[string]float64{}}
	if mode == "open" {
		res.RPS = m.Rate // achieved
	}
	for k, pid := range pids {
		cpu1, _ := cpuTime(pid)
		res.CPUus[k] = float64((cpu1 - cpu0[k]).Microseconds()) / float64(max(m.Requests, 1))
	}
	if rt0 != nil {
		if rt1, err := readRuntime(s.pprof); err == nil {
			share, allocs, bytes := gcShare(rt0, rt1)
			res.GCShare, res.AllocsPerCheck, res.BytesPerCheck = share, allocs/float64(max(m.Requests, 1)), bytes/float64(max(m.Requests, 1))
			res.HeapLive, res.GoMemory = rt1["/gc/heap/live:bytes"]/(1<<20), rt1["/memory/classes/total:bytes"]/(1<<20)
			res.GoClasses = memoryClasses(rt1)
		}
	}
	if len(m.Errors) > 0 {
		fmt.Fprintf(os.Stderr, "authzbench: %s %s %s: %d failed: %v\n", s.name, sc.name, mode, res.Errors, m.Errors)
	}
	return res
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
