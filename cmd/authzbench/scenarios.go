package main

import (
	"encoding/json"
	"fmt"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/policytest"
)

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
