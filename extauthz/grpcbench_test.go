package extauthz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// BenchmarkCheckGRPC is one Check over gRPC on loopback, server and callers in one process:
// what Envoy pays per request, transport included.
func BenchmarkCheckGRPC(b *testing.B) {
	store, _ := servertest.DemoStore(b, helpdeskToken)
	client := servertest.Client(b, servertest.Start(b, server.Config{Store: store}))
	const helpdesk = "spiffe://acme.internal/agent/helpdesk"
	hdr := map[string]string{"authorization": "Bearer agent-own-token", "x-request-id": "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35",
		"user-agent": "agent-runtime/1.0", "content-type": "application/json"}
	for _, bc := range []struct {
		name string
		req  extauthz.HTTPRequest
	}{
		{"header-only", extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711", Headers: hdr}},
		{"json-4k", extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711/comments",
			Headers: hdr, Body: `{"body":"` + strings.Repeat("Restarted the VPN client. ", 150) + `"}`}},
	} {
		cr := bc.req.CheckRequest()
		b.Run(bc.name, func(b *testing.B) {
			if resp, err := client.Check(context.Background(), cr); err != nil || resp.GetOkResponse() == nil {
				b.Fatalf("Check = %v, %v", resp, err)
			}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.Check(context.Background(), cr); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
