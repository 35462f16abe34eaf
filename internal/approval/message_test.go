package approval_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// messagePolicy holds payouts, as JSON and as gRPC, for a condition that names the message's
// fields by their proto names, and redacts one of them.
const messagePolicy = `trust_domains: [example.test]
proto_files: [pay.proto]
agents:
  - id: spiffe://example.test/agent/payer
    scopes: [pay]
hosts:
  - name: api.example.test
    routes:
      - name: payout
        method: POST
        path: /v1/payouts
        scope: pay
        body: {message: example.v1.Payout}
        approval:
          approvers: [group:finance]
          when: body.max_amount > 1000
          redact: [/secret_note]
      - name: grpc-payout
        method: POST
        path: /example.v1.Payouts/Create
        scope: pay
        body: {grpc_message: example.v1.Payout}
        approval:
          approvers: [group:finance]
          when: body.max_amount > 1000
          redact: [/secret_note]
`

type headerMap map[string]string

func (h headerMap) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// TestApproversSeeTheMessage: on a route whose body is a protobuf message, approvers see the
// message the upstream acts on under the names the condition and the redaction pointers use
// (max_amount, secret_note), whichever spelling the agent sent (maxAmount, secretNote): the
// redacted field stays redacted, and a gRPC message is shown instead of its size.
func TestApproversSeeTheMessage(t *testing.T) {
	snap, err := policy.Load([]policy.File{{Name: "pay.yaml", Data: []byte(messagePolicy), FSDir: ".",
		FS: fstest.MapFS{"pay.proto": {Data: []byte(`syntax = "proto3";
package example.v1;
message Payout {
  int64 max_amount = 1;
  string secret_note = 2;
}
`)}}}}, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	grpc := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5000)
	grpc = protowire.AppendString(protowire.AppendTag(grpc, 2, protowire.BytesType), "call me at 555-0100")
	frame := make([]byte, 5, 5+len(grpc))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(grpc)))
	frame = append(frame, grpc...)
	for _, tc := range []struct {
		what, target, ct, body string
	}{
		{"proto names", "/v1/payouts", "application/json", `{"max_amount":"5000","secret_note":"call me at 555-0100"}`},
		{"json names", "/v1/payouts", "application/json", `{"maxAmount":5000,"secretNote":"call me at 555-0100"}`},
		{"gRPC", "/example.v1.Payouts/Create", "application/grpc", string(frame)},
	} {
		store := memstore.New()
		g := &approval.Gate{Store: store}
		r := &policy.Request{Agent: spiffeid.RequireFromString("spiffe://example.test/agent/payer"), Method: "POST",
			Host: "api.example.test", Target: tc.target, Headers: headerMap{"content-type": tc.ct}, Body: []byte(tc.body)}
		d := g.Resolve(context.Background(), r, snap.Decide(r))
		if d.Code != decision.CodeApprovalRequired || d.Approval == nil {
			t.Fatalf("%s: %s %+v; want held", tc.what, d.Code, d.Violations)
		}
		a, err := store.Get(context.Background(), d.Approval.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(a.Body, `"max_amount": 5000`) || !strings.Contains(a.Body, `"secret_note": "[redacted]"`) ||
			strings.Contains(a.Body, "555-0100") || strings.Contains(a.Body, "maxAmount") {
			t.Errorf("%s: approvers see\n%s\nwant max_amount 5000 and secret_note redacted", tc.what, a.Body)
		}
	}
}
