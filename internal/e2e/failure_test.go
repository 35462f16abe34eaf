package e2e_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// The failure tests prove that real Envoy, as shipped, fails closed: whatever happens to
// agentauthz, no request reaches an API without agentauthz's allow. Each logs its counts.

// probe is a request an agent may make, which agentauthz allows when it is up.
type probe struct {
	agent, method, url, body string
}

var allowedProbes = []probe{
	{stack.HelpdeskAgent, "GET", helpdesk + "/v1/tickets?status=open&limit=10", ""},
	{stack.HelpdeskAgent, "GET", helpdesk + "/v1/tickets/4711", ""},
	{stack.HelpdeskAgent, "POST", helpdesk + "/v1/tickets/4711/comments", `{"body":"Looking into it."}`},
	{stack.BIAgent, "POST", biGraphQL, graphqlBody(demoagent.RevenueQuery)},
	{stack.BIAgent, "GET", biGraphQL + "?query=" + url.QueryEscape(demoagent.RevenueQuery), ""},
}

// deniedProbes are refused by the policy.
var deniedProbes = []probe{
	{stack.HelpdeskAgent, "GET", helpdesk + "/v1/tickets?limit=5000", ""},
	{stack.BIAgent, "POST", biGraphQL, graphqlBody(demoagent.EmailQuery)},
}

func upstreamCount(s *stack.Stack) int { return s.Helpdesk.Count() + s.BI.Count() }

// wantEnvoyUnavailable checks Envoy's own answer when the check failed: status_on_error (503),
// no problem details, no decision id, and the access log says ext_authz_error.
func wantEnvoyUnavailable(t testing.TB, s *stack.Stack, a answer) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.problem != nil || a.header.Get(extauthz.DecisionIDHeader) != "" {
		t.Errorf("got %d %q %q, want Envoy's bare 503", a.status, a.header.Get("content-type"), a.body)
	}
}

// TestAgentauthzStopped: with agentauthz stopped, Envoy answers every request with 503
// (status_on_error) and forwards none; once agentauthz is back, requests pass again.
func TestAgentauthzStopped(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	clients := map[string]*http.Client{stack.HelpdeskAgent: s.Client(stack.HelpdeskAgent), stack.BIAgent: s.Client(stack.BIAgent)}
	if a := send(t, clients[stack.HelpdeskAgent], "GET", helpdesk+"/v1/tickets/4711", ""); a.status != 200 {
		t.Fatalf("before the stop: %d %s", a.status, a.body)
	}

	s.Authz.Stop()
	before, decided := upstreamCount(s), len(s.Authz.Decisions.All())
	const rounds = 5
	statuses := map[int]int{}
	for i := range rounds {
		for _, p := range append(allowedProbes, deniedProbes...) {
			a := send(t, clients[p.agent], p.method, p.url, p.body)
			statuses[a.status]++
			wantEnvoyUnavailable(t, s, a)
			if i == 0 && p == allowedProbes[0] {
				l := s.WaitAccessLog(t, func(l map[string]string) bool { return l["response_code"] == "503" })
				if l["response_code_details"] != "ext_authz_error" || l["response_flags"] != "UAEX" || l["upstream_host"] != "" {
					t.Errorf("access log %v, want ext_authz_error, UAEX, no upstream host", l)
				}
			}
		}
	}
	sent := rounds * (len(allowedProbes) + len(deniedProbes))
	forwarded, decisions := upstreamCount(s)-before, len(s.Authz.Decisions.All())-decided
	t.Logf("agentauthz stopped: %d requests sent, answers by status %v, %d reached an API, %d decisions made", sent, statuses, forwarded, decisions)
	if statuses[503] != sent || forwarded != 0 || decisions != 0 {
		t.Errorf("agentauthz stopped: answers %v of %d, %d forwarded, %d decisions; want all 503, none forwarded", statuses, sent, forwarded, decisions)
	}

	// Back up: Envoy reconnects and requests pass again.
	s.Authz.Start()
	start, refused := time.Now(), 0
	for {
		a := send(t, clients[stack.HelpdeskAgent], "GET", helpdesk+"/v1/tickets/4711", "")
		if a.status == 200 {
			break
		}
		wantEnvoyUnavailable(t, s, a)
		refused++
		if time.Since(start) > 30*time.Second {
			t.Fatalf("agentauthz restarted, but requests still fail after 30s: %d %s", a.status, a.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("agentauthz started again: requests pass after %v (%d refused with 503 meanwhile)", time.Since(start).Round(time.Millisecond), refused)
}

// TestAgentauthzSlow: an agentauthz that answers after Envoy's deadline (grpc_service.timeout,
// 250ms) is a failure: Envoy answers 503 and forwards nothing, although agentauthz allowed.
// An answer late by less than the deadline still passes.
func TestAgentauthzSlow(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	clients := map[string]*http.Client{stack.HelpdeskAgent: s.Client(stack.HelpdeskAgent), stack.BIAgent: s.Client(stack.BIAgent)}

	s.Authz.SetDelay(50 * time.Millisecond)
	if a := send(t, clients[stack.HelpdeskAgent], "GET", helpdesk+"/v1/tickets/4711", ""); a.status != 200 {
		t.Fatalf("50ms late, within Envoy's 250ms: %d %s, want 200", a.status, a.body)
	}

	s.Authz.SetDelay(400 * time.Millisecond)
	before, decided := upstreamCount(s), len(s.Authz.Decisions.All())
	const rounds = 2
	statuses := map[int]int{}
	for range rounds {
		for _, p := range allowedProbes {
			a := send(t, clients[p.agent], p.method, p.url, p.body)
			statuses[a.status]++
			wantEnvoyUnavailable(t, s, a)
		}
	}
	sent := rounds * len(allowedProbes)
	// Each late decision is recorded after Envoy gave up on it: wait until all are there.
	for deadline := time.Now().Add(10 * time.Second); len(s.Authz.Decisions.All()) < decided+sent; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agentauthz recorded %d of the %d late decisions within 10s", len(s.Authz.Decisions.All())-decided, sent)
		}
	}
	allows := 0
	for _, d := range s.Authz.Decisions.All()[decided:] {
		if d.Outcome == "allow" {
			allows++
		}
	}
	forwarded := upstreamCount(s) - before
	t.Logf("agentauthz 400ms late: %d requests sent, answers by status %v, agentauthz allowed %d (too late), %d reached an API", sent, statuses, allows, forwarded)
	if statuses[503] != sent || forwarded != 0 {
		t.Errorf("answers %v of %d, %d forwarded; want all 503, none forwarded", statuses, sent, forwarded)
	}
	if allows != sent {
		t.Errorf("agentauthz allowed %d of %d; the test means to show late allows refused", allows, sent)
	}
	l := s.WaitAccessLog(t, func(l map[string]string) bool { return l["response_code"] == "503" })
	if l["response_code_details"] != "ext_authz_error" || l["response_flags"] != "UAEX" {
		t.Errorf("access log %v, want ext_authz_error, UAEX", l)
	}

	s.Authz.SetDelay(0)
	if a := send(t, clients[stack.HelpdeskAgent], "GET", helpdesk+"/v1/tickets/4711", ""); a.status != 200 {
		t.Errorf("on time again: %d %s, want 200", a.status, a.body)
	}
}

// TestReloadAndRestartUnderLoad: 8 agents send requests through Envoy for a few seconds while
// agentauthz's policy is reloaded and agentauthz is restarted twice. Every request that
// reached an API must have been allowed: each API receipt's x-request-id leads, through Envoy's
// access log, to an allow in agentauthz's decision record.
func TestReloadAndRestartUnderLoad(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	strip := stack.DemoFiles(t)
	for i, f := range strip {
		if f.Name == "policy/acme.yaml" {
			strip[i].Data = []byte(strings.Replace(string(f.Data), "        - id: listTickets               # GET /v1/tickets?status=&limit=\n          scope: tickets:read\n", "        - id: listTickets               # GET /v1/tickets?status=&limit=\n          scope: tickets:read\n          strip_unknown_query: true\n", 1))
		}
	}

	const workers = 8
	const duration = 4 * time.Second
	var (
		stop     atomic.Bool
		mu       sync.Mutex
		statuses = map[int]int{}
		errs     = map[string]int{}
		sent     int
	)
	// One request the reloads decide both ways: the demo policy refuses its undeclared
	// parameter (400), the other allows it and strips the parameter (200).
	flip := probe{stack.HelpdeskAgent, "GET", helpdesk + "/v1/tickets?status=open&utm_source=agent", ""}
	flipped := map[int]int{}
	probes := append(append([]probe{flip}, allowedProbes...), deniedProbes...)
	var wg sync.WaitGroup
	for w := range workers {
		agent := stack.HelpdeskAgent
		if w%2 == 1 {
			agent = stack.BIAgent
		}
		c := s.Client(agent)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				p := probes[i%len(probes)]
				if p.agent != agent {
					continue
				}
				req, _ := http.NewRequest(p.method, p.url, strings.NewReader(p.body))
				req.Header.Set("Authorization", "Bearer "+agentToken)
				if p.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := c.Do(req)
				mu.Lock()
				sent++
				if err != nil {
					errs[err.Error()]++
				} else {
					statuses[resp.StatusCode]++
					if p == flip {
						flipped[resp.StatusCode]++
					}
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}

	// While the load runs: reloads and restarts.
	events := []string{}
	at := time.Now()
	step := func(d time.Duration, what string, f func()) {
		time.Sleep(time.Until(at.Add(d)))
		f()
		events = append(events, fmt.Sprintf("%v %s", time.Since(at).Round(time.Millisecond), what))
	}
	step(500*time.Millisecond, "reload (strip_unknown_query)", func() { s.Authz.Reload(strip) })
	step(1000*time.Millisecond, "reload (demo)", func() { s.Authz.ReloadDemo() })
	step(1500*time.Millisecond, "restart", s.Authz.Restart)
	step(2200*time.Millisecond, "reload (strip_unknown_query)", func() { s.Authz.Reload(strip) })
	step(2700*time.Millisecond, "restart", s.Authz.Restart)
	step(3200*time.Millisecond, "reload (demo)", func() { s.Authz.ReloadDemo() })
	time.Sleep(time.Until(at.Add(duration)))
	stop.Store(true)
	wg.Wait()

	// Join every API receipt to an allow.
	received := append(s.Helpdesk.Received(), s.BI.Received()...)
	lines := map[string]map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range s.AccessLog(t) {
			lines[l["request_id"]] = l
		}
		if len(lines) >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	decisions := map[string]string{}
	allows := 0
	for _, d := range s.Authz.Decisions.All() {
		decisions[d.ID] = d.Outcome
		if d.Outcome == "allow" {
			allows++
		}
	}
	withoutAllow, guardRefused := 0, 0
	for _, r := range received {
		l := lines[r.Header.Get("x-request-id")]
		if l == nil || decisions[l["decision_id"]] != "allow" {
			withoutAllow++
			t.Errorf("%s %s reached an API without an allow: access log %v", r.Method, r.URI, l)
			continue
		}
		// A response with a response rule whose guard could not run (agentauthz restarting:
		// 503) or whose rule the policy in force no longer holds (a reload since the request:
		// 502) is refused after the API answered: failing closed, never passed unfiltered.
		if l["response_rule"] != "" && (l["response_code"] == "502" || l["response_code"] == "503") {
			guardRefused++
		}
	}
	ok := 0
	for st, n := range statuses {
		if st < 300 {
			ok += n
		}
	}
	var codes []string
	for st, n := range statuses {
		codes = append(codes, fmt.Sprintf("%d×%d", st, n))
	}
	sort.Strings(codes)
	t.Logf("%d agents for %v; %s", workers, duration, strings.Join(events, ", "))
	t.Logf("the request the reloads decide both ways: answers %v", flipped)
	t.Logf("%d requests sent: answers %s, transport errors %v; %d decisions, %d allows; %d reached an API, %d of them without an allow, %d answers refused by the response guard; %d access log lines",
		sent, strings.Join(codes, " "), errs, len(decisions), allows, len(received), withoutAllow, guardRefused, len(lines))
	if ok+guardRefused != len(received) {
		t.Errorf("%d answers were 2xx and %d refused by the response guard, but the APIs received %d requests", ok, guardRefused, len(received))
	}
	if allows < len(received) {
		t.Errorf("%d allows, %d requests forwarded", allows, len(received))
	}
	if len(received) == 0 || statuses[400]+statuses[403] == 0 {
		t.Errorf("the load was not served: answers %v", statuses)
	}
	if flipped[200] == 0 || flipped[400] == 0 {
		t.Errorf("the reloads did not take effect: %v", flipped)
	}
	for _, r := range received {
		if strings.Contains(r.URI, "utm_source") {
			t.Errorf("%s reached the API with the parameter a policy strips", r.URI)
		}
	}
	if len(errs) > 0 {
		t.Errorf("transport errors: %v", errs)
	}
}
