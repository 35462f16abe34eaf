// Package metrics defines agentauthz's Prometheus metrics. They are registered on a registry
// the caller provides; nothing is global.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/version"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// Metrics are the service's metrics. A nil *Metrics records nothing.
type Metrics struct {
	checkDuration *prometheus.HistogramVec
	decisions     *prometheus.CounterVec
	shadow        *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	policyInfo    *prometheus.GaugeVec
	policyLoaded  prometheus.Gauge
	pending       prometheus.Gauge
	notifications *prometheus.CounterVec
	logFailures   *prometheus.CounterVec
	logTruncated  prometheus.Counter
	logHead       prometheus.Gauge
	signinFailed  *prometheus.CounterVec
	signinRefused *prometheus.CounterVec
	mcp           *prometheus.CounterVec
	mcpFiltered   *prometheus.CounterVec
	mcpLists      *prometheus.CounterVec
	responses     *prometheus.CounterVec
	respRemoved   *prometheus.CounterVec
	identities    *prometheus.CounterVec
	oauthFetches  *prometheus.CounterVec

	mu       sync.Mutex
	revision string
}

// DefaultCheckTimeout is the check deadline the latency buckets are made for unless
// WithCheckTimeout says another: engine.DefaultTimeout.
const DefaultCheckTimeout = 200 * time.Millisecond

// Option configures New.
type Option func(*options)

type options struct{ checkTimeout time.Duration }

// WithCheckTimeout makes the latency histogram's buckets for a check deadline of d (serve's
// --check-timeout): see CheckBuckets. Zero or less means DefaultCheckTimeout.
func WithCheckTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.checkTimeout = d
		}
	}
}

// CheckBuckets are the latency histogram's upper bounds, in seconds, for a check deadline of
// timeout: from 10 µs in steps of 1, 2.5 and 5 (most decisions take a few µs; approval lookups
// and large bodies more) up to the deadline, the deadline itself (answered in time), and twice
// the deadline, so that answers later than the deadline (a deadline_exceeded deny, or an allow
// that spent an approval and is kept) are seen apart from the slowest in time.
func CheckBuckets(timeout time.Duration) []float64 {
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	var b []float64
	// 10 µs, 25 µs, 50 µs, 100 µs, ...: each decade's 1, 2.5 and 5, in whole nanoseconds.
	for decade := 10 * time.Microsecond; decade < timeout; decade *= 10 {
		for _, v := range []time.Duration{decade, decade * 5 / 2, decade * 5} {
			if v < timeout {
				b = append(b, v.Seconds())
			}
		}
	}
	return append(b, timeout.Seconds(), (2 * timeout).Seconds())
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer, opts ...Option) *Metrics {
	o := options{checkTimeout: DefaultCheckTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	m := &Metrics{
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agentauthz_check_duration_seconds",
			Help:    "Time to answer one Check call, by outcome (allow, deny, error: a deny because agentauthz could not decide).",
			Buckets: CheckBuckets(o.checkTimeout),
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauthz_decisions_total",
			Help: "Decisions by stable reason code (allowed, scope_missing, body_schema, ...).",
		}, []string{"reason"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauthz_shadow_decisions_total",
			Help: "Would-be decisions of shadow rules, by the rule and its would-be reason code.",
		}, []string{"rule", "reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauthz_policy_reloads_total",
			Help: "Policy loads by result (success, failure). A failure leaves the last good policy serving.",
		}, []string{"result"}),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentauthz_policy_info",
			Help: "The policy revision in force (value 1).",
		}, []string{"revision"}),
		policyLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentauthz_policy_last_load_success",
			Help: "1 if the last policy load succeeded, 0 if it failed and an older policy is serving.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentauthz_approvals_pending",
			Help: "Requests held for human approval.",
		}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauthz_notifications_total",
			Help: "Approval notifications by notifier, event and outcome (delivered, retry, failed, dropped).",
		}, []string{"notifier", "event", "outcome"}),
	}
	m.logFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_decision_log_failures_total",
		Help: "Decision log records not written, by reason (write, sync: the log stopped; stopped: lost after that; full: dropped because the queue in front of the writer was full; closed; invalid; clock), and failed rotations (rotate: nothing lost).",
	}, []string{"reason"})
	for _, r := range audit.Reasons {
		m.logFailures.WithLabelValues(r) // every reason from 0, for alerts
	}
	m.logTruncated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agentauthz_decision_log_truncated_total",
		Help: "Decision log fields cut to the field limit (a huge request id or path), and records shortened to the record limit; each still recorded.",
	})
	m.logHead = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "agentauthz_decision_log_head_sequence",
		Help: "The sequence number of the decision log's last record: a record at or below it missing from the log means records were removed.",
	})
	m.signinFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_signin_failures_total",
		Help: "Failed approver sign-ins on the HTTP listener, by surface (api: bearer tokens and OIDC ID tokens; console; slack: forged, stale or replayed interactions and unmapped Slack users).",
	}, []string{"surface"})
	m.signinRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_signin_throttled_total",
		Help: "Sign-ins refused unseen (429) because their client address failed too often, by surface.",
	}, []string{"surface"})
	for _, s := range SigninSurfaces {
		m.signinFailed.WithLabelValues(s) // every surface from 0, for alerts
		m.signinRefused.WithLabelValues(s)
	}
	m.mcp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_mcp_decisions_total",
		Help: "Decisions on MCP messages, by MCP server, JSON-RPC method (\"other\" for a method neither MCP nor the policy names), tool, prompt or resource pattern the policy names (empty otherwise), and reason code.",
	}, []string{"server", "method", "name", "code"})
	m.mcpFiltered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_mcp_list_entries_removed_total",
		Help: "Entries removed from MCP list responses (tools/list, resources/list, resources/templates/list, prompts/list) because the agent may not use them, by MCP server and list method.",
	}, []string{"server", "method"})
	m.mcpLists = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_mcp_list_responses_total",
		Help: "MCP server answers seen by the ext_proc front door, by JSON-RPC method (tools/list, resources/list, resources/templates/list, prompts/list; other: not a list) and outcome (filtered; passed: no list in it; emptied: unreadable, replaced by an empty list).",
	}, []string{"method", "outcome"})
	m.identities = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_decisions_by_identity_total",
		Help: "Decisions by where the agent's identity came from (x509, jwt_svid, oauth, or none when none was established) and outcome (allow, deny, error).",
	}, []string{"source", "outcome"})
	m.oauthFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_oauth_key_fetches_total",
		Help: "Fetches of OAuth issuers' keys (metadata and JWKS), by issuer and result (success, failure). A failure leaves cached keys verifying.",
	}, []string{"issuer", "result"})
	m.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_responses_total",
		Help: "Responses checked against a response rule, by rule (route:NAME or mcp:SERVER/TOOL), outcome (passed, reduced, withheld, refused) and shadow (true: reported, sent unchanged).",
	}, []string{"rule", "outcome", "shadow"})
	m.respRemoved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentauthz_response_fields_removed_total",
		Help: "Distinct field paths removed or masked from responses by response rules (in shadow: that would have been), by rule and action (removed, masked).",
	}, []string{"rule", "action"})
	reg.MustRegister(m.responses, m.respRemoved)
	reg.MustRegister(m.checkDuration, m.decisions, m.shadow, m.reloads, m.policyInfo, m.policyLoaded, m.pending, m.notifications,
		m.logFailures, m.logTruncated, m.logHead, m.signinFailed, m.signinRefused, m.mcp, m.mcpFiltered, m.mcpLists, m.identities, m.oauthFetches)
	build := version.Get()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentauthz_build_info",
		Help: "The running build (value 1): version, commit and Go version.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(build.Version, build.Commit, build.GoVersion).Set(1)
	reg.MustRegister(buildInfo)
	return m
}

// SigninSurfaces are where approvers sign in: the label values of the sign-in metrics.
var SigninSurfaces = []string{"api", "console", "slack"}

// Signin records a failed approver sign-in on surface, or (throttled) a sign-in refused unseen
// because its client address failed too often: throttle.Limiter's Observe.
func (m *Metrics) Signin(surface string, throttled bool) {
	if m == nil {
		return
	}
	if throttled {
		m.signinRefused.WithLabelValues(surface).Inc()
		return
	}
	m.signinFailed.WithLabelValues(surface).Inc()
}

// MCPList counts one MCP server answer the ext_proc front door saw: its list method ("other"
// for any other) and what became of it (filtered, passed, emptied).
func (m *Metrics) MCPList(method, outcome string) {
	if m == nil {
		return
	}
	m.mcpLists.WithLabelValues(method, outcome).Inc()
}

// Response counts one response checked against a response rule: the rule's key, the outcome,
// whether the rule is in shadow, and how many field paths were removed and masked.
func (m *Metrics) Response(rule, outcome string, shadow bool, removed, masked int) {
	if m == nil {
		return
	}
	m.responses.WithLabelValues(rule, outcome, strconv.FormatBool(shadow)).Inc()
	if removed > 0 {
		m.respRemoved.WithLabelValues(rule, "removed").Add(float64(removed))
	}
	if masked > 0 {
		m.respRemoved.WithLabelValues(rule, "masked").Add(float64(masked))
	}
}

// Handler serves the metrics of g in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// Outcome is the histogram label of a decision: allow, deny, or error for a failure to decide.
func Outcome(d *decision.Decision) string {
	switch {
	case d.Allowed():
		return "allow"
	case d.Code.IsFailure() || d.Code == "":
		return "error"
	default:
		return "deny"
	}
}

// Check records one answered Check.
func (m *Metrics) Check(d *decision.Decision, took time.Duration) {
	if m == nil {
		return
	}
	code := d.Code
	if code == "" {
		code = decision.CodeInternal
	}
	m.checkDuration.WithLabelValues(Outcome(d)).Observe(took.Seconds())
	m.decisions.WithLabelValues(string(code)).Inc()
	if c := d.MCP; c != nil {
		method, name := c.Method, ""
		if !c.Listed && !mcpMethods[method] {
			method = "other"
		}
		if c.Listed {
			name = c.Name
		}
		m.mcp.WithLabelValues(c.Server, method, name, string(code)).Inc()
	}
}

// ListFiltered records n entries removed from an MCP list response.
func (m *Metrics) ListFiltered(server, method string, n int) {
	if m == nil || n == 0 || !mcpMethods[method] {
		return
	}
	m.mcpFiltered.WithLabelValues(server, method).Add(float64(n))
}

// mcpMethods are the JSON-RPC methods of MCP's protocol revisions that label metrics whether or
// not a policy names them; any other method an agent sends is counted as "other".
var mcpMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "prompts/list": true,
	"prompts/get": true, "completion/complete": true, "logging/setLevel": true,
	"notifications/initialized": true, "notifications/cancelled": true, "notifications/progress": true,
	"notifications/roots/list_changed": true, "subscriptions/listen": true,
	"tasks/get": true, "tasks/result": true, "tasks/list": true, "tasks/cancel": true,
}

// Identity counts an answered decision by the source of the agent's identity.
func (m *Metrics) Identity(source string, d *decision.Decision) {
	if m == nil {
		return
	}
	m.identities.WithLabelValues(source, Outcome(d)).Inc()
}

// OAuthKeyFetch records one fetch of an OAuth issuer's keys: oauthkeys.Config.Observe.
func (m *Metrics) OAuthKeyFetch(issuer string, ok bool) {
	if m == nil {
		return
	}
	result := "success"
	if !ok {
		result = "failure"
	}
	m.oauthFetches.WithLabelValues(issuer, result).Inc()
}

// Shadow records the would-be decision of a shadow rule.
func (m *Metrics) Shadow(rule string, code decision.Code) {
	if m == nil {
		return
	}
	m.shadow.WithLabelValues(rule, string(code)).Inc()
}

// Reload records a policy load and, on success, the revision now in force.
func (m *Metrics) Reload(ok bool, revision string) {
	if m == nil {
		return
	}
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		m.policyLoaded.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.policyLoaded.Set(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revision != "" && m.revision != revision {
		m.policyInfo.DeleteLabelValues(m.revision)
	}
	m.revision = revision
	m.policyInfo.WithLabelValues(revision).Set(1)
}

// Notification records what became of one approval notification.
func (m *Metrics) Notification(notifier, event, outcome string) {
	if m == nil {
		return
	}
	m.notifications.WithLabelValues(notifier, event, outcome).Inc()
}

// SetPending records how many requests wait for approval.
func (m *Metrics) SetPending(n int) {
	if m == nil {
		return
	}
	m.pending.Set(float64(n))
}

// DecisionLog returns the decision log's Observer: it counts records not written, by reason,
// and fields cut, and sets the head's sequence number. For the server log, rotated (if not nil)
// is told of each rotation, and failed (if not nil) of each record not written and each failed
// rotation.
func (m *Metrics) DecisionLog(rotated func(file string, last audit.Head), failed func(*audit.WriteError)) audit.Observer {
	return logObserver{m: m, rotated: rotated, failed: failed}
}

type logObserver struct {
	m       *Metrics
	rotated func(string, audit.Head)
	failed  func(*audit.WriteError)
}

var _ audit.Observer = logObserver{}

func (o logObserver) Written(h audit.Head) {
	if o.m != nil {
		o.m.logHead.Set(float64(h.Seq))
	}
}

func (o logObserver) Failed(err *audit.WriteError) {
	if o.m != nil {
		o.m.logFailures.WithLabelValues(err.Reason).Inc()
	}
	if o.failed != nil {
		o.failed(err)
	}
}

func (o logObserver) Truncated(string, string) {
	if o.m != nil {
		o.m.logTruncated.Inc()
	}
}

func (o logObserver) Rotated(file string, last audit.Head) {
	if o.rotated != nil {
		o.rotated(file, last)
	}
}
