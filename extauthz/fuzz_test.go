package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// fuzzCheckRequest builds the CheckRequest Envoy would send for one request with one extra
// header. With raw, it uses Envoy's encode_raw_headers and pack_as_bytes forms (header_map,
// raw_body); otherwise the headers map and body.
func fuzzCheckRequest(principal, method, host, path, headerName, headerValue string, body []byte, raw bool) *authv3.CheckRequest {
	hs := [][2]string{{":authority", host}, {":method", method}, {":path", path}, {":scheme", "https"}, {"x-request-id", "fuzz"}}
	if len(body) > 0 {
		hs = append(hs, [2]string{"content-length", strconv.Itoa(len(body))}, [2]string{extauthz.PartialBodyHeader, "false"})
	}
	if headerName != "" {
		hs = append(hs, [2]string{asciiLower(headerName), headerValue}) // Envoy lower-cases names
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Method: method, Host: host, Path: path, Scheme: "https", Protocol: "HTTP/1.1", Size: int64(len(body)),
	}
	if raw {
		hm := &corev3.HeaderMap{}
		for _, h := range hs {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
		}
		httpReq.HeaderMap, httpReq.RawBody = hm, body
	} else {
		m := map[string]string{}
		for _, h := range hs {
			if prev, ok := m[h[0]]; ok && !strings.HasPrefix(h[0], ":") {
				m[h[0]] = prev + "," + h[1] // Envoy joins repeated headers
			} else {
				m[h[0]] = h[1]
			}
		}
		httpReq.Headers, httpReq.Body = m, string(body)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Principal: principal},
		Request: &authv3.AttributeContext_Request{Http: httpReq},
	}}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// fuzzSeeds turns the testdata checks into fuzz inputs.
func fuzzSeeds(f *testing.F) {
	for _, c := range loadCases(f) {
		cr := c.req
		h := cr.GetAttributes().GetRequest().GetHttp()
		raw := h.GetHeaderMap() != nil
		// The one extra header: the most telling one the case sends, else its last plain one.
		var lines [][2]string
		for k, v := range h.GetHeaders() {
			lines = append(lines, [2]string{k, v})
		}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			lines = append(lines, [2]string{hv.GetKey(), string(hv.GetRawValue())})
		}
		name, value := "", ""
		for _, kv := range lines {
			if !strings.HasPrefix(kv[0], ":") && kv[0] != extauthz.PartialBodyHeader {
				name, value = kv[0], kv[1]
			}
		}
	preferred:
		for _, k := range []string{"x-http-method-override", "x-http-method", "x-method-override", "x-original-method",
			"content-encoding", "transfer-encoding", "host", "x-spiffe-id", "content-type", "content-length"} {
			for _, kv := range lines {
				if kv[0] == k {
					name, value = kv[0], kv[1]
					break preferred
				}
			}
		}
		body := h.GetRawBody()
		if len(body) == 0 {
			body = []byte(h.GetBody())
		}
		path := h.GetPath()
		if path == "" {
			path = h.GetHeaders()[":path"]
		}
		f.Add(cr.GetAttributes().GetSource().GetPrincipal(), h.GetMethod(), h.GetHost(), path, name, value, body, raw)
	}
}

// FuzzCheck: whatever Envoy sends, Check answers with a decision (never a gRPC error, never a
// panic), allows only demo agents on paths target.Parse accepts, and denies with a well-formed
// problem otherwise. Requests the demo holds for approval are never allowed (nobody approves
// here): they are answered 428, and only for what the policy would otherwise allow.
func FuzzCheck(f *testing.F) {
	store, _ := servertest.DemoStore(f, helpdeskToken)
	// Internal failures are logged with their cause (a panic's stack included): the fuzzer
	// reports them.
	var failures syncBuffer
	srv := extauthz.New(engine.New(engine.Config{
		Store: store, Approvals: &approval.Gate{Store: memstore.New()},
		Log: slog.New(slog.NewTextHandler(&failures, nil)),
	}))
	fuzzSeeds(f)
	f.Add("spiffe://acme.internal/agent/helpdesk", "GET", "helpdesk.acme.internal", "/v1/tickets?status=open&limit=10", "", "", []byte(nil), false)
	f.Add("spiffe://acme.internal/agent/bi", "POST", "bi.acme.internal", "/graphql", "content-length", "0", []byte(nil), true)
	// Bodies: each route's body as the agent would send it, and forms that must be refused.
	const helpdesk, bi = "spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"
	for _, s := range []struct {
		principal, method, host, path, ct, body string
	}{
		{helpdesk, "POST", "helpdesk.acme.internal", "/v1/tickets/4711/comments", "application/json", `{"body":"Restarted the VPN client; please retry."}`},
		{helpdesk, "POST", "helpdesk.acme.internal", "/v1/tickets/4711/comments", "application/json; charset=utf-8", `{"body":"a","\u0062ody":"b"}`},
		{helpdesk, "POST", "helpdesk.acme.internal", "/v1/tickets/4711/comments", "application/json", `{"body":"ok"} {}`},
		{helpdesk, "POST", "helpdesk.acme.internal", "/v1/users/j.doe/password-reset", "application/json", `{"reason":"User locked out after travel","notify_user":true}`},
		{helpdesk, "POST", "helpdesk.acme.internal", "/v1/users/j.doe/password-reset", "application/json", `{"reason":"User locked out after travel","notifyUser":true,"notify_user":false}`},
		{bi, "POST", "bi.acme.internal", "/graphql", "application/json", `{"query":"query Q { revenue(quarter: \"2026-Q3\") { total currency } }"}`},
		{bi, "POST", "bi.acme.internal", "/graphql", "application/json", `{"query":"query Q($q: String!) { revenue(quarter: $q) { t: total } } # mutation","operationName":"Q","variables":{"q":"2026-Q3"}}`},
		{bi, "POST", "bi.acme.internal", "/graphql", "application/json", `{"query":"{ customers(first: 5) { name ...O orders { ... on Order { id total } } } } fragment O on Customer { orders { customer { name } } }"}`},
		{bi, "POST", "bi.acme.internal", "/graphql", "application/json", `{"query":"{ customers(first: 5) { name contact: email } }"}`},
		{bi, "POST", "bi.acme.internal", "/graphql", "application/json", `{"query":"query Q { revenue(quarter: \"1\") { total } } mutation M { deleteCustomer(id: \"1\") }","operationName":"Q"}`},
		{bi, "GET", "bi.acme.internal", "/graphql?query=%7B%20revenue(quarter%3A%20%222026-Q3%22)%20%7B%20total%20%7D%20%7D&variables=null", "", ""},
		{bi, "GET", "bi.acme.internal", "/graphql?query=query+Q(%24q%3AString!)%7Brevenue(quarter%3A%24q)%7Btotal%7D%7D&operationName=Q&variables=%7B%22q%22%3A%22x%22%7D", "", ""},
	} {
		name := ""
		if s.ct != "" {
			name = "content-type"
		}
		f.Add(s.principal, s.method, s.host, s.path, name, s.ct, []byte(s.body), false)
		f.Add(s.principal, s.method, s.host, s.path, name, s.ct, []byte(s.body), true)
	}

	f.Fuzz(func(t *testing.T, principal, method, host, path, headerName, headerValue string, body []byte, raw bool) {
		cr := fuzzCheckRequest(principal, method, host, path, headerName, headerValue, body, raw)
		resp, err := srv.Check(context.Background(), cr)
		resp = onTheWire(t, resp)
		if err != nil {
			t.Fatalf("Check returned a gRPC error: %v", err)
		}
		meta := resp.GetDynamicMetadata().GetFields()
		code := decision.Code(meta["code"].GetStringValue())
		if code == decision.CodeInternal {
			t.Fatalf("Check failed internally: %v\n%s", resp, failures.String())
		}
		if code.IsFailure() && code != decision.CodeBodyUnavailable {
			// body_unavailable is the one failure a request can cause: a route needing a body
			// Envoy did not forward.
			t.Fatalf("Check could not decide (%s) with a policy loaded: %v", code, resp)
		}

		// An empty attribute is filled from its pseudo-header, which the extra header may replace.
		pseudo := func(field, name string) string {
			if field == "" && asciiLower(headerName) == name {
				return headerValue
			}
			return field
		}
		method, host, path = pseudo(method, ":method"), pseudo(host, ":authority"), pseudo(path, ":path")

		switch r := resp.GetHttpResponse().(type) {
		case *authv3.CheckResponse_OkResponse:
			if resp.GetStatus().GetCode() != int32(codes.OK) || code != decision.CodeAllowed || meta["outcome"].GetStringValue() != "allow" {
				t.Fatalf("ok_response with status %v, code %q, outcome %q", resp.GetStatus(), code, meta["outcome"].GetStringValue())
			}
			if _, err := target.Parse(path); err != nil {
				t.Fatalf("allowed a path target.Parse refuses (%v): %q", err, path)
			}
			if agent := meta["agent"].GetStringValue(); !slices.Contains(demoAgents, agent) || agent != principal {
				t.Fatalf("allowed agent %q for principal %q", agent, principal)
			}
			switch asciiLower(headerName) {
			case "x-http-method-override", "x-http-method", "x-method-override", "x-original-method":
				t.Fatalf("allowed with method-override header %s: %s", headerName, headerValue)
			}
			if why := demoOracle(principal, method, host, path, meta["rule"].GetStringValue(), headerName, headerValue, body); why != "" {
				t.Fatalf("allowed %s %s %s for %s by rule %q: %s", method, host, path, principal, meta["rule"].GetStringValue(), why)
			}
			if rule := meta["rule"].GetStringValue(); demoHeld[rule] {
				t.Fatalf("allowed %s %s %s by rule %q, which holds every request for approval, and nothing was approved", method, host, path, rule)
			}
			for _, h := range r.OkResponse.GetHeaders() {
				if h.GetHeader().GetKey() == "authorization" && h.GetHeader().GetValue() != "Bearer "+helpdeskToken {
					t.Fatalf("injected authorization %q", h.GetHeader().GetValue())
				}
			}
		case *authv3.CheckResponse_DeniedResponse:
			checkFuzzDenial(t, resp, r.DeniedResponse, code)
			if code != decision.CodeApprovalRequired {
				break
			}
			rule := meta["rule"].GetStringValue()
			if !demoHeld[rule] {
				t.Fatalf("held %s %s %s by rule %q, which holds nothing", method, host, path, rule)
			}
			if why := demoOracle(principal, method, host, path, rule, headerName, headerValue, body); why != "" {
				t.Fatalf("held %s %s %s for %s by rule %q, which the policy must deny outright: %s", method, host, path, principal, rule, why)
			}
		default:
			t.Fatalf("no http_response: %v", resp)
		}
	})
}

func checkFuzzDenial(t *testing.T, resp *authv3.CheckResponse, d *authv3.DeniedHttpResponse, code decision.Code) {
	t.Helper()
	status := int(d.GetStatus().GetCode())
	if status != code.Status() || status < 400 {
		t.Fatalf("HTTP status %d for code %q", status, code)
	}
	wantRPC := codes.PermissionDenied
	switch status {
	case 401:
		wantRPC = codes.Unauthenticated
	case 503:
		wantRPC = codes.Unavailable
	}
	if c := codes.Code(resp.GetStatus().GetCode()); c != wantRPC {
		t.Fatalf("HTTP %d with gRPC status %s", status, c)
	}
	hdr := map[string]string{}
	for _, h := range d.GetHeaders() {
		hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	id := resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
	if hdr["content-type"] != decision.ProblemContentType || hdr[extauthz.DecisionIDHeader] != id || id == "" {
		t.Fatalf("denial headers %v, decision id %q", hdr, id)
	}
	var p struct {
		Type          string `json:"type"`
		Title         string `json:"title"`
		Status        int    `json:"status"`
		Detail        string `json:"detail"`
		Code          string `json:"code"`
		DecisionID    string `json:"decision_id"`
		ApprovalID    string `json:"approval_id"`
		ApprovalState string `json:"approval_state"`
		Violations    []struct {
			Field, Rule, Message string
		} `json:"violations"`
	}
	if !json.Valid([]byte(d.GetBody())) {
		t.Fatalf("problem body is not JSON: %q", d.GetBody())
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &p); err != nil {
		t.Fatalf("problem body: %v: %q", err, d.GetBody())
	}
	if p.Type != "urn:agentauthz:problem:"+string(code) || p.Title == "" || p.Status != status ||
		p.Detail == "" || p.Code != string(code) || p.DecisionID != id {
		t.Fatalf("problem %+v for code %q, status %d, id %q", p, code, status, id)
	}
	for _, v := range p.Violations {
		if v.Field == "" || v.Rule == "" || v.Message == "" {
			t.Fatalf("incomplete violation %+v", v)
		}
	}
	switch {
	case code == decision.CodeApprovalRequired:
		if status != 428 || !approvalIDPattern.MatchString(p.ApprovalID) || p.ApprovalState != "pending" ||
			!strings.Contains(p.Detail, approval.Header) {
			t.Fatalf("held without a pending approval and how to retry: %s", d.GetBody())
		}
	case p.ApprovalID != "" && code != decision.CodeApprovalDenied && code != decision.CodeApprovalUsed && code != decision.CodeApprovalExpired:
		t.Fatalf("a %s denial names approval %s", code, p.ApprovalID)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
