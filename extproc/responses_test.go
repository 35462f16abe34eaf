package extproc_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
)

// engineResponses hands answers to a real engine, as the server does.
type engineResponses struct{ e *engine.Engine }

func (r engineResponses) FilterResponse(ctx context.Context, req extproc.ResponseRequest) extproc.ResponseAnswer {
	res := r.e.FilterResponse(ctx, engine.ResponseInput{Rule: req.Rule, Agent: req.Agent, DecisionID: req.DecisionID,
		Status: req.Status, ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Body: req.Body})
	return extproc.ResponseAnswer{Status: res.Status, Body: res.Body, ContentType: res.ContentType, Changed: res.Changed}
}

const respAgent = "spiffe://example.org/agent/helpdesk"

// startResponses serves ext_proc over loopback with the engine of the response rules' test
// policy, and returns the response_rule of its get-ticket route.
func startResponses(t testing.TB, maxBody int) (*procServer, string, string) {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join("..", "policy", "testdata", "response", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Config{Store: policy.NewStore(snap)})
	ps := startProc(t, extproc.Config{Responses: engineResponses{e}, MaxBody: maxBody})
	return ps, "route:get-ticket@" + snap.Revision(), "mcp:helpdesk/get_ticket@" + snap.Revision()
}

func ruled(rule string, extra ...string) *extprocv3.ProcessingRequest {
	fields := map[string]any{"agent": respAgent, "decision_id": "d-9", "rule": "get-ticket", "outcome": "allow",
		"code": "allowed", "response_rule": rule}
	for i := 0; i+1 < len(extra); i += 2 {
		fields[extra[i]] = extra[i+1]
	}
	return &extprocv3.ProcessingRequest{MetadataContext: authzMetadata(fields)}
}

const fullTicket = `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada","email":"ada@example.com","phone":"+1 555"}}`

func TestResponseRuleReduces(t *testing.T) {
	ps, rule, _ := startResponses(t, 0)
	md := ruled(rule).MetadataContext
	resps := ps.exchange(t,
		headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json", "content-length", itoa(len(fullTicket))),
		bodyMsg(md, fullTicket))
	if h := resps[0].GetResponseHeaders(); h == nil || h.GetResponse() != nil || resps[0].GetModeOverride() != nil {
		t.Fatalf("headers answered %v, want a plain continue", resps[0])
	}
	checkReplaced(t, readCommon(t, resps[1].GetResponseBody().GetResponse()),
		`{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada"}}`, "application/json")

	// What the rule allows passes as it is.
	const clean = `{"id":"T-1","status":"open"}`
	resps = ps.exchange(t, headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"), bodyMsg(md, clean))
	if b := resps[1].GetResponseBody(); b == nil || b.GetResponse() != nil {
		t.Fatalf("clean body answered %v, want it to pass", resps[1])
	}
}

// refused checks a local reply of 502 with a problem that leaks nothing of the body.
func refused(t *testing.T, r *extprocv3.ProcessingResponse) {
	t.Helper()
	im := r.GetImmediateResponse()
	if im == nil || im.GetStatus().GetCode() != 502 || !strings.Contains(string(im.GetBody()), `"code":"response_refused"`) ||
		strings.Contains(string(im.GetBody()), "ada@") {
		t.Fatalf("answered %v, want a 502 problem", r)
	}
	for _, h := range im.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == "content-length" && string(h.GetHeader().GetRawValue()) != itoa(len(im.GetBody())) {
			t.Errorf("content-length %s for %d bytes", h.GetHeader().GetRawValue(), len(im.GetBody()))
		}
	}
}

func TestResponseRuleFailsClosed(t *testing.T) {
	ps, rule, _ := startResponses(t, 256)
	md := ruled(rule).MetadataContext
	json := []string{":status", "200", "content-type", "application/json"}
	t.Run("not JSON", func(t *testing.T) {
		refused(t, ps.exchange(t, headersMsg(md, buffered, false, json...), bodyMsg(md, "ada@example.com"))[1])
	})
	t.Run("compressed", func(t *testing.T) {
		refused(t, ps.exchange(t, headersMsg(md, buffered, false, append(json, "content-encoding", "gzip")...), bodyMsg(md, fullTicket))[1])
	})
	t.Run("over the server's limit", func(t *testing.T) {
		refused(t, ps.exchange(t, headersMsg(md, buffered, false, json...), bodyMsg(md, `{"id":"`+strings.Repeat("x", 300)+`"}`))[1])
	})
	t.Run("in pieces", func(t *testing.T) {
		resps := ps.exchange(t, headersMsg(md, buffered, false, json...), bodyMsg(md, `{"id":`), bodyMsg(md, `1}`))
		refused(t, resps[2])
	})
	t.Run("not buffered", func(t *testing.T) {
		refused(t, ps.exchange(t, headersMsg(md, nil, false, json...))[0])
	})
	t.Run("another revision", func(t *testing.T) {
		old := ruled("route:get-ticket@000000000000").MetadataContext
		refused(t, ps.exchange(t, headersMsg(old, buffered, false, json...), bodyMsg(old, fullTicket))[1])
	})
	t.Run("no response rules served", func(t *testing.T) {
		bare := startProc(t, extproc.Config{})
		refused(t, bare.exchange(t, headersMsg(md, buffered, false, json...))[0])
	})
	t.Run("error status withheld", func(t *testing.T) {
		resps := ps.exchange(t, headersMsg(md, buffered, false, ":status", "404", "content-type", "application/json"), bodyMsg(md, fullTicket))
		a := readCommon(t, resps[1].GetResponseBody().GetResponse())
		if a.body == nil || strings.Contains(*a.body, "ada@") || !strings.Contains(*a.body, `"status":404`) ||
			a.set["content-type"] != "application/problem+json" || a.set["content-length"] != itoa(len(*a.body)) {
			t.Fatalf("answered %+v", a)
		}
	})
	t.Run("no body", func(t *testing.T) {
		r := ps.exchange(t, headersMsg(md, buffered, true, ":status", "204"))[0]
		if h := r.GetResponseHeaders(); h == nil || h.GetResponse() != nil {
			t.Fatalf("answered %v, want a plain continue", r)
		}
	})
}

// A tools/call result under a tool's rule is filtered, although it is no list.
func TestResponseRuleToolCall(t *testing.T) {
	ps, _, tool := startResponses(t, 0)
	md := ruled(tool, "mcp_method", "tools/call", "mcp_server", "helpdesk").MetadataContext
	body := `{"jsonrpc":"2.0","id":3,"result":{"structuredContent":{"id":"T-1","requester":{"name":"Ada","email":"a@x","phone":"1"}}}}`
	resps := ps.exchange(t, headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"), bodyMsg(md, body))
	if resps[0].GetModeOverride() != nil {
		t.Fatalf("headers answered with %v", resps[0].GetModeOverride())
	}
	checkReplaced(t, readCommon(t, resps[1].GetResponseBody().GetResponse()),
		`{"jsonrpc":"2.0","id":3,"result":{"structuredContent":{"id":"T-1","requester":{"name":"Ada","email":"[redacted]"}}}}`, "application/json")
	if n := len(ps.lists.requests()); n != 0 {
		t.Errorf("the list filter was asked %d times", n)
	}
}
