package approval_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// BenchmarkHeldRequest measures a held JSON request through the whole pipeline (the engine:
// identity, the policy's checks of path, query and body, the approval condition, then the
// gate's digest, display copy and store), as every front door runs it, with the in-memory
// store:
//
//   - transfer/*: a JSON Schema body, held when the condition on the body holds, with redacted
//     fields (the approval tests' policy);
//   - reset-password/*: a protobuf message body, always held (the demo policy);
//   - */again: the agent repeating a request that is held already, answered from its approval;
//   - */new: a request held for the first time, which creates an approval.
func BenchmarkHeldRequest(b *testing.B) {
	for _, bc := range []struct {
		name, dir, agent, host, target, body string
	}{
		{"transfer", "approvaltest/testdata/policy", "spiffe://example.test/agent/payer", "api.example.test", "/v1/transfers",
			`{"amount":5000,"to":"DE89 3704 0044 0532 0130 00","secret":"s3cr3t","card":{"number":"4111111111111111","exp":"12/29"},"note":"Invoice 2026-0042, instalment 0"}`},
		{"reset-password", "../demo/policy", "spiffe://acme.internal/agent/helpdesk", "helpdesk.acme.internal", "/v1/users/jdoe/password-reset",
			`{"notify_user":true,"reason":"User locked out after travel; verified by phone callback 0"}`},
	} {
		files, err := policy.ReadPath(bc.dir)
		if err != nil {
			b.Fatal(err)
		}
		snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		request := func(body []byte) *engine.Request {
			return &engine.Request{Principal: bc.agent, Method: "POST", Host: bc.host, Target: bc.target,
				Headers: benchHeaders{"content-type": "application/json"}, Body: body}
		}
		b.Run(bc.name+"/again", func(b *testing.B) {
			e := engine.New(engine.Config{Store: policy.NewStore(snap), Approvals: &approval.Gate{Store: memstore.New()}})
			body := []byte(bc.body)
			if res := e.Decide(ctx, request(body)); res.Decision.Code != decision.CodeApprovalRequired {
				b.Fatalf("%s: %s %s %+v", bc.name, res.Decision.Code, res.Decision.Detail, res.Decision.Violations)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if res := e.Decide(ctx, request(body)); res.Decision.Code != decision.CodeApprovalRequired {
					b.Fatal(res.Decision.Code)
				}
			}
		})
		b.Run(bc.name+"/new", func(b *testing.B) {
			e := engine.New(engine.Config{Store: policy.NewStore(snap), Approvals: &approval.Gate{Store: memstore.New()}})
			base := []byte(bc.body[:len(bc.body)-len(`0"}`)]) // each body another: "… instalment 1", 2, …
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				body := append(strconv.AppendInt(append([]byte(nil), base...), int64(n), 10), '"', '}')
				if res := e.Decide(ctx, request(body)); res.Decision.Code != decision.CodeApprovalRequired {
					b.Fatal(res.Decision.Code)
				}
			}
		})
	}
}
