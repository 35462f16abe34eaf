package extauthz

import (
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
	problemContentType     = &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: "content-type", Value: decision.ProblemContentType},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
	noStore = &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: "cache-control", Value: "no-store"},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
)

// respond turns a decision into Envoy's answer.
func respond(d *decision.Decision, id, agent string) *authv3.CheckResponse {
	meta := metadata(d, id, agent)
	if d.Allowed() {
		ok := &authv3.OkHttpResponse{QueryParametersToRemove: d.RemoveQuery}
		if g := d.Grant; g != nil {
			ok.HeadersToRemove = g.Remove
			if len(g.Set) > 0 {
				ok.Headers = make([]*corev3.HeaderValueOption, len(g.Set))
				for i, h := range g.Set {
					ok.Headers[i] = &corev3.HeaderValueOption{
						Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value.Reveal()},
						AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
					}
				}
			}
		}
		return &authv3.CheckResponse{
			Status:          statusOK,
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: meta,
		}
	}
	httpStatus := d.Status()
	rpc := statusPermissionDenied
	switch {
	case httpStatus == 401:
		rpc = statusUnauthenticated
	case d.Code.IsFailure():
		rpc = statusUnavailable
	}
	return &authv3.CheckResponse{
		Status: rpc,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: []*corev3.HeaderValueOption{problemContentType, noStore, {
				Header:       &corev3.HeaderValue{Key: DecisionIDHeader, Value: id},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
			Body: string(d.Problem(id)),
		}},
		DynamicMetadata: meta,
	}
}

// metadata is what Envoy's access log can read of the decision.
func metadata(d *decision.Decision, id, agent string) *structpb.Struct {
	code := d.Code
	if code == "" {
		code = decision.CodeInternal
	}
	fields := map[string]*structpb.Value{
		"decision_id": structpb.NewStringValue(id),
		"outcome":     structpb.NewStringValue(d.Outcome.String()),
		"code":        structpb.NewStringValue(string(code)),
	}
	if agent != "" {
		fields["agent"] = structpb.NewStringValue(agent)
	}
	if d.Rule != "" {
		fields["rule"] = structpb.NewStringValue(d.Rule)
	}
	return &structpb.Struct{Fields: fields}
}
