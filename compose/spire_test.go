package compose_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSPIREBootstrap runs the compose demo's SPIRE bootstrap outside Docker, against real SPIRE
// 1.13.3 binaries (AGENTAUTHZ_SPIRE_BIN, as .ci/run builds them): spire/server.conf starts a
// server, spire/setup.sh writes the bundle and the agent's configuration and registers the
// workloads (twice, to show it is idempotent), and the SPIRE agent, configured from the written
// spire/agent.conf, attests with the join token and is handed every workload's SVID. Only the
// paths, ports and the server's address are changed from compose's. What it cannot check
// without Docker is the docker workload attestor matching containers by label.
func TestSPIREBootstrap(t *testing.T) {
	dir := os.Getenv("AGENTAUTHZ_SPIRE_BIN")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("AGENTAUTHZ_SPIRE_BIN is not set; .ci/run builds SPIRE and sets it")
		}
		t.Skip("AGENTAUTHZ_SPIRE_BIN is not set (a directory with spire-server and spire-agent 1.13.3); not running the SPIRE bootstrap")
	}
	server, agent := filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run spire/setup.sh")
	}
	// Unix socket paths must stay short: not t.TempDir.
	tmp, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	for _, d := range []string{"server", "ssock", "boot", "agent", "asock"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	serverConf := rewrite(t, "spire/server.conf", filepath.Join(tmp, "server.conf"),
		"/var/lib/spire/server", filepath.Join(tmp, "server"),
		"/tmp/spire-server/private", filepath.Join(tmp, "ssock"),
		`bind_port = "8081"`, `bind_port = "`+port+`"`)
	serverSock := filepath.Join(tmp, "ssock", "api.sock")
	start(ctx, t, server, "run", "-config", serverConf)
	waitHealthy(ctx, t, server, serverSock)

	setup := func() string {
		cmd := exec.CommandContext(ctx, sh, "spire/setup.sh")
		cmd.Env = append(os.Environ(), "SPIRE_SERVER="+server, "SOCKET="+serverSock,
			"OUT="+filepath.Join(tmp, "boot"), "TEMPLATE=spire/agent.conf")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("spire/setup.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	setup()
	if out := setup(); strings.Count(out, " is registered") != 4 {
		t.Errorf("the second run of setup.sh did not find the 4 entries registered:\n%s", out)
	}

	out, err := exec.CommandContext(ctx, server, "entry", "show", "-socketPath", serverSock).CombinedOutput()
	if err != nil {
		t.Fatalf("entry show: %v\n%s", err, out)
	}
	ids := map[string]string{
		"spiffe://acme.internal/envoy":          "docker:label:org.acme.workload:envoy",
		"spiffe://acme.internal/agentauthz":     "docker:label:org.acme.workload:agentauthz",
		"spiffe://acme.internal/agent/helpdesk": "docker:label:org.acme.workload:helpdesk-agent",
		"spiffe://acme.internal/agent/bi":       "docker:label:org.acme.workload:bi-agent",
	}
	for id, selector := range ids {
		entry := regexp.MustCompile(`SPIFFE ID\s+: ` + regexp.QuoteMeta(id) + `\n(?:[^\n]+\n)*?Selector\s+: ` + regexp.QuoteMeta(selector) + `\n`)
		if !entry.Match(out) {
			t.Errorf("no entry %s with selector %s:\n%s", id, selector, out)
		}
	}

	written, err := os.ReadFile(filepath.Join(tmp, "boot", "agent.conf"))
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile(`join_token = "([0-9a-f-]{36})"`).FindSubmatch(written)
	if token == nil || bytes.Count(written, token[1]) != 1 || bytes.Contains(written, []byte("@JOIN_TOKEN@")) {
		t.Fatalf("the written agent.conf has no single fresh join token:\n%s", written)
	}
	agentConf := filepath.Join(tmp, "agent.conf")
	if err := os.WriteFile(agentConf, written, 0o600); err != nil {
		t.Fatal(err)
	}
	rewrite(t, agentConf, agentConf,
		"/var/lib/spire/agent", filepath.Join(tmp, "agent"),
		"/etc/spire/bootstrap", filepath.Join(tmp, "boot"),
		"/run/spire/agent/public", filepath.Join(tmp, "asock"),
		`server_address = "spire-server"`, `server_address = "127.0.0.1"`,
		`server_port = "8081"`, `server_port = "`+port+`"`)
	agentLog := start(ctx, t, agent, "run", "-config", agentConf)
	waitHealthy(ctx, t, agent, filepath.Join(tmp, "asock", "api.sock"))

	// The agent is handed an SVID for every workload entry (it syncs every few seconds).
	for {
		missing := ""
		for id := range ids {
			if !strings.Contains(agentLog.String(), `msg="Creating X509-SVID"`) || !strings.Contains(agentLog.String(), `spiffe_id="`+id+`"`) {
				missing = id
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the SPIRE agent was not handed %s's SVID:\n%s", missing, agentLog.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if info, err := os.Stat(filepath.Join(tmp, "asock", "api.sock")); err != nil || info.Mode().Perm() != 0o777 {
		t.Errorf("Workload API socket %v %v: workloads of every user (Envoy, nonroot) must reach it", info.Mode(), err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// rewrite copies src to dst with each old, new pair replaced, failing if an old one is absent.
func rewrite(t *testing.T, src, dst string, pairs ...string) string {
	t.Helper()
	s := string(readFile(t, src))
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s has no %q", src, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	if err := os.WriteFile(dst, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// logBuffer collects a process's output while it runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a SPIRE process until the test ends.
func start(ctx context.Context, t *testing.T, bin string, args ...string) *logBuffer {
	t.Helper()
	log := &logBuffer{}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(bin), log.String())
		}
	})
	return log
}

// waitHealthy polls `healthcheck` until the process answers on its socket.
func waitHealthy(ctx context.Context, t *testing.T, bin, socket string) {
	t.Helper()
	for {
		if exec.CommandContext(ctx, bin, "healthcheck", "-socketPath", socket).Run() == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not become healthy", filepath.Base(bin))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
