package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/response"
)

// ResponseInput is an upstream's answer to an allowed request whose decision named a response
// rule, with what that decision said: as the front door read it from the decision's metadata.
type ResponseInput struct {
	// Rule is the decision's response rule ("KEY@REVISION", decision.Decision.Response).
	Rule string
	// Agent is the SPIFFE ID of the agent whose request was allowed; DecisionID the request's
	// decision.
	Agent, DecisionID string
	// Status is the answer's HTTP status.
	Status int
	// ContentType and ContentEncoding are the answer's headers; Body the whole answer, never
	// modified.
	ContentType, ContentEncoding string
	Body                         []byte
}

// ResponseResult is what to send the agent.
type ResponseResult struct {
	// Status is the status to send: the answer's, or 502 when it is refused.
	Status int
	// Body is the body to send: the answer's own when Changed is false.
	Body []byte
	// ContentType is Body's content type; empty keeps the answer's.
	ContentType string
	// Changed reports whether Status or Body differ from the answer's.
	Changed bool
	// Outcome, Removed, Masked, Shadow and Reason are the filter's (response.Result).
	Outcome         response.Outcome
	Removed, Masked []string
	Shadow          bool
	Reason          string
}

// ContentTypeProblem is the content type of the problem bodies a refused or withheld answer
// gets.
const ContentTypeProblem = "application/problem+json"

// EventLog is a DecisionLog that also records other events in the same chain (audit.Log and
// audit.Queue are ones); FilterResponse writes its records there.
type EventLog interface {
	Write(kind string, attrs ...slog.Attr) error
}

// FilterResponse shows the agent only what the response rule its request's decision named
// lets it read. It fails closed: a rule the policy in force does not hold (the policy was
// reloaded since the request, or no policy at all), an agent that is not a SPIFFE ID, or an
// answer the rule cannot read, is refused with 502 and a problem. An error status's body is
// withheld: the agent gets the status and a problem. A rule in shadow changes nothing and
// reports. What was removed (field paths, never values) is counted, logged and recorded in
// the decision log, as a "response" record of the request's decision id.
func (e *Engine) FilterResponse(_ context.Context, in ResponseInput) ResponseResult {
	rule, revision, err := e.responseRule(in)
	var fr response.Result
	if err != nil {
		fr = response.Result{Outcome: response.Refused, Reason: err.Error()}
	} else {
		fr = rule.Filter(response.Input{Status: in.Status, ContentType: in.ContentType,
			ContentEncoding: in.ContentEncoding, Body: in.Body})
	}
	res := ResponseResult{Status: in.Status, Body: in.Body, Outcome: fr.Outcome, Removed: fr.Removed,
		Masked: fr.Masked, Shadow: fr.Shadow, Reason: fr.Reason}
	switch {
	case fr.Shadow:
		// The answer passes as it came.
	case fr.Outcome == response.Refused:
		d := decision.Decision{Code: decision.CodeResponseRefused, Rule: ruleKey(in.Rule),
			Detail: "The upstream's answer cannot be shown to you under this route's response rule; do not retry it unchanged."}
		res.Status, res.Body, res.ContentType, res.Changed = http.StatusBadGateway, []byte(d.Problem(in.DecisionID)), ContentTypeProblem, true
	case fr.Outcome == response.Withheld:
		res.Body, res.ContentType, res.Changed = withheld(in.Status, in.DecisionID), ContentTypeProblem, true
	case fr.Changed:
		res.Body, res.Changed = fr.Body, true
	}
	e.recordResponse(in, &res, fr.Truncated, revision)
	return res
}

// responseRule finds the rule in the policy in force.
func (e *Engine) responseRule(in ResponseInput) (*response.Rule, string, error) {
	snap := e.cfg.Store.Load()
	if snap == nil {
		return nil, "", errors.New("no policy is loaded")
	}
	agent, err := spiffeid.FromString(in.Agent)
	if err != nil {
		return nil, snap.Revision(), errors.New("the decision names no agent")
	}
	rule, err := snap.ResponseRule(in.Rule, agent)
	if err != nil {
		return nil, snap.Revision(), errors.New("the response rule " + strconv.Quote(in.Rule) + " is not in the policy in force (revision " + snap.Revision() + ")")
	}
	return rule, snap.Revision(), nil
}

// ruleKey is the rule's key without the revision.
func ruleKey(tag string) string {
	key, _, _ := strings.Cut(tag, "@")
	return key
}

// withheld is the problem that replaces an error status's body: RFC 9457's about:blank, whose
// title is the status's.
func withheld(status int, decisionID string) []byte {
	b := []byte(`{"type":"about:blank","title":`)
	b = strconv.AppendQuote(b, http.StatusText(status))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"detail":"The upstream's error body is withheld by the response rule.","decision_id":`...)
	b = strconv.AppendQuote(b, decisionID)
	return append(b, '}')
}

// recordResponse counts, logs and records what became of one answer.
func (e *Engine) recordResponse(in ResponseInput, res *ResponseResult, truncated int, revision string) {
	key := ruleKey(in.Rule)
	e.cfg.Metrics.Response(key, string(res.Outcome), res.Shadow, len(res.Removed), len(res.Masked))
	if res.Outcome == response.Refused {
		e.cfg.Log.Warn("response refused", "decision_id", in.DecisionID, "agent", in.Agent,
			"response_rule", in.Rule, "status", in.Status, "reason", res.Reason, "shadow", res.Shadow)
	}
	log, ok := e.cfg.Decisions.(EventLog)
	if !ok {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", in.DecisionID),
		slog.String("agent", in.Agent),
		slog.String("response_rule", key),
		slog.String("policy_revision", revision),
		slog.String("outcome", string(res.Outcome)),
		slog.Int("upstream_status", in.Status),
		slog.Int("status", res.Status),
		slog.Bool("shadow", res.Shadow),
	}
	if _, rev, _ := strings.Cut(in.Rule, "@"); rev != revision {
		attrs = append(attrs, slog.String("rule_revision", rev))
	}
	if len(res.Removed) > 0 {
		attrs = append(attrs, slog.Any("removed", res.Removed))
	}
	if len(res.Masked) > 0 {
		attrs = append(attrs, slog.Any("masked", res.Masked))
	}
	if truncated > 0 {
		attrs = append(attrs, slog.Int("paths_not_listed", truncated))
	}
	if res.Reason != "" {
		attrs = append(attrs, slog.String("reason", res.Reason))
	}
	if err := log.Write("response", attrs...); err != nil && !errors.Is(err, audit.ErrFull) {
		e.cfg.Log.Error("response not recorded", "decision_id", in.DecisionID, "error", err.Error())
	}
}
