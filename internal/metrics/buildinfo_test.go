package metrics_test

import (
	"fmt"
	"testing"

	"github.com/agentauthz/agentauthz/internal/version"
)

// agentauthz_build_info names the running build, so that dashboards see which version serves.
func TestBuildInfo(t *testing.T) {
	_, reg := newMetrics(t)
	b := version.Get()
	compare(t, reg, fmt.Sprintf(`# HELP agentauthz_build_info The running build (value 1): version, commit and Go version.
# TYPE agentauthz_build_info gauge
agentauthz_build_info{commit=%q,goversion=%q,version=%q} 1
`, b.Commit, b.GoVersion, b.Version), "agentauthz_build_info")
}
