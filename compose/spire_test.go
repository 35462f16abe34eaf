package compose_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	composefiles "github.com/agentauthz/agentauthz/compose"
	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/spire"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
)

// TestSPIREBootstrap runs the compose demo's SPIRE bootstrap outside Docker, against real SPIRE
// 1.13.3 binaries (internal/spire finds them: AGENTAUTHZ_SPIRE_BIN, as .ci/run builds them):
// spire/server.conf, rendered as the local stack renders it, starts a server, spire/setup.sh
// writes the bundle and the agent's configuration and registers the workloads (twice, to show
// it is idempotent), and the SPIRE agent, configured from the written spire/agent.conf, attests
// with the join token and is handed every workload's SVID. Only the paths, ports and the
// server's address are changed from compose's. What it cannot check without Docker is the
// docker workload attestor matching containers by label.
func TestSPIREBootstrap(t *testing.T) {
	bins := spiretest.Binaries(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run spire/setup.sh")
	}
	tmp := spiretest.ShortTempDir(t)
	for _, d := range []string{"server", "ssock", "boot", "agent", "asock"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	port, err := spire.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// server.conf as the local stack renders it (compose.SPIREServer).
	serverSock := filepath.Join(tmp, "ssock", "api.sock")
	serverConf, err := composefiles.SPIREServer(spire.ServerParams{TrustDomain: "acme.internal", BindAddress: "127.0.0.1",
		BindPort: port, Socket: serverSock, DataDir: filepath.Join(tmp, "server")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := spire.StartServer(ctx, bins.Server, tmp, serverConf, serverSock)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, srv.Process())
	server := bins.Server

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
		`server_port = "8081"`, `server_port = "`+strconv.Itoa(port)+`"`)
	agentSock := filepath.Join(tmp, "asock", "api.sock")
	agent, err := spire.StartAgent(ctx, bins.Agent, tmp, readFile(t, agentConf), agentSock)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, agent.Process())
	agentLog := func() string { return string(readFile(t, agent.Process().LogPath())) }

	// The agent is handed an SVID for every workload entry (it syncs every few seconds).
	for {
		missing := ""
		for id := range ids {
			if log := agentLog(); !strings.Contains(log, `msg="Creating X509-SVID"`) || !strings.Contains(log, `spiffe_id="`+id+`"`) {
				missing = id
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the SPIRE agent was not handed %s's SVID:\n%s", missing, agentLog())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if info, err := os.Stat(agentSock); err != nil || info.Mode().Perm() != 0o777 {
		t.Errorf("Workload API socket %v %v: workloads of every user (Envoy, nonroot) must reach it", info.Mode(), err)
	}
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

// stopAtEnd stops a SPIRE process when the test ends, showing its log if the test failed.
func stopAtEnd(t *testing.T, p *childproc.Proc) {
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			spiretest.DumpLog(t, p)
		}
	})
}
