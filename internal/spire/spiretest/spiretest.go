// Package spiretest runs real SPIRE (internal/spire) in tests: without the SPIRE binaries a test
// skips, saying how to build them, or fails when CI is set; everything started stops when the
// test ends, and the SPIRE logs are written to the test log if it failed.
package spiretest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/spire"
)

// StartTimeout bounds starting SPIRE and each wait for it.
const StartTimeout = 90 * time.Second

// Binaries returns the SPIRE programs (spire.FindBinaries). Without them it skips the test with
// how to build them, or fails it when CI is set (.ci/run builds them).
func Binaries(t testing.TB) spire.Binaries {
	t.Helper()
	b, err := spire.FindBinaries()
	if err == nil {
		return b
	}
	if os.Getenv(spire.EnvVar) != "" || os.Getenv("CI") != "" {
		t.Fatalf("%v\n(.ci/run builds it)", err)
	}
	t.Skip(err)
	return spire.Binaries{}
}

// ShortTempDir is a temporary directory whose path is short enough for unix sockets (sun_path
// holds about 100 bytes; t.TempDir() under a long TMPDIR may not leave room), with symbolic
// links resolved (the unix workload attestor sees resolved paths, so selectors must use them).
// It is removed when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Start starts a SPIRE server and agent (spire.Start) in opts.Dir, or a ShortTempDir when it is
// empty, and stops them when the test ends.
func Start(t testing.TB, opts spire.Options) *spire.SPIRE {
	t.Helper()
	if opts.Binaries == (spire.Binaries{}) {
		opts.Binaries = Binaries(t)
	}
	if opts.Dir == "" {
		opts.Dir = ShortTempDir(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	s, err := spire.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			DumpLog(t, s.Agent.Process())
			DumpLog(t, s.Server.Process())
		}
	})
	return s
}

// Register creates a registration entry (SPIRE.Register), failing the test on error.
func Register(t testing.TB, s *spire.SPIRE, e spire.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if _, err := s.Register(ctx, e); err != nil {
		t.Fatal(err)
	}
}

// WaitForSVIDs waits until the Workload API serves the test binary every one of ids.
func WaitForSVIDs(t testing.TB, s *spire.SPIRE, ids ...spiffeid.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := s.Agent.WaitForSVIDs(ctx, ids...); err != nil {
		t.Fatal(err)
	}
}

// TestBinary is the path of the running test binary, as the unix workload attestor sees it.
func TestBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatal(err)
	}
	return exe
}

// DumpLog writes the last lines of p's log to the test log.
func DumpLog(t testing.TB, p *childproc.Proc) {
	t.Helper()
	if p != nil {
		t.Logf("--- %s log (%s), last lines ---\n%s", p.Name(), p.LogPath(), p.Tail(60))
	}
}
