package engine_test

import (
	"testing"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/metrics"
)

// The latency buckets made without a deadline are made for the engine's default one.
func TestMetricsDefaultTimeout(t *testing.T) {
	if metrics.DefaultCheckTimeout != engine.DefaultTimeout {
		t.Errorf("metrics.DefaultCheckTimeout = %v, engine.DefaultTimeout = %v; want the same", metrics.DefaultCheckTimeout, engine.DefaultTimeout)
	}
}
