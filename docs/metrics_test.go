package docs

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/service"
)

// metricDoc is a row of operating.md's table of metrics.
type metricDoc struct {
	typ    string   // counter, gauge, histogram; empty for a prefix row (go_*)
	labels []string // sorted
}

// documentedMetrics reads operating.md's table of metrics: exact names, and prefixes (go_*).
func documentedMetrics(t *testing.T) (exact, prefix map[string]metricDoc) {
	t.Helper()
	data, err := os.ReadFile(opsFile)
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n")
	if !ok {
		t.Fatal(opsFile + " has no table of metrics (| Metric | Type | Labels | Meaning |)")
	}
	exact, prefix = map[string]metricDoc{}, map[string]metricDoc{}
	row := regexp.MustCompile("^\\| `([a-z_]+\\*?)` \\| *([a-z]*) *\\| *([^|]*)\\| [^|]+ \\|$")
	for line := range strings.Lines(table) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, "|") {
			break
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s: metrics table row %q is not | `name` | type | `label`, ... | meaning |", opsFile, line)
			continue
		}
		d := metricDoc{typ: m[2]}
		for l := range strings.SplitSeq(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				d.labels = append(d.labels, l)
			}
		}
		slices.Sort(d.labels)
		if name, ok := strings.CutSuffix(m[1], "*"); ok {
			prefix[name] = d
		} else {
			exact[m[1]] = d
		}
	}
	return exact, prefix
}

// recorder is a Registerer that keeps what is registered on it.
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: ".*", constLabels: \{[^}]*\}, variableLabels: \{([^}]*)\}\}$`)

// TestMetricsDocumented: every family agentauthz registers is in operating.md's table, with its
// type and labels, and every row of the table is a family it registers. Families are enumerated
// from the collectors handed to the registry, so that a family counts before it has a series.
func TestMetricsDocumented(t *testing.T) {
	exact, _ := documentedMetrics(t)
	var rec recorder
	metrics.New(&rec)
	registered := map[string]bool{}
	for _, c := range rec.collectors {
		var typ string
		switch c.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = "histogram"
		case *prometheus.GaugeVec, prometheus.Gauge: // before Counter: a Gauge has Inc and Add too
			typ = "gauge"
		case *prometheus.CounterVec, prometheus.Counter:
			typ = "counter"
		default:
			t.Errorf("a collector of type %T is registered: teach this test its metric type", c)
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for desc := range ch {
			m := descPattern.FindStringSubmatch(desc.String())
			if m == nil {
				t.Fatalf("cannot read the description %s", desc)
			}
			name := m[1]
			var labels []string
			for l := range strings.SplitSeq(m[2], ",") {
				if l != "" {
					labels = append(labels, l)
				}
			}
			slices.Sort(labels)
			registered[name] = true
			doc, ok := exact[name]
			switch {
			case !ok:
				t.Errorf("%s (%s, labels %v) is not in %s's table of metrics", name, typ, labels, opsFile)
			case doc.typ != typ || !slices.Equal(doc.labels, labels):
				t.Errorf("%s is a %s with labels %v; %s says %s with %v", name, typ, labels, opsFile, doc.typ, doc.labels)
			}
		}
	}
	for name := range exact {
		if !registered[name] {
			t.Errorf("%s lists %s, which agentauthz does not export", opsFile, name)
		}
	}
}

// TestServedMetricsDocumented: what a running agentauthz serves on /metrics, after a check, is in
// operating.md's table (go_* and process_* by prefix), with the documented type and labels, and
// the latency histogram's buckets follow --check-timeout.
func TestServedMetricsDocumented(t *testing.T) {
	exact, prefix := documentedMetrics(t)
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "docs-test-credential")
	t.Setenv(service.DemoApproverTokenEnv, "docs-test-approver-token")
	const timeout = 750 * time.Millisecond
	svc, err := service.Start(service.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DecisionLog: "off", CheckTimeout: timeout,
		Approvals: service.ApprovalConfig{DataDir: filepath.Join(t.TempDir(), "data")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	conn, err := grpc.NewClient(svc.Server().GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := authv3.NewAuthorizationClient(conn).Check(cctx, extauthz.HTTPRequest{
		Principal: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+svc.Server().HTTPAddr().String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	for name, f := range fams {
		doc, ok := exact[name]
		if !ok {
			for p, d := range prefix {
				if strings.HasPrefix(name, p) {
					doc, ok = d, true
				}
			}
			if !ok {
				t.Errorf("/metrics serves %s, which is not in %s's table of metrics", name, opsFile)
			}
			continue // a prefix row says nothing of types and labels
		}
		typ := strings.ToLower(f.GetType().String())
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		var got []string
		for l := range labels {
			got = append(got, l)
		}
		slices.Sort(got)
		if typ != doc.typ || !slices.Equal(got, doc.labels) {
			t.Errorf("/metrics serves %s as a %s with labels %v; %s says %s with %v", name, typ, got, opsFile, doc.typ, doc.labels)
		}
	}
	for _, name := range []string{"agentauthz_check_duration_seconds", "agentauthz_build_info", "go_goroutines", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("/metrics does not serve %s", name)
		}
	}
	if h := fams["agentauthz_check_duration_seconds"]; h != nil {
		var bounds []float64
		for _, b := range h.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		if !slices.Contains(bounds, timeout.Seconds()) || bounds[len(bounds)-1] <= timeout.Seconds() {
			t.Errorf("with --check-timeout %v the latency buckets are %v: want the deadline and one above it", timeout, bounds)
		}
	}
}

// TestTracingDocumented: operating.md names the flags of tracing and reflection, the span and
// each of its attributes.
func TestTracingDocumented(t *testing.T) {
	data, err := os.ReadFile(opsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Tracing", "## gRPC reflection", "--otlp-traces-endpoint", "--otlp-traces-protocol",
		"--grpc-reflection", "grpcurl -plaintext 127.0.0.1:9001 list", "`traceparent`", "`" + engine.SpanName + "`",
		"`" + engine.AttrDecision + "`", "`" + engine.AttrReason + "`", "`" + engine.AttrRoute + "`", "`" + engine.AttrAgent + "`",
		"`" + engine.AttrDecisionID + "`", "`" + engine.AttrRevision + "`", "`" + engine.AttrMethod + "`", "`" + engine.AttrHost + "`"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not mention %q", opsFile, want)
		}
	}
}
