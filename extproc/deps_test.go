package extproc_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyWalls: the front door decides nothing and stores nothing. Neither it nor the
// filter it hands lists to depends on the engine, the policy or a storage, notifier, sign-in or
// browser library (the filter reads JSON with policy/strictjson only).
func TestDependencyWalls(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; the dependency walls are checked where it is")
	}
	forbidden := []string{
		"github.com/agentauthz/agentauthz/internal/engine",
		"github.com/agentauthz/agentauthz/extauthz",
		"github.com/jackc/pgx",
		"go.etcd.io/bbolt",
		"github.com/slack-go/slack",
		"github.com/coreos/go-oidc",
		"github.com/chromedp",
	}
	for _, pkg := range []string{"github.com/agentauthz/agentauthz/extproc", "github.com/agentauthz/agentauthz/internal/mcpfilter"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed only %d packages: %q", pkg, len(deps), deps)
		}
		for _, dep := range deps {
			if dep == "github.com/agentauthz/agentauthz/policy" {
				t.Errorf("%s depends on the policy", pkg)
			}
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
