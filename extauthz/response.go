package extauthz

import (
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/decision"
)

// MetadataNamespace is the dynamic metadata namespace of agentauthz's decisions, for Envoy's
// access log: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// DecisionIDHeader carries the decision id on every denial, so an agent can quote it.
const DecisionIDHeader = "x-agentauthz-decision-id"

// Shared, read-only parts of responses: marshalling only reads them.
var (
	statusOK               = &rpcstatus.Status{Code: int32(codes.OK)}
	statusPermissionDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}
	statusUnauthenticated  = &rpcstatus.Status{Code: int32(codes.Unauthenticated)}
	statusUnavailable      = &rpcstatus.Status{Code: int32(codes.Unavailable)}
	problemContentType     = overwrite("content-type", decision.ProblemContentType)
	noStore                = overwrite("cache-control", "no-store")
)

func overwrite(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// responder builds CheckResponses. It caches the parts that depend only on the policy (the
// headers of a grant, metadata values of rules and agents), so that an answer costs a handful
// of allocations.
type responder struct {
	grants sync.Map // *decision.Grant → []*corev3.HeaderValueOption
	values sync.Map // string → *structpb.Value
	n      int64
	mu     sync.Mutex
}

// maxCached bounds the caches; past it, parts are built per answer. Keys come from the policy
// (rules, grants) and from agents the policy knows, so the bound is only a safety net.
const maxCached = 1 << 16

// allowParts and denyParts are allocated in one piece per answer.
type allowParts struct {
	resp    authv3.CheckResponse
	wrapper authv3.CheckResponse_OkResponse
	ok      authv3.OkHttpResponse
	meta    structpb.Struct
	id      structpb.Value
	idStr   structpb.Value_StringValue
}

type denyParts struct {
	resp    authv3.CheckResponse
	wrapper authv3.CheckResponse_DeniedResponse
	denied  authv3.DeniedHttpResponse
	status  typev3.HttpStatus
	idOpt   corev3.HeaderValueOption
	idHdr   corev3.HeaderValue
	headers [3]*corev3.HeaderValueOption
	meta    structpb.Struct
	id      structpb.Value
	idStr   structpb.Value_StringValue
}

// respond turns a decision into Envoy's answer. agent is the caller's SPIFFE ID once known.
func (rs *responder) respond(d *decision.Decision, id, agent string) *authv3.CheckResponse {
	if d.Allowed() {
		p := &allowParts{}
		p.resp.Status = statusOK
		p.resp.HttpResponse = &p.wrapper
		p.wrapper.OkResponse = &p.ok
		p.ok.QueryParametersToRemove = d.RemoveQuery
		if g := d.Grant; g != nil {
			p.ok.HeadersToRemove = g.Remove
			p.ok.Headers = rs.grantHeaders(g)
		}
		rs.metadata(&p.meta, &p.id, &p.idStr, d, id, agent)
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
	p.status.Code = typev3.StatusCode(httpStatus)
	p.denied.Status = &p.status
	p.idHdr = corev3.HeaderValue{Key: DecisionIDHeader, Value: id}
	p.idOpt.Header = &p.idHdr
	p.idOpt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	p.headers = [3]*corev3.HeaderValueOption{problemContentType, noStore, &p.idOpt}
	p.denied.Headers = p.headers[:]
	p.denied.Body = d.Problem(id)
	rs.metadata(&p.meta, &p.id, &p.idStr, d, id, agent)
	p.resp.DynamicMetadata = &p.meta
	return &p.resp
}

// grantHeaders is the Envoy form of the headers a grant sets, built once per grant.
func (rs *responder) grantHeaders(g *decision.Grant) []*corev3.HeaderValueOption {
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

// value returns a cached string value for text that comes from the policy.
func (rs *responder) value(s string) *structpb.Value {
	if v, ok := rs.values.Load(s); ok {
		return v.(*structpb.Value)
	}
	v := structpb.NewStringValue(s)
	if rs.reserve() {
		rs.values.Store(s, v)
	}
	return v
}

func (rs *responder) reserve() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n >= maxCached {
		return false
	}
	rs.n++
	return true
}

// metadata fills what Envoy's access log can read of the decision.
func (rs *responder) metadata(m *structpb.Struct, idv *structpb.Value, ids *structpb.Value_StringValue, d *decision.Decision, id, agent string) {
	code := d.Code
	if code == "" {
		code = decision.CodeInternal
	}
	ids.StringValue = id
	idv.Kind = ids
	m.Fields = make(map[string]*structpb.Value, 5)
	m.Fields["decision_id"] = idv
	m.Fields["outcome"] = rs.value(d.Outcome.String())
	m.Fields["code"] = rs.value(string(code))
	if agent != "" {
		if knownAgent(code) {
			m.Fields["agent"] = rs.value(agent)
		} else {
			m.Fields["agent"] = structpb.NewStringValue(agent)
		}
	}
	if d.Rule != "" {
		m.Fields["rule"] = rs.value(d.Rule)
	}
}

// knownAgent reports whether a decision with this code got past the agent lookup, so that the
// agent's ID is one the policy names and may be cached.
func knownAgent(c decision.Code) bool {
	switch c {
	case decision.CodeIdentityMissing, decision.CodeIdentityInvalid, decision.CodeTrustDomainUnknown,
		decision.CodeAgentUnknown, decision.CodeRequestMalformed, decision.CodeInternal,
		decision.CodeDeadlineExceeded, decision.CodePolicyNotLoaded, decision.CodeUnavailableShutdown:
		return false
	}
	return true
}
