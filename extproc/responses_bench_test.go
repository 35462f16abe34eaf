package extproc_test

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// BenchmarkResponseRule is one guarded answer over gRPC on loopback, as Envoy sends it: a stream
// with the response headers, then the buffered body, each message carrying ext_authz's
// metadata; "reduce" removes the requester's e-mail and phone, "pass" has nothing to remove.
func BenchmarkResponseRule(b *testing.B) {
	ps, rule, _ := startResponses(b, 0)
	md := ruled(rule).MetadataContext
	const clean = `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada"}}`
	for _, bc := range []struct{ name, body string }{{"reduce", fullTicket}, {"pass", clean}} {
		msgs := []*extprocv3.ProcessingRequest{
			headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json", "content-length", itoa(len(bc.body))),
			bodyMsg(md, bc.body),
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if resps := ps.exchange(b, msgs...); len(resps) != 2 {
					b.Fatalf("%d answers", len(resps))
				}
			}
		})
	}
}
