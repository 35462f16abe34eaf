package compose_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	composefiles "github.com/agentauthz/agentauthz/compose"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire"
)

// TestLocalEnvoy: envoy.yaml as the local stack (cmd/demo-stack) renders it passes real Envoy's
// validation and differs from compose's only in its addresses and the SPIRE agent's socket.
func TestLocalEnvoy(t *testing.T) {
	out, err := composefiles.Envoy(composefiles.EnvoyAddrs{
		Admin: "127.0.0.1:19901", Agents: "127.0.0.1:18443", Authz: "127.0.0.1:19001",
		Helpdesk: "127.0.0.1:18081", BI: "127.0.0.1:18082", SPIRESocket: "/tmp/demo-stack/agent.sock",
	})
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(local, out, 0o600); err != nil {
		t.Fatal(err)
	}
	envoyproc.Validate(t, local)

	got, want := loadEnvoy(t, local), loadEnvoy(t, "envoy.yaml")
	sa := want.GetAdmin().GetAddress().GetSocketAddress()
	sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 19901}
	l := want.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress()
	l.Address, l.PortSpecifier = "127.0.0.1", &corev3.SocketAddress_PortValue{PortValue: 18443}
	for name, port := range map[string]uint32{"agentauthz": 19001, "helpdesk_api": 18081, "bi_api": 18082} {
		setEndpoint(cluster(t, want, name), "127.0.0.1", port)
	}
	endpoint(cluster(t, want, "spire_agent")).GetPipe().Path = "/tmp/demo-stack/agent.sock"
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("the local stack's envoy.yaml differs from compose's beyond addresses (-compose +local):\n%s", diff)
	}
}

// TestLocalSPIRE: the SPIRE configurations as the local stack renders them keep nothing of
// compose's paths, addresses or join-token placeholder, and attest workloads with the unix
// attestor instead of docker's. cmd/demo-stack's test runs them in real SPIRE.
func TestLocalSPIRE(t *testing.T) {
	server, err := composefiles.SPIREServer(spire.ServerParams{TrustDomain: "acme.internal", BindAddress: "127.0.0.1",
		BindPort: 18081, Socket: "/tmp/ds/server.sock", DataDir: "/tmp/ds/server"})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := composefiles.SPIREAgent(spire.AgentParams{TrustDomain: "acme.internal", ServerAddress: "127.0.0.1",
		ServerPort: 18081, Socket: "/tmp/ds/agent.sock", DataDir: "/tmp/ds/agent", TrustBundle: "/tmp/ds/bundle.pem",
		JoinToken: "0b9c6a43-6c1c-4b0a-9bd5-1f4c3f2c1a11"})
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]string{"server.conf": settings(server), "agent.conf": settings(agent)} {
		for _, gone := range []string{"/var/lib/spire", "/run/spire", "/etc/spire", "/tmp/spire-server", "@JOIN_TOKEN@",
			`"spire-server"`, `"0.0.0.0"`, `"8081"`, `WorkloadAttestor "docker"`} {
			if strings.Contains(conf, gone) {
				t.Errorf("the local %s still has %s:\n%s", name, gone, conf)
			}
		}
	}
	for _, want := range []string{`socket_path = "/tmp/ds/agent.sock"`, `join_token = "0b9c6a43-6c1c-4b0a-9bd5-1f4c3f2c1a11"`,
		`WorkloadAttestor "unix"`, "discover_workload_path = true"} {
		if !strings.Contains(string(agent), want) {
			t.Errorf("the local agent.conf lacks %s:\n%s", want, agent)
		}
	}
	for _, want := range []string{`bind_port = "18081"`, `keys_path = "/tmp/ds/server/keys.json"`, `connection_string = "/tmp/ds/server/datastore.sqlite3"`} {
		if !strings.Contains(string(server), want) {
			t.Errorf("the local server.conf lacks %s:\n%s", want, server)
		}
	}
}

// settings is a SPIRE configuration without its comments.
func settings(conf []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(conf), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
