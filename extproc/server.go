// Package extproc is agentauthz's Envoy External Processing front door
// (envoy.service.ext_proc.v3.ExternalProcessor): on MCP routes it hands each answer to an MCP
// list method (tools/list, resources/list, resources/templates/list, prompts/list) to a Lists
// implementation, which decides what the agent may see, and writes the body it returns back to
// Envoy. It decides nothing itself. docs/mcp-responses.md is the operator's guide.
//
// It also hands every answer whose request's decision named a response rule (metadata key
// response_rule) to a Responses implementation, whatever the route: the rule says what the agent
// may read back, and the Server writes the body, or the 502 problem, it returns
// (docs/responses.md). Such an answer never reaches the MCP list filter.
//
// # Where the facts come from
//
// The ext_authz filter that checked the request leaves agentauthz's answer in Envoy's dynamic
// metadata, namespace MetadataNamespace: agent (the SPIFFE ID), decision_id, rule, and on MCP
// routes mcp_method (the JSON-RPC method) and mcp_server (the MCP server's name in the policy).
// The ext_proc filter forwards that namespace (metadata_options.forwarding_namespaces.untyped),
// and Envoy 1.40 puts it in the metadata_context of every ProcessingRequest, where the Server
// reads it. The request checked is the request answered: an agent cannot set these values.
//
// # What Envoy sends
//
// envoy/mcp.yaml sends no part of the request, the response headers, and the whole response body
// in one message (BUFFERED), and only where it may be a list or has a response rule: a matcher
// around the filter skips it for every request without response_rule whose mcp_method is there
// and is not a list method (so an unguarded tools/call result is never sent to agentauthz), and
// for Envoy's own replies to requests ext_authz never answered (no decision_id: nothing reached
// the upstream, and Envoy must be able to answer a malformed request itself); a route that is
// not MCP disables the filter, and on the front proxy the filter is skipped unless
// response_rule is there. A response of an allowed request without mcp_method (the event stream
// an agent opens with GET) still comes, headers only: the Server answers it with mode_override
// (response_body_mode NONE, which the configuration allows), and Envoy then streams the body
// past without buffering it. Such an answer passes only to a GET or DELETE, which carry no
// JSON-RPC method (the request's HTTP method comes as the attribute AttributeRequestMethod); to
// any other request, ext_authz should have named its method, and the body is replaced. The
// skips read metadata ext_authz writes on every answer (decision_id) or on every MCP message
// (mcp_method); envoy/extproc_config_test.go holds the matcher to exactly these conditions,
// since metadata the matcher cannot read looks absent, and an absent decision_id skips.
//
// # Failing closed
//
// An answer to a list method reaches the agent only as the Lists implementation returned it.
// When that cannot be done, the agent gets an empty list (mcpfilter.Empty) instead, or an error:
//
//   - the metadata names no agent: the list is filtered with a View that shows nothing (which
//     keeps the response's id);
//   - the filter is not configured to buffer the body (protocol_config), or the response has no
//     body: the answer to the headers replaces the body by an empty list (Envoy then sends it
//     chunked, without the content-length set);
//   - the Lists implementation panics or returns no body: an empty list;
//   - no ext_authz metadata at all (the namespace is not forwarded), or none naming the
//     JSON-RPC method of a request other than GET or DELETE: the body is replaced by a JSON-RPC
//     error, since what was asked is unknown;
//   - the body is larger than Config.MaxBody, or arrives in pieces: 502 with an empty list, as a
//     local reply. A list too long to read is a fault of the deployment, not of the list; an
//     empty list with 200 would tell the agent, wrongly, that it may use nothing. Envoy's own
//     limit on what it buffers (the listener's per_connection_buffer_limit_bytes) comes first
//     when it is lower: Envoy then answers 500 itself (response_payload_too_large) and sends
//     agentauthz nothing but the headers.
//
// A changed body is sent with its exact content-length (Envoy refuses a buffered body mutation
// whose content-length disagrees, and keeps the one set), without content-encoding (the body
// sent is not encoded), and with the content type Lists gives.
//
// # Cost
//
// Each list answer costs one gRPC stream of two round trips (the headers, then the body) and a
// copy of the body each way; filtering a list of 100 tools takes about 0.15 ms
// (internal/mcpfilter's benchmark). Other MCP answers cost nothing, but for responses without
// mcp_method, which cost the headers' round trip.
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
	// KeyResponseRule names the response rule an allowed request's answer must pass
	// ("KEY@REVISION"); ext_authz sets it only where the policy has one.
	KeyResponseRule = "response_rule"
)

// AttributeRequestMethod is the Envoy attribute the Server reads the request's HTTP method from
// (the ext_proc filter's response_attributes must name it): an answer without mcp_method passes
// only to a GET or DELETE.
const AttributeRequestMethod = "request.method"

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

// Responses applies response rules: what an agent may read back of an answer.
type Responses interface {
	// FilterResponse returns what to send the agent. It must fail closed itself: an answer it
	// cannot read is refused (502) or withheld, never passed.
	FilterResponse(ctx context.Context, req ResponseRequest) ResponseAnswer
}

// ResponseRequest is one answer whose request's decision named a response rule.
type ResponseRequest struct {
	// Rule is the response_rule metadata value; Agent and DecisionID those of the decision.
	Rule, Agent, DecisionID string
	// Status is the response's HTTP status.
	Status int
	// ContentType and ContentEncoding are the response's headers, as for ListRequest.
	ContentType, ContentEncoding string
	// Body is the whole response body (empty when it has none). It must not be modified.
	Body []byte
}

// ResponseAnswer is what to send the agent.
type ResponseAnswer struct {
	// Status is the status to send; a status other than the response's is sent as a local
	// reply with Body.
	Status int
	// Body is the body to send, ContentType its content type ("" keeps the response's).
	Body        []byte
	ContentType string
	// Changed reports whether Status or Body differ from the response's.
	Changed bool
}

// Config is what a Server needs.
type Config struct {
	// Lists decides; it is required.
	Lists Lists
	// Responses applies response rules; nil refuses (502) every answer whose request's decision
	// named one.
	Responses Responses
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
