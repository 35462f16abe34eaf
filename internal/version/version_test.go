package version_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/version"
)

func TestGet(t *testing.T) {
	info := version.Get()
	if info.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", info.GoVersion, runtime.Version())
	}
	if info.Version == "" {
		t.Error("Version is empty")
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		info version.Info
		want string
	}{
		{version.Info{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"}, "agentauthz v1.2.3 (commit abc123) built with go1.26.8"},
		{version.Info{Version: "(devel)", Commit: "abc123", Modified: true, GoVersion: "go1.26.8"}, "agentauthz (devel) (commit abc123, modified) built with go1.26.8"},
		{version.Info{Version: "(devel)", GoVersion: "go1.26.8"}, "agentauthz (devel) (commit unknown) built with go1.26.8"},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.info, got, tc.want)
		}
		if strings.Contains(tc.info.String(), "\n") {
			t.Errorf("%+v.String() is more than one line", tc.info)
		}
	}
}

// TestRelease: a release build's stamped version and commit are what Get reports.
func TestRelease(t *testing.T) {
	defer version.SetRelease("v1.2.3", "0123456789abcdef0123456789abcdef01234567")()
	info := version.Get()
	if info.Version != "v1.2.3" || info.Commit != "0123456789abcdef0123456789abcdef01234567" || info.GoVersion != runtime.Version() {
		t.Errorf("Get() = %+v, want the stamped version and commit", info)
	}
	restore := version.SetRelease("", "")
	defer restore()
	if info := version.Get(); info.Version == "v1.2.3" || info.Commit == "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("Get() = %+v without a stamp", info)
	}
}
