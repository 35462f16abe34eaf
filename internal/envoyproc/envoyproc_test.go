package envoyproc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	src := []byte("address: 0.0.0.0\nport_value: 8443\npath: /run/x.sock\nport_value: 8443\n")
	got, err := Render(src, map[string]string{
		"port_value: 8443": "port_value: 0",
		"/run/x.sock":      "/tmp/y.sock",
		"0.0.0.0":          "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "address: 127.0.0.1\nport_value: 0\npath: /tmp/y.sock\nport_value: 0\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// A value is not rewritten again, and the longer of two overlapping keys wins.
	got, err = Render([]byte("a ab"), map[string]string{"a": "ab", "ab": "X"})
	if err != nil || string(got) != "ab X" {
		t.Errorf("got %q, %v; want \"ab X\"", got, err)
	}

	// Every key must be there: a configuration that no longer has it fails loudly.
	_, err = Render(src, map[string]string{"port_value: 8443": "port_value: 0", "port_value: 9901": "x", "nope": "y"})
	if err == nil || !strings.Contains(err.Error(), `"nope", "port_value: 9901"`) {
		t.Errorf("got %v, want an error naming both missing keys", err)
	}
	if _, err := Render(src, map[string]string{"": "x"}); err == nil {
		t.Error("an empty key was accepted")
	}
}

func TestParseStats(t *testing.T) {
	body := `{"stats":[{"name":"a.b","value":3},{"name":"g","value":0},{"name":"sds.x.control_plane.identifier","value":""},
		{"histograms":{"supported_quantiles":[0,50],"computed_quantiles":[]}}]}`
	s, err := parseStats([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s["a.b"] != 3 || s["g"] != 0 {
		t.Errorf("got %v", s)
	}
	if _, err := parseStats([]byte(`{"stats":[{"name":"x","value":1.5}]}`)); err == nil {
		t.Error("a non-numeric value was accepted")
	}
}

// TestFind checks where Envoy is looked for, without running Binary's skip or fatal paths.
func TestFind(t *testing.T) {
	t.Setenv(EnvVar, "/bin/false")
	if _, err := find(); err == nil || !strings.Contains(err.Error(), EnvVar) {
		t.Errorf("AGENTAUTHZ_ENVOY=/bin/false: got %v, want an error naming %s", err, EnvVar)
	}
	t.Setenv(EnvVar, "")
	t.Setenv("PATH", t.TempDir())
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	want := filepath.Join(cache, "agentauthz", "envoy-"+Version)
	if CacheDir() != want {
		t.Errorf("CacheDir() = %s, want %s", CacheDir(), want)
	}
	_, err := find()
	if err == nil || !strings.Contains(err.Error(), "no envoy on PATH") || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error saying PATH and %s have no Envoy", err, want)
	}
}

func TestValidate(t *testing.T) {
	out := Validate(t, filepath.Join("testdata", "direct.yaml"))
	if !strings.Contains(out, "OK") {
		t.Errorf("validate said:\n%s", out)
	}
	bad := RenderFile(t, filepath.Join("testdata", "direct.yaml"), map[string]string{"stat_prefix: web": "stat_prefixx: web"})
	out, err := TryValidate(t, bad)
	if err == nil || !strings.Contains(out, "stat_prefixx") {
		t.Errorf("an unknown field passed validation: %v\n%s", err, out)
	}
}

// TestStart runs a real Envoy and talks HTTP to it.
func TestStart(t *testing.T) {
	var pid int
	t.Run("serve", func(t *testing.T) {
		cfg := RenderFile(t, filepath.Join("testdata", "direct.yaml"), map[string]string{
			"port_value: 10000": "port_value: 0",
			"hello from envoy":  "hello from a real envoy",
		})
		e := Start(t, Options{Config: cfg})
		pid = e.PID()
		addr := e.ListenerAddr("web")
		if !strings.HasPrefix(addr, "127.0.0.1:") || addr == "127.0.0.1:0" {
			t.Fatalf("listener address %q", addr)
		}
		resp, err := http.Get("http://" + addr + "/some/path")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello from a real envoy\n" || resp.Header.Get("server") != "envoy" {
			t.Fatalf("got %d %q (server %q)", resp.StatusCode, body, resp.Header.Get("server"))
		}
		if got := e.Stats()["http.web.downstream_rq_2xx"]; got != 1 {
			t.Errorf("http.web.downstream_rq_2xx = %d, want 1", got)
		}
		if !strings.Contains(e.Admin("/server_info"), `"state": "LIVE"`) {
			t.Error("/server_info does not say LIVE")
		}
		if !strings.Contains(e.Logs(), "starting main dispatch loop") {
			t.Errorf("Envoy's log lacks its start-up:\n%s", e.Logs())
		}
		waitFor(t, func() bool { return strings.Contains(e.Stdout(), "ACCESS GET /some/path 200\n") }, "the access log line")
	})
	if pid == 0 {
		return // the subtest skipped (no Envoy) or failed before Envoy started: nothing to look for
	}
	// The subtest's cleanup stopped Envoy: the process is gone, not a zombie either.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("Envoy (pid %d) is still there after its test ended: %v", pid, err)
	}
}

// TestStartTwice runs two Envoys from one configuration at once: admin ports, listener ports
// and hot restart do not collide.
func TestStartTwice(t *testing.T) {
	cfg := RenderFile(t, filepath.Join("testdata", "direct.yaml"), map[string]string{"port_value: 10000": "port_value: 0"})
	a := Start(t, Options{Config: cfg})
	b := Start(t, Options{Config: cfg, Concurrency: 2})
	if a.AdminAddr() == b.AdminAddr() || a.ListenerAddr("web") == b.ListenerAddr("web") {
		t.Fatalf("two Envoys share an address: admin %s %s", a.AdminAddr(), b.AdminAddr())
	}
	for _, e := range []*Envoy{a, b} {
		resp, err := http.Get("http://" + e.ListenerAddr("web") + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := b.Stats()["server.concurrency"]; got != 2 {
		t.Errorf("server.concurrency = %d, want 2", got)
	}
}

// TestStartFailure: an Envoy that cannot start fails Start with its log, and is not left running.
func TestStartFailure(t *testing.T) {
	dir := t.TempDir()
	// An access log in a directory that does not exist: Envoy refuses to start.
	cfg := RenderFile(t, filepath.Join("testdata", "direct.yaml"), map[string]string{
		"port_value: 10000": "port_value: 0",
		"path: /dev/stdout": "path: " + filepath.Join(dir, "no", "such", "dir", "access.log"),
	})
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		Start(ft, Options{Config: cfg, ReadyTimeout: 20 * time.Second})
	}()
	ft.runCleanups()
	if !strings.Contains(ft.fatal, "Envoy exited") || !strings.Contains(ft.fatal, "access.log") {
		t.Errorf("Start failed with %q, want it to say Envoy exited, with the log naming the access log", ft.fatal)
	}
}

// fakeT records a Fatal instead of ending the test, to test failures of Start.
type fakeT struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (f *fakeT) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...); panic(f) }
func (f *fakeT) Fatal(args ...any)                 { f.fatal = fmt.Sprint(args...); panic(f) }
func (f *fakeT) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Helper()                           {}
func (f *fakeT) Failed() bool                      { return f.fatal != "" }
func (f *fakeT) Logf(string, ...any)               {}

func (f *fakeT) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
