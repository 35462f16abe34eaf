package extproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
)

// exchange is one ext_proc stream: the answer to one HTTP request, as Envoy tells it.
type exchange struct {
	s   *Server
	ctx context.Context
	req ListRequest

	// configured: Envoy said how it sends bodies (protocol_config); buffered: the whole
	// response body comes in one message.
	configured, buffered bool
	list                 bool   // the answer to a list method
	bodies               int    // response body messages received
	httpMethod           string // the request's, from the attribute request.method
	// resp is the answer's request under a response rule: its response_rule metadata.
	resp ResponseRequest
}

// ended is Process's return for the error ending the stream.
func (x *exchange) ended(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Canceled {
		return nil // Envoy closed the stream: the exchange is over
	}
	return err
}

func (x *exchange) handle(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if pc := req.GetProtocolConfig(); pc != nil {
		x.configured = true
		x.buffered = pc.GetResponseBodyMode() == procv3.ProcessingMode_BUFFERED
	}
	x.readMetadata(req.GetMetadataContext())
	for _, attrs := range req.GetAttributes() {
		if m := attrs.GetFields()[AttributeRequestMethod].GetStringValue(); m != "" {
			x.httpMethod = m
		}
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return x.headers(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return x.body(r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}
	// Requests pass as they are: ext_authz has checked them. (The shipped configuration does not
	// send them.)
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{}}}
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{}}}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}}
	}
	return x.refuse("an ext_proc message of an unknown kind")
}

// readMetadata reads ext_authz's answer from the forwarded metadata. Values that are not strings
// are not read.
func (x *exchange) readMetadata(md *corev3.Metadata) {
	ns := md.GetFilterMetadata()[MetadataNamespace]
	if ns == nil {
		return
	}
	// An array rather than a map literal: this runs for every message of the stream.
	for _, f := range [...]struct {
		key string
		dst *string
	}{
		{KeyAgent, &x.req.Agent}, {KeyDecisionID, &x.req.DecisionID}, {KeyRule, &x.req.Rule},
		{KeyMCPMethod, &x.req.Method}, {KeyMCPServer, &x.req.Server}, {KeyResponseRule, &x.resp.Rule},
	} {
		if v := ns.GetFields()[f.key].GetStringValue(); v != "" {
			*f.dst = v
		}
	}
}

// headers answers the response headers.
func (x *exchange) headers(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hs := h.GetHeaders().GetHeaders()
	x.req.Status, _ = strconv.Atoi(header(hs, ":status"))
	x.req.ContentType = header(hs, "content-type")
	x.req.ContentEncoding = header(hs, "content-encoding")
	if x.resp.Rule != "" {
		return x.responseHeaders(h)
	}
	if !mcpfilter.IsList(x.req.Method) {
		switch {
		case x.req.Agent == "" && x.req.Method == "":
			// No answer from ext_authz at all: Envoy is not forwarding its metadata. What was
			// asked is unknown, so the body is replaced by a JSON-RPC error.
			return x.replaceAtHeaders(mcpfilter.Empty("", nil), "the ext_authz metadata is not forwarded")
		case x.req.Method == "" && x.httpMethod != "GET" && x.httpMethod != "DELETE" && !h.GetEndOfStream():
			// ext_authz named no JSON-RPC method, yet this is not the answer to a request that
			// has none (GET: an event stream; DELETE: the end of a session; or a request whose
			// HTTP method Envoy did not send): it is not known not to be a list.
			return x.replaceAtHeaders(mcpfilter.Empty("", nil), "the request has no mcp_method, and is not a GET or DELETE")
		}
		// Not a list: the body passes, and Envoy need not send it, where allow_mode_override
		// lets the Server say so.
		x.s.cfg.Metrics.MCPList("other", string(mcpfilter.Passed))
		return &extprocv3.ProcessingResponse{
			Response:     &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
			ModeOverride: &procv3.ProcessingMode{ResponseBodyMode: procv3.ProcessingMode_NONE},
		}
	}
	x.list = true
	switch {
	case !x.configured || !x.buffered:
		return x.replaceAtHeaders(mcpfilter.Empty(x.req.Method, nil), "the ext_proc filter does not buffer the response body")
	case h.GetEndOfStream():
		return x.replaceAtHeaders(mcpfilter.Empty(x.req.Method, nil), "the response has no body")
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{}}}
}

// body answers the buffered response body.
func (x *exchange) body(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	x.bodies++
	if x.resp.Rule != "" {
		return x.responseBody(b)
	}
	switch {
	case !x.list:
		// Envoy sent a body the Server did not ask for (mode_override not allowed): not a list,
		// it passes.
		return bodyResponse(nil)
	case x.bodies > 1:
		// BUFFERED sends the body in one message; in pieces, the first has gone on already.
		return x.refuse("the response body arrived in pieces")
	}
	x.req.Body = b.GetBody()
	if len(x.req.Body) > x.s.cfg.MaxBody {
		// Too long a list is a fault of the deployment, not of the list: 502 says so to the
		// agent and to whoever watches the gateway's errors, where an empty list with 200 would
		// tell the agent, wrongly, that it may use nothing. Envoy's own limit on what it buffers
		// answers 500 the same way, before anything reaches the Server.
		return x.refuse(fmt.Sprintf("the response body is larger than %d bytes", x.s.cfg.MaxBody))
	}
	var res ListResult
	switch {
	case x.req.Agent == "":
		// ext_authz named no agent: nobody may see anything. Filtering with a view that shows
		// nothing keeps the response's id.
		f := mcpfilter.Filter(mcpfilter.Response{Method: x.req.Method, ContentType: x.req.ContentType,
			ContentEncoding: x.req.ContentEncoding, Body: x.req.Body}, nothing{})
		res = ListResult{Body: f.Body, ContentType: f.ContentType, Outcome: mcpfilter.Emptied, Reason: "the ext_authz metadata names no agent"}
	default:
		res = x.filter()
	}
	return x.send(res)
}

// filter asks Lists, turning a panic or a missing body into an empty list.
func (x *exchange) filter() (res ListResult) {
	defer func() {
		if p := recover(); p != nil {
			res = x.emptied(nil, fmt.Sprintf("filtering panicked: %v", p))
		}
	}()
	res = x.s.cfg.Lists.FilterMCPList(x.ctx, x.req)
	if res.Body == nil {
		res = x.emptied(nil, "filtering returned no body")
	}
	return res
}

// emptied is an empty list for the answer, as application/json.
func (x *exchange) emptied(id []byte, reason string) ListResult {
	return ListResult{Body: mcpfilter.Empty(x.req.Method, id), ContentType: mcpfilter.ContentTypeJSON,
		Outcome: mcpfilter.Emptied, Reason: reason}
}

// send writes res as the answer to the body, with the headers that match it.
func (x *exchange) send(res ListResult) *extprocv3.ProcessingResponse {
	x.record(res.Outcome, res.Reason)
	ct := res.ContentType
	if ct == "" {
		ct = x.req.ContentType
	}
	if ct == x.req.ContentType && bytes.Equal(res.Body, x.req.Body) {
		return bodyResponse(nil)
	}
	return bodyResponse(&extprocv3.CommonResponse{
		HeaderMutation: replacedHeaders(ct, len(res.Body)),
		BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: res.Body}},
	})
}

// replaceAtHeaders answers the response headers by replacing the body, which is then not sent
// to the Server (or added, where the response had none).
func (x *exchange) replaceAtHeaders(body []byte, reason string) *extprocv3.ProcessingResponse {
	x.record(mcpfilter.Emptied, reason)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			Status:         extprocv3.CommonResponse_CONTINUE_AND_REPLACE,
			HeaderMutation: replacedHeaders(mcpfilter.ContentTypeJSON, len(body)),
			BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}},
		}}}}
}

// refuse ends the exchange with a local reply, 502 and an empty list, for a body the Server will
// not hand to Lists: too long, or sent in pieces (what Envoy should never send: the answer may
// have begun to pass).
func (x *exchange) refuse(reason string) *extprocv3.ProcessingResponse {
	x.record(mcpfilter.Emptied, reason)
	body := mcpfilter.Empty(x.req.Method, nil)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway},
			Headers: replacedHeaders(mcpfilter.ContentTypeJSON, len(body)),
			Body:    body,
			Details: "agentauthz_mcp_list_unreadable",
		}}}
}

// record counts the outcome and logs an emptied answer.
func (x *exchange) record(outcome mcpfilter.Outcome, reason string) {
	method := x.req.Method
	if !mcpfilter.IsList(method) {
		method = "other"
	}
	x.s.cfg.Metrics.MCPList(method, string(outcome))
	if outcome == mcpfilter.Emptied {
		x.s.cfg.Log.Warn("MCP list answer replaced by an empty list", "reason", reason,
			"decision_id", x.req.DecisionID, "agent", x.req.Agent, "mcp_server", x.req.Server,
			"mcp_method", x.req.Method, "status", x.req.Status)
	}
}

// replacedHeaders are the header changes for a body replaced by one of n bytes of content type
// ct: its exact length (Envoy refuses a buffered body mutation whose content-length disagrees),
// and no content-encoding, since the body sent is not encoded.
func replacedHeaders(ct string, n int) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader("content-type", ct),
			setHeader("content-length", strconv.Itoa(n)),
		},
		RemoveHeaders: []string{"content-encoding"},
	}
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func bodyResponse(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: c}}}
}

// header returns the value of the header name (lower case, as Envoy sends names), its values
// joined by "," when it is sent more than once, which no reader of a content type or encoding
// accepts.
func header(hs []*corev3.HeaderValue, name string) string {
	var out string
	n := 0
	for _, h := range hs {
		if h.GetKey() != name {
			continue
		}
		v := h.GetValue()
		if raw := h.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if n > 0 {
			out += ","
		}
		out += v
		n++
	}
	return out
}

// nothing is the View of an agent ext_authz did not name: it shows nothing.
type nothing struct{}

func (nothing) Tool(string) (bool, []byte)   { return false, nil }
func (nothing) Resource(string) bool         { return false }
func (nothing) ResourceTemplate(string) bool { return false }
func (nothing) Prompt(string) bool           { return false }
