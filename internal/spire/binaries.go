package spire

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Version is the SPIRE release agentauthz is tested with; internal/tools/spire pins it.
const Version = "1.13.3"

// EnvVar names the variable that points at a directory holding spire-server and spire-agent.
const EnvVar = "AGENTAUTHZ_SPIRE_BIN"

// Binaries are the SPIRE programs.
type Binaries struct {
	Server, Agent string
}

// CacheDir is where .ci/run builds SPIRE Version: $XDG_CACHE_HOME (or ~/.cache)/agentauthz/spire-vVERSION.
func CacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "agentauthz", "spire-v"+Version)
}

// BuildCommand is the command, run from the repository root, that builds SPIRE Version into dir.
func BuildCommand(dir string) string {
	return "(cd internal/tools/spire && go build -o " + dir +
		" github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent)"
}

// FindBinaries looks for spire-server and spire-agent in $AGENTAUTHZ_SPIRE_BIN, then in
// CacheDir, then on PATH. Its error says what is missing and how to build it. A set
// AGENTAUTHZ_SPIRE_BIN without both programs is an error, not a reason to look elsewhere.
func FindBinaries() (Binaries, error) {
	if dir := os.Getenv(EnvVar); dir != "" {
		b := Binaries{filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")}
		for _, p := range []string{b.Server, b.Agent} {
			if !isExecutable(p) {
				return Binaries{}, fmt.Errorf("spire: %s=%s has no executable %s; build SPIRE %s there with\n\t%s",
					EnvVar, dir, filepath.Base(p), Version, BuildCommand(dir))
			}
		}
		return b, nil
	}
	var tried []string
	if dir := CacheDir(); dir != "" {
		b := Binaries{filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")}
		if isExecutable(b.Server) && isExecutable(b.Agent) {
			return b, nil
		}
		tried = append(tried, "not in "+dir)
	}
	s, errS := exec.LookPath("spire-server")
	a, errA := exec.LookPath("spire-agent")
	if errS == nil && errA == nil {
		return Binaries{s, a}, nil
	}
	tried = append(tried, "not on PATH")
	dir := CacheDir()
	if dir == "" {
		dir = "DIR"
	}
	return Binaries{}, errors.New("spire: SPIRE " + Version + " (spire-server and spire-agent) is not installed (" +
		strings.Join(tried, ", ") + "). Build it, from the repository root, with\n\t" + BuildCommand(dir) +
		"\nor set " + EnvVar + " to a directory holding both")
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
