package main

import (
	"runtime"
	"strings"
	"testing"
)

// version and --version print one line naming the build and the Go version, on stdout.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-v"} {
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
	// Go's flag package read -version as --version; here a single dash starts short flags, and
	// the mistake is named rather than read as -v -e -r ....
	r = cli(t, "-version")
	r.want(t, exitUsage)
	if r.stderr != "agentauthz: unknown flag -version: a long flag takes two dashes: --version\n" || r.stdout != "" {
		t.Errorf("-version: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}
