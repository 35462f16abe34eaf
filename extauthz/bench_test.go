package extauthz_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

// BenchmarkCheck measures one in-process Check: reading the CheckRequest, deciding and building
// the CheckResponse (gRPC transport excluded). Each case runs as the shipped Envoy configuration
// sends it (header_map, with Envoy's own headers) and, as "/map", with the headers map Envoy
// sends without encode_raw_headers.
func BenchmarkCheck(b *testing.B) {
	store, _ := servertest.DemoStore(b, helpdeskToken)
	srv := extauthz.NewForStore(store)
	const helpdesk, bi = "spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"
	for _, bc := range []struct {
		name  string
		req   extauthz.HTTPRequest
		allow bool
	}{
		{"allow-header-only", extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
			Headers: map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}, true},
		{"allow-query", extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets?status=open&limit=10",
			Headers: map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}, true},
		{"allow-json-4k", extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711/comments",
			Headers: map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35", "content-type": "application/json"},
			Body:    `{"body":"` + strings.Repeat("Restarted the VPN client. ", 150) + `"}`}, true},
		{"deny-scope", extauthz.HTTPRequest{Principal: bi, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
			Headers: map[string]string{"x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}, false},
		{"deny-ambiguous", extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/%2e%2e/admin",
			Headers: map[string]string{"x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}, false},
	} {
		raw := bc.req.CheckRequest()
		mapped := bc.req.CheckRequest()
		extauthz.MapHeaders(mapped)
		for _, shape := range []struct {
			suffix string
			cr     *authv3.CheckRequest
		}{{"", raw}, {"/map", mapped}} {
			cr := shape.cr
			b.Run(bc.name+shape.suffix, func(b *testing.B) {
				ctx := context.Background()
				if resp, err := srv.Check(ctx, cr); err != nil || (resp.GetOkResponse() != nil) != bc.allow {
					b.Fatalf("Check = %v, %v; want allow=%v", resp, err, bc.allow)
				}
				b.ReportAllocs()
				var resp *authv3.CheckResponse
				for b.Loop() {
					resp, _ = srv.Check(ctx, cr)
				}
				_ = resp
			})
		}
	}
}

// BenchmarkCheckMCP measures one in-process Check of an MCP message on the demo policy's
// helpdesk MCP server: a tools/call with about 1 KB of arguments, checked against the tool's
// inputSchema (allowed, and refused for a schema violation), and a tools/list.
func BenchmarkCheckMCP(b *testing.B) {
	store, _ := servertest.DemoStore(b, helpdeskToken)
	srv := extauthz.NewForStore(store)
	const helpdesk = "spiffe://acme.internal/agent/helpdesk"
	comment := strings.Repeat("The VPN gateway was restarted and the user reconnected. ", 18)[:990]
	for _, bc := range []struct {
		name  string
		mcp   policytest.MCP
		allow bool
	}{
		{"tools-call-1k", policytest.MCP{Tool: "add_comment", Arguments: map[string]any{"ticket_id": "4711", "body": comment}}, true},
		{"tools-call-1k-refused", policytest.MCP{Tool: "add_comment", Arguments: map[string]any{"ticket_id": "4711x", "body": comment}}, false},
		{"tools-list", policytest.MCP{Method: "tools/list"}, true},
	} {
		req := extauthz.HTTPRequest{Principal: helpdesk, Host: "mcp.acme.internal", Path: "/mcp",
			Headers: map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}
		if err := bc.mcp.Apply(&req); err != nil {
			b.Fatal(err)
		}
		cr := req.CheckRequest()
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if resp, err := srv.Check(ctx, cr); err != nil || (resp.GetOkResponse() != nil) != bc.allow {
				b.Fatalf("Check = %v, %v; want allow=%v", resp, err, bc.allow)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(req.Body)))
			for b.Loop() {
				_, _ = srv.Check(ctx, cr)
			}
		})
	}
}

// BenchmarkCheckOAuth measures one in-process Check on a host that accepts OAuth access tokens:
// the agent identified by an ES256 token whose key is cached, and, for comparison, by its
// certificate.
func BenchmarkCheckOAuth(b *testing.B) {
	iss := oauthtest.Start(b)
	snap, err := policy.Load([]policy.File{{Name: "oauth.yaml", Data: []byte(oauthtest.Policy(iss.URL))}}, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		b.Fatal(err)
	}
	keys := oauthkeys.New(oauthkeys.Config{})
	srv := extauthz.New(engine.New(engine.Config{Store: policy.NewStore(snap), OAuthKeys: keys}))
	c := iss.Claims(oauthtest.HelpdeskClient, "tickets.read")
	c["exp"] = time.Now().Add(time.Hour).Unix() // valid however long the benchmark runs
	token := iss.Token(b, jose.ES256, c)
	for _, bc := range []struct {
		name string
		req  extauthz.HTTPRequest
	}{
		{"token-es256", extauthz.HTTPRequest{Host: "helpdesk.acme.internal", Path: "/v1/tickets",
			Headers: map[string]string{"authorization": "Bearer " + token, "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}},
		{"certificate", extauthz.HTTPRequest{Principal: oauthtest.Helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
			Headers: map[string]string{"x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35"}}},
	} {
		cr := bc.req.CheckRequest()
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if resp, err := srv.Check(ctx, cr); err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("Check = %v, %v; want an allow", resp, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = srv.Check(ctx, cr)
			}
		})
	}
}
