package approval_test

import (
	"context"
	"encoding/binary"
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

// transferPolicy holds every transfer, as gRPC and as JSON.
const transferPolicy = `trust_domains: [example.test]
proto_files: [transfer.proto]
agents:
  - id: spiffe://example.test/agent/payer
    scopes: [pay]
hosts:
  - name: api.example.test
    routes:
      - name: grpc-transfer
        method: POST
        path: /example.v1.Transfers/Create
        scope: pay
        body: {grpc_message: example.v1.Transfer}
        approval:
          approvers: [group:finance]
      - name: transfer
        method: POST
        path: /v1/transfers
        scope: pay
        body: {message: example.v1.Transfer}
        approval:
          approvers: [group:finance]
`

const transferProto = `syntax = "proto3";
package example.v1;
message Transfer {
  int64 amount = 1;
  string to = 2;
  map<string, string> labels = 3;
  repeated int64 ids = 4;
  double rate = 5;
}
`

// transferField is one field of a Transfer on the wire.
type transferField func([]byte) []byte

func amount(n uint64) transferField {
	return func(b []byte) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), n)
	}
}

func to(s string) transferField {
	return func(b []byte) []byte {
		return protowire.AppendString(protowire.AppendTag(b, 2, protowire.BytesType), s)
	}
}

func label(k, v string) transferField {
	return func(b []byte) []byte {
		var e []byte
		e = protowire.AppendString(protowire.AppendTag(e, 1, protowire.BytesType), k)
		e = protowire.AppendString(protowire.AppendTag(e, 2, protowire.BytesType), v)
		return protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), e)
	}
}

// ids appends the ids packed, or one field each.
func ids(packed bool, ns ...uint64) transferField {
	return func(b []byte) []byte {
		if !packed {
			for _, n := range ns {
				b = protowire.AppendVarint(protowire.AppendTag(b, 4, protowire.VarintType), n)
			}
			return b
		}
		var p []byte
		for _, n := range ns {
			p = protowire.AppendVarint(p, n)
		}
		return protowire.AppendBytes(protowire.AppendTag(b, 4, protowire.BytesType), p)
	}
}

// grpcFrame is one uncompressed gRPC frame holding the fields in the order given.
func grpcFrame(fields ...transferField) []byte {
	var m []byte
	for _, f := range fields {
		m = f(m)
	}
	frame := make([]byte, 5, 5+len(m))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(m)))
	return append(frame, m...)
}

func loadTransferPolicy(t *testing.T) *policy.Snapshot {
	t.Helper()
	snap, err := policy.Load([]policy.File{{Name: "transfer.yaml", Data: []byte(transferPolicy), FSDir: ".",
		FS: fstest.MapFS{"transfer.proto": {Data: []byte(transferProto)}}}}, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// holdDigest holds one request with a fresh store and returns its approval's digest.
func holdDigest(t *testing.T, snap *policy.Snapshot, target, ct string, body []byte) string {
	t.Helper()
	store := memstore.New()
	g := &approval.Gate{Store: store}
	r := transferRequest(target, ct, body, nil)
	d := g.Resolve(context.Background(), r, snap.Decide(r))
	if d.Code != decision.CodeApprovalRequired || d.Approval == nil {
		t.Fatalf("%s %x: %s %+v; want held", target, body, d.Code, d.Violations)
	}
	a, err := store.Get(context.Background(), d.Approval.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a.Digest
}

func transferRequest(target, ct string, body []byte, h headerMap) *policy.Request {
	headers := headerMap{"content-type": ct}
	for k, v := range h {
		headers[k] = v
	}
	return &policy.Request{Agent: spiffeid.RequireFromString("spiffe://example.test/agent/payer"), Method: "POST",
		Host: "api.example.test", Target: target, Headers: headers, Body: body}
}

// TestGRPCDigestBindsTheMessage: an approval binds a gRPC message the route decoded, not its
// bytes: the same message with its fields, its map entries and its repeated values written in
// another order or another encoding gets the same digest (grpc-go's own codec writes map
// entries in random order), and a message with any other value gets another. A JSON body is
// still bound as it was (approval.Digest).
func TestGRPCDigestBindsTheMessage(t *testing.T) {
	snap := loadTransferPolicy(t)
	const grpcPath = "/example.v1.Transfers/Create"
	base := grpcFrame(amount(5000), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 7, 8))
	want := holdDigest(t, snap, grpcPath, "application/grpc", base)
	if raw := approval.Digest("spiffe://example.test/agent/payer", "POST", "api.example.test", grpcPath, "grpc-transfer", "application/grpc", base); raw == want {
		t.Errorf("the gRPC digest is the bytes' digest; want the message's canonical form")
	}
	for what, body := range map[string][]byte{
		"map entries reordered": grpcFrame(amount(5000), to("acct-1"), label("c", "3"), label("a", "1"), label("b", "2"), ids(true, 7, 8)),
		"fields reordered":      grpcFrame(ids(true, 7, 8), label("b", "2"), to("acct-1"), label("c", "3"), amount(5000), label("a", "1")),
		"ids unpacked":          grpcFrame(amount(5000), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(false, 7, 8)),
		"a field sent twice":    grpcFrame(amount(1), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 7, 8), amount(5000)),
	} {
		if got := holdDigest(t, snap, grpcPath, "application/grpc", body); got != want {
			t.Errorf("%s: digest %s, want %s", what, got, want)
		}
	}
	// application/grpc+proto is the same message.
	if got := holdDigest(t, snap, grpcPath, "application/grpc+proto", base); got != want {
		t.Errorf("application/grpc+proto: digest %s, want %s", got, want)
	}
	for what, body := range map[string][]byte{
		"another amount":       grpcFrame(amount(5001), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 7, 8)),
		"another recipient":    grpcFrame(amount(5000), to("acct-2"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 7, 8)),
		"another label value":  grpcFrame(amount(5000), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "4"), ids(true, 7, 8)),
		"a label less":         grpcFrame(amount(5000), to("acct-1"), label("a", "1"), label("b", "2"), ids(true, 7, 8)),
		"ids in another order": grpcFrame(amount(5000), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 8, 7)),
		"a large amount":       grpcFrame(amount(9007199254740993), to("acct-1"), label("a", "1"), label("b", "2"), label("c", "3"), ids(true, 7, 8)),
	} {
		if got := holdDigest(t, snap, grpcPath, "application/grpc", body); got == want {
			t.Errorf("%s: the same digest as the approved message", what)
		}
	}
	// 2^53+1 and 2^53 are different amounts: protojson writes int64 as strings.
	if holdDigest(t, snap, grpcPath, "application/grpc", grpcFrame(amount(9007199254740993))) ==
		holdDigest(t, snap, grpcPath, "application/grpc", grpcFrame(amount(9007199254740992))) {
		t.Errorf("2^53+1 and 2^53 share a digest")
	}

	// A JSON body on a message route is bound as before: its RFC 8785 form.
	const body = `{"amount":"5000","to":"acct-1","labels":{"b":"2","a":"1"}}`
	jsonWant := approval.Digest("spiffe://example.test/agent/payer", "POST", "api.example.test", "/v1/transfers", "transfer", "application/json", []byte(body))
	if got := holdDigest(t, snap, "/v1/transfers", "application/json", []byte(body)); got != jsonWant {
		t.Errorf("JSON body: digest %s, want approval.Digest's %s", got, jsonWant)
	}
}

// TestGRPCApprovedRetryInAnotherOrder: the approved retry of a held gRPC call passes once when
// its map entries arrive in another order than the held call's.
func TestGRPCApprovedRetryInAnotherOrder(t *testing.T) {
	snap := loadTransferPolicy(t)
	ctx := context.Background()
	store := memstore.New()
	g := &approval.Gate{Store: store}
	const path = "/example.v1.Transfers/Create"
	held := grpcFrame(amount(5000), label("a", "1"), label("b", "2"), label("c", "3"))
	r := transferRequest(path, "application/grpc", held, nil)
	d := g.Resolve(ctx, r, snap.Decide(r))
	if d.Code != decision.CodeApprovalRequired || d.Approval == nil {
		t.Fatalf("%s; want held", d.Code)
	}
	if _, err := store.Decide(ctx, d.Approval.ID, approval.Verdict{Approve: true, By: "user:alice"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	retry := func(body []byte) decision.Decision {
		r := transferRequest(path, "application/grpc", body, headerMap{approval.Header: d.Approval.ID})
		return g.Resolve(ctx, r, snap.Decide(r))
	}
	if got := retry(grpcFrame(amount(5001), label("c", "3"), label("b", "2"), label("a", "1"))); got.Code != decision.CodeApprovalMismatch {
		t.Errorf("another amount: %s, want %s", got.Code, decision.CodeApprovalMismatch)
	}
	if got := retry(grpcFrame(label("c", "3"), label("b", "2"), amount(5000), label("a", "1"))); got.Code != decision.CodeAllowed {
		t.Errorf("the same message in another order: %s %s, want allowed", got.Code, got.Detail)
	}
}
