package approval_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreDependencies: the core links no storage driver, notifier, sign-in library or browser
// driver, so that the decision engine and the Envoy front door, which link it, do not either.
// Those live in the packages below it (pgstore, boltstore, slack, signin), which only cmd wires
// in, and in the console's browser test module.
func TestCoreDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; the core's dependencies are checked where it is")
	}
	const pkg = "github.com/agentauthz/agentauthz/internal/approval"
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || deps[len(deps)-1] != pkg {
		t.Fatalf("go list -deps %s listed %d packages, not ending with it: %q", pkg, len(deps), deps)
	}
	for _, dep := range deps {
		for _, f := range []string{
			"github.com/jackc/pgx",      // pgstore
			"go.etcd.io/bbolt",          // boltstore
			"github.com/slack-go/slack", // slack
			"github.com/coreos/go-oidc", // signin
			"github.com/chromedp",       // console/browsertest, its own module
		} {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
