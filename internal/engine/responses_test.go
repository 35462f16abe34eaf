package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/response"
)

const ticketBody = `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada","email":"ada@example.com","phone":"+1 555"}}`

// responseEngine is an engine over the response rules' test policy, its decision log in buf.
func responseEngine(t *testing.T, reg *prometheus.Registry) (*engine.Engine, *policy.Snapshot, *bytes.Buffer) {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join("..", "..", "policy", "testdata", "response", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e := engine.New(engine.Config{Store: policy.NewStore(snap), Decisions: audit.New(&buf, audit.Options{}),
		Metrics: metrics.New(reg)})
	return e, snap, &buf
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func TestFilterResponse(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, snap, buf := responseEngine(t, reg)
	in := engine.ResponseInput{Rule: "route:get-ticket@" + snap.Revision(), Agent: "spiffe://example.org/agent/helpdesk",
		DecisionID: "d1", Status: 200, ContentType: "application/json", Body: []byte(ticketBody)}
	res := e.FilterResponse(context.Background(), in)
	if res.Status != 200 || !res.Changed || string(res.Body) != `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada"}}` {
		t.Fatalf("got %d %s %s", res.Status, res.Outcome, res.Body)
	}
	recs := logLines(t, buf)
	rec := recs[len(recs)-1]
	if rec["kind"] != "response" || rec["decision_id"] != "d1" || rec["response_rule"] != "route:get-ticket" ||
		rec["outcome"] != "reduced" || rec["policy_revision"] != snap.Revision() {
		t.Errorf("record %v", rec)
	}
	if got, _ := json.Marshal(rec["removed"]); string(got) != `["/requester/email","/requester/phone"]` {
		t.Errorf("removed %s", got)
	}
	if strings.Contains(buf.String(), "ada@example.com") {
		t.Error("the record holds a value")
	}
	want := `
# HELP agentauthz_response_fields_removed_total Distinct field paths removed or masked from responses by response rules (in shadow: that would have been), by rule and action (removed, masked).
# TYPE agentauthz_response_fields_removed_total counter
agentauthz_response_fields_removed_total{action="removed",rule="route:get-ticket"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentauthz_response_fields_removed_total"); err != nil {
		t.Error(err)
	}
}

func TestFilterResponseFailsClosed(t *testing.T) {
	e, snap, _ := responseEngine(t, prometheus.NewRegistry())
	base := engine.ResponseInput{Rule: "route:get-ticket@" + snap.Revision(), Agent: "spiffe://example.org/agent/helpdesk",
		DecisionID: "d2", Status: 200, ContentType: "application/json", Body: []byte(ticketBody)}
	for name, mod := range map[string]func(*engine.ResponseInput){
		"another revision": func(in *engine.ResponseInput) { in.Rule = "route:get-ticket@000000000000" },
		"no agent":         func(in *engine.ResponseInput) { in.Agent = "" },
		"not JSON":         func(in *engine.ResponseInput) { in.Body = []byte("ada@example.com") },
		"gzip":             func(in *engine.ResponseInput) { in.ContentEncoding = "gzip" },
		"too large":        func(in *engine.ResponseInput) { in.Body = []byte(`{"id":"` + strings.Repeat("x", 5000) + `"}`) },
	} {
		in := base
		mod(&in)
		res := e.FilterResponse(context.Background(), in)
		if res.Status != 502 || res.ContentType != engine.ContentTypeProblem || res.Outcome != response.Refused ||
			!strings.Contains(string(res.Body), `"code":"response_refused"`) || strings.Contains(string(res.Body), "ada@") {
			t.Errorf("%s: %d %s %s", name, res.Status, res.Outcome, res.Body)
		}
	}
	in := base
	in.Status = 404
	res := e.FilterResponse(context.Background(), in)
	if res.Status != 404 || res.Outcome != response.Withheld || strings.Contains(string(res.Body), "ada@") ||
		!strings.Contains(string(res.Body), `"status":404`) {
		t.Errorf("404: %d %s %s", res.Status, res.Outcome, res.Body)
	}
	// No policy: refused.
	none := engine.New(engine.Config{Store: &policy.Store{}})
	if res := none.FilterResponse(context.Background(), base); res.Status != 502 {
		t.Errorf("no policy: %d", res.Status)
	}
}

// A rule in shadow changes nothing, and reports what it would have done.
func TestFilterResponseShadow(t *testing.T) {
	e, snap, buf := responseEngine(t, prometheus.NewRegistry())
	body := []byte(`{"id":"ada","name":"Ada","email":"ada@example.com"}`)
	res := e.FilterResponse(context.Background(), engine.ResponseInput{Rule: "route:get-user@" + snap.Revision(),
		Agent: "spiffe://example.org/agent/helpdesk", DecisionID: "d3", Status: 200, ContentType: "application/json", Body: body})
	if res.Changed || res.Status != 200 || &res.Body[0] != &body[0] || !res.Shadow || res.Outcome != response.Refused {
		t.Fatalf("got %d %s changed=%v shadow=%v %s", res.Status, res.Outcome, res.Changed, res.Shadow, res.Body)
	}
	recs := logLines(t, buf)
	rec := recs[len(recs)-1]
	if rec["shadow"] != true || rec["outcome"] != "refused" || rec["status"] != 200.0 {
		t.Errorf("record %v", rec)
	}
	if got, _ := json.Marshal(rec["removed"]); string(got) != `["/email"]` {
		t.Errorf("removed %s", got)
	}
}
