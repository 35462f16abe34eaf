// Package extproc is agentauthz's Envoy External Processing front door
// (envoy.service.ext_proc.v3.ExternalProcessor): on MCP routes it hands each answer to an MCP
// list method (tools/list, resources/list, resources/templates/list, prompts/list) to a Lists
// implementation, which decides what the agent may see, and writes the body it returns back to
// Envoy. It decides nothing itself.
//
// # Where the facts come from
//
// The ext_authz filter that checked the request leaves agentauthz's answer in Envoy's dynamic
// metadata, namespace MetadataNamespace: agent (the SPIFFE ID), decision_id, rule, and on MCP
// routes mcp_method (the JSON-RPC method) and mcp_server (the MCP server's name in the policy).
// The ext_proc filter forwards that namespace (metadata_options.forwarding_namespaces.untyped) in
// every ProcessingRequest's metadata_context, where the Server reads it. The request checked is
// the request answered: an agent cannot send these values itself.
//
// # What Envoy must send
//
// Only response headers and the whole buffered response body, only for the list methods:
// request headers SKIP, response headers SEND, response body BUFFERED (envoy/mcp.yaml). The
// ext_proc filter is wrapped in a matcher on mcp_method, so that no other answer (a tools/call
// result, the GET event stream) is sent to agentauthz at all. Should one be sent anyway, the
// Server passes it, and asks Envoy (mode_override, when allow_mode_override lets it) not to
// send its body.
//
// # Failing closed
//
// An answer to a list method reaches the agent only as the Lists implementation returned it.
// Whenever that cannot be done, the agent gets an empty list instead (mcpfilter.Empty):
//
//   - the metadata names no agent (Envoy is not forwarding ext_authz's metadata);
//   - the filter is not configured to buffer the body (protocol_config), so that the body would
//     pass without being seen: the headers' answer replaces the body then;
//   - the body is larger than Config.MaxBody, or arrives in pieces;
//   - the Lists implementation panics, or returns no body.
//
// A changed body is sent with its exact content-length (Envoy refuses a mutated body whose
// content-length disagrees), without content-encoding (the body sent is not encoded), and with
// the content type the implementation gives. Envoy's own limit on a buffered body (the
// listener's per_connection_buffer_limit_bytes) comes first for a larger answer: Envoy then
// answers the agent 500 itself, without sending anything to agentauthz (envoy/mcp.yaml and
// docs/mcp-responses.md say what was measured).
//
// # Cost
//
// Each list answer costs one gRPC stream of two round trips (headers, then the body) and one
// copy of the body each way; filtering a list of 100 tools takes about 0.15 ms
// (internal/mcpfilter's benchmark). Other answers cost nothing.
package extproc

import (
	"context"
	"log/slog"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/internal/metrics"
)

// MetadataNamespace is the dynamic metadata namespace of ext_authz's answers, which the ext_proc
// filter must forward; extauthz writes agentauthz's decisions there.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// The metadata keys the Server reads.
const (
	KeyAgent      = "agent"
	KeyDecisionID = "decision_id"
	KeyRule       = "rule"
	KeyMCPMethod  = "mcp_method"
	KeyMCPServer  = "mcp_server"
)

// DefaultMaxBody bounds the body the Server hands to Lists when Config.MaxBody is zero: 1 MiB,
// Envoy's default per_connection_buffer_limit_bytes, which bounds what Envoy buffers first.
const DefaultMaxBody = 1 << 20

// Lists decides what an agent sees of one answer to an MCP list method.
type Lists interface {
	// FilterMCPList returns the body to send the agent. It must fail closed itself: a body it
	// cannot read becomes an empty list (mcpfilter.Filter does so).
	FilterMCPList(ctx context.Context, req ListRequest) ListResult
}

// ListRequest is one answer to an MCP list method, with what ext_authz said of its request.
type ListRequest struct {
	// Agent is the agent's SPIFFE ID, as ext_authz read it from the agent's certificate.
	Agent string
	// Server is the MCP server's name (mcp_server), Method the JSON-RPC method of the request
	// (mcp_method, one of the list methods), DecisionID and Rule those of the request's
	// decision.
	Server, Method, DecisionID, Rule string
	// Status is the response's HTTP status.
	Status int
	// ContentType and ContentEncoding are the response's headers; a header sent more than once
	// is its values joined by ",".
	ContentType, ContentEncoding string
	// Body is the whole response body. It must not be modified.
	Body []byte
}

// ListResult is what to send the agent.
type ListResult struct {
	// Body is the body to send. A nil Body sends an empty list.
	Body []byte
	// ContentType is the body's content type; empty keeps the response's.
	ContentType string
	// Outcome and Reason say what was done, for metrics and the log.
	Outcome mcpfilter.Outcome
	Reason  string
}

// Config is what a Server needs.
type Config struct {
	// Lists decides; it is required.
	Lists Lists
	// MaxBody bounds the body handed to Lists (DefaultMaxBody when zero); a larger one becomes
	// an empty list.
	MaxBody int
	// Log receives a line for every answer emptied; nil discards it.
	Log *slog.Logger
	// Metrics counts the answers filtered; nil counts nothing.
	Metrics *metrics.Metrics
}

// Server serves Envoy's ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg Config
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// New returns a Server handing list answers to cfg.Lists.
func New(cfg Config) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg}
}

// Process serves one ext_proc stream: one HTTP response.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	st := &exchange{s: s, ctx: stream.Context()}
	for {
		req, err := stream.Recv()
		if err != nil {
			return st.ended(err)
		}
		resp := st.handle(req)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
