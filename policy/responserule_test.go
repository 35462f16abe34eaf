package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/response"
)

const (
	helpdeskAgent = "spiffe://example.org/agent/helpdesk"
	biAgent       = "spiffe://example.org/agent/bi"
)

func loadResponses(t testing.TB) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join("testdata", "response", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestResponseRuleOnAllow(t *testing.T) {
	snap := loadResponses(t)
	get := &policy.Request{Agent: spiffeid.RequireFromString(helpdeskAgent), Method: "GET", Host: "api.example.org",
		Target: "/tickets/T-1", Headers: mcpHeaders{}}
	d := snap.Decide(get)
	if !d.Allowed() {
		t.Fatalf("not allowed: %s %s", d.Code, d.Detail)
	}
	if want := "route:get-ticket@" + snap.Revision(); d.Response != want {
		t.Fatalf("Response %q, want %q", d.Response, want)
	}
	list := &policy.Request{Agent: spiffeid.RequireFromString(helpdeskAgent), Method: "GET", Host: "api.example.org",
		Target: "/tickets", Headers: mcpHeaders{}}
	if d := snap.Decide(list); !d.Allowed() || d.Response != "" {
		t.Fatalf("a route without a rule: %s %q", d.Code, d.Response)
	}
	// Each agent gets its rule.
	body := []byte(`{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"A","email":"a@x"}}`)
	in := response.Input{Status: 200, ContentType: "application/json", Body: body}
	r, err := snap.ResponseRule(d.Response, spiffeid.RequireFromString(helpdeskAgent))
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Filter(in); string(res.Body) != `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"A"}}` {
		t.Errorf("helpdesk: %s %s", res.Outcome, res.Body)
	}
	r, err = snap.ResponseRule(d.Response, spiffeid.RequireFromString(biAgent))
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Filter(in); res.Outcome != response.Refused {
		t.Errorf("bi (refuse on mismatch): %s %s", res.Outcome, res.Body)
	}
	if res := r.Filter(response.Input{Status: 200, ContentType: "application/json", Body: []byte(`{"id":"T-1","status":"open"}`)}); res.Outcome != response.Passed {
		t.Errorf("bi: %s %s", res.Outcome, res.Reason)
	}
}

func TestResponseRuleOfAnotherRevision(t *testing.T) {
	snap := loadResponses(t)
	agent := spiffeid.RequireFromString(helpdeskAgent)
	for _, tag := range []string{"route:get-ticket@0123456789ab", "route:get-ticket", "route:list-tickets@" + snap.Revision(), ""} {
		if _, err := snap.ResponseRule(tag, agent); !errors.Is(err, policy.ErrResponseRule) {
			t.Errorf("%q: %v", tag, err)
		}
	}
	if _, ok := snap.ResponseRuleByName("helpdesk/get_ticket", agent); !ok {
		t.Error("no rule for the tool by name")
	}
}

func TestResponseRuleOnToolCall(t *testing.T) {
	snap := loadResponses(t)
	call := func(tool string) *policy.Request {
		return &policy.Request{Agent: spiffeid.RequireFromString(helpdeskAgent), Method: "POST", Host: "mcp.example.org", Target: "/mcp",
			Headers: mcpHeaders{{"content-type", "application/json"}, {"mcp-protocol-version", "2025-11-25"}},
			Body:    []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"id":"T-1"}}}`)}
	}
	d := snap.Decide(call("get_ticket"))
	if !d.Allowed() || !strings.HasPrefix(d.Response, "mcp:helpdesk/get_ticket@") {
		t.Fatalf("%s %s %q", d.Code, d.Detail, d.Response)
	}
	if d := snap.Decide(call("list_tickets")); !d.Allowed() || d.Response != "" {
		t.Fatalf("%s %q", d.Code, d.Response)
	}
	r, err := snap.ResponseRule(d.Response, spiffeid.RequireFromString(helpdeskAgent))
	if err != nil {
		t.Fatal(err)
	}
	res := r.Filter(response.Input{Status: 200, ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"id":"T-1","requester":{"name":"A","email":"a@x","phone":"1"}}}}`)})
	if string(res.Body) != `{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"id":"T-1","requester":{"name":"A","email":"[redacted]"}}}}` {
		t.Errorf("%s %s", res.Outcome, res.Body)
	}
}

// An OpenAPI operation's response rule names its route.
func TestResponseRuleOnOperation(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"store.openapi.yaml", "tight.schema.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "openapi", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "openapi", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	withRule := strings.Replace(string(data), "        - id: getThing\n          scope: things:read\n",
		"        - id: getThing\n          scope: things:read\n          response:\n            allow: [/id, /name]\n", 1)
	if withRule == string(data) {
		t.Fatal("the test policy's getThing grant moved")
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(withRule), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := policy.ReadPath(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	reader := spiffeid.RequireFromString("spiffe://example.org/agent/reader")
	d := snap.Decide(&policy.Request{Agent: reader, Method: "GET", Host: "store.example.org", Target: "/v2/things/3fa85f64-5717-4562-b3fc-2c963f66afa6", Headers: mcpHeaders{}})
	if !d.Allowed() || d.Response != "route:get-thing@"+snap.Revision() {
		t.Fatalf("%s %s %q", d.Code, d.Detail, d.Response)
	}
	r, err := snap.ResponseRule(d.Response, reader)
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Filter(response.Input{Status: 200, ContentType: "application/json", Body: []byte(`{"id":7,"name":"x","cost":3}`)}); string(res.Body) != `{"id":7,"name":"x"}` {
		t.Errorf("%s %s", res.Outcome, res.Body)
	}
}
