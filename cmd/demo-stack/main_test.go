//go:build linux

package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
)

// TestStories runs `demo-stack -auto-approve` end to end: real SPIRE, Envoy, agentauthz, the
// demo APIs and both demo agents as local processes. Both stories must go as the demo expects,
// and when the command has exited no process it started may be left, nor its working directory.
func TestStories(t *testing.T) {
	r := start(t, "-auto-approve")
	code := r.wait(t, 5*time.Minute)
	out := r.out.String()
	if code != 0 {
		t.Fatalf("demo-stack exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		// Every workload's identity comes from SPIRE; each agent says who it is.
		`This agent is spiffe://acme.internal/agent/helpdesk; it trusts only spiffe://acme.internal/envoy`,
		`This agent is spiffe://acme.internal/agent/bi; it trusts only spiffe://acme.internal/envoy`,
		`spiffe://acme.internal/envoy +← unix:path:/\S+`,
		// The helpdesk story: tickets, a comment, the reset held, approved, used once.
		`← 200: 3 open tickets`,
		`← 201: comment \d+ added`,
		`← 428 approval_required: `,
		`▸ approved as alice through POST http://127\.0\.0\.1:\d+/v1/approvals/apr_\w+/approve: approved by alice`,
		`retry with approval apr_\w+ \(approved after \d+s\)`,
		`← 200: jdoe's password reset \(user notified: true\)`,
		`← 403 approval_used: `,
		// The BI story: two reports, personal data and a mutation refused.
		`← 200: revenue [\d.]+ EUR`,
		`← 403 graphql_field: `,
		`← 403 graphql_operation: `,
		// The outcome.
		`helpdesk story: as the demo expects`,
		`bi +story: as the demo expects`,
		`spiffe://acme.internal/agent/helpdesk +403 approval_used ×1, 428 approval_required ×1, allow ×\d+`,
		`spiffe://acme.internal/agent/bi +403 graphql_field ×1, 403 graphql_operation ×1, allow ×2`,
		`agentauthz audit verify: \S+decisions\.log: ok, \d+ records`,
		`== Stopped bi-agent, helpdesk-agent, envoy, agentauthz, bi-api, helpdesk-api, spire-agent, spire-server\.`,
		`Both stories went as the demo expects\.`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the output lacks %s", want)
		}
	}
	r.noSurvivors(t)
	if _, err := os.Stat(r.workDir(t)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the working directory %s is still there (%v)", r.workDir(t), err)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestStop interrupts demo-stack while the helpdesk agent waits for a human approval: on
// SIGINT (Ctrl-C) or SIGTERM it stops everything and exits 130; killed, it leaves nothing
// either, as every child dies with it.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGKILL, -1}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			r := start(t)
			r.waitOutput(t, "waiting for you (demo-stack -auto-approve approves by itself)", 3*time.Minute)
			dir := r.workDir(t)
			// What must go: the processes are found by the marker in their environment.
			running := strings.Join(processesWith(r.marker), "\n")
			for _, name := range []string{"spire-server", "spire-agent", "helpdesk-api", "bi-api", "agentauthz serve", "envoy", "helpdesk-agent"} {
				if !strings.Contains(running, name) {
					t.Errorf("no %s among demo-stack's processes:\n%s", name, running)
				}
			}
			if err := r.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if code := r.wait(t, time.Minute); code != tc.code {
				t.Errorf("demo-stack exited %d after %s, want %d", code, tc.sig, tc.code)
			}
			r.noSurvivors(t)
			if tc.sig == syscall.SIGKILL {
				os.RemoveAll(dir)
				return
			}
			for _, want := range []string{"== interrupt: stopping everything", "== Stopped "} {
				if !strings.Contains(r.out.String(), want) {
					t.Errorf("the output lacks %q:\n%s", want, r.out.String())
				}
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the working directory %s is still there (%v)", dir, err)
			}
		})
	}
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// demoStack builds the command once per test binary.
func demoStack(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "demo-stack-test")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "demo-stack")
		out, err := exec.Command("go", "build", "-o", built, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build demo-stack: %v", buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

// run is one demo-stack process.
type run struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	marker string // in the environment of demo-stack and so of everything it starts
	done   chan struct{}
}

// start runs demo-stack with args; it is killed, if still running, when the test ends.
func start(t *testing.T, args ...string) *run {
	t.Helper()
	spiretest.Binaries(t)
	envoyproc.Binary(t)
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := &run{out: &syncBuffer{}, marker: "AGENTAUTHZ_DEMO_STACK_TEST=" + hex.EncodeToString(b[:]), done: make(chan struct{})}
	r.cmd = exec.Command(demoStack(t), args...)
	r.cmd.Env = append(os.Environ(), r.marker)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for demo-stack to exit and returns its exit code (-1 when a signal ended it).
func (r *run) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("demo-stack still runs after %s:\n%s", timeout, r.out.String())
		return 0
	}
}

// waitOutput waits until demo-stack has printed s.
func (r *run) waitOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.out.String(), s) {
		select {
		case <-r.done:
			t.Fatalf("demo-stack exited (%v) without printing %q:\n%s", r.cmd.ProcessState, s, r.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo-stack did not print %q within %s:\n%s", s, timeout, r.out.String())
		}
	}
}

var workDirLine = regexp.MustCompile(`working directory (\S+)`)

// workDir is the working directory demo-stack said it made.
func (r *run) workDir(t *testing.T) string {
	t.Helper()
	m := workDirLine.FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("demo-stack did not name its working directory:\n%s", r.out.String())
	}
	return m[1]
}

// noSurvivors fails the test if a process with the run's marker in its environment is left a
// few seconds after demo-stack exited (the kernel delivers a dead parent's Pdeathsig at once,
// but a killed process takes a moment to go).
func (r *run) noSurvivors(t *testing.T) {
	t.Helper()
	var left []string
	for range 50 {
		if left = processesWith(r.marker); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("processes demo-stack started are still running after it exited:\n%s", strings.Join(left, "\n"))
}

// processesWith lists the processes (pid and command line) whose environment holds marker.
func processesWith(marker string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var out []string
	for _, p := range procs {
		env, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(env, []byte(marker+"\x00")) {
			continue
		}
		dir := filepath.Dir(p)
		if stat, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil && isZombie(stat) {
			continue // exited, waiting for its parent (gone or not) to reap it
		}
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		out = append(out, filepath.Base(dir)+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

// isZombie reads the state field of /proc/PID/stat ("pid (comm) S ...").
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// syncBuffer is a bytes.Buffer for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
