package policy_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// scalePolicy generates the policy of policytest.ScalePolicy.
func scalePolicy(agents, hosts, routesPerHost int) []policy.File {
	return []policy.File{{Name: "scale.yaml", Data: policytest.ScalePolicy(agents, hosts, routesPerHost)}}
}

const (
	scaleAgents = 10000
	scaleHosts  = 100
	scaleRoutes = 100 // per host: 10,000 routes in all
)

// The generated policy loads and decides correctly; how fast is for the benchmarks.
func TestScalePolicy(t *testing.T) {
	snap, err := policy.Load(scalePolicy(scaleAgents, scaleHosts, scaleRoutes), policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.Stats(); st.Agents != scaleAgents || st.Routes != scaleHosts*scaleRoutes {
		t.Fatalf("Stats = %+v", st)
	}
	for _, c := range []struct {
		agent, host, path string
		code              decision.Code
	}{
		{"a4242", "svc42.scale.internal", "/v1/res58/123?limit=5", decision.CodeAllowed}, // svc42:read
		{"a4242", "svc43.scale.internal", "/v1/res59/123", decision.CodeAllowed},         // svc43:write
		{"a4242", "svc43.scale.internal", "/v1/res58/123", decision.CodeScopeMissing},    // svc43:read
		{"a4242", "svc42.scale.internal", "/v1/res58/x", decision.CodePathParamInvalid},  //
		{"a4242", "svc42.scale.internal", "/v1/res100/1", decision.CodeRouteUnknown},     // no such route
		{"a9999", "svc99.scale.internal", "/v1/res0/1?limit=500", decision.CodeQueryInvalid},
	} {
		d := snap.Decide(scaleRequest(c.agent, c.host, c.path))
		if d.Code != c.code {
			t.Errorf("%s %s%s: %s, want %s", c.agent, c.host, c.path, d.Code, c.code)
		}
	}
}

func scaleRequest(agent, host, path string) *policy.Request {
	return &policy.Request{
		Agent:  spiffeid.RequireFromString("spiffe://scale.internal/agent/" + agent),
		Method: "GET", Host: host, Target: path, Headers: noHeaders{},
	}
}

type noHeaders struct{}

func (noHeaders) Get(string) (string, int) { return "", 0 }

// BenchmarkLoadScale loads and compiles the 10,000-agent, 10,000-route policy; heap-MB is the
// memory the compiled snapshot keeps.
func BenchmarkLoadScale(b *testing.B) {
	files := scalePolicy(scaleAgents, scaleHosts, scaleRoutes)
	var keep *policy.Snapshot
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		keep = snap
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
	b.ReportMetric(float64(len(files[0].Data))/(1<<20), "yaml-MB")
	_ = keep
}

// BenchmarkDecideScale decides on the scale policy; compare with BenchmarkDecideScale/demo-size,
// the same request shape on a policy the size of the demo.
func BenchmarkDecideScale(b *testing.B) {
	for _, size := range []struct {
		name                   string
		agents, hosts, perHost int
	}{
		{"demo-size", 2, 2, 4},
		{"10k-agents-10k-routes", scaleAgents, scaleHosts, scaleRoutes},
	} {
		snap, err := policy.Load(scalePolicy(size.agents, size.hosts, size.perHost), policy.Options{Secrets: policy.Placeholders})
		if err != nil {
			b.Fatal(err)
		}
		agent, host := fmt.Sprintf("a%d", size.agents-1), fmt.Sprintf("svc%d.scale.internal", (size.agents-1)%size.hosts)
		req := scaleRequest(agent, host, fmt.Sprintf("/v1/res%d/4711?limit=10", size.perHost-2))
		if d := snap.Decide(req); !d.Allowed() {
			b.Fatalf("%s: %s %s", size.name, d.Code, d.Detail)
		}
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = snap.Decide(req)
			}
		})
	}
}

// The requests load harnesses send to the generated policy are allowed.
func TestScaleRequestsAllowed(t *testing.T) {
	const agents, hosts, routes = 300, 10, 20
	snap, err := policy.Load(scalePolicy(agents, hosts, routes), policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * agents * routes {
		agent, host, path := policytest.ScaleRequest(i, agents, hosts, routes)
		r := &policy.Request{Agent: spiffeid.RequireFromString(agent), Method: "GET", Host: host, Target: path, Headers: noHeaders{}}
		if d := snap.Decide(r); d.Code != decision.CodeAllowed {
			t.Fatalf("%s %s%s: %s", agent, host, path, d.Code)
		}
	}
}
