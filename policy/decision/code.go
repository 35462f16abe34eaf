package decision

// Code is a stable, machine-readable reason. Agents branch on it, operators alert on it; a code
// is never renamed once released.
type Code string

// The reason codes. Each has exactly one entry in the code table (see Codes): its HTTP status,
// its problem title and what it means.
const (
	CodeAllowed              Code = "allowed"
	CodeIdentityMissing      Code = "identity_missing"
	CodeIdentityInvalid      Code = "identity_invalid"
	CodeTrustDomainUnknown   Code = "trust_domain_unknown"
	CodeJWTSVIDInvalid       Code = "jwt_svid_invalid"
	CodeOAuthTokenInvalid    Code = "oauth_token_invalid"
	CodeIdentityConflict     Code = "identity_conflict"
	CodeAgentUnknown         Code = "agent_unknown"
	CodeHostUnknown          Code = "host_unknown"
	CodeRouteUnknown         Code = "route_unknown"
	CodeScopeMissing         Code = "scope_missing"
	CodeOAuthSubjectUnknown  Code = "oauth_subject_unknown"
	CodeOAuthScopeMissing    Code = "oauth_scope_missing"
	CodeRequestMalformed     Code = "request_malformed"
	CodePathAmbiguous        Code = "path_ambiguous"
	CodeMethodOverride       Code = "method_override"
	CodeHeaderOverride       Code = "header_override"
	CodePathParamInvalid     Code = "path_param_invalid"
	CodeQueryInvalid         Code = "query_invalid"
	CodeBodyNotAllowed       Code = "body_not_allowed"
	CodeBodyMissing          Code = "body_missing"
	CodeBodyTooLarge         Code = "body_too_large"
	CodeBodyTruncated        Code = "body_truncated"
	CodeBodyContentType      Code = "body_content_type"
	CodeBodyEncoding         Code = "body_encoding"
	CodeBodyMalformed        Code = "body_malformed"
	CodeBodySchema           Code = "body_schema"
	CodeBodyUnavailable      Code = "body_unavailable"
	CodeGraphQLInvalid       Code = "graphql_invalid"
	CodeGraphQLLimit         Code = "graphql_limit"
	CodeGraphQLOperation     Code = "graphql_operation"
	CodeGraphQLField         Code = "graphql_field"
	CodeGraphQLNotPersisted  Code = "graphql_not_persisted"
	CodeGraphQLArgument      Code = "graphql_argument"
	CodeMCPInvalid           Code = "mcp_invalid"
	CodeMCPHeaderMismatch    Code = "mcp_header_mismatch"
	CodeMCPMethod            Code = "mcp_method"
	CodeMCPTool              Code = "mcp_tool"
	CodeMCPArguments         Code = "mcp_arguments"
	CodeMCPResource          Code = "mcp_resource"
	CodeMCPPrompt            Code = "mcp_prompt"
	CodeApprovalRequired     Code = "approval_required"
	CodeApprovalDenied       Code = "approval_denied"
	CodeApprovalUsed         Code = "approval_used"
	CodeApprovalExpired      Code = "approval_expired"
	CodeApprovalMismatch     Code = "approval_mismatch"
	CodeApprovalUnknown      Code = "approval_unknown"
	CodeApprovalLimit        Code = "approval_limit"
	CodeInternal             Code = "internal_error"
	CodeDeadlineExceeded     Code = "deadline_exceeded"
	CodePolicyNotLoaded      Code = "policy_not_loaded"
	CodeOAuthKeysUnavailable Code = "oauth_keys_unavailable"
	// CodeOAuthResourceMetadata answers a request for a protected resource's metadata: a denial
	// in that the request goes no further, served by agentauthz with status 200.
	CodeOAuthResourceMetadata Code = "oauth_resource_metadata"
	CodeResponseRefused       Code = "response_refused"
)

// CodeInfo is everything agentauthz says about one code.
type CodeInfo struct {
	Code Code
	// Status is the HTTP status Envoy returns to the agent: 200 for allowed; 503 for a failure to
	// decide; a 4xx for the policy's refusals.
	Status int
	// Title is the problem details' "title": short and fixed.
	Title string
	// Doc says what the code means, in one line of Markdown, for the documentation.
	Doc string
}

// codes is the one table of reason codes. Everything else about codes is generated from it or
// checked against it by a test: Status and Title (code_gen.go: go test ./policy/decision
// -update), the README's table of statuses and the policy guide's list of codes (go test ./docs
// -update), the failure codes operators alert on (docs/operating.md).
var codes = [...]CodeInfo{
	{CodeAllowed, 200, "Allowed",
		"The request matched a route the agent may call and passed every check."},

	// Who is calling.
	{CodeIdentityMissing, 401, "No agent identity",
		"The request carries no agent identity: the agent did not call through the mesh with its certificate (nor, on a host with `oauth`, with an access token: then the answer carries `WWW-Authenticate: Bearer`)."},
	{CodeIdentityInvalid, 401, "Agent identity is not a SPIFFE ID",
		"The peer's identity is not a SPIFFE ID."},
	{CodeTrustDomainUnknown, 401, "Trust domain not accepted",
		"The SPIFFE ID's trust domain is not in `trust_domains`."},
	{CodeJWTSVIDInvalid, 401, "Invalid JWT-SVID",
		"On a host with `jwt_svid`, a JWT-SVID that does not validate: expired, wrong audience, unknown key or trust domain, or a forbidden algorithm."},
	{CodeOAuthTokenInvalid, 401, "Invalid access token",
		"On a host with `oauth`, an access token that does not validate: malformed, expired or not yet valid, for another audience, from an issuer the host does not trust, signed with an unknown key or an algorithm the issuer is not allowed. The answer carries `WWW-Authenticate: Bearer error=\"invalid_token\"`."},
	{CodeIdentityConflict, 401, "Identities disagree",
		"The request's SPIFFE certificate and its access token name different agents (or the token's subject names none)."},
	{CodeOAuthResourceMetadata, 200, "Protected resource metadata",
		"Not a refusal: a `GET` of a protected resource's metadata (`/.well-known/oauth-protected-resource`, then the resource's path) on a host with `oauth`, which agentauthz answers itself with the JSON document (RFC 9728), readable from any origin (`Access-Control-Allow-Origin: *`), or the CORS preflight (`OPTIONS`) of that `GET`. The request goes no further."},

	// What it may call.
	{CodeAgentUnknown, 403, "Unknown agent",
		"The SPIFFE ID is not under `agents`."},
	{CodeHostUnknown, 403, "Unknown host",
		"No host of that name (note: no port, no trailing dot)."},
	{CodeRouteUnknown, 403, "Route not allowed",
		"No route on the host allows this method and path."},
	{CodeScopeMissing, 403, "Scope missing",
		"A route matched, but the agent does not hold its scope."},
	{CodeOAuthSubjectUnknown, 403, "Token subject is not an agent",
		"A valid access token whose subject its issuer's `agents` maps to no agent."},
	{CodeOAuthScopeMissing, 403, "OAuth scope missing",
		"A route matched and the agent holds its scope, but the access token does not grant the route's `oauth_scopes` (or, for an MCP tool call, the tool's). The answer carries `WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"...\"` naming them."},

	// The request line.
	{CodeRequestMalformed, 400, "Malformed request",
		"A request Envoy could not have sent, or one lacking a method, host or path, or with a contradictory `content-length`."},
	{CodePathAmbiguous, 400, "Ambiguous path",
		"A path two parsers could read differently: dot segments, encoded slashes, `;` parameters, double encoding and the like."},
	{CodeMethodOverride, 400, "Method override refused",
		"A header or query parameter asking the upstream to use another method."},
	{CodeHeaderOverride, 400, "Override header refused",
		"A header that makes frameworks serve another path or host than the request line's (`x-original-url`, `x-original-host`, ...), or one the host's `refuse_headers` lists."},
	{CodePathParamInvalid, 400, "Invalid path parameter",
		"A path parameter breaks its type."},
	{CodeQueryInvalid, 400, "Invalid query",
		"A query parameter that is unknown, repeated, missing or of the wrong type, or a malformed query string."},

	// The body.
	{CodeBodyNotAllowed, 400, "Body not allowed",
		"A body on a route that takes none."},
	{CodeBodyMissing, 400, "Body missing",
		"No body on a route that needs one."},
	{CodeBodyTooLarge, 413, "Body too large",
		"Longer than the route's `max_bytes`."},
	{CodeBodyTruncated, 413, "Body truncated",
		"Envoy cut the body short before the check."},
	{CodeBodyContentType, 415, "Unsupported content type",
		"A content type the route does not take."},
	{CodeBodyEncoding, 415, "Unsupported content encoding",
		"A `content-encoding` (gzip, ...) or a compressed gRPC message."},
	{CodeBodyMalformed, 400, "Malformed body",
		"Not strict JSON, or not one well-formed gRPC frame."},
	{CodeBodySchema, 400, "Body breaks the schema",
		"A well-formed body that breaks the route's JSON Schema, message or protovalidate rules."},
	{CodeBodyUnavailable, 503, "Body not forwarded",
		"The route needs the body and Envoy did not forward it: check Envoy's `with_request_body`."},

	// GraphQL.
	{CodeGraphQLInvalid, 400, "Invalid GraphQL",
		"A GraphQL document that does not parse or validate against the schema, or bad variables."},
	{CodeGraphQLLimit, 400, "GraphQL limit exceeded",
		"Too deep, too many aliases, root fields, tokens or batch entries."},
	{CodeGraphQLOperation, 403, "GraphQL operation not allowed",
		"An operation type the API does not allow, such as a mutation."},
	{CodeGraphQLField, 403, "GraphQL field not allowed",
		"A field, or introspection, the agent may not select."},
	{CodeGraphQLNotPersisted, 403, "GraphQL operation not persisted",
		"Not one of the API's persisted operations."},
	{CodeGraphQLArgument, 400, "GraphQL argument refused",
		"An argument the API's `arguments` rules do not allow for the field, a required one missing, or a value outside its rules (a literal, a variable's value or the schema's default)."},

	// MCP: what an agent asks of an MCP server.
	{CodeMCPInvalid, 400, "Invalid MCP request",
		"On an `mcp:` route, a body that is not one JSON-RPC request or notification (a batch, a response, a missing or mistyped member), an unsupported protocol revision, or a `Last-Event-ID` header (a resumed stream would replay answers past agentauthz's checks of responses)."},
	{CodeMCPHeaderMismatch, 400, "MCP headers disagree with the body",
		"On an `mcp:` route, an `Mcp-Method`, `Mcp-Name` or `Mcp-Param-*` header, or `MCP-Protocol-Version`, that is missing where revision 2026-07-28 requires it, malformed, or not what the body says."},
	{CodeMCPMethod, 403, "MCP method not allowed",
		"A JSON-RPC method the agent's scopes do not allow on this MCP server."},
	{CodeMCPTool, 403, "MCP tool not allowed",
		"A `tools/call` of a tool the policy does not grant the agent, or does not list."},
	{CodeMCPArguments, 400, "MCP tool arguments refused",
		"A `tools/call` whose arguments break the tool's schema or the policy's tighter one; each violation names the argument."},
	{CodeMCPResource, 403, "MCP resource not allowed",
		"A `resources/read` of a URI no resource pattern the agent holds matches."},
	{CodeMCPPrompt, 403, "MCP prompt not allowed",
		"A `prompts/get` of a prompt the policy does not grant the agent."},

	// Human approval.
	{CodeApprovalRequired, 428, "Approval required",
		"The route holds requests for human approval. The denial carries `approval_id`; once approved, the agent sends the identical request again with header `x-agentauthz-approval: <id>`."},
	{CodeApprovalDenied, 403, "Approval denied",
		"An approver denied the held request; the detail quotes their comment."},
	{CodeApprovalUsed, 403, "Approval already used",
		"The approval was already used: an approval lets one request through."},
	{CodeApprovalExpired, 403, "Approval expired",
		"The approval lapsed before it was approved or used."},
	{CodeApprovalMismatch, 403, "Approval does not match",
		"The approval is for another agent or another request (method, host, path, body)."},
	{CodeApprovalUnknown, 403, "Unknown approval",
		"No such approval."},
	{CodeApprovalLimit, 429, "Too many requests held",
		"The request would be held, but its agent (or its route) already has as many requests held or approved and unused as the route's `max_pending_per_agent` (`max_pending_per_rule`) allows. Nothing is held: wait for approvers to decide, use what is approved, then ask again."},

	// What comes back: the answer, not the request.
	{CodeResponseRefused, 502, "Response refused",
		"The upstream's answer cannot be shown under the route's or tool's response rule (not strict JSON, encoded, too large, of another content type, holding members the rule refuses, or the policy changed since the request): the agent gets this instead, from the ext_proc filter."},

	// Failures to decide.
	{CodeInternal, 503, failedTitle,
		"agentauthz could not decide."},
	{CodeDeadlineExceeded, 503, "Authorization timed out",
		"No decision in time."},
	{CodePolicyNotLoaded, 503, "Authorization not ready",
		"No policy loaded yet."},
	{CodeOAuthKeysUnavailable, 503, "Token keys unavailable",
		"The access token's issuer keys could not be fetched in time (the issuer is unreachable, or answered with no usable keys)."},
}

// failedTitle is the title of internal_error, and of any code not in the table.
const failedTitle = "Authorization failed"

// Codes returns the table of reason codes, in the order the documentation lists them.
func Codes() []CodeInfo {
	out := make([]CodeInfo, len(codes))
	copy(out, codes[:])
	return out
}

// IsFailure reports whether the code means agentauthz could not decide, as opposed to a
// policy deny. Operators alert on failures; agents may retry them.
func (c Code) IsFailure() bool { return c.Status() == 503 }
