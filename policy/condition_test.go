package policy_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// conditionPolicy holds requests by conditions over every kind of input: repeatable query
// parameters (strict and stripping routes), a protobuf message as JSON and as gRPC, a JSON
// Schema body, and GraphQL (GET and POST).
const conditionPolicy = `trust_domains: [example.test]
proto_files: [pay.proto]
agents:
  - id: spiffe://example.test/agent/payer
    scopes: [pay]
graphql:
  - name: reports
    schema: reports.graphql
    fields:
      - agents: [spiffe://example.test/agent/payer]
        allow: [Query.*]
hosts:
  - name: api.example.test
    routes:
      - name: export
        method: GET
        path: /v1/exports/{owner}
        scope: pay
        params:
          owner: {type: string, max_length: 64}
        query:
          to: {type: string, repeatable: true}
          fmt: {type: string, enum: [csv, json]}
        approval:
          approvers: [group:finance]
          when: query.to.exists(v, v.endsWith("@external.test")) || params.owner == "root@x"
      - name: export-loose
        method: GET
        path: /v1/exports-loose
        scope: pay
        strip_unknown_query: true
        query:
          to: {type: string, repeatable: true}
        approval:
          approvers: [group:finance]
          when: query.to.exists(v, v.endsWith("@external.test")) || "cc" in query
      - name: payout
        method: POST
        path: /v1/payouts
        scope: pay
        body: {message: example.v1.Payout}
        approval:
          approvers: [group:finance]
          when: WHEN
          redact: [/secret_note]
      - name: grpc-payout
        method: POST
        path: /example.v1.Payouts/Create
        scope: pay
        body: {grpc_message: example.v1.Payout}
        approval:
          approvers: [group:finance]
          when: WHEN
      - name: transfer
        method: POST
        path: /v1/transfers
        scope: pay
        body: {json_schema: transfer.schema.json}
        approval:
          approvers: [group:finance]
          when: body.amount > 1000
      - name: report-get
        method: GET
        path: /graphql
        scope: pay
        graphql: reports
        approval:
          approvers: [group:finance]
          when: query.query.exists(q, q.contains("payouts"))
      - name: report-post
        method: POST
        path: /graphql
        scope: pay
        graphql: reports
        approval:
          approvers: [group:finance]
          when: body.query.contains("payouts")
`

// payProto is the message of the payout routes. max_amount's json_name is maxAmount.
const payProto = `syntax = "proto3";
package example.v1;
enum Kind {
  KIND_UNSPECIFIED = 0;
  ACH = 1;
  WIRE = 2;
}
message Inner {
  uint64 big = 1;
  float f = 2;
}
message Payout {
  int64 max_amount = 1;
  Kind kind = 2;
  repeated string note_tags = 3;
  string secret_note = 4;
  optional bool notify = 5;
  double rate = 6;
  bytes ref = 7;
  map<string, int64> limits = 8;
  Inner inner = 9;
  repeated int32 codes = 10;
}
`

var conditionFS = fstest.MapFS{
	"pay.proto":            {Data: []byte(payProto)},
	"transfer.schema.json": {Data: []byte(`{"type": "object", "required": ["amount"]}`)},
	"reports.graphql":      {Data: []byte("type Query {\n  payouts(first: Int): [Int]\n  revenue: Int\n}\n")},
}

func loadConditionPolicy(t testing.TB, yaml string) (*policy.Snapshot, error) {
	t.Helper()
	// Both payout routes hold by the same condition.
	when := `body.max_amount > 1000 || body.kind == "WIRE" || body.note_tags.exists(t, t == "urgent") || has(body.inner) && body.inner.big > 1000`
	yaml = strings.ReplaceAll(yaml, "WHEN", when)
	return policy.Load([]policy.File{{Name: "condition.yaml", Data: []byte(yaml), FS: conditionFS, FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
}

func conditionSnapshot(t testing.TB) *policy.Snapshot {
	t.Helper()
	snap, err := loadConditionPolicy(t, conditionPolicy)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func conditionRequest(method, target, contentType, body string) *policy.Request {
	h := hdrs{}
	if contentType != "" {
		h["content-type"] = []string{contentType}
	}
	return &policy.Request{Agent: spiffeid.RequireFromString("spiffe://example.test/agent/payer"),
		Method: method, Host: "api.example.test", Target: target, Headers: h, Body: []byte(body)}
}

// heldOrAllowed decides r, which must pass every check, and reports whether it is held.
func heldOrAllowed(t *testing.T, snap *policy.Snapshot, what string, r *policy.Request) bool {
	t.Helper()
	d := snap.Decide(r)
	switch d.Code {
	case decision.CodeApprovalRequired:
		return true
	case decision.CodeAllowed:
		return false
	}
	t.Errorf("%s: %s %+v (%s); want allowed or held", what, d.Code, d.Violations, d.Detail)
	return false
}

// encodings returns every way the query reader accepts to write s as a query name or value:
// each byte as itself (where it may appear raw) or percent-encoded, in upper or lower case hex.
// For s of n bytes there are up to 3^n.
func encodings(s string) []string {
	out := []string{""}
	for i := 0; i < len(s); i++ {
		c := s[i]
		forms := []string{fmt.Sprintf("%%%02X", c), fmt.Sprintf("%%%02x", c)}
		if forms[0] == forms[1] {
			forms = forms[:1]
		}
		if isQueryRaw(c) {
			forms = append(forms, string(c))
		}
		var next []string
		for _, p := range out {
			for _, f := range forms {
				next = append(next, p+f)
			}
		}
		out = next
	}
	return out
}

// isQueryRaw reports whether c may appear unencoded in a query name or value.
func isQueryRaw(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!$'()*,:@/?", c) >= 0
}

// TestConditionRepeatableQuery: a condition over a repeatable query parameter sees every value,
// under every name the upstream reads as that parameter: the name written in every encoded form
// the reader accepts, the value too. Before, it saw only the first value, and a second one
// escaped the hold.
func TestConditionRepeatableQuery(t *testing.T) {
	snap := conditionSnapshot(t)
	names := encodings("to")
	if len(names) != 6 { // t, %74; o, %6F, %6f
		t.Fatalf("%d encodings of to, want 6", len(names))
	}
	values := []string{"x@external.test", "x%40external.test", "%78@external%2Etest"}
	for _, route := range []string{"/v1/exports/jdoe", "/v1/exports-loose"} {
		if held := heldOrAllowed(t, snap, route, conditionRequest("GET", route+"?to=a@acme.test&to=b@acme.test", "", "")); held {
			t.Errorf("%s: two internal recipients are held", route)
		}
		for _, name := range names {
			for _, value := range values {
				for _, q := range []string{
					"to=a@acme.test&" + name + "=" + value,
					name + "=" + value + "&to=a@acme.test",
					"to=a@acme.test&to=b@acme.test&" + name + "=" + value,
				} {
					target := route + "?" + q
					if !heldOrAllowed(t, snap, target, conditionRequest("GET", target, "", "")) {
						t.Errorf("%s: not held; an external recipient escaped the condition", target)
					}
				}
			}
		}
	}
	// A path parameter is decoded as the upstream decodes it.
	for _, owner := range []string{"root@x", "root%40x", "root%40%78"} {
		if target := "/v1/exports/" + owner; strings.Contains(owner, "%78") {
			// %78 encodes an unreserved character: the path reader refuses it.
			if d := snap.Decide(conditionRequest("GET", target, "", "")); d.Code != decision.CodePathAmbiguous {
				t.Errorf("%s: %s, want path_ambiguous", target, d.Code)
			}
		} else if !heldOrAllowed(t, snap, target, conditionRequest("GET", target, "", "")) {
			t.Errorf("%s: not held", target)
		}
	}
}

// TestConditionStrippedQuery: parameters strip_unknown_query removes never reach the upstream,
// so the condition does not see them either.
func TestConditionStrippedQuery(t *testing.T) {
	snap := conditionSnapshot(t)
	d := snap.Decide(conditionRequest("GET", "/v1/exports-loose?to=a@acme.test&cc=x@external.test", "", ""))
	if d.Code != decision.CodeAllowed || len(d.RemoveQuery) != 1 || d.RemoveQuery[0] != "cc" {
		t.Errorf("%s %q; want allowed with cc stripped, not held for it", d.Code, d.RemoveQuery)
	}
}

// TestConditionQueryForm: a condition written for the old query map (a string per name) is
// refused when the policy loads, saying what query is now.
func TestConditionQueryForm(t *testing.T) {
	yaml := strings.Replace(conditionPolicy, `when: query.to.exists(v, v.endsWith("@external.test")) || params.owner == "root@x"`,
		`when: query.fmt == "csv"`, 1)
	_, err := loadConditionPolicy(t, yaml)
	if err == nil || !strings.Contains(err.Error(), "routes[0].approval.when") || !strings.Contains(err.Error(), "list of its values") {
		t.Errorf("a condition comparing query.fmt with a string: %v; want a problem saying query maps to lists", err)
	}
	yaml = strings.Replace(conditionPolicy, `when: query.to.exists(v, v.endsWith("@external.test")) || params.owner == "root@x"`,
		`when: query.fmt[0] == "csv" && "x" in query.to`, 1)
	if _, err := loadConditionPolicy(t, yaml); err != nil {
		t.Errorf("a condition over query lists: %v", err)
	}
}

// TestConditionMessageSpelling: on a message route the condition reads the decoded message, by
// proto field names, so every spelling protojson accepts is held alike: before, the condition
// read the JSON as sent, and maxAmount (the json_name) or an enum number escaped the hold.
func TestConditionMessageSpelling(t *testing.T) {
	snap := conditionSnapshot(t)
	for _, tc := range []struct {
		body string
		held bool
	}{
		{`{"max_amount": 10}`, false},
		{`{"maxAmount": 10, "kind": "ACH"}`, false},
		{`{"max_amount": 5000}`, true},
		{`{"maxAmount": 5000}`, true},
		{`{"maxAmount": "5000"}`, true},
		{`{"max_amount": 5e3}`, true},
		{`{"kind": "WIRE"}`, true},
		{`{"kind": 2}`, true},
		{`{"noteTags": ["later", "urgent"]}`, true},
		{`{"note_tags": ["later"]}`, false},
		{`{"inner": {"big": "18446744073709551615"}}`, true},
		{`{"inner": {"big": 10}, "limits": {"a": "7"}}`, false},
	} {
		r := conditionRequest("POST", "/v1/payouts", "application/json", tc.body)
		if held := heldOrAllowed(t, snap, tc.body, r); held != tc.held {
			t.Errorf("%s: held=%v, want %v", tc.body, held, tc.held)
		}
		v, ok := r.Message()
		m, _ := v.(map[string]any)
		if !ok || m == nil {
			t.Errorf("%s: Message() = %v, %v", tc.body, v, ok)
			continue
		}
		for k := range m {
			if strings.ContainsAny(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("%s: the message has field %q: want proto names only", tc.body, k)
			}
		}
		if _, ok := m["max_amount"]; !ok {
			t.Errorf("%s: the message lacks max_amount, which has no presence: %v", tc.body, m)
		}
		if _, ok := m["notify"]; ok {
			t.Errorf("%s: the message has notify, an optional field that was not sent: %v", tc.body, m)
		}
	}
}

// grpcFrame wraps a protobuf message in one uncompressed gRPC frame.
func grpcFrame(msg []byte) string {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return string(append(b, msg...))
}

// TestConditionGRPC: on a grpc_message route the condition reads the decoded message too, as on
// the JSON route: before, it saw null and could test nothing. A field sent twice counts as the
// upstream decodes it: the last value.
func TestConditionGRPC(t *testing.T) {
	snap := conditionSnapshot(t)
	amount := func(n uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), n)
	}
	kind := func(n uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), n)
	}
	for _, tc := range []struct {
		what string
		msg  []byte
		held bool
	}{
		{"small", amount(10), false},
		{"large", amount(5000), true},
		{"wire", kind(2), true},
		{"small after large: the last wins", append(amount(5000), amount(10)...), false},
		{"large after small: the last wins", append(amount(10), amount(5000)...), true},
	} {
		r := conditionRequest("POST", "/example.v1.Payouts/Create", "application/grpc", grpcFrame(tc.msg))
		if held := heldOrAllowed(t, snap, tc.what, r); held != tc.held {
			t.Errorf("%s: held=%v, want %v", tc.what, held, tc.held)
		}
	}
}

// TestConditionGraphQLGet: a GraphQL GET route holds requests as a POST one does. Before, the
// GET route allowed them without evaluating its approval at all.
func TestConditionGraphQLGet(t *testing.T) {
	snap := conditionSnapshot(t)
	for _, tc := range []struct {
		target string
		held   bool
	}{
		{"/graphql?query=%7B%20revenue%20%7D", false},
		{"/graphql?query=%7B%20payouts(first%3A%201)%20%7D", true},
		{"/graphql?query=%7B%20pay%6Fut%73(first%3A%201)%20%7D", true},
	} {
		if held := heldOrAllowed(t, snap, tc.target, conditionRequest("GET", tc.target, "", "")); held != tc.held {
			t.Errorf("%s: held=%v, want %v", tc.target, held, tc.held)
		}
	}
	if !heldOrAllowed(t, snap, "POST", conditionRequest("POST", "/graphql", "application/json", `{"query":"{ payouts(first: 1) }"}`)) {
		t.Error("POST: not held")
	}
}
