package metrics_test

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The latency histogram's buckets follow the check deadline: they reach it, hold it exactly, and
// have one above it, so that late answers are counted apart from the slowest in time.
func TestCheckBucketsFollowTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{time.Microsecond, 10 * time.Microsecond, 3 * time.Millisecond,
		100 * time.Millisecond, metrics.DefaultCheckTimeout, 750 * time.Millisecond, 2 * time.Second, time.Minute} {
		b := metrics.CheckBuckets(timeout)
		if !slices.IsSorted(b) || len(slices.Compact(slices.Clone(b))) != len(b) {
			t.Errorf("timeout %v: buckets %v are not strictly increasing", timeout, b)
		}
		if !slices.Contains(b, timeout.Seconds()) {
			t.Errorf("timeout %v: buckets %v lack the deadline %v", timeout, b, timeout.Seconds())
		}
		if last := b[len(b)-1]; last <= timeout.Seconds() {
			t.Errorf("timeout %v: buckets %v have none above the deadline", timeout, b)
		}
		if timeout > 10*time.Microsecond && b[0] != 10e-6 {
			t.Errorf("timeout %v: buckets start at %v, want 10µs", timeout, b[0])
		}
	}
	if got, want := metrics.CheckBuckets(0), metrics.CheckBuckets(metrics.DefaultCheckTimeout); !slices.Equal(got, want) {
		t.Errorf("CheckBuckets(0) = %v, want the default deadline's %v", got, want)
	}
}

// New makes the histogram with WithCheckTimeout's buckets: a check later than the deadline
// lands above the deadline's bucket.
func TestWithCheckTimeout(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.WithCheckTimeout(750*time.Millisecond))
	late := decision.Denied(decision.CodeDeadlineExceeded, "late")
	m.Check(&late, 900*time.Millisecond)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	for _, f := range fams {
		if f.GetName() == "agentauthz_check_duration_seconds" {
			h = f.GetMetric()[0].GetHistogram()
		}
	}
	if h == nil {
		t.Fatal("no agentauthz_check_duration_seconds")
	}
	var bounds []float64
	counts := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		counts[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if !slices.Equal(bounds, metrics.CheckBuckets(750*time.Millisecond)) {
		t.Errorf("buckets %v, want %v", bounds, metrics.CheckBuckets(750*time.Millisecond))
	}
	if counts[0.75] != 0 || counts[1.5] != 1 {
		t.Errorf("a 900 ms check: %d at le=0.75, %d at le=1.5; want 0 and 1", counts[0.75], counts[1.5])
	}
}
