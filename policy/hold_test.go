package policy_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// holdPolicy holds large transfers (a JSON Schema body), every refund (a protobuf message
// body) and nothing else.
const holdPolicy = `trust_domains: [example.test]
proto_files: [refund.proto]
agents:
  - id: spiffe://example.test/agent/payer
    scopes: [pay]
hosts:
  - name: api.example.test
    remove_headers: [authorization]
    routes:
      - name: transfer
        method: POST
        path: /v1/transfers
        scope: pay
        body: {json_schema: transfer.schema.json, max_depth: 48}
        approval:
          approvers: [group:finance]
          when: body.amount > 1000 && body.meta.tags.exists(t, t == "urgent")
          redact: [/secret, /card/number, /a~1b, /t~0]
      - name: refund
        method: POST
        path: /v1/refunds
        scope: pay
        body: {message: example.v1.Refund}
        approval:
          approvers: [group:finance]
`

var holdFS = fstest.MapFS{
	"transfer.schema.json": {Data: []byte(`{"type": "object", "required": ["amount"]}`)},
	"refund.proto": {Data: []byte(`syntax = "proto3";
package example.v1;
import "buf/validate/validate.proto";
message Refund {
  int64 amount = 1 [(buf.validate.field).int64.gt = 0];
  string reason = 2;
}
`)},
}

func loadHoldPolicy(t *testing.T, yaml string) (*policy.Snapshot, error) {
	t.Helper()
	return policy.Load([]policy.File{{Name: "hold.yaml", Data: []byte(yaml), FS: holdFS, FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
}

func holdRequest(target, body string) *policy.Request {
	return &policy.Request{
		Agent:   spiffeid.RequireFromString("spiffe://example.test/agent/payer"),
		Method:  "POST",
		Host:    "api.example.test",
		Target:  target,
		Headers: hdrs{"content-type": {"application/json"}},
		Body:    []byte(body),
	}
}

// TestHoldReadsBodyOnce: the body the route's schema read is the one every later stage reads:
// the approval condition sees it without changing it, and Request.JSON hands it on without
// reading the body again.
func TestHoldReadsBodyOnce(t *testing.T) {
	snap, err := loadHoldPolicy(t, holdPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, body string
		held         bool
	}{
		{"/v1/transfers", `{"amount":5000,"meta":{"tags":["x","urgent"]},"secret":"s"}`, true},
		{"/v1/transfers", `{"amount":5000.5,"meta":{"tags":["urgent"]}}`, true},
		{"/v1/transfers", `{"amount":500,"meta":{"tags":["urgent"]}}`, false},
		{"/v1/transfers", `{"amount":5000,"meta":{"tags":["later"]}}`, false},
		// A number CEL cannot hold compares as a string: the condition fails, and holds.
		{"/v1/transfers", `{"amount":1e400,"meta":{"tags":["urgent"]}}`, true},
		// Deeper than strictjson's default, within the route's max_depth.
		{"/v1/transfers", `{"amount":5000,"meta":{"tags":["urgent"]},"deep":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, true},
		{"/v1/refunds", `{"amount":"12","reason":"broken"}`, true},
	} {
		r := holdRequest(tc.target, tc.body)
		d := snap.Decide(r)
		if held := d.Code == decision.CodeApprovalRequired; held != tc.held || !held && d.Code != decision.CodeAllowed {
			t.Errorf("%s %s: %s %+v, want held=%v", tc.target, tc.body, d.Code, d.Violations, tc.held)
			continue
		}
		v, ok := r.JSON()
		if !ok {
			t.Errorf("%s: JSON() = %v, false after the policy read the body", tc.body, v)
			continue
		}
		if n := testing.AllocsPerRun(100, func() { r.JSON() }); n != 0 {
			t.Errorf("%s: JSON() allocates %v times: it reads the body again", tc.body, n)
		}
		want := decodeUseNumber(t, tc.body)
		if got, _ := r.JSON(); !jsonEqual(got, want) {
			t.Errorf("%s: after the decision the shared value is %#v, want %#v: a stage modified it", tc.body, got, want)
		}
	}
}

// TestHoldCompiled: a route's approval is compiled once, with the policy: redaction pointers
// parsed, and the grant of an approved retry built from the route's.
func TestHoldCompiled(t *testing.T) {
	snap, err := loadHoldPolicy(t, holdPolicy)
	if err != nil {
		t.Fatal(err)
	}
	d1 := snap.Decide(holdRequest("/v1/transfers", `{"amount":5000,"meta":{"tags":["urgent"]}}`))
	d2 := snap.Decide(holdRequest("/v1/transfers", `{"amount":7000,"meta":{"tags":["urgent"]}}`))
	if d1.Hold == nil || d1.Hold != d2.Hold {
		t.Fatalf("holds %p and %p: want the route's one Hold", d1.Hold, d2.Hold)
	}
	h := d1.Hold
	if want := `body.amount > 1000 && body.meta.tags.exists(t, t == "urgent")`; h.Condition != want {
		t.Errorf("Condition = %q, want the route's when, %q", h.Condition, want)
	}
	var redact []string
	for _, p := range h.Redact {
		redact = append(redact, p.String())
	}
	if want := []string{"/secret", "/card/number", "/a~1b", "/t~0"}; !slices.Equal(redact, want) {
		t.Errorf("Redact = %q, want %q", redact, want)
	}
	if h.Retry == nil || d1.Grant == nil {
		t.Fatalf("Retry %v, Grant %v", h.Retry, d1.Grant)
	}
	if want := append(slices.Clone(d1.Grant.Remove), policy.ApprovalHeader); !slices.Equal(h.Retry.Remove, want) {
		t.Errorf("Retry.Remove = %q, want %q", h.Retry.Remove, want)
	}
	if slices.Contains(d1.Grant.Remove, policy.ApprovalHeader) {
		t.Errorf("the route's own grant removes %s: %q", policy.ApprovalHeader, d1.Grant.Remove)
	}
	if !slices.Equal(h.Retry.Set, d1.Grant.Set) {
		t.Errorf("Retry.Set = %v, want the route's %v", h.Retry.Set, d1.Grant.Set)
	}
}

// TestHoldRedactProblems: a redaction pointer that is not a JSON pointer is refused when the
// policy loads, at its line.
func TestHoldRedactProblems(t *testing.T) {
	for _, p := range []string{`secret`, `/a~2`, `/a~`, `/ok/~x`} {
		yaml := strings.Replace(holdPolicy, `redact: [/secret, /card/number, /a~1b, /t~0]`, `redact: [/secret, "`+p+`"]`, 1)
		_, err := loadHoldPolicy(t, yaml)
		if err == nil {
			t.Errorf("redact %q: the policy loads", p)
			continue
		}
		if !strings.Contains(err.Error(), "hold.yaml:18:") || !strings.Contains(err.Error(), "redact[1]") {
			t.Errorf("redact %q: %v; want the problem at hold.yaml:18, redact[1]", p, err)
		}
	}
}

// TestRequestJSON: Request.JSON reads a body no stage read, once, and reads a replaced body
// again.
func TestRequestJSON(t *testing.T) {
	r := holdRequest("/", `{"a":[1,"x"]}`)
	v, ok := r.JSON()
	if !ok || !jsonEqual(v, decodeUseNumber(t, `{"a":[1,"x"]}`)) {
		t.Fatalf("JSON() = %#v, %v", v, ok)
	}
	if n := testing.AllocsPerRun(100, func() { r.JSON() }); n != 0 {
		t.Errorf("JSON() allocates %v times the second time", n)
	}
	r.Body = []byte(`{"a":2}`)
	if v, ok := r.JSON(); !ok || !jsonEqual(v, decodeUseNumber(t, `{"a":2}`)) {
		t.Fatalf("JSON() of a replaced body = %#v, %v", v, ok)
	}
	r.Body = []byte(`{"a":1,"a":2}`)
	if v, ok := r.JSON(); ok {
		t.Fatalf("JSON() of a body with a duplicate name = %#v, true", v)
	}
	if n := testing.AllocsPerRun(100, func() { r.JSON() }); n != 0 {
		t.Errorf("JSON() of a body that is not strict JSON allocates %v times the second time", n)
	}
	r.Body = nil
	if v, ok := r.JSON(); ok {
		t.Fatalf("JSON() without a body = %#v, true", v)
	}
}

func decodeUseNumber(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// jsonEqual compares values as strictjson and encoding/json read them: numbers are json.Number.
func jsonEqual(a, b any) bool { return reflect.DeepEqual(a, b) }

// TestHoldLimits: a route holds a new request only beside as many live approvals as its
// max_pending_per_agent and max_pending_per_rule say, 20 and 100 unless set; the policy refuses
// a limit beyond the bounds.
func TestHoldLimits(t *testing.T) {
	snap, err := loadHoldPolicy(t, holdPolicy)
	if err != nil {
		t.Fatal(err)
	}
	h := snap.Decide(holdRequest("/v1/refunds", `{"amount":"12"}`)).Hold
	if h == nil || h.MaxPerAgent != 20 || h.MaxPerRule != 100 {
		t.Fatalf("defaults: %+v; want 20 per agent, 100 per rule", h)
	}
	set := strings.Replace(holdPolicy, "        body: {message: example.v1.Refund}\n        approval:\n",
		"        body: {message: example.v1.Refund}\n        approval:\n          max_pending_per_agent: 3\n          max_pending_per_rule: 7\n", 1)
	if snap, err = loadHoldPolicy(t, set); err != nil {
		t.Fatal(err)
	}
	if h := snap.Decide(holdRequest("/v1/refunds", `{"amount":"12"}`)).Hold; h.MaxPerAgent != 3 || h.MaxPerRule != 7 {
		t.Errorf("set: %d per agent, %d per rule; want 3 and 7", h.MaxPerAgent, h.MaxPerRule)
	}
	for _, bad := range []string{"max_pending_per_agent: 10001", "max_pending_per_rule: 100001", "max_pending_per_agent: -1"} {
		yaml := strings.Replace(holdPolicy, "        body: {message: example.v1.Refund}\n        approval:\n",
			"        body: {message: example.v1.Refund}\n        approval:\n          "+bad+"\n", 1)
		if _, err := loadHoldPolicy(t, yaml); err == nil || !strings.Contains(err.Error(), "hold.yaml:25:") {
			t.Errorf("%s: %v; want the policy refused at hold.yaml:25", bad, err)
		}
	}
}
