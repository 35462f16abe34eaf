package policytest

import (
	"fmt"
	"strings"
)

// ScaleTrustDomain is the trust domain of ScalePolicy's agents.
const ScaleTrustDomain = "scale.internal"

// ScalePolicy generates a policy of agents agents and hosts×routesPerHost routes, for
// benchmarks of policy size: agent aN (spiffe://scale.internal/agent/aN) holds svcH:read for
// H = N mod hosts and svcH:write for the next host; host svcH.scale.internal has routes
// GET /v1/resR/{id} (id: 1 to 12 digits; query limit: 1 to 100), even R needing read, odd R
// write. ScaleRequest names an allowed request.
func ScalePolicy(agents, hosts, routesPerHost int) []byte {
	var b strings.Builder
	b.WriteString("trust_domains: [" + ScaleTrustDomain + "]\nagents:\n")
	for a := 0; a < agents; a++ {
		fmt.Fprintf(&b, "  - id: spiffe://scale.internal/agent/a%d\n    scopes: [svc%d:read, svc%d:write]\n", a, a%hosts, (a+1)%hosts)
	}
	b.WriteString("hosts:\n")
	for h := 0; h < hosts; h++ {
		fmt.Fprintf(&b, "  - name: svc%d.scale.internal\n    remove_headers: [authorization]\n    routes:\n", h)
		for r := 0; r < routesPerHost; r++ {
			scope := "read"
			if r%2 == 1 {
				scope = "write"
			}
			fmt.Fprintf(&b, "      - name: h%d-r%d\n        method: GET\n        path: /v1/res%d/{id}\n        scope: svc%d:%s\n"+
				"        params:\n          id: {type: string, pattern: \"[0-9]{1,12}\"}\n"+
				"        query:\n          limit: {type: integer, minimum: 1, maximum: 100}\n", h, r, r, h, scope)
		}
	}
	return []byte(b.String())
}

// ScaleRequest is the i-th of a cycle of requests ScalePolicy allows: agent, host and path
// with query.
func ScaleRequest(i, agents, hosts, routesPerHost int) (agent, host, path string) {
	a := i % agents
	r := 2 * ((i / agents) % ((routesPerHost + 1) / 2)) // an even route: read
	return fmt.Sprintf("spiffe://scale.internal/agent/a%d", a), fmt.Sprintf("svc%d.scale.internal", a%hosts),
		fmt.Sprintf("/v1/res%d/%d?limit=%d", r, 1000+i%9000, 1+i%100)
}
