// Package helpdeskmcp is the demo's helpdesk as an MCP server (Model Context Protocol, Streamable
// HTTP), at mcp.acme.internal path /mcp. It serves the same tickets, comments and password resets
// as the REST API of internal/demo/helpdesk, through the accessors of its helpdesk.API, so what
// an agent changes over one is what it reads over the other. Four tools:
//
//	list_tickets    {status?: open|pending|closed, limit?: 1..100}
//	get_ticket      {id: 1..12 digits}
//	add_comment     {ticket_id: 1..12 digits, body: 1..4000 characters}
//	reset_password  {username: ^[a-z][a-z0-9._-]{0,63}$, reason: 10..500 characters}
//
// Each input schema is written out (tools.go) with additionalProperties false, and the server
// validates every call against it before a tool runs: a call the schema refuses is answered
// with a tool result whose isError is true, whoever sent it. The tools/list answer is kept
// beside the demo policy (internal/demo/policy/helpdesk-mcp.tools.json), which imports the input
// schemas from it; a test fails when the two differ.
//
// The endpoint is behind the helpdesk API's own credential (helpdesk.(*API).Guard): a request
// without Authorization: Bearer <token>, the agent's own token included, is answered 401. Only
// agentauthz holds the token and injects it.
//
// cmd/helpdesk-api serves Routes: /mcp here, every other path the REST API.
package helpdeskmcp

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
)

// Host and Path are where the demo routes the MCP server: https://mcp.acme.internal/mcp.
const (
	Host = "mcp.acme.internal"
	Path = "/mcp"
)

// Name and Version identify the server in the initialize and server/discover answers.
const (
	Name    = "acme-helpdesk"
	Version = "1.0.0"
)

// New returns the MCP server over api's data. log receives one line per tool call; nil
// discards.
func New(api *helpdesk.API, log *slog.Logger) *mcp.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: Name, Title: "ACME IT helpdesk", Version: Version}, &mcp.ServerOptions{
		Instructions: "ACME's IT helpdesk: read tickets, comment on them, and reset a user's password.",
		Logger:       quiet(log),
		// Tools only: no logging capability (the SDK's default) and no list-changed
		// notifications, since the tools never change.
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	addTools(s, api)
	s.AddReceivingMiddleware(logCalls(log))
	return s
}

// Handler serves New's server over Streamable HTTP, behind api's credential.
//
// It is stateless: every POST carries one whole exchange and no session ties an agent to this
// process. That is what protocol revision 2026-07-28 requires of the SDK's server (older
// revisions work as well), and it lets the front proxy judge each tool call on its own. Answers
// are application/json rather than an event stream. The SDK's check that a request reaching a
// loopback listener names a loopback host is off: the front proxy forwards
// mcp.acme.internal to it, and the check guards servers that take unauthenticated requests from
// a browser, whereas this one answers only the bearer token no browser holds.
func Handler(api *helpdesk.API, log *slog.Logger) http.Handler {
	srv := New(api, log)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:                  true,
		JSONResponse:               true,
		DisableLocalhostProtection: true,
		Logger:                     quiet(log),
	})
	return api.Guard(h)
}

// Routes is the helpdesk process: Path is the MCP server, every other path the REST API.
func Routes(api *helpdesk.API, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(api, log))
	mux.Handle("/", api)
	return mux
}

// quiet is log for the SDK: warnings and errors only, since a stateless server would otherwise
// log a session's start and end around every request.
func quiet(log *slog.Logger) *slog.Logger {
	if log == nil {
		return nil
	}
	return slog.New(minLevel{log.Handler(), slog.LevelWarn})
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }

// logCalls logs each tool call: the tool, and whether it failed.
func logCalls(log *slog.Logger) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			res, err := next(ctx, method, req)
			if p, ok := req.GetParams().(*mcp.CallToolParamsRaw); ok && method == "tools/call" {
				attrs := []any{"tool", p.Name}
				r, _ := res.(*mcp.CallToolResult)
				switch {
				case err != nil:
					attrs = append(attrs, "outcome", "protocol_error", "error", err.Error())
				case r != nil && r.IsError:
					attrs = append(attrs, "outcome", "tool_error")
				default:
					attrs = append(attrs, "outcome", "ok")
				}
				log.Info("tool call", attrs...)
			}
			return res, err
		}
	}
}
