package authzen_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

const (
	comment    = `{"body":"Password reset done; please sign in again."}`
	resetBody  = `{"reason":"User locked out after travel","notify_user":true}`
	graphQuery = `{"query":"query Q { revenue(quarter: \"2026-Q3\") { total currency } }"}`
	jsonType   = "application/json"
)

func headersCtx(kv ...string) map[string]any {
	h := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return map[string]any{"headers": h}
}

func bodyCtx(body string, kv ...string) map[string]any {
	c := headersCtx(kv...)
	c["body"] = body
	return c
}

// TestDemoRoutes: the demo policy's routes asked through AuthZEN, as docs/authzen.md maps them.
func TestDemoRoutes(t *testing.T) {
	p := startPDP(t)
	b64 := bodyCtx("", "content-type", jsonType)
	delete(b64, "body")
	b64["body_base64"] = base64.StdEncoding.EncodeToString([]byte(comment))
	for _, tc := range []struct {
		name string
		ev   map[string]any
		want wantVerdict
	}{
		{"list open tickets", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets?status=open&limit=10", headersCtx("authorization", "Bearer agent-own-token")),
			wantVerdict{Decision: true, Code: "allowed", Rule: "list-tickets"}},
		{"list without query", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets", nil), wantVerdict{Decision: true, Rule: "list-tickets"}},
		{"limit too high", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets?limit=5000", nil), wantVerdict{Code: "query_invalid", Status: 400, Rule: "list-tickets"}},
		{"get a ticket", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Decision: true, Rule: "get-ticket"}},
		{"host in upper case", httpEval(helpdesk, "GET", "https://HELPDESK.ACME.INTERNAL/v1/tickets/4711", nil), wantVerdict{Decision: true, Rule: "get-ticket"}},
		{"ticket id not digits", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/abc", nil), wantVerdict{Code: "path_param_invalid", Status: 400}},
		{"encoded slash", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/47%2F11", nil), wantVerdict{Code: "path_ambiguous", Status: 400}},
		{"dot segment", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/../admin", nil), wantVerdict{Code: "path_ambiguous", Status: 400}},
		{"method override header", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/4711", headersCtx("x-http-method-override", "DELETE")), wantVerdict{Code: "method_override", Status: 400}},
		{"comment", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", bodyCtx(comment, "content-type", jsonType)),
			wantVerdict{Decision: true, Rule: "comment-ticket"}},
		{"comment in base64", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", b64), wantVerdict{Decision: true, Rule: "comment-ticket"}},
		{"comment with an extra field", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", bodyCtx(`{"body":"hi","admin":true}`, "content-type", jsonType)),
			wantVerdict{Code: "body_schema", Status: 400}},
		{"comment with a duplicate key", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", bodyCtx(`{"body":"hi","body":"ho"}`, "content-type", jsonType)),
			wantVerdict{Code: "body_malformed", Status: 400}},
		{"comment without content type", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", bodyCtx(comment)), wantVerdict{Code: "body_content_type", Status: 415}},
		{"comment without body", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", headersCtx("content-type", jsonType)), wantVerdict{Code: "body_missing", Status: 400}},
		{"comment cut short", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{
			"headers": map[string]any{"content-type": jsonType}, "body": comment[:20], "body_truncated": true}), wantVerdict{Code: "body_truncated", Status: 413}},
		{"body on a GET", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/4711", bodyCtx("{}", "content-type", jsonType)), wantVerdict{Code: "body_not_allowed", Status: 400}},
		{"delete a ticket", httpEval(helpdesk, "DELETE", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "scope_missing", Status: 403}},
		{"bi reads a ticket", httpEval(bi, "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "scope_missing", Status: 403}},
		{"bi queries", httpEval(bi, "POST", biAt+"/graphql", bodyCtx(graphQuery, "content-type", jsonType)), wantVerdict{Decision: true, Rule: "bi-graphql"}},
		{"bi mutates", httpEval(bi, "POST", biAt+"/graphql", bodyCtx(`{"query":"mutation { deleteCustomer(id: \"1\") }"}`, "content-type", jsonType)),
			wantVerdict{Code: "graphql_operation", Status: 403}},
		{"bi asks for e-mail addresses", httpEval(bi, "POST", biAt+"/graphql", bodyCtx(`{"query":"{ customers(first: 5) { name email } }"}`, "content-type", jsonType)),
			wantVerdict{Code: "graphql_field", Status: 403}},
		{"unknown host", httpEval(helpdesk, "GET", "https://payroll.acme.internal/v1/tickets", nil), wantVerdict{Code: "host_unknown", Status: 403}},
		{"unknown agent", httpEval("spiffe://acme.internal/agent/marketing", "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "agent_unknown", Status: 403}},
		{"foreign trust domain", httpEval("spiffe://evil.example/agent/helpdesk", "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "trust_domain_unknown", Status: 401}},
		{"no identity", httpEval("", "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "identity_missing", Status: 401}},
		{"not a SPIFFE ID", httpEval("helpdesk", "GET", helpdeskAt+"/v1/tickets/4711", nil), wantVerdict{Code: "identity_invalid", Status: 401}},
		{"no identity from a header", httpEval("", "GET", helpdeskAt+"/v1/tickets/4711", headersCtx("x-forwarded-client-cert", "URI="+helpdesk)),
			wantVerdict{Code: "identity_missing", Status: 401}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.evaluation(t, tc.ev); !tc.want.matches(got) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRefusedAsAmbiguous: an evaluation that does not describe exactly one HTTP request is a
// request_malformed deny, decided and recorded by the engine as Envoy's unreadable requests are.
func TestRefusedAsAmbiguous(t *testing.T) {
	p := startPDP(t)
	ticket := helpdeskAt + "/v1/tickets/4711"
	for _, tc := range []struct {
		name string
		ev   map[string]any
	}{
		{"http scheme", httpEval(helpdesk, "GET", "http://helpdesk.acme.internal/v1/tickets/4711", nil)},
		{"scheme in capitals", httpEval(helpdesk, "GET", "HTTPS://helpdesk.acme.internal/v1/tickets/4711", nil)},
		{"relative", httpEval(helpdesk, "GET", "/v1/tickets/4711", nil)},
		{"scheme-relative", httpEval(helpdesk, "GET", "//helpdesk.acme.internal/v1/tickets/4711", nil)},
		{"no path", httpEval(helpdesk, "GET", helpdeskAt, nil)},
		{"query without path", httpEval(helpdesk, "GET", helpdeskAt+"?status=open", nil)},
		{"no host", httpEval(helpdesk, "GET", "https:///v1/tickets/4711", nil)},
		{"userinfo", httpEval(helpdesk, "GET", "https://agent:secret@helpdesk.acme.internal/v1/tickets/4711", nil)},
		{"fragment", httpEval(helpdesk, "GET", ticket+"#comments", nil)},
		{"fragment after query", httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets?status=open#x", nil)},
		{"subject not an agent", func() map[string]any {
			ev := httpEval(helpdesk, "GET", ticket, nil)
			ev["subject"] = map[string]any{"type": "user", "id": helpdesk}
			return ev
		}()},
		{"empty method", httpEval(helpdesk, "", ticket, nil)},
		{"headers not an object", httpEval(helpdesk, "GET", ticket, map[string]any{"headers": []any{"accept: */*"}})},
		{"headers null", httpEval(helpdesk, "GET", ticket, map[string]any{"headers": nil})},
		{"header name in capitals", httpEval(helpdesk, "GET", ticket, headersCtx("Accept", "*/*"))},
		{"header name empty", httpEval(helpdesk, "GET", ticket, headersCtx("", "x"))},
		{"header name with a space", httpEval(helpdesk, "GET", ticket, headersCtx("x y", "x"))},
		{"pseudo-header", httpEval(helpdesk, "GET", ticket, headersCtx(":method", "GET"))},
		{"repeated header as an array", httpEval(helpdesk, "GET", ticket, map[string]any{"headers": map[string]any{"accept": []any{"a", "b"}}})},
		{"header value a number", httpEval(helpdesk, "GET", ticket, map[string]any{"headers": map[string]any{"content-length": 0}})},
		{"header value with a line feed", httpEval(helpdesk, "GET", ticket, headersCtx("accept", "a\r\nx-http-method-override: DELETE"))},
		{"host header contradicts", httpEval(helpdesk, "GET", ticket, headersCtx("host", "bi.acme.internal"))},
		{"Envoy's partial-body marker", httpEval(helpdesk, "GET", ticket, headersCtx("x-envoy-auth-partial-body", "false"))},
		{"body an object", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{"body": map[string]any{"body": "hi"}})},
		{"body twice", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{"body": comment, "body_base64": "e30="})},
		{"base64 unpadded", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{"body_base64": "e30"})},
		{"base64 URL alphabet", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{"body_base64": "-_-_"})},
		{"body_truncated a string", httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments", map[string]any{"body": comment, "body_truncated": "no"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(p.decisions.records())
			got := p.evaluation(t, tc.ev)
			if got.Decision || got.Code != "request_malformed" || got.Status != 400 {
				t.Errorf("got %+v, want a request_malformed deny", got)
			}
			if detail, _ := got.Context["detail"].(string); detail == "" {
				t.Errorf("the deny says nothing the PEP can act on: %v", got.Context)
			}
			recs := p.decisions.records()
			if len(recs) != before+1 || recs[len(recs)-1].Code != "request_malformed" {
				t.Errorf("the refusal was not recorded once: %d records more", len(recs)-before)
			}
		})
	}
	// A host header that agrees with the resource is the same request.
	if got := p.evaluation(t, httpEval(helpdesk, "GET", ticket, headersCtx("host", "Helpdesk.Acme.Internal"))); !got.Decision {
		t.Errorf("an agreeing host header: %+v", got)
	}
}

// TestApprovalThroughAuthZEN: the password reset is held through AuthZEN (decision false, the
// approval's id and state in the context), held under the same id through Envoy's door (one
// digest, one approval), and once approved passes exactly once through AuthZEN.
func TestApprovalThroughAuthZEN(t *testing.T) {
	p := startPDP(t)
	reset := helpdeskAt + "/v1/users/jdoe/password-reset"
	ev := httpEval(helpdesk, "POST", reset, bodyCtx(resetBody, "content-type", jsonType))
	held := p.evaluation(t, ev)
	id, _ := held.Context["approval_id"].(string)
	if held.Decision || held.Code != "approval_required" || held.Status != 428 || id == "" || held.Context["approval_state"] != "pending" {
		t.Fatalf("held: %+v", held)
	}
	if again := p.evaluation(t, ev); again.Context["approval_id"] != id {
		t.Errorf("asked again: %+v, want the same approval %s", again, id)
	}
	grpc := servertest.Check(t, servertest.Client(t, p.srv), extauthz.HTTPRequest{Principal: helpdesk, Method: "POST",
		Host: "helpdesk.acme.internal", Path: "/v1/users/jdoe/password-reset",
		Headers: map[string]string{"content-type": jsonType}, Body: resetBody}.CheckRequest())
	if grpc.Status != 428 || grpc.ProblemString("approval_id") != id {
		t.Errorf("through Envoy's door: %d %s, want 428 with the same approval %s", grpc.Status, grpc.ProblemString("approval_id"), id)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.approvals.Decide(ctx, id, approval.Verdict{Approve: true, By: "alice"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	other := httpEval(helpdesk, "POST", helpdeskAt+"/v1/users/root/password-reset", bodyCtx(resetBody, "content-type", jsonType, "x-agentauthz-approval", id))
	if got := p.evaluation(t, other); got.Decision || got.Code != "approval_mismatch" {
		t.Errorf("the approval used for another user: %+v", got)
	}
	retry := httpEval(helpdesk, "POST", reset, bodyCtx(resetBody, "content-type", jsonType, "x-agentauthz-approval", id))
	got := p.evaluation(t, retry)
	if !got.Decision || got.Rule != "reset-password" {
		t.Fatalf("the approved retry: %+v", got)
	}
	if rm, _ := got.Context["remove_headers"].([]any); !containsString(rm, "x-agentauthz-approval") {
		t.Errorf("the approved retry does not tell the PEP to remove the approval header: %v", got.Context)
	}
	if got := p.evaluation(t, retry); got.Decision || got.Code != "approval_used" {
		t.Errorf("the approval used twice: %+v", got)
	}
}

func containsString(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSameRecord: the decision log records a request asked through AuthZEN as it records the
// same request asked through Envoy, but for the decision's id and latency; the request id is
// the agent's request's x-request-id, or else the AuthZEN request's X-Request-ID.
func TestSameRecord(t *testing.T) {
	p := startPDP(t)
	client := servertest.Client(t, p.srv)
	servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal",
		Path: "/v1/tickets/4711/comments", Headers: map[string]string{"content-type": jsonType}, Body: comment}.CheckRequest())
	p.evaluation(t, httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments",
		bodyCtx(comment, "content-type", jsonType, "x-request-id", extauthz.BuiltRequestID)))
	r := do(t, call{url: p.base + authzen.EvaluationPath, body: jsonText(t, httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/1", nil)),
		header: map[string]string{"Content-Type": jsonType, "Authorization": "Bearer " + pepToken, "X-Request-ID": "pep-42"}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	recs := p.decisions.records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	norm := func(d audit.Decision) audit.Decision { d.ID, d.Latency = "", 0; return d }
	if a, b := norm(recs[0]), norm(recs[1]); a != b {
		t.Errorf("the records differ:\n  Envoy:   %+v\n  AuthZEN: %+v", a, b)
	}
	if recs[2].RequestID != "pep-42" {
		t.Errorf("request id %q, want the AuthZEN request's", recs[2].RequestID)
	}
}

// TestShadowSame: shadow routes are evaluated and recorded the same whichever door asks: a
// request the live route allows and a stricter shadow route would refuse is allowed through
// both, and both records name the shadow rule and what it would have decided.
func TestShadowSame(t *testing.T) {
	files, err := policy.ReadPath("../../policy/testdata/shadow/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: func(policy.SecretRef) (string, error) { return "shadow-token", nil }})
	if err != nil {
		t.Fatal(err)
	}
	p := startPDP(t, func(cfg *serverConfig, _ *pdp) { cfg.Store = policy.NewStore(snap) })
	const reader = "spiffe://example.org/agent/reader"
	a := servertest.Check(t, servertest.Client(t, p.srv), extauthz.HTTPRequest{Principal: reader, Host: "api.example.org",
		Path: "/v1/tickets?limit=50", Headers: map[string]string{"x-request-id": "shadow-1"}}.CheckRequest())
	v := p.evaluation(t, httpEval(reader, "GET", "https://api.example.org/v1/tickets?limit=50", headersCtx("x-request-id", "shadow-1")))
	if !a.Allow || !v.Decision || v.Rule != "list-tickets" {
		t.Fatalf("Envoy's door %+v, AuthZEN %+v: want both allowed by list-tickets", a, v)
	}
	recs := p.decisions.records()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		if r.ShadowRule != "list-tickets-v2" || r.ShadowCode != "query_invalid" || r.ShadowOutcome != "deny" {
			t.Errorf("record without the shadow rule's verdict: %+v", r)
		}
	}
}
