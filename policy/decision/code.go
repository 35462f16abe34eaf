package decision

// Code is a stable, machine-readable reason. Agents branch on it, operators alert on it; a code
// is never renamed once released.
type Code string

// The reason codes. Each has one HTTP status (see Status).
const (
	// CodeAllowed: the request matched a route the agent may call.
	CodeAllowed Code = "allowed"

	// 401: who is calling could not be established.
	CodeIdentityMissing     Code = "identity_missing"      // no peer principal at all
	CodeIdentityInvalid     Code = "identity_invalid"      // the principal is not a SPIFFE ID
	CodeTrustDomainUnknown  Code = "trust_domain_unknown"  // a SPIFFE ID from a trust domain the policy does not name
	CodeJWTSVIDInvalid      Code = "jwt_svid_invalid"      // a JWT-SVID that does not validate (expired, audience, key, algorithm, trust domain)
	CodeAgentUnknown        Code = "agent_unknown"         // 403: a SPIFFE ID the policy has no agent for
	CodeHostUnknown         Code = "host_unknown"          // 403: no such upstream host in the policy
	CodeRouteUnknown        Code = "route_unknown"         // 403: no route for this method and path
	CodeScopeMissing        Code = "scope_missing"         // 403: the route needs a scope the agent lacks
	CodeRequestMalformed    Code = "request_malformed"     // 400: a request Envoy could not have sent, or missing parts
	CodePathAmbiguous       Code = "path_ambiguous"        // 400: a path two parsers could read differently
	CodeMethodOverride      Code = "method_override"       // 400: a header asking the upstream to use another method
	CodePathParamInvalid    Code = "path_param_invalid"    // 400: a path parameter of the wrong type
	CodeQueryInvalid        Code = "query_invalid"         // 400: a bad, unknown, missing or repeated query parameter
	CodeBodyNotAllowed      Code = "body_not_allowed"      // 400: a body on a route that takes none
	CodeBodyMissing         Code = "body_missing"          // 400: the route needs a body and there is none
	CodeBodyTooLarge        Code = "body_too_large"        // 413: longer than the route's limit
	CodeBodyTruncated       Code = "body_truncated"        // 413: Envoy cut the body short (x-envoy-auth-partial-body: true)
	CodeBodyContentType     Code = "body_content_type"     // 415: a content type the route does not take
	CodeBodyEncoding        Code = "body_encoding"         // 415: a content-encoding agentauthz cannot read (gzip, ...)
	CodeBodyMalformed       Code = "body_malformed"        // 400: not strict JSON / not a well-formed gRPC frame
	CodeBodySchema          Code = "body_schema"           // 400: well-formed, but breaks the route's schema
	CodeBodyUnavailable     Code = "body_unavailable"      // 503: the route needs the body but Envoy did not forward it
	CodeGraphQLInvalid      Code = "graphql_invalid"       // 400: does not parse or validate against the schema, or bad variables
	CodeGraphQLLimit        Code = "graphql_limit"         // 400: too deep, too many aliases, root fields, tokens or batch entries
	CodeGraphQLOperation    Code = "graphql_operation"     // 403: an operation type the route does not allow (mutation, subscription)
	CodeGraphQLField        Code = "graphql_field"         // 403: a field (or introspection) the agent may not select
	CodeGraphQLNotPersisted Code = "graphql_not_persisted" // 403: not one of the route's persisted operations
	CodeApprovalRequired    Code = "approval_required"     // 428: held until an approver approves this exact request
	CodeApprovalDenied      Code = "approval_denied"       // 403: an approver denied it
	CodeApprovalUsed        Code = "approval_used"         // 403: the approval was already used
	CodeApprovalExpired     Code = "approval_expired"      // 403: the approval lapsed
	CodeApprovalMismatch    Code = "approval_mismatch"     // 403: the approval is for another agent or request
	CodeApprovalUnknown     Code = "approval_unknown"      // 403: no such approval
	CodeInternal            Code = "internal_error"        // 503: agentauthz could not decide
	CodeDeadlineExceeded    Code = "deadline_exceeded"     // 503: no decision in time
	CodePolicyNotLoaded     Code = "policy_not_loaded"     // 503: no policy loaded yet
	CodeUnavailableShutdown Code = "shutting_down"         // 503: the server is draining
)

// Status is the HTTP status Envoy returns to the agent for a deny with this code. Unknown codes,
// including the empty one, are failures to decide: 503.
func (c Code) Status() int {
	switch c {
	case CodeAllowed:
		return 200
	case CodeIdentityMissing, CodeIdentityInvalid, CodeTrustDomainUnknown, CodeJWTSVIDInvalid:
		return 401
	case CodeAgentUnknown, CodeHostUnknown, CodeRouteUnknown, CodeScopeMissing:
		return 403
	case CodeRequestMalformed, CodePathAmbiguous, CodeMethodOverride, CodePathParamInvalid,
		CodeQueryInvalid, CodeBodyNotAllowed, CodeBodyMissing, CodeBodyMalformed, CodeBodySchema,
		CodeGraphQLInvalid, CodeGraphQLLimit:
		return 400
	case CodeGraphQLOperation, CodeGraphQLField, CodeGraphQLNotPersisted, CodeApprovalDenied,
		CodeApprovalUsed, CodeApprovalExpired, CodeApprovalMismatch, CodeApprovalUnknown:
		return 403
	case CodeApprovalRequired:
		return 428
	case CodeBodyTooLarge, CodeBodyTruncated:
		return 413
	case CodeBodyContentType, CodeBodyEncoding:
		return 415
	default:
		return 503
	}
}

// IsFailure reports whether the code means agentauthz could not decide, as opposed to a
// policy deny. Operators alert on failures; agents may retry them.
func (c Code) IsFailure() bool { return c.Status() == 503 }

// Title is the short, fixed summary of the code used as the problem's "title".
func (c Code) Title() string {
	switch c {
	case CodeIdentityMissing:
		return "No agent identity"
	case CodeIdentityInvalid:
		return "Agent identity is not a SPIFFE ID"
	case CodeTrustDomainUnknown:
		return "Trust domain not accepted"
	case CodeJWTSVIDInvalid:
		return "Invalid JWT-SVID"
	case CodeAgentUnknown:
		return "Unknown agent"
	case CodeHostUnknown:
		return "Unknown host"
	case CodeRouteUnknown:
		return "Route not allowed"
	case CodeScopeMissing:
		return "Scope missing"
	case CodeRequestMalformed:
		return "Malformed request"
	case CodePathAmbiguous:
		return "Ambiguous path"
	case CodeMethodOverride:
		return "Method override refused"
	case CodePathParamInvalid:
		return "Invalid path parameter"
	case CodeQueryInvalid:
		return "Invalid query"
	case CodeBodyNotAllowed:
		return "Body not allowed"
	case CodeBodyMissing:
		return "Body missing"
	case CodeBodyTooLarge:
		return "Body too large"
	case CodeBodyTruncated:
		return "Body truncated"
	case CodeBodyContentType:
		return "Unsupported content type"
	case CodeBodyEncoding:
		return "Unsupported content encoding"
	case CodeBodyMalformed:
		return "Malformed body"
	case CodeBodySchema:
		return "Body breaks the schema"
	case CodeBodyUnavailable:
		return "Body not forwarded"
	case CodeGraphQLInvalid:
		return "Invalid GraphQL"
	case CodeGraphQLLimit:
		return "GraphQL limit exceeded"
	case CodeGraphQLOperation:
		return "GraphQL operation not allowed"
	case CodeGraphQLField:
		return "GraphQL field not allowed"
	case CodeGraphQLNotPersisted:
		return "GraphQL operation not persisted"
	case CodeApprovalRequired:
		return "Approval required"
	case CodeApprovalDenied:
		return "Approval denied"
	case CodeApprovalUsed:
		return "Approval already used"
	case CodeApprovalExpired:
		return "Approval expired"
	case CodeApprovalMismatch:
		return "Approval does not match"
	case CodeApprovalUnknown:
		return "Unknown approval"
	case CodeDeadlineExceeded:
		return "Authorization timed out"
	case CodePolicyNotLoaded:
		return "Authorization not ready"
	case CodeUnavailableShutdown:
		return "Authorization shutting down"
	case CodeAllowed:
		return "Allowed"
	default:
		return "Authorization failed"
	}
}
