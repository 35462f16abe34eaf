// Package compose holds the compose demo's Envoy and SPIRE configurations: docker-compose.yml
// mounts envoy.yaml, spire/server.conf and spire/agent.conf as they are, and the local stack
// (cmd/demo-stack, the same demo as local processes without Docker) renders the same files
// with its own addresses, ports and paths. One file each serves both.
package compose

import (
	"embed"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/spire"
)

// Files holds envoy.yaml, spire/server.conf and spire/agent.conf.
//
//go:embed envoy.yaml spire/server.conf spire/agent.conf
var Files embed.FS

// EnvoyAddrs are where a local Envoy listens and finds its neighbours: each host:port, but
// SPIRESocket, the SPIRE agent's socket path.
type EnvoyAddrs struct {
	// Admin is Envoy's admin interface; Agents its agents' mTLS listener.
	Admin, Agents string
	// Authz is agentauthz's gRPC listener; Helpdesk and BI the demo APIs'.
	Authz, Helpdesk, BI string
	SPIRESocket         string
}

// Envoy renders envoy.yaml with a's addresses in place of compose's, and nothing else changed.
func Envoy(a EnvoyAddrs) ([]byte, error) {
	src, err := Files.ReadFile("envoy.yaml")
	if err != nil {
		return nil, err
	}
	repl := map[string]string{"path: /run/spire/agent/public/api.sock": "path: " + a.SPIRESocket}
	for _, r := range []struct {
		indent     int
		host, port string
		to         string
	}{
		{6, "127.0.0.1", "9901", a.Admin},
		{10, "0.0.0.0", "8443", a.Agents},
		{22, "agentauthz", "9001", a.Authz},
		{22, "helpdesk-api", "8080", a.Helpdesk},
		{22, "bi-api", "8080", a.BI},
	} {
		host, port, err := net.SplitHostPort(r.to)
		if err != nil {
			return nil, fmt.Errorf("compose: envoy.yaml: %s:%s becomes %q: %w", r.host, r.port, r.to, err)
		}
		repl[socketAddress(r.indent, r.host, r.port)] = socketAddress(r.indent, host, port)
	}
	out, err := envoyproc.Render(src, repl)
	if err != nil {
		return nil, fmt.Errorf("compose: envoy.yaml: %w", err)
	}
	return out, nil
}

// socketAddress is how envoy.yaml writes an address: the port on the line under the host.
func socketAddress(indent int, host, port string) string {
	return "address: " + host + "\n" + strings.Repeat(" ", indent) + "port_value: " + port
}

// SPIREServer renders spire/server.conf with p's address, port, socket and directories.
func SPIREServer(p spire.ServerParams) ([]byte, error) {
	return render("spire/server.conf", map[string]string{
		`bind_address = "0.0.0.0"`:                           `bind_address = "` + p.BindAddress + `"`,
		`bind_port = "8081"`:                                 `bind_port = "` + strconv.Itoa(p.BindPort) + `"`,
		`socket_path = "/tmp/spire-server/private/api.sock"`: `socket_path = "` + p.Socket + `"`,
		`trust_domain = "acme.internal"`:                     `trust_domain = "` + p.TrustDomain + `"`,
		`data_dir = "/var/lib/spire/server"`:                 `data_dir = "` + p.DataDir + `"`,
		`"/var/lib/spire/server/datastore.sqlite3"`:          `"` + p.DataDir + `/datastore.sqlite3"`,
		`keys_path = "/var/lib/spire/server/keys.json"`:      `keys_path = "` + p.DataDir + `/keys.json"`,
	})
}

// dockerAttestor is spire/agent.conf's workload attestor, which needs containers.
const dockerAttestor = `    # Workloads are told apart by their container's labels (org.acme.workload=...), read from
    # the Docker API: the agent mounts /var/run/docker.sock and shares the host's PID and cgroup
    # namespaces to map a caller's PID to its container.
    WorkloadAttestor "docker" {
        plugin_data {}
    }`

// unixAttestor replaces it outside Docker.
const unixAttestor = `    # Workloads are told apart by their program's path (unix:path:...): every process of the
    # local stack runs as the same user. The programs are not hashed: the path is the selector.
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
            workload_size_limit = -1
        }
    }`

// SPIREAgent renders spire/agent.conf with p's server address, socket, directories, trust
// bundle and join token, and, having no containers to attest, the unix workload attestor in
// place of docker's.
func SPIREAgent(p spire.AgentParams) ([]byte, error) {
	return render("spire/agent.conf", map[string]string{
		`data_dir = "/var/lib/spire/agent"`:                     `data_dir = "` + p.DataDir + `"`,
		`server_address = "spire-server"`:                       `server_address = "` + p.ServerAddress + `"`,
		`server_port = "8081"`:                                  `server_port = "` + strconv.Itoa(p.ServerPort) + `"`,
		`trust_domain = "acme.internal"`:                        `trust_domain = "` + p.TrustDomain + `"`,
		`trust_bundle_path = "/etc/spire/bootstrap/bundle.crt"`: `trust_bundle_path = "` + p.TrustBundle + `"`,
		`join_token = "@JOIN_TOKEN@"`:                           `join_token = "` + p.JoinToken + `"`,
		`socket_path = "/run/spire/agent/public/api.sock"`:      `socket_path = "` + p.Socket + `"`,
		dockerAttestor: unixAttestor,
	})
}

func render(name string, repl map[string]string) ([]byte, error) {
	src, err := Files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	out, err := envoyproc.Render(src, repl)
	if err != nil {
		return nil, fmt.Errorf("compose: %s: %w", name, err)
	}
	return out, nil
}
