package spire

import (
	"bytes"
	_ "embed"
	"fmt"
	"text/template"
)

// ServerParams are what a server configuration is rendered with.
type ServerParams struct {
	TrustDomain string
	// BindAddress and BindPort are where agents reach the server.
	BindAddress string
	BindPort    int
	// Socket is the admin API's unix socket path (socket_path).
	Socket string
	// DataDir holds the server's state (data_dir, the datastore, the keys).
	DataDir string
}

// AgentParams are what an agent configuration is rendered with.
type AgentParams struct {
	TrustDomain string
	// ServerAddress and ServerPort are the server's.
	ServerAddress string
	ServerPort    int
	// Socket is the Workload API's (and SDS's) unix socket path (socket_path).
	Socket string
	// DataDir holds the agent's state.
	DataDir string
	// TrustBundle is the file of the server's trust bundle (trust_bundle_path).
	TrustBundle string
	// JoinToken is the token the agent attests with.
	JoinToken string
}

var (
	//go:embed server.conf.tmpl
	serverTemplate string
	//go:embed agent.conf.tmpl
	agentTemplate string
)

// DefaultServerConfig is the package's server configuration (server.conf.tmpl): loopback, a
// SQLite datastore and disk keys under DataDir, join-token attestation.
func DefaultServerConfig(p ServerParams) ([]byte, error) {
	return render("server.conf.tmpl", serverTemplate, p)
}

// DefaultAgentConfig is the package's agent configuration (agent.conf.tmpl): join-token
// attestation, and the unix workload attestor selecting workloads by program path.
func DefaultAgentConfig(p AgentParams) ([]byte, error) {
	return render("agent.conf.tmpl", agentTemplate, p)
}

func render(name, text string, data any) ([]byte, error) {
	tmpl, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("spire: %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("spire: %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
