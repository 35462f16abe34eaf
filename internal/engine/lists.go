package engine

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/policy"
)

// List is an MCP server's answer to a list method (tools/list, resources/list,
// resources/templates/list, prompts/list), with what the decision on its request said: the
// agent and the MCP server, as the front door read them from that decision.
type List struct {
	// Agent is the SPIFFE ID of the agent whose request was allowed; Server the MCP server's
	// name in the policy; Method the list method; DecisionID the request's decision.
	Agent, Server, Method, DecisionID string
	// ContentType and ContentEncoding are the answer's headers; Body the whole answer, never
	// modified.
	ContentType, ContentEncoding string
	Body                         []byte
}

// FilterList shows the agent only the entries of an MCP list answer that the policy in force
// lets it use: the tools it may call (with the tightened schema where the policy shows one),
// the resources and prompts it may read. It fails closed: an answer it cannot read, an agent or
// server the policy does not know, or no policy at all, leave an empty list. What was removed
// is counted and logged with the request's decision id, by name.
func (e *Engine) FilterList(_ context.Context, l List) (res mcpfilter.Result) {
	var view *policy.MCPView // nil shows nothing
	if snap := e.cfg.Store.Load(); snap != nil {
		if id, err := spiffeid.FromString(l.Agent); err == nil {
			view = snap.MCPView(id, l.Server)
		}
	}
	res = mcpfilter.Filter(mcpfilter.Response{Method: l.Method, ContentType: l.ContentType,
		ContentEncoding: l.ContentEncoding, Body: l.Body}, view)
	e.cfg.Metrics.ListFiltered(l.Server, l.Method, len(res.Removed))
	if len(res.Removed) > 0 || res.Outcome == mcpfilter.Emptied {
		e.cfg.Log.Info("MCP list answer filtered", "decision_id", l.DecisionID, "agent", l.Agent,
			"mcp_server", l.Server, "mcp_method", l.Method, "outcome", string(res.Outcome),
			"removed", res.Removed, "reason", res.Reason)
	}
	return res
}
