package approval_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/boltstore"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

type benchHeaders map[string]string

func (h benchHeaders) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// BenchmarkGate measures the approval gate on its hot paths: a held request (the approval
// lookup that answers 428 with the same id) and an approved retry (the atomic consume), with the
// in-memory and the embedded store.
func BenchmarkGate(b *testing.B) {
	hold := &decision.Hold{Rule: "reset", Approvers: []string{"group:it-admins"}, ApproveWithin: time.Hour, UseWithin: time.Hour}
	held := decision.Decision{Code: decision.CodeApprovalRequired, Rule: "reset", Hold: hold, Grant: &decision.Grant{}}
	body := []byte(`{"reason":"User locked out after travel","notify_user":true}`)
	agent := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	req := func(h benchHeaders) *policy.Request {
		return &policy.Request{Agent: agent,
			Method: "POST", Host: "helpdesk.acme.internal", Target: "/v1/users/jdoe/password-reset", Headers: h, Body: body}
	}
	for _, st := range []struct {
		name string
		open func(b *testing.B) approval.Store
	}{
		{"memory", func(*testing.B) approval.Store { return memstore.New() }},
		{"embedded", func(b *testing.B) approval.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "approvals.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		ctx := context.Background()
		b.Run(st.name+"/held", func(b *testing.B) {
			g := &approval.Gate{Store: st.open(b)}
			h := benchHeaders{"content-type": "application/json"}
			if d := g.Resolve(ctx, req(h), held); d.Code != decision.CodeApprovalRequired {
				b.Fatal(d.Code)
			}
			b.ReportAllocs()
			for b.Loop() {
				// A request of its own each time, which no policy read before: the gate reads its body.
				if d := g.Resolve(ctx, req(h), held); d.Code != decision.CodeApprovalRequired {
					b.Fatal(d.Code)
				}
			}
		})
		b.Run(st.name+"/approved-retry", func(b *testing.B) {
			store := st.open(b)
			g := &approval.Gate{Store: store}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				// A fresh approval each time: an approval lets one retry through.
				r := req(benchHeaders{"content-type": "application/json", "x-request": b.Name()})
				r.Target = "/v1/users/u" + time.Now().Format("150405.000000000") + "/password-reset"
				d := g.Resolve(ctx, r, held)
				if _, err := store.Decide(ctx, d.Approval.ID, approval.Verdict{Approve: true, By: "alice"}, time.Now()); err != nil {
					b.Fatal(err)
				}
				r.Headers = benchHeaders{"content-type": "application/json", approval.Header: d.Approval.ID}
				b.StartTimer()
				if d := g.Resolve(ctx, r, held); !d.Allowed() {
					b.Fatal(d.Code)
				}
			}
		})
	}
}
