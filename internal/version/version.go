// Package version says which build of agentauthz is running, from the build information the Go
// toolchain records in every binary: the module version (a release tag when installed with
// `go install ...@vX.Y.Z`), the VCS commit and whether the tree was modified, and the Go version.
// A release build (.goreleaser.yaml) also stamps its version and commit with -ldflags -X, and
// those win: they hold even where the toolchain recorded none (a build outside a repository).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by a release build: -X github.com/agentauthz/agentauthz/internal/version.releaseVersion=v1.2.3
// and -X ...releaseCommit=FULL_COMMIT.
var (
	releaseVersion string
	releaseCommit  string
)

// Info is one build's identity.
type Info struct {
	// Version is the module version: a release tag, a pseudo-version, or "(devel)" for a build
	// from a checkout.
	Version string
	// Commit is the VCS revision the binary was built from; empty when unknown (go run, or a
	// build outside a repository).
	Commit string
	// Modified reports uncommitted changes in the tree it was built from.
	Modified bool
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Get reads the running binary's build information.
func Get() Info {
	info := Info{Version: "(unknown)", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if releaseVersion != "" {
		info.Version = releaseVersion
	}
	if releaseCommit != "" {
		info.Commit = releaseCommit
	}
	return info
}

// String is the one line `agentauthz version` prints.
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	if i.Modified {
		commit += ", modified"
	}
	return fmt.Sprintf("agentauthz %s (commit %s) built with %s", i.Version, commit, i.GoVersion)
}
