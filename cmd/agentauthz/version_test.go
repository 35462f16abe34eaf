package main

import (
	"runtime"
	"strings"
	"testing"
)

// version and --version print one line naming the build and the Go version, on stdout.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		r := cli(t, arg)
		r.want(t, exitOK)
		oneLine(t, "stdout", r.stdout)
		if !strings.HasPrefix(r.stdout, "agentauthz ") || !strings.Contains(r.stdout, "built with "+runtime.Version()) {
			t.Errorf("agentauthz %s printed %q", arg, r.stdout)
		}
		if r.stderr != "" {
			t.Errorf("agentauthz %s wrote to stderr: %q", arg, r.stderr)
		}
	}
	r := cli(t, "version", "extra")
	r.want(t, exitUsage)
	if r.stderr != "agentauthz version: unexpected argument \"extra\"\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}
