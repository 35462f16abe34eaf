package extauthz

import (
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// MetadataNamespace is the dynamic metadata namespace of agentauthz's decisions, for Envoy's
// access log: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// DecisionIDHeader carries the decision id on every denial, so an agent can quote it, and to
// the upstream on every allow, so its logs join the decision record.
const DecisionIDHeader = "x-agentauthz-decision-id"

// Shared, read-only parts of responses: marshalling only reads them.
var (
	statusOK               = &rpcstatus.Status{Code: int32(codes.OK)}
	statusPermissionDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}
	statusUnauthenticated  = &rpcstatus.Status{Code: int32(codes.Unauthenticated)}
	statusUnavailable      = &rpcstatus.Status{Code: int32(codes.Unavailable)}
	problemContentType     = overwrite("content-type", decision.ProblemContentType)
	jsonContentType        = overwrite("content-type", "application/json")
	noStore                = overwrite("cache-control", "no-store")
	grpcStatuses           = map[int]*corev3.HeaderValueOption{
		400: grpcStatusHeader(codes.InvalidArgument),
		401: grpcStatusHeader(codes.Unauthenticated),
		403: grpcStatusHeader(codes.PermissionDenied),
		413: grpcStatusHeader(codes.ResourceExhausted),
		415: grpcStatusHeader(codes.InvalidArgument),
		428: grpcStatusHeader(codes.FailedPrecondition),
		429: grpcStatusHeader(codes.ResourceExhausted),
		503: grpcStatusHeader(codes.Unavailable),
	}
)

// The CORS headers of a protected resource's metadata, public and read by browser-based MCP
// clients from any origin; no credentials are involved, so "*" is the whole answer. The preflight
// allows the GET with MCP-Protocol-Version, which MCP clients send with it. No other answer
// carries CORS headers: CORS on the APIs is theirs.
var (
	corsAnyOrigin    = overwrite("access-control-allow-origin", "*")
	corsAllowMethods = overwrite("access-control-allow-methods", "GET")
	corsAllowHeaders = overwrite("access-control-allow-headers", "mcp-protocol-version")
	corsMaxAge       = overwrite("access-control-max-age", "86400")
)

// WWWAuthenticateHeader carries a denial's Bearer challenge, on hosts that accept OAuth access
// tokens.
const WWWAuthenticateHeader = "www-authenticate"

// GRPCStatusHeader is set on the denial of a gRPC request: the status a gRPC client reports.
// Envoy answers a gRPC request's denial as a gRPC error (HTTP 200, grpc-status, and grpc-message
// holding agentauthz's problem details, in trailers), deriving grpc-status from the HTTP status
// unless the denial sets it. Envoy's derivation reads 400 as INTERNAL, 413 and 428 as UNKNOWN
// and 429 as UNAVAILABLE, which gRPC clients take for a server fault (and retry at once); this
// one says what the agent did.
const GRPCStatusHeader = "grpc-status"

func grpcStatusHeader(c codes.Code) *corev3.HeaderValueOption {
	return overwrite(GRPCStatusHeader, strconv.Itoa(int(c)))
}

// GRPCStatus is the gRPC status code a gRPC client gets for a denial with the HTTP status; ok
// is false where agentauthz leaves it to Envoy (no status agentauthz answers with).
func GRPCStatus(httpStatus int) (c codes.Code, ok bool) {
	h, ok := grpcStatuses[httpStatus]
	if !ok {
		return codes.Unknown, false
	}
	n, _ := strconv.Atoi(h.GetHeader().GetValue())
	return codes.Code(n), true
}

func overwrite(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// responder builds CheckResponses. It caches the parts that depend only on the policy (the
// headers of a grant, metadata values of rules and agents), so that an answer costs a handful
// of allocations. The caches belong to one policy revision: a decision from another revision
// starts new ones, so a reload drops what the old policy put there.
type responder struct {
	cache atomic.Pointer[partsCache]
}

// partsCache holds the Envoy form of one policy revision's parts.
type partsCache struct {
	revision string
	grants   sync.Map // *decision.Grant → []*corev3.HeaderValueOption
	entries  sync.Map // [2]string{key, value} → wire form of a metadata entry
	mu       sync.Mutex
	n        int
}

// maxCached bounds one revision's cache; past it, parts are built per answer. Keys come from the
// policy (rules, grants) and from agents the policy knows, so the bound is only a safety net.
const maxCached = 1 << 14

// forRevision returns the cache of revision, replacing the cache of another one.
func (rs *responder) forRevision(revision string) *partsCache {
	if c := rs.cache.Load(); c != nil && c.revision == revision {
		return c
	}
	c := &partsCache{revision: revision}
	rs.cache.Store(c)
	return c
}

// allowParts and denyParts are allocated in one piece per answer.
type allowParts struct {
	resp    authv3.CheckResponse
	wrapper authv3.CheckResponse_OkResponse
	ok      authv3.OkHttpResponse
	meta    structpb.Struct
	idOpt   corev3.HeaderValueOption
	idHdr   corev3.HeaderValue
	headers [8]*corev3.HeaderValueOption // the grant's headers and the decision id, when they fit
}

type denyParts struct {
	resp    authv3.CheckResponse
	wrapper authv3.CheckResponse_DeniedResponse
	denied  authv3.DeniedHttpResponse
	status  typev3.HttpStatus
	idOpt   corev3.HeaderValueOption
	idHdr   corev3.HeaderValue
	headers [7]*corev3.HeaderValueOption
	chOpt   corev3.HeaderValueOption
	chHdr   corev3.HeaderValue
	meta    structpb.Struct
}

// respond turns the engine's result into Envoy's answer; grpc says the request is a gRPC call,
// whose denial also sets grpc-status.
func (rs *responder) respond(res *engine.Result, grpc bool) *authv3.CheckResponse {
	d, id, agent := &res.Decision, res.ID, res.Agent
	pc := rs.forRevision(res.Revision)
	if d.Allowed() {
		p := &allowParts{}
		p.resp.Status = statusOK
		p.resp.HttpResponse = &p.wrapper
		p.wrapper.OkResponse = &p.ok
		p.ok.QueryParametersToRemove = d.RemoveQuery
		// The upstream learns the decision id, replacing any the agent sent, so that its logs
		// join agentauthz's decision record.
		p.idHdr = corev3.HeaderValue{Key: DecisionIDHeader, Value: id}
		p.idOpt.Header = &p.idHdr
		p.idOpt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		hs := p.headers[:0]
		if g := d.Grant; g != nil {
			p.ok.HeadersToRemove = g.Remove
			hs = append(hs, pc.grantHeaders(g)...) // beyond 7 headers, a slice of its own
		}
		p.ok.Headers = append(hs, &p.idOpt)
		pc.metadata(&p.meta, d, id, agent)
		p.resp.DynamicMetadata = &p.meta
		return &p.resp
	}
	p := &denyParts{}
	httpStatus := d.Status()
	p.resp.Status = statusPermissionDenied
	switch {
	case httpStatus == 401:
		p.resp.Status = statusUnauthenticated
	case d.Code.IsFailure():
		p.resp.Status = statusUnavailable
	}
	p.resp.HttpResponse = &p.wrapper
	p.wrapper.DeniedResponse = &p.denied
	p.idHdr = corev3.HeaderValue{Key: DecisionIDHeader, Value: id}
	p.idOpt.Header = &p.idHdr
	p.idOpt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	p.headers = [7]*corev3.HeaderValueOption{problemContentType, noStore, &p.idOpt}
	hs := p.headers[:3]
	if d.Challenge != "" {
		// A 401 tells the agent how to authenticate, a 403 for lack of OAuth scope which ones
		// to ask for (RFC 6750 §3).
		p.chHdr = corev3.HeaderValue{Key: WWWAuthenticateHeader, Value: d.Challenge}
		p.chOpt.Header = &p.chHdr
		p.chOpt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		hs = append(hs, &p.chOpt)
	}
	if d.Answer != nil {
		// agentauthz answers the request itself (a protected resource's metadata, or the CORS
		// preflight of its GET): the only answers that allow another origin to read them.
		p.headers[0] = jsonContentType
		hs = append(hs, corsAnyOrigin)
		if d.Preflight {
			hs = append(hs[1:], corsAllowMethods, corsAllowHeaders, corsMaxAge)
		}
		p.denied.Body = string(d.Answer)
	} else if status, body, ok := d.MCPAnswer(id); ok {
		// An MCP client reads JSON-RPC: the answer takes the form it gives the model.
		httpStatus = status
		p.headers[0] = jsonContentType
		p.denied.Body = body
	} else {
		if gs, ok := grpcStatuses[httpStatus]; grpc && ok {
			hs = append(hs, gs)
		}
		p.denied.Body = d.Problem(id)
	}
	p.denied.Headers = hs
	p.status.Code = typev3.StatusCode(httpStatus)
	p.denied.Status = &p.status
	pc.metadata(&p.meta, d, id, agent)
	p.resp.DynamicMetadata = &p.meta
	return &p.resp
}

// grantHeaders is the Envoy form of the headers a grant sets, built once per grant.
func (rs *partsCache) grantHeaders(g *decision.Grant) []*corev3.HeaderValueOption {
	if len(g.Set) == 0 {
		return nil
	}
	if v, ok := rs.grants.Load(g); ok {
		return v.([]*corev3.HeaderValueOption)
	}
	hs := make([]*corev3.HeaderValueOption, len(g.Set))
	for i, h := range g.Set {
		hs[i] = overwrite(h.Name, h.Value.Reveal())
	}
	if rs.reserve() {
		rs.grants.Store(g, hs)
	}
	return hs
}

func (rs *partsCache) reserve() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n >= maxCached {
		return false
	}
	rs.n++
	return true
}

// metadata fills what Envoy's access log can read of the decision: a Struct with decision_id,
// outcome, code, agent and rule, and on an allow whose answer has a response rule,
// response_rule.
//
// The Struct is written as its wire form, not as a Go map: marshalling a map of five Values cost
// more than deciding (1.6 µs and 10 allocations per answer). A Struct's entries are repeated
// field 1 on the wire, so entries encoded once (outcome, code, rule and known agents come from a
// small set) and the per-decision id are concatenated and carried as the message's unknown
// fields, which marshalling copies as they are. Envoy, and anyone who decodes the answer, reads
// an ordinary Struct.
func (rs *partsCache) metadata(m *structpb.Struct, d *decision.Decision, id, agent string) {
	code := d.Code
	if code == "" {
		code = decision.CodeInternal
	}
	parts := [7][]byte{rs.entry("outcome", d.Outcome.String()), rs.entry("code", string(code))}
	if d.Response != "" && d.Allowed() {
		// The response rule the ext_proc filter applies to the answer: a name and revision
		// from the policy.
		parts[6] = rs.entry("response_rule", d.Response)
	}
	if c := d.MCP; c != nil {
		// What the ext_proc filter of the same route needs to show the agent its lists, and
		// what an access log may print. Only names the policy lists are cached.
		parts[4] = rs.entry("mcp_server", c.Server)
		if c.Listed {
			parts[5] = rs.entry("mcp_method", c.Method)
		} else {
			parts[5] = appendEntry(nil, "mcp_method", c.Method)
		}
	}
	if agent != "" {
		if knownAgent(code) {
			parts[2] = rs.entry("agent", agent)
		} else {
			parts[2] = appendEntry(nil, "agent", agent)
		}
	}
	if d.Rule != "" {
		parts[3] = rs.entry("rule", d.Rule)
	}
	n := entrySize("decision_id", id)
	for _, p := range parts {
		n += len(p)
	}
	b := appendEntry(make([]byte, 0, n), "decision_id", id)
	for _, p := range parts {
		b = append(b, p...)
	}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
}

// entry returns the cached wire form of a metadata entry whose value comes from the policy.
func (rs *partsCache) entry(key, value string) []byte {
	k := [2]string{key, value}
	if v, ok := rs.entries.Load(k); ok {
		return v.([]byte)
	}
	b := appendEntry(nil, key, value)
	if rs.reserve() {
		rs.entries.Store(k, b)
	}
	return b
}

// Field numbers of google.protobuf.Struct, its map entry and Value.
const (
	structFields     protowire.Number = 1 // Struct.fields, a map<string, Value>
	entryKey         protowire.Number = 1
	entryValue       protowire.Number = 2
	valueStringValue protowire.Number = 3
)

// entrySize is the wire size of a Struct entry with a string value.
func entrySize(key, value string) int {
	inner := entryInnerSize(key, value)
	return protowire.SizeTag(structFields) + protowire.SizeBytes(inner)
}

func entryInnerSize(key, value string) int {
	val := protowire.SizeTag(valueStringValue) + protowire.SizeBytes(len(value))
	return protowire.SizeTag(entryKey) + protowire.SizeBytes(len(key)) +
		protowire.SizeTag(entryValue) + protowire.SizeBytes(val)
}

// appendEntry appends a Struct entry key: {string_value: value} in wire form.
func appendEntry(b []byte, key, value string) []byte {
	b = protowire.AppendTag(b, structFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entryInnerSize(key, value)))
	b = protowire.AppendTag(b, entryKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, entryValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(valueStringValue)+protowire.SizeBytes(len(value))))
	b = protowire.AppendTag(b, valueStringValue, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// knownAgent reports whether a decision with this code got past the agent lookup, so that the
// agent's ID is one the policy names and may be cached.
func knownAgent(c decision.Code) bool {
	switch c {
	case decision.CodeIdentityMissing, decision.CodeIdentityInvalid, decision.CodeTrustDomainUnknown,
		decision.CodeAgentUnknown, decision.CodeRequestMalformed, decision.CodeInternal,
		decision.CodeDeadlineExceeded, decision.CodePolicyNotLoaded,
		// An access token refused before the certificate's agent was looked up.
		decision.CodeOAuthTokenInvalid, decision.CodeIdentityConflict, decision.CodeOAuthKeysUnavailable:
		return false
	}
	return true
}
