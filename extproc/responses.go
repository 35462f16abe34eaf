package extproc

import (
	"fmt"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// An answer whose request's decision named a response rule (response_rule) goes to Responses,
// whatever else the metadata says: the rule decides what the agent reads, an MCP list filter
// never sees it. The Server needs the whole body in one message (BUFFERED): a body it cannot
// have whole, or larger than Config.MaxBody, is refused with 502, as is every such answer when
// the Server has no Responses.

// responseHeaders answers the response headers of an answer under a response rule.
func (x *exchange) responseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	x.resp.Agent, x.resp.DecisionID = x.req.Agent, x.req.DecisionID
	x.resp.Status, x.resp.ContentType, x.resp.ContentEncoding = x.req.Status, x.req.ContentType, x.req.ContentEncoding
	switch {
	case x.s.cfg.Responses == nil:
		return x.refuseResponse("the ext_proc server applies no response rules")
	case h.GetEndOfStream():
		// No body: the rule still sees the status (an error status passes, with nothing to
		// withhold).
		return x.answerHeaders(x.filterResponse())
	case !x.configured || !x.buffered:
		return x.refuseResponse("the ext_proc filter does not buffer the response body")
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{}}}
}

// responseBody answers the buffered body of an answer under a response rule.
func (x *exchange) responseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	switch {
	case x.s.cfg.Responses == nil:
		return x.refuseResponse("the ext_proc server applies no response rules")
	case x.bodies > 1:
		return x.refuseResponse("the response body arrived in pieces")
	case len(b.GetBody()) > x.s.cfg.MaxBody:
		return x.refuseResponse(fmt.Sprintf("the response body is larger than %d bytes", x.s.cfg.MaxBody))
	}
	x.resp.Body = b.GetBody()
	a := x.filterResponse()
	switch {
	case !a.Changed:
		return bodyResponse(nil)
	case a.Status != x.resp.Status:
		return immediate(a, "agentauthz_response_refused")
	}
	ct := a.ContentType
	if ct == "" {
		ct = x.resp.ContentType
	}
	return bodyResponse(&extprocv3.CommonResponse{
		HeaderMutation: replacedHeaders(ct, len(a.Body)),
		BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: a.Body}},
	})
}

// answerHeaders answers headers of a response without a body.
func (x *exchange) answerHeaders(a ResponseAnswer) *extprocv3.ProcessingResponse {
	if !a.Changed {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{}}}
	}
	return immediate(a, "agentauthz_response_refused")
}

// filterResponse asks Responses, turning a panic or an empty answer into a refusal.
func (x *exchange) filterResponse() (a ResponseAnswer) {
	defer func() {
		if p := recover(); p != nil {
			a = x.refusedAnswer(fmt.Sprintf("filtering panicked: %v", p))
		}
	}()
	a = x.s.cfg.Responses.FilterResponse(x.ctx, x.resp)
	if a.Changed && (a.Status == 0 || a.Body == nil && a.Status != x.resp.Status) {
		a = x.refusedAnswer("filtering returned no answer")
	}
	return a
}

// refuseResponse ends the exchange with 502 and a problem, for an answer the Server cannot hand
// to Responses.
func (x *exchange) refuseResponse(reason string) *extprocv3.ProcessingResponse {
	return immediate(x.refusedAnswer(reason), "agentauthz_response_refused")
}

func (x *exchange) refusedAnswer(reason string) ResponseAnswer {
	x.s.cfg.Log.Warn("response refused", "reason", reason, "decision_id", x.resp.DecisionID,
		"agent", x.resp.Agent, "response_rule", x.resp.Rule, "status", x.resp.Status)
	x.s.cfg.Metrics.Response(ruleKey(x.resp.Rule), "refused", false, 0, 0)
	return ResponseAnswer{Status: 502, Body: refusedProblem(x.resp.DecisionID), ContentType: ContentTypeProblem, Changed: true}
}

// ContentTypeProblem is the content type of the Server's own problems.
const ContentTypeProblem = "application/problem+json"

// refusedProblem is the problem of an answer the Server refuses itself; it has the form of the
// engine's (reason code response_refused).
func refusedProblem(decisionID string) []byte {
	b := []byte(`{"type":"urn:agentauthz:problem:response_refused","title":"Response refused","status":502,` +
		`"detail":"The upstream's answer cannot be shown to you under this route's response rule; do not retry it unchanged.","code":"response_refused"`)
	if decisionID != "" && isToken(decisionID) {
		b = append(append(append(b, `,"decision_id":"`...), decisionID...), '"')
	}
	return append(b, '}')
}

// isToken reports whether s is safe in a JSON string as it is: decision ids are hex.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func ruleKey(tag string) string {
	for i := 0; i < len(tag); i++ {
		if tag[i] == '@' {
			return tag[:i]
		}
	}
	return tag
}

// immediate is a local reply with a's status, body and content type.
func immediate(a ResponseAnswer, details string) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(a.Status)},
			Headers: replacedHeaders(a.ContentType, len(a.Body)),
			Body:    a.Body,
			Details: details,
		}}}
}
