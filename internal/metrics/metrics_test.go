package metrics_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy/decision"
)

func newMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return metrics.New(reg), reg
}

// compare checks the named metric families of reg against the text exposition want.
func compare(t *testing.T, reg prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

const (
	histHeader = `# HELP agentauthz_check_duration_seconds Time to answer one Check call, by outcome (allow, deny, error: a deny because agentauthz could not decide).
# TYPE agentauthz_check_duration_seconds histogram
`
	decisionsHeader = `# HELP agentauthz_decisions_total Decisions by stable reason code (allowed, scope_missing, body_schema, ...).
# TYPE agentauthz_decisions_total counter
`
	reloadsHeader = `# HELP agentauthz_policy_reloads_total Policy loads by result (success, failure). A failure leaves the last good policy serving.
# TYPE agentauthz_policy_reloads_total counter
`
	infoHeader = `# HELP agentauthz_policy_info The policy revision in force (value 1).
# TYPE agentauthz_policy_info gauge
`
	loadedHeader = `# HELP agentauthz_policy_last_load_success 1 if the last policy load succeeded, 0 if it failed and an older policy is serving.
# TYPE agentauthz_policy_last_load_success gauge
`
	pendingHeader = `# HELP agentauthz_approvals_pending Requests held for human approval.
# TYPE agentauthz_approvals_pending gauge
`
	shadowHeader = `# HELP agentauthz_shadow_decisions_total Would-be decisions of shadow rules, by the rule and its would-be reason code.
# TYPE agentauthz_shadow_decisions_total counter
`
)

// buckets are the histogram's upper bounds, as the exposition writes them.
var buckets = []string{"1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.4"}

// histogram writes the exposition of one outcome's series holding the given observations.
func histogram(outcome string, obs ...time.Duration) string {
	bounds := []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 200e-3, 400e-3}
	var b strings.Builder
	sum := 0.0
	for _, o := range obs {
		sum += o.Seconds()
	}
	for i, le := range buckets {
		n := 0
		for _, o := range obs {
			if o.Seconds() <= bounds[i] {
				n++
			}
		}
		fmt.Fprintf(&b, "agentauthz_check_duration_seconds_bucket{outcome=%q,le=%q} %d\n", outcome, le, n)
	}
	fmt.Fprintf(&b, "agentauthz_check_duration_seconds_bucket{outcome=%q,le=\"+Inf\"} %d\n", outcome, len(obs))
	fmt.Fprintf(&b, "agentauthz_check_duration_seconds_sum{outcome=%q} %v\n", outcome, sum)
	fmt.Fprintf(&b, "agentauthz_check_duration_seconds_count{outcome=%q} %d\n", outcome, len(obs))
	return b.String()
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    decision.Decision
		want string
	}{
		{"allowed", decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed}, "allow"},
		{"policy deny", decision.Denied(decision.CodeScopeMissing, "x"), "deny"},
		{"malformed request", decision.Denied(decision.CodeQueryInvalid, "x"), "deny"},
		{"unauthenticated", decision.Denied(decision.CodeIdentityMissing, "x"), "deny"},
		{"body too large", decision.Denied(decision.CodeBodyTooLarge, "x"), "deny"},
		{"internal", decision.Denied(decision.CodeInternal, "x"), "error"},
		{"deadline", decision.Denied(decision.CodeDeadlineExceeded, "x"), "error"},
		{"not loaded", decision.Denied(decision.CodePolicyNotLoaded, "x"), "error"},
		{"body unavailable", decision.Denied(decision.CodeBodyUnavailable, "x"), "error"},
		{"zero value", decision.Decision{}, "error"},
		// An allow outcome without the allowed code is not an allow (Decision.Allowed).
		{"allow without code", decision.Decision{Outcome: decision.Allow}, "error"},
		{"allow with a deny code", decision.Decision{Outcome: decision.Allow, Code: decision.CodeRouteUnknown}, "deny"},
	} {
		if got := metrics.Outcome(&tc.d); got != tc.want {
			t.Errorf("%s: Outcome(%+v) = %q, want %q", tc.name, tc.d, got, tc.want)
		}
	}
}

// TestCheck: every answered Check is one observation of the histogram under its outcome and
// one count under its reason code; a decision without a code counts as internal_error.
func TestCheck(t *testing.T) {
	m, reg := newMetrics(t)
	allow := decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed, Rule: "get-ticket"}
	scope := decision.Denied(decision.CodeScopeMissing, "no")
	route := decision.Denied(decision.CodeRouteUnknown, "no")
	notLoaded := decision.Denied(decision.CodePolicyNotLoaded, "not yet")
	var zero decision.Decision

	m.Check(&allow, 5*time.Microsecond)
	m.Check(&allow, 30*time.Microsecond)
	m.Check(&allow, 2*time.Millisecond)
	m.Check(&scope, 40*time.Microsecond)
	m.Check(&route, 400*time.Microsecond)
	m.Check(&scope, time.Second) // beyond the last bucket
	m.Check(&notLoaded, 1*time.Microsecond)
	m.Check(&zero, 20*time.Millisecond)

	compare(t, reg, histHeader+
		histogram("allow", 5*time.Microsecond, 30*time.Microsecond, 2*time.Millisecond)+
		histogram("deny", 40*time.Microsecond, 400*time.Microsecond, time.Second)+
		histogram("error", 1*time.Microsecond, 20*time.Millisecond),
		"agentauthz_check_duration_seconds")
	compare(t, reg, decisionsHeader+`
agentauthz_decisions_total{reason="allowed"} 3
agentauthz_decisions_total{reason="internal_error"} 1
agentauthz_decisions_total{reason="policy_not_loaded"} 1
agentauthz_decisions_total{reason="route_unknown"} 1
agentauthz_decisions_total{reason="scope_missing"} 2
`, "agentauthz_decisions_total")

	// Recording does not touch the decision.
	if allow.Code != decision.CodeAllowed || zero.Code != "" {
		t.Errorf("Check modified the decision: %+v, %+v", allow, zero)
	}
}

func TestShadow(t *testing.T) {
	m, reg := newMetrics(t)
	m.Shadow("list-tickets-v2", decision.CodeQueryInvalid)
	m.Shadow("list-tickets-v2", decision.CodeQueryInvalid)
	m.Shadow("list-tickets-v2", decision.CodeAllowed)
	m.Shadow("export", decision.CodeScopeMissing)
	compare(t, reg, shadowHeader+`
agentauthz_shadow_decisions_total{reason="allowed",rule="list-tickets-v2"} 1
agentauthz_shadow_decisions_total{reason="query_invalid",rule="list-tickets-v2"} 2
agentauthz_shadow_decisions_total{reason="scope_missing",rule="export"} 1
`, "agentauthz_shadow_decisions_total")
}

// TestReload: loads are counted by result, the last result is a gauge, and the info gauge
// names exactly the revision in force: a new revision replaces the old label, a failed load
// leaves it.
func TestReload(t *testing.T) {
	m, reg := newMetrics(t)
	names := []string{"agentauthz_policy_reloads_total", "agentauthz_policy_info", "agentauthz_policy_last_load_success"}

	// Nothing loaded yet: no info series, no counts.
	if n, err := testutil.GatherAndCount(reg, "agentauthz_policy_info", "agentauthz_policy_reloads_total"); err != nil || n != 0 {
		t.Errorf("before any load: %d series (%v), want 0", n, err)
	}

	m.Reload(true, "aaaaaaaaaaaa")
	compare(t, reg, reloadsHeader+`
agentauthz_policy_reloads_total{result="success"} 1
`+infoHeader+`
agentauthz_policy_info{revision="aaaaaaaaaaaa"} 1
`+loadedHeader+`
agentauthz_policy_last_load_success 1
`, names...)

	m.Reload(true, "bbbbbbbbbbbb")
	compare(t, reg, reloadsHeader+`
agentauthz_policy_reloads_total{result="success"} 2
`+infoHeader+`
agentauthz_policy_info{revision="bbbbbbbbbbbb"} 1
`+loadedHeader+`
agentauthz_policy_last_load_success 1
`, names...)

	// A failure: counted, the gauge drops, the revision in force stays.
	m.Reload(false, "")
	m.Reload(false, "")
	compare(t, reg, reloadsHeader+`
agentauthz_policy_reloads_total{result="failure"} 2
agentauthz_policy_reloads_total{result="success"} 2
`+infoHeader+`
agentauthz_policy_info{revision="bbbbbbbbbbbb"} 1
`+loadedHeader+`
agentauthz_policy_last_load_success 0
`, names...)

	// Reloading the same revision keeps one series.
	m.Reload(true, "bbbbbbbbbbbb")
	compare(t, reg, reloadsHeader+`
agentauthz_policy_reloads_total{result="failure"} 2
agentauthz_policy_reloads_total{result="success"} 3
`+infoHeader+`
agentauthz_policy_info{revision="bbbbbbbbbbbb"} 1
`+loadedHeader+`
agentauthz_policy_last_load_success 1
`, names...)

	m.Reload(true, "cccccccccccc")
	if n, err := testutil.GatherAndCount(reg, "agentauthz_policy_info"); err != nil || n != 1 {
		t.Errorf("agentauthz_policy_info has %d series (%v), want only the revision in force", n, err)
	}
	compare(t, reg, infoHeader+`
agentauthz_policy_info{revision="cccccccccccc"} 1
`, "agentauthz_policy_info")
}

// TestReloadConcurrent: reloads racing each other leave exactly one revision series, the one
// of the last reload.
func TestReloadConcurrent(t *testing.T) {
	m, reg := newMetrics(t)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				m.Reload(true, fmt.Sprintf("rev-%d-%d", g, i%7))
			}
		}()
	}
	for range 4 {
		<-done
	}
	m.Reload(true, "final")
	if n, err := testutil.GatherAndCount(reg, "agentauthz_policy_info"); err != nil || n != 1 {
		t.Errorf("agentauthz_policy_info has %d series (%v) after concurrent reloads, want 1", n, err)
	}
	compare(t, reg, reloadsHeader+`
agentauthz_policy_reloads_total{result="success"} 801
`+infoHeader+`
agentauthz_policy_info{revision="final"} 1
`, "agentauthz_policy_reloads_total", "agentauthz_policy_info")
}

func TestSetPending(t *testing.T) {
	m, reg := newMetrics(t)
	compare(t, reg, pendingHeader+"agentauthz_approvals_pending 0\n", "agentauthz_approvals_pending")
	m.SetPending(3)
	compare(t, reg, pendingHeader+"agentauthz_approvals_pending 3\n", "agentauthz_approvals_pending")
	m.SetPending(0)
	compare(t, reg, pendingHeader+"agentauthz_approvals_pending 0\n", "agentauthz_approvals_pending")
}

func TestMCPList(t *testing.T) {
	m, reg := newMetrics(t)
	m.MCPList("tools/list", "filtered")
	m.MCPList("tools/list", "filtered")
	m.MCPList("prompts/list", "emptied")
	m.MCPList("other", "passed")
	compare(t, reg, `# HELP agentauthz_mcp_list_responses_total MCP server answers seen by the ext_proc front door, by JSON-RPC method (tools/list, resources/list, resources/templates/list, prompts/list; other: not a list) and outcome (filtered; passed: no list in it; emptied: unreadable, replaced by an empty list).
# TYPE agentauthz_mcp_list_responses_total counter
agentauthz_mcp_list_responses_total{method="other",outcome="passed"} 1
agentauthz_mcp_list_responses_total{method="prompts/list",outcome="emptied"} 1
agentauthz_mcp_list_responses_total{method="tools/list",outcome="filtered"} 2
`, "agentauthz_mcp_list_responses_total")
}

// TestNil: a nil *Metrics records nothing and does not panic: no method panics, the decision
// is left as it was, and nothing lands on Prometheus's global registry in its place.
func TestNil(t *testing.T) {
	var m *metrics.Metrics
	d := decision.Denied(decision.CodeRouteUnknown, "no")
	for _, call := range []struct {
		name string
		fn   func()
	}{
		{"Check", func() { m.Check(&d, time.Millisecond) }},
		{"Shadow", func() { m.Shadow("r", decision.CodeAllowed) }},
		{"Reload(true)", func() { m.Reload(true, "rev") }},
		{"Reload(false)", func() { m.Reload(false, "") }},
		{"SetPending", func() { m.SetPending(2) }},
		{"MCPList", func() { m.MCPList("tools/list", "filtered") }},
	} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s on a nil *Metrics panicked: %v", call.name, p)
				}
			}()
			call.fn()
		}()
	}
	if d.Outcome != decision.Deny || d.Code != decision.CodeRouteUnknown || d.Detail != "no" {
		t.Errorf("Check on a nil *Metrics changed the decision: %+v", d)
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "agentauthz_") {
			t.Errorf("a nil *Metrics recorded %s on the global registry", mf.GetName())
		}
	}
}

// TestNewRegistersOnTheGivenRegistry: nothing is global, so two instances coexist, and
// registering twice on one registry is refused.
func TestNewRegistersOnTheGivenRegistry(t *testing.T) {
	a, regA := newMetrics(t)
	_, regB := newMetrics(t)
	a.SetPending(7)
	compare(t, regA, pendingHeader+"agentauthz_approvals_pending 7\n", "agentauthz_approvals_pending")
	compare(t, regB, pendingHeader+"agentauthz_approvals_pending 0\n", "agentauthz_approvals_pending")

	defer func() {
		if recover() == nil {
			t.Error("metrics.New on a registry that already has them did not panic")
		}
	}()
	metrics.New(regA)
}

// TestHandler serves a registry in the text format.
func TestHandler(t *testing.T) {
	m, reg := newMetrics(t)
	d := decision.Decision{Outcome: decision.Allow, Code: decision.CodeAllowed}
	m.Check(&d, time.Microsecond)
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`agentauthz_decisions_total{reason="allowed"} 1`,
		`agentauthz_check_duration_seconds_count{outcome="allow"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
