package helpdeskmcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
)

// The input schemas, JSON Schema 2020-12, each stating every limit of its arguments and
// refusing any other argument. They are the REST API's limits (the demo policy's list-tickets
// query, ticket id and username patterns, comment.schema.json, and PasswordResetRequest's
// reason in helpdesk.proto). Patterns are anchored: JSON Schema matches a pattern anywhere in
// the string.
const (
	listTicketsSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "status": {"type": "string", "enum": ["open", "pending", "closed"], "description": "Only tickets with this status; every status when absent."},
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "At most this many tickets, in order of id; 20 when absent."}
  },
  "additionalProperties": false
}`
	getTicketSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "id": {"type": "string", "pattern": "^[0-9]{1,12}$", "minLength": 1, "maxLength": 12, "description": "The ticket's id: 1 to 12 digits, e.g. \"4711\"."}
  },
  "required": ["id"],
  "additionalProperties": false
}`
	addCommentSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "ticket_id": {"type": "string", "pattern": "^[0-9]{1,12}$", "minLength": 1, "maxLength": 12, "description": "The ticket's id: 1 to 12 digits."},
    "body": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "The comment, 1 to 4000 characters; the requester reads it."}
  },
  "required": ["ticket_id", "body"],
  "additionalProperties": false
}`
	resetPasswordSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "username": {"type": "string", "pattern": "^[a-z][a-z0-9._-]{0,63}$", "minLength": 1, "maxLength": 64, "description": "The user's login name, e.g. \"jdoe\"."},
    "reason": {"type": "string", "minLength": 10, "maxLength": 500, "description": "Why the reset is needed, 10 to 500 characters; the approver reads it and the audit trail keeps it."}
  },
  "required": ["username", "reason"],
  "additionalProperties": false
}`
)

type listArgs struct {
	Status string `json:"status"`
	// Limit is a number, not an int: JSON Schema's integer includes 5.0, which a Go int
	// refuses to decode. The schema has already held it to a whole number from 1 to 100.
	Limit *float64 `json:"limit"`
}

type getArgs struct {
	ID string `json:"id"`
}

type commentArgs struct {
	TicketID string `json:"ticket_id"`
	Body     string `json:"body"`
}

type resetArgs struct {
	Username string `json:"username"`
	Reason   string `json:"reason"`
}

// The results' structured content: the REST API's answers, field for field.
type (
	ticketList struct {
		Tickets []helpdesk.Ticket `json:"tickets"`
	}
	resetDone struct {
		Username        string    `json:"username"`
		Status          string    `json:"status"`
		SessionsRevoked bool      `json:"sessions_revoked"`
		Notified        bool      `json:"notified"`
		ResetAt         time.Time `json:"reset_at"`
	}
)

func addTools(s *mcp.Server, api *helpdesk.API) {
	no := false
	mcp.AddTool(s, &mcp.Tool{
		Name:        "list_tickets",
		Title:       "List tickets",
		Description: "Lists helpdesk tickets in order of id, optionally only those with one status.",
		InputSchema: json.RawMessage(listTicketsSchema),
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in listArgs) (*mcp.CallToolResult, ticketList, error) {
		limit := helpdesk.DefaultLimit
		if in.Limit != nil {
			limit = int(*in.Limit)
		}
		out := ticketList{Tickets: api.Tickets(in.Status, limit)}
		res, err := jsonText(out)
		return res, out, err
	})

	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_ticket",
		Title:       "Read a ticket",
		Description: "Reads one ticket with its comments.",
		InputSchema: json.RawMessage(getTicketSchema),
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in getArgs) (*mcp.CallToolResult, helpdesk.Ticket, error) {
		t, ok := api.Ticket(in.ID)
		if !ok {
			return nil, helpdesk.Ticket{}, fmt.Errorf("there is no ticket %s", in.ID)
		}
		res, err := jsonText(t)
		return res, t, err
	})

	mcp.AddTool(s, &mcp.Tool{
		Name:        "add_comment",
		Title:       "Comment on a ticket",
		Description: "Adds a comment to a ticket; the requester reads it.",
		InputSchema: json.RawMessage(addCommentSchema),
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &no, OpenWorldHint: &no},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in commentArgs) (*mcp.CallToolResult, helpdesk.Comment, error) {
		// The REST route refuses a blank comment too; the schema counts characters only.
		if strings.TrimSpace(in.Body) == "" {
			return nil, helpdesk.Comment{}, fmt.Errorf("the comment is blank")
		}
		c, ok := api.AddComment(in.TicketID, in.Body)
		if !ok {
			return nil, helpdesk.Comment{}, fmt.Errorf("there is no ticket %s", in.TicketID)
		}
		return text(fmt.Sprintf("Comment %d added to ticket #%s.", c.ID, in.TicketID)), c, nil
	})

	yes := true
	mcp.AddTool(s, &mcp.Tool{
		Name:        "reset_password",
		Title:       "Reset a user's password",
		Description: "Resets a user's password, ends every session of theirs and tells them by e-mail.",
		InputSchema: json.RawMessage(resetPasswordSchema),
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes, OpenWorldHint: &no},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in resetArgs) (*mcp.CallToolResult, resetDone, error) {
		if strings.TrimSpace(in.Reason) == "" {
			return nil, resetDone{}, fmt.Errorf("the reason is blank")
		}
		pr, ok := api.ResetPassword(in.Username, in.Reason, true)
		if !ok {
			return nil, resetDone{}, fmt.Errorf("there is no user %s", in.Username)
		}
		out := resetDone{Username: pr.Username, Status: "reset", SessionsRevoked: true, Notified: pr.NotifyUser, ResetAt: pr.At}
		return text(fmt.Sprintf("%s's password was reset; every session of theirs was ended and they were told by e-mail.", pr.Username)), out, nil
	})
}

// text is a result whose content is one text block; the SDK adds the structured content.
func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// jsonText is a result whose content is v serialized as JSON in one text block, the same value
// as the structured content the SDK adds: clients that read only content see what the others
// see, and a response rule (which reads JSON text) can filter both alike.
func jsonText(v any) (*mcp.CallToolResult, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("helpdeskmcp: the result cannot be written: %w", err)
	}
	return text(string(b)), nil
}
