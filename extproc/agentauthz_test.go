package extproc_test

// Real agentauthz (internal/server, deciding from a policy with an MCP server) behind
// envoy/mcp.yaml in real Envoy, in front of the demo's helpdesk MCP server: the metadata
// agentauthz's own ext_authz answers carry reaches its ExternalProcessor, and each agent's
// tools/list shows what its policy view lets it use.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
	"github.com/agentauthz/agentauthz/internal/envoyproc"
	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/stack"
	"github.com/agentauthz/agentauthz/policy"
)

// The policy's view of an MCP server is the View the filter asks.
var _ mcpfilter.View = (*policy.MCPView)(nil)

// triageAgent may read tickets, and nothing else.
const triageAgent = "spiffe://acme.internal/agent/triage"

const mcpPolicy = `
trust_domains: [acme.internal]
agents:
  - id: spiffe://acme.internal/agent/helpdesk
    scopes: [tickets:read, tickets:comment, users:password-reset]
  - id: spiffe://acme.internal/agent/triage
    scopes: [tickets:read]
mcp_servers:
  - name: helpdesk
    tools_snapshot: helpdesk-mcp.tools.json
    methods:
      - allow: [initialize, notifications/initialized, ping, tools/list]
        scope: tickets:read
    tools:
      - {name: list_tickets, scope: tickets:read}
      - {name: get_ticket, scope: tickets:read}
      - {name: add_comment, scope: tickets:comment}
      - {name: reset_password, scope: users:password-reset}
hosts:
  - name: mcp.acme.internal
    remove_headers: [authorization, cookie, proxy-authorization]
    inject_headers:
      - name: authorization
        prefix: "Bearer "
        env: HELPDESK_TOKEN
    routes:
      - {name: helpdesk-mcp, method: POST, path: /mcp, scope: tickets:read, mcp: helpdesk}
`

func TestRealAgentauthz(t *testing.T) {
	envoyproc.Binary(t) // skip, or fail under CI, before building anything
	_, file, _, _ := runtime.Caller(0)
	dir := t.TempDir()
	snapshot, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "internal", "demo", "policy", "helpdesk-mcp.tools.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "helpdesk-mcp.tools.json"), snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mcp.yaml"), []byte(mcpPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := policy.ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: func(policy.SecretRef) (string, error) { return stack.HelpdeskToken, nil }})
	if err != nil {
		t.Fatal(err)
	}
	store := policy.NewStore(snap)

	p := stack.NewPKI(t)
	sock := filepath.Join(stack.ShortTempDir(t), "sds.sock")
	stack.StartSDS(t, sock, p, p.Issue(t, stack.EnvoyID))
	// The server filters with the engine, over the policy in force; what it removed it logs
	// with the request's decision.
	logged := &filterLog{}
	srv := servertest.Start(t, server.Config{Store: store, Log: slog.New(logged),
		TLS: p.ServerTLSFor(p.Issue(t, stack.AgentauthzID), stack.EnvoyID)})
	api, err := helpdesk.New(helpdesk.Config{Token: stack.HelpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	up := stack.StartUpstream(t, helpdeskmcp.Routes(api, nil), p.BackendTLS(p.Issue(t, stack.HelpdeskAPIID)))
	conf := envoyproc.RenderFile(t, mcpConfig(), map[string]string{
		endpointAddr(10, "0.0.0.0", "8443"):                        endpointAddr(10, "127.0.0.1", "0"),
		endpointAddr(22, "agentauthz.acme.internal", "9001"):       endpointAt(22, srv.GRPCAddr().String()),
		endpointAddr(22, "helpdesk-backend.acme.internal", "8443"): endpointAt(22, up.Addr()),
		"path: /run/spire/agent/public/api.sock":                   "path: " + sock,
	})
	px := &mcpProxy{envoy: envoyproc.Start(t, envoyproc.Options{Config: conf})}
	px.addr = px.envoy.ListenerAddr("agents_ingress")

	for _, c := range []struct {
		agent    string
		tools    []string
		filtered bool // some tools removed: the body changed
	}{
		{stack.HelpdeskAgent, []string{"add_comment", "get_ticket", "list_tickets", "reset_password"}, false},
		{triageAgent, []string{"get_ticket", "list_tickets"}, true},
	} {
		t.Run(c.agent, func(t *testing.T) {
			svid := p.Issue(t, c.agent)
			px.agentTLS = p.ClientTLS(&svid, stack.EnvoyID, "http/1.1")
			r := px.send(t, "POST", mcpHost, "/mcp", []string{"content-type: application/json",
				"accept: application/json, text/event-stream", "mcp-protocol-version: 2025-06-18"},
				`{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}`)
			if c.filtered {
				checkLength(t, r)
			} else {
				checkFraming(t, r) // unchanged: as the MCP server framed it
			}
			msg := listResult(t, r.header.Get("content-type"), r.body)
			var names []string
			for _, e := range msg.Result["tools"].([]any) {
				names = append(names, e.(map[string]any)["name"].(string))
			}
			slices.Sort(names)
			if !slices.Equal(names, c.tools) || string(msg.ID) != "3" {
				t.Errorf("%s sees %v (id %s), want %v:\n%s", c.agent, names, msg.ID, c.tools, r.body)
			}
			if c.filtered {
				got := logged.last()
				if got["agent"] != c.agent || got["mcp_server"] != "helpdesk" || got["mcp_method"] != "tools/list" || got["decision_id"] == "" {
					t.Errorf("agentauthz's ext_authz metadata reached its ExternalProcessor as %v", got)
				}
			}
		})
	}
}

// filterLog keeps the attributes of the engine's "MCP list answer filtered" lines.
type filterLog struct {
	mu    sync.Mutex
	lines []map[string]string
}

func (l *filterLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *filterLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *filterLog) WithGroup(string) slog.Handler            { return l }

func (l *filterLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "MCP list answer filtered" {
		return nil
	}
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, m)
	return nil
}

func (l *filterLog) last() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return nil
	}
	return l.lines[len(l.lines)-1]
}
