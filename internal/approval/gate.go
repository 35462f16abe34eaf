package approval

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/internal/redact"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// Header carries the approval id on the agent's retry.
const Header = policy.ApprovalHeader

// EventLog records approval events in the decision log's chain (audit.Log, audit.Queue).
type EventLog interface {
	Write(kind string, attrs ...slog.Attr) error
}

// Gate turns the policy's approval_required decisions into held requests, and approved
// retries into one allow each.
type Gate struct {
	Store Store
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	// Events records requests, decisions and uses; nil records none.
	Events EventLog
	// Announce is told about each newly held request. It must not block (notifiers queue).
	Announce func(Approval)
	Log      *slog.Logger
	// RedactQuery hides parameter values in the path an approval stores: what the approvals
	// API, the console, the CLI, notifications and approval events show. The digest binds the
	// request as sent. Nil hides nothing.
	RedactQuery *redact.Query
	// ConsoleURL is the approval console's address as approvers reach it (scheme, host and
	// any prefix before /approvals), told to agents whose client shows where their request is
	// decided. Empty names no address.
	ConsoleURL string
	// StateKey signs the request state of MCP tool calls held for clients of revision
	// 2026-07-28 (at least 32 bytes; replicas share it). Without it, or without ConsoleURL,
	// those clients are answered as older ones are.
	StateKey []byte
}

func (g *Gate) now() time.Time {
	if g.Clock != nil {
		return g.Clock()
	}
	return time.Now()
}

func (g *Gate) event(kind string, a Approval, attrs ...slog.Attr) {
	if g.Events == nil {
		return
	}
	base := []slog.Attr{
		slog.String("approval_id", a.ID), slog.String("agent", a.Agent), slog.String("rule", a.Rule),
		slog.String("method", a.Method), slog.String("host", a.Host), slog.String("path", a.Path),
		slog.String("digest", a.Digest),
	}
	if err := g.Events.Write(kind, append(base, attrs...)...); err != nil && g.Log != nil {
		g.Log.Error("approval event not recorded", "kind", kind, "approval_id", a.ID, "error", err.Error())
	}
}

// Resolve decides a request the policy holds (d.Code approval_required, d.Hold set). Any other
// decision is returned as it is.
func (g *Gate) Resolve(ctx context.Context, r *policy.Request, d decision.Decision) decision.Decision {
	if d.Code != decision.CodeApprovalRequired || d.Hold == nil {
		return d
	}
	now := g.now()
	ct, _ := r.Headers.Get("content-type")
	agent := r.Agent.String()
	// The body as the policy read it, not read again: the digest and the approvers' copy share
	// it, and neither modifies it.
	var body any
	parsed := false
	if len(r.Body) > 0 && isJSON(ct) {
		body, parsed = r.JSON()
	}
	// A gRPC message the route decoded is bound in its canonical form, not its bytes.
	var msg protoreflect.Message
	if m, ok := r.DecodedMessage(); ok && isGRPC(ct) {
		msg = m
	}
	digest := ""
	// An MCP tool call is bound by its tool and arguments: the JSON-RPC id and metadata around
	// them change from one identical call to the next.
	toolName, toolArgs, isTool := r.MCPToolCall()
	if isTool {
		digest = digestTool(agent, r.Method, r.Host, r.Target, d.Hold.Rule, toolName, toolArgs, r.Body)
		body, parsed = toolArgs, true
	} else {
		digest = digestMessage(agent, r.Method, r.Host, r.Target, d.Hold.Rule, r.Body, body, parsed, msg)
	}

	id, n := r.Headers.Get(Header)
	switch {
	case n > 1:
		return deny(d, decision.CodeRequestMalformed, "Send the "+Header+" header once.", nil)
	case n == 1:
		return g.consume(ctx, r, d, id, agent, digest, now)
	}
	if isTool {
		if state, _ := r.MCPRetry(); state != "" && !g.validState(state, digest, now) {
			return deny(d, decision.CodeApprovalMismatch, "The requestState is not one this gateway gave for this call, or it expired; call the tool again without it.", nil)
		}
	}
	if isTool {
		// A tools/call retry cannot carry the header: the shown form is the arguments, and
		// the content type is the JSON-RPC body's.
		ct = "application/json"
	}
	// What approvers see is rendered only for a new approval: a request held already is
	// answered from its approval. On a route whose schema decodes a protobuf message, they see
	// the message the upstream acts on, as the approval condition does (fields by their proto
	// names, whichever spelling the agent sent), redaction pointers naming those fields.
	shown, shownParsed := body, parsed
	if m, ok := r.Message(); ok {
		shown, shownParsed = m, true
	}
	render := func() string { return display(ct, r.Body, shown, shownParsed, d.Hold.Redact) }
	a, created, err := g.Store.Hold(ctx, Approval{
		ID: NewID(), Agent: agent, Digest: digest, Rule: d.Hold.Rule, Reason: d.Hold.Reason,
		Condition: d.Hold.Condition,
		Method:    r.Method, Host: r.Host, Path: g.RedactQuery.Target(r.Target), ContentType: ct,
		Approvers: d.Hold.Approvers, Notify: d.Hold.Notify,
		CreatedAt: now, ExpiresAt: now.Add(d.Hold.ApproveWithin), UseWithin: d.Hold.UseWithin,
	}, render, Limits{PerAgent: d.Hold.MaxPerAgent, PerRule: d.Hold.MaxPerRule, DenialStands: d.Hold.Implicit}, now)
	var over *LimitError
	if errors.As(err, &over) {
		return deny(d, decision.CodeApprovalLimit, limitDetail(over), nil)
	}
	if err != nil {
		return g.failed(d, "hold", err)
	}
	if created {
		g.event("approval.requested", a, slog.Time("expires_at", a.ExpiresAt))
		if g.Announce != nil {
			g.Announce(a)
		}
	}
	if !created && d.Hold.Implicit {
		switch a.State {
		case Approved:
			// The identical request again, approved since: it goes through, once.
			return g.consume(ctx, r, d, a.ID, agent, digest, now)
		case Denied:
			// The identical call again, denied since: refused until the denial's window
			// ends, rather than put to approvers again.
			return g.denied(d, a, " The identical call is refused until "+a.ExpiresAt.UTC().Format(time.RFC3339)+".")
		}
	}
	d = g.held(d, a)
	if _, elicit := r.MCPRetry(); isTool && elicit && a.State == Pending && g.ConsoleURL != "" && len(g.StateKey) >= 32 {
		d.Approval.URL = g.approvalURL(a.ID)
		d.Approval.RequestState = g.signState(a.ID, digest, a.ExpiresAt.Add(a.UseWithin))
	}
	return d
}

func (g *Gate) consume(ctx context.Context, r *policy.Request, d decision.Decision, id, agent, digest string, now time.Time) decision.Decision {
	if !ValidID(id) {
		return deny(d, decision.CodeApprovalUnknown, "There is no approval with that id; send the request without "+Header+" to ask for one.", nil)
	}
	a, err := g.Store.Consume(ctx, id, agent, digest, now)
	switch {
	case err == nil:
		g.event("approval.used", a, slog.String("decided_by", a.DecidedBy))
		d.Outcome, d.Code, d.Detail = decision.Allow, decision.CodeAllowed, ""
		d.Grant = retryGrant(d)
		d.Approval = &decision.ApprovalRef{ID: a.ID, State: string(Used)}
		return d
	case errors.Is(err, ErrPending):
		return g.held(d, a)
	case errors.Is(err, ErrDenied):
		return g.denied(d, a, "")
	case errors.Is(err, ErrUsed):
		return deny(d, decision.CodeApprovalUsed, "This approval was already used; an approval lets one request through. Send the request without "+Header+" to ask again.", &a)
	case errors.Is(err, ErrExpired):
		return deny(d, decision.CodeApprovalExpired, "This approval expired; send the request without "+Header+" to ask again.", &a)
	case errors.Is(err, ErrMismatch):
		return deny(d, decision.CodeApprovalMismatch, "This approval is for another agent or another request; an approval covers only the exact request approved.", nil)
	case errors.Is(err, ErrNotFound):
		return deny(d, decision.CodeApprovalUnknown, "There is no approval with that id; send the request without "+Header+" to ask for one.", nil)
	default:
		return g.failed(d, "consume", err)
	}
}

// denied is the answer to a request an approver denied, quoting their comment, then more.
func (g *Gate) denied(d decision.Decision, a Approval, more string) decision.Decision {
	detail := "An approver denied this request; do not retry it."
	if a.Comment != "" {
		detail = "An approver denied this request: " + clip(a.Comment, 300) + ". Do not retry it."
	}
	return deny(d, decision.CodeApprovalDenied, detail+more, &a)
}

// held is the 428 that tells the agent which approval holds its request and what to do next.
func (g *Gate) held(d decision.Decision, a Approval) decision.Decision {
	ref := &decision.ApprovalRef{ID: a.ID, State: string(a.State), Expires: a.ExpiresAt}
	detail := "This request needs human approval"
	if a.Reason != "" {
		detail += " (" + strings.TrimRight(a.Reason, ". ") + ")"
	}
	if d.Hold.Implicit {
		// An MCP tool call: the client repeats the call, it cannot add a header.
		where := "Approvers decide it in the agentauthz console, in Slack or with the CLI"
		if g.ConsoleURL != "" {
			where = "Approvers decide it at " + g.approvalURL(a.ID)
		}
		detail += ". It is held as approval " + a.ID + " until " + a.ExpiresAt.UTC().Format(time.RFC3339) + ". " + where +
			". Once it is approved, make the identical call again (same tool, same arguments): it then goes through, once."
		if a.State == Approved {
			ref.Expires = a.UseBy
			detail = "Approval " + a.ID + " is approved: make the identical call again before " + a.UseBy.UTC().Format(time.RFC3339) + "."
		}
		d.Outcome, d.Code, d.Detail, d.Approval = decision.Deny, decision.CodeApprovalRequired, detail, ref
		return d
	}
	if a.State == Approved {
		ref.Expires = a.UseBy
		detail = "Approval " + a.ID + " is approved: send the identical request again with header " +
			Header + ": " + a.ID + " before " + a.UseBy.UTC().Format(time.RFC3339) + "."
	} else {
		detail += ". It is held as approval " + a.ID + " until " + a.ExpiresAt.UTC().Format(time.RFC3339) +
			". Once an approver approves it, send the identical request again with header " + Header + ": " + a.ID + "."
	}
	d.Outcome, d.Code, d.Detail, d.Approval = decision.Deny, decision.CodeApprovalRequired, detail, ref
	return d
}

// limitDetail tells an agent over its limit of held requests what to do.
func limitDetail(e *LimitError) string {
	n := strconv.Itoa(e.Max)
	if e.Scope == LimitRule {
		return "This route already holds " + n + " requests waiting for approval or to be used, the most it allows, so this one is not held. " +
			"Wait for approvers to decide them (or for them to expire), then send it again."
	}
	return "You already have " + n + " requests waiting for approval or to be used, the most this route allows, so this one is not held. " +
		"Wait for approvers to decide them (or for them to expire), send the approved ones with " + Header + ", then send it again."
}

func deny(d decision.Decision, code decision.Code, detail string, a *Approval) decision.Decision {
	d.Outcome, d.Code, d.Detail = decision.Deny, code, detail
	if a != nil {
		d.Approval = &decision.ApprovalRef{ID: a.ID, State: string(a.State)}
	}
	return d
}

// failed is a fail-closed deny for a store that could not answer.
func (g *Gate) failed(d decision.Decision, op string, err error) decision.Decision {
	if g.Log != nil {
		g.Log.Error("approval store failed; request denied", "op", op, "error", err.Error())
	}
	return deny(d, decision.CodeInternal, "Authorization could not check the approval; retry later.", nil)
}

// retryGrant is what an approved retry carries: the grant the policy compiled for it, which also
// removes the approval header. A Hold built by hand, without one, gets it built now.
func retryGrant(d decision.Decision) *decision.Grant {
	if d.Hold.Retry != nil {
		return d.Hold.Retry
	}
	g := &decision.Grant{Remove: []string{Header}}
	if d.Grant != nil {
		g.Set, g.Remove = d.Grant.Set, append(slices.Clip(d.Grant.Remove), Header)
	}
	return g
}

// clip shortens s to at most n bytes, at a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
