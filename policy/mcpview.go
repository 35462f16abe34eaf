package policy

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// MCPView is what one agent may see of one MCP server's lists (tools/list, resources/list,
// resources/templates/list, prompts/list): what it may use, and nothing else. The zero view, or
// a nil one, shows nothing.
type MCPView struct {
	srv *mcpServer
	ag  *agent
}

// MCPView returns the view of agent on the MCP server named server. It shows nothing when the
// policy does not know the agent or the server.
func (s *Snapshot) MCPView(agent spiffeid.ID, server string) *MCPView {
	ag := s.agents[agent]
	srv := s.mcp[server]
	if ag == nil || !ag.live || srv == nil {
		return &MCPView{}
	}
	return &MCPView{srv: srv, ag: ag}
}

// Tool reports whether the agent may call the tool, and the input schema to show it in place of
// the server's when the policy shows its tightened schema (nil shows the server's).
func (v *MCPView) Tool(name string) (visible bool, schema []byte) {
	if v == nil || v.srv == nil {
		return false, nil
	}
	t := v.srv.tools[name]
	if t == nil || t.shadow || !v.ag.holds(t.scope, false) {
		return false, nil
	}
	return true, t.shown
}

// Resource reports whether the agent may read the resource with this URI.
func (v *MCPView) Resource(uri string) bool {
	if v == nil || v.srv == nil {
		return false
	}
	for _, r := range v.srv.resources {
		if v.ag.holds(r.scope, false) && r.matches(uri) {
			return true
		}
	}
	return false
}

// ResourceTemplate reports whether the agent may read the resources of a URI template the
// server lists: a resource pattern of the policy it holds must be that template, exactly.
func (v *MCPView) ResourceTemplate(uriTemplate string) bool {
	if v == nil || v.srv == nil {
		return false
	}
	for _, r := range v.srv.resources {
		if v.ag.holds(r.scope, false) && r.pattern == uriTemplate {
			return true
		}
	}
	return false
}

// Prompt reports whether the agent may get the prompt.
func (v *MCPView) Prompt(name string) bool {
	if v == nil || v.srv == nil {
		return false
	}
	return holdsAny(v.ag, v.srv.prompts[name], false)
}
