package server

import (
	"context"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/engine"
)

// engineLists is the engine's filtering of MCP list answers, as the ext_proc front door asks
// for it.
type engineLists struct{ e *engine.Engine }

func (l engineLists) FilterMCPList(ctx context.Context, req extproc.ListRequest) extproc.ListResult {
	res := l.e.FilterList(ctx, engine.List{Agent: req.Agent, Server: req.Server, Method: req.Method,
		DecisionID: req.DecisionID, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Body: req.Body})
	return extproc.ListResult{Body: res.Body, ContentType: res.ContentType, Outcome: res.Outcome, Reason: res.Reason}
}

// engineResponses is the engine's response rules, as the ext_proc front door asks for them.
type engineResponses struct{ e *engine.Engine }

func (r engineResponses) FilterResponse(ctx context.Context, req extproc.ResponseRequest) extproc.ResponseAnswer {
	res := r.e.FilterResponse(ctx, engine.ResponseInput{Rule: req.Rule, Agent: req.Agent, DecisionID: req.DecisionID,
		Status: req.Status, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Body: req.Body})
	return extproc.ResponseAnswer{Status: res.Status, Body: res.Body, ContentType: res.ContentType, Changed: res.Changed}
}
