package envoy_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const problemBody = `{"type":"https://agentauthz.dev/problems/scope_missing","title":"Forbidden","status":403,` +
	`"code":"scope_missing","detail":"The agent lacks scope tickets:write.","decision_id":"dec-1"}`

// agentauthzDeny is a denial shaped as agentauthz sends it (extauthz/response.go): gRPC status,
// HTTP status, problem details, three headers, and the decision as dynamic metadata.
func agentauthzDeny(grpcCode codes.Code, httpStatus int, decisionID string) answerFunc {
	return func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		meta, _ := structpb.NewStruct(map[string]any{
			"decision_id": decisionID, "outcome": "deny", "code": "scope_missing",
			"agent": helpdeskAgent, "rule": "helpdesk.acme.internal/create-comment",
		})
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(grpcCode)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: typeStatus(httpStatus),
				Headers: []*corev3.HeaderValueOption{
					setHeader("content-type", "application/problem+json"),
					setHeader("cache-control", "no-store"),
					setHeader("x-agentauthz-decision-id", decisionID),
				},
				Body: problemBody,
			}},
			DynamicMetadata: meta,
		}, nil
	}
}

// statDelta returns a function reporting how much a counter has grown since now.
func (fp *frontProxy) statDelta(name string) func() uint64 {
	before := fp.envoy.Stats()[name]
	return func() uint64 { return fp.envoy.Stats()[name] - before }
}

// TestRealEnvoyAnswers pins how Envoy 1.40 applies ext_authz answers.
func TestRealEnvoyAnswers(t *testing.T) {
	fp := startFrontProxy(t)

	t.Run("allow: headers set and removed; response headers added", func(t *testing.T) {
		resp, _ := fp.send(t, "mutate", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return okResponse(&authv3.OkHttpResponse{
				Headers:              []*corev3.HeaderValueOption{setHeader("authorization", "Bearer upstream-token")},
				HeadersToRemove:      []string{"cookie", "x-dup"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{setHeader("x-decision", "dec-ok")},
			}), nil
		}, "GET", "/v1/tickets", []string{"Authorization: Bearer agent-own", "Cookie: s=1", "X-Dup: a", "X-Dup: b"}, "")
		if resp.StatusCode != 200 || resp.Header.Get("x-decision") != "dec-ok" {
			t.Fatalf("status %d, x-decision %q; want 200 and the added response header", resp.StatusCode, resp.Header.Get("x-decision"))
		}
		reqs := fp.helpdesk.requestsOf("mutate")
		if len(reqs) != 1 {
			t.Fatalf("%d requests reached the API", len(reqs))
		}
		h := reqs[0].header
		if got := h.Values("Authorization"); !slices.Equal(got, []string{"Bearer upstream-token"}) {
			t.Errorf("authorization = %q, want only the injected credential", got)
		}
		if h.Get("Cookie") != "" || len(h.Values("X-Dup")) != 0 {
			t.Errorf("cookie %q, x-dup %q; want both gone", h.Get("Cookie"), h.Values("X-Dup"))
		}
	})

	t.Run("allow: append_action is ignored", func(t *testing.T) {
		// Envoy 1.40's gRPC ext_authz client reads only the deprecated append flag of
		// OkHttpResponse.headers: without it every header replaces the agent's (or is added),
		// whatever append_action says; append: true joins the value to the agent's with a comma.
		// agentauthz sends OVERWRITE_IF_EXISTS_OR_ADD, which means what Envoy does.
		for i, c := range []struct {
			opt       *corev3.HeaderValueOption
			tag, none []string
		}{
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-tag", Value: "two"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}, []string{"two"}, nil},
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-tag", Value: "two"}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}, []string{"two"}, nil},
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-tag", Value: "two"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT}, []string{"two"}, nil},
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-none", Value: "two"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS}, []string{"one"}, []string{"two"}},
			//lint:ignore SA1019 what Envoy does with the deprecated append flag is under test
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-tag", Value: "two"}, Append: wrapperspb.Bool(false)}, []string{"two"}, nil},
			//lint:ignore SA1019 what Envoy does with the deprecated append flag is under test
			{&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-tag", Value: "two"}, Append: wrapperspb.Bool(true)}, []string{"one,two"}, nil},
		} {
			probe := "append" + strconv.Itoa(i)
			fp.send(t, probe, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{c.opt}}), nil
			}, "GET", "/v1/tickets", []string{"X-Tag: one"}, "")
			reqs := fp.helpdesk.requestsOf(probe)
			if len(reqs) != 1 {
				t.Fatalf("%d requests reached the API", len(reqs))
			}
			if tag, none := reqs[0].header.Values("X-Tag"), reqs[0].header.Values("X-None"); !slices.Equal(tag, c.tag) || !slices.Equal(none, c.none) {
				t.Errorf("%v: x-tag %q x-none %q, want %q %q", c.opt, tag, none, c.tag, c.none)
			}
		}
	})

	t.Run("allow: a header both set and removed is removed", func(t *testing.T) {
		// headers_to_remove is applied after the headers set: removing the agent's
		// authorization while injecting the API's would drop the injected one too. agentauthz's
		// policy compiler leaves a header it injects out of the remove list for this reason.
		fp.send(t, "set-and-remove", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return okResponse(&authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{setHeader("authorization", "Bearer upstream-token")},
				HeadersToRemove: []string{"authorization"},
			}), nil
		}, "GET", "/v1/tickets", []string{"Authorization: Bearer agent-own"}, "")
		reqs := fp.helpdesk.requestsOf("set-and-remove")
		if len(reqs) != 1 {
			t.Fatalf("%d requests reached the API", len(reqs))
		}
		if got := reqs[0].header.Values("Authorization"); len(got) != 0 {
			t.Errorf("authorization = %q, want none", got)
		}
	})

	t.Run("allow: pseudo-headers and host cannot be removed", func(t *testing.T) {
		resp, _ := fp.send(t, "remove-pseudo", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return okResponse(&authv3.OkHttpResponse{HeadersToRemove: []string{":path", ":authority", "host", ":method"}}), nil
		}, "GET", "/v1/tickets/7", nil, "")
		reqs := fp.helpdesk.requestsOf("remove-pseudo")
		if resp.StatusCode != 200 || len(reqs) != 1 || reqs[0].uri != "/v1/tickets/7" || reqs[0].host != "helpdesk.acme.internal" {
			t.Errorf("status %d, API got %+v", resp.StatusCode, reqs)
		}
	})

	t.Run("allow: query parameters removed", func(t *testing.T) {
		fp.send(t, "query", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return okResponse(&authv3.OkHttpResponse{QueryParametersToRemove: []string{"debug"}}), nil
		}, "GET", "/v1/tickets?status=open&debug=1&limit=5&debug=2", nil, "")
		reqs := fp.helpdesk.requestsOf("query")
		if len(reqs) != 1 || reqs[0].uri != "/v1/tickets?limit=5&status=open" {
			t.Errorf("API got %+v, want /v1/tickets?limit=5&status=open (every debug gone, the rest re-sorted by name)", reqs)
		}
	})

	t.Run("allow: an invalid header mutation is refused (validate_mutations)", func(t *testing.T) {
		invalid := fp.statDelta("http.agents_ingress.ext_authz.invalid")
		resp, body := fp.send(t, "invalid-mutation", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{setHeader("x-injected", "line\r\nbreak")}}), nil
		}, "GET", "/v1/tickets", nil, "")
		if resp.StatusCode != 500 || body != "" || len(fp.helpdesk.requestsOf("invalid-mutation")) != 0 {
			t.Errorf("status %d %q, %d requests reached the API; want 500 without a body, and none", resp.StatusCode, body, len(fp.helpdesk.requestsOf("invalid-mutation")))
		}
		if d := invalid(); d != 1 {
			t.Errorf("ext_authz.invalid grew by %d, want 1", d)
		}
		id := first(headerValues(fp.authz.onlyCheck(t, "invalid-mutation"), "x-request-id"))
		if log := fp.accessLog(t, id); log["response_code_details"] != "ext_authz_invalid" || log["response_flags"] != "UAEX" {
			t.Errorf("access log: details %q, flags %q; want ext_authz_invalid, UAEX", log["response_code_details"], log["response_flags"])
		}
	})

	t.Run("deny: status, headers and body reach the agent", func(t *testing.T) {
		denied := fp.statDelta("http.agents_ingress.ext_authz.denied")
		resp, body := fp.send(t, "deny", agentauthzDeny(codes.PermissionDenied, 403, "dec-1"), "POST", "/v1/tickets/7/comments",
			[]string{"Content-Type: application/json"}, `{"body":"hi"}`)
		if resp.StatusCode != 403 || body != problemBody {
			t.Fatalf("got %d %q, want 403 with the problem details", resp.StatusCode, body)
		}
		for name, want := range map[string][]string{
			"Content-Type":             {"application/problem+json"},
			"Cache-Control":            {"no-store"},
			"X-Agentauthz-Decision-Id": {"dec-1"},
			"Content-Length":           {strconv.Itoa(len(problemBody))},
			"Server":                   {"envoy"},
		} {
			if got := resp.Header.Values(name); !slices.Equal(got, want) {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if n := len(fp.helpdesk.requestsOf("deny")); n != 0 {
			t.Errorf("a denied request reached the API")
		}
		if d := denied(); d != 1 {
			t.Errorf("ext_authz.denied grew by %d, want 1", d)
		}
		id := first(headerValues(fp.authz.onlyCheck(t, "deny"), "x-request-id"))
		log := fp.accessLog(t, id)
		for k, want := range map[string]string{
			"response_code": "403", "response_code_details": "ext_authz_denied", "response_flags": "UAEX",
			"decision_id": "dec-1", "decision_outcome": "deny", "decision_code": "scope_missing",
			"decision_agent": helpdeskAgent, "decision_rule": "helpdesk.acme.internal/create-comment",
			"peer_spiffe_id": helpdeskAgent, "path": "/v1/tickets/7/comments",
		} {
			if log[k] != want {
				t.Errorf("access log %s = %q, want %q", k, log[k], want)
			}
		}
	})

	t.Run("deny: without a content-type, Envoy adds text/plain", func(t *testing.T) {
		resp, body := fp.send(t, "deny-plain", func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return deny(403, "no"), nil
		}, "GET", "/v1/tickets", nil, "")
		if resp.StatusCode != 403 || body != "no" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("got %d %q content-type %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
	})

	t.Run("deny: agentauthz's other statuses", func(t *testing.T) {
		// agentauthz answers 401 with gRPC UNAUTHENTICATED, 428 (held for approval) with
		// PERMISSION_DENIED, and checks it could not decide with UNAVAILABLE and a 503: Envoy
		// treats every non-OK status with a denied_response as a denial, and sends its status
		// and body.
		for _, c := range []struct {
			grpc codes.Code
			http int
		}{{codes.Unauthenticated, 401}, {codes.PermissionDenied, 428}, {codes.Unavailable, 503}, {codes.PermissionDenied, 400}} {
			probe := "deny-" + strconv.Itoa(c.http)
			denied := fp.statDelta("http.agents_ingress.ext_authz.denied")
			resp, body := fp.send(t, probe, agentauthzDeny(c.grpc, c.http, probe), "GET", "/v1/tickets", nil, "")
			if resp.StatusCode != c.http || body != problemBody || resp.Header.Get("X-Agentauthz-Decision-Id") != probe {
				t.Errorf("%v/%d: got %d %q", c.grpc, c.http, resp.StatusCode, body)
			}
			if d := denied(); d != 1 {
				t.Errorf("%v/%d: ext_authz.denied grew by %d, want 1", c.grpc, c.http, d)
			}
		}
	})

	t.Run("error: status_on_error", func(t *testing.T) {
		// Each way the check can fail ends in status_on_error, 503, without a body, and
		// nothing reaches the API.
		for name, answer := range map[string]answerFunc{
			"grpc-error": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, status.Error(codes.Internal, "boom")
			},
			"timeout": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
				time.Sleep(400 * time.Millisecond) // over the grpc_service timeout, 0.25s
				return okResponse(&authv3.OkHttpResponse{}), nil
			},
			"error-response": func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{
					Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
					HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}},
				}, nil
			},
		} {
			errs := fp.statDelta("http.agents_ingress.ext_authz.error")
			resp, body := fp.send(t, name, answer, "GET", "/v1/tickets", nil, "")
			if resp.StatusCode != 503 || body != "" {
				t.Errorf("%s: got %d %q, want 503 with no body", name, resp.StatusCode, body)
			}
			if n := len(fp.helpdesk.requestsOf(name)); n != 0 {
				t.Errorf("%s: the request reached the API", name)
			}
			if d := errs(); d != 1 {
				t.Errorf("%s: ext_authz.error grew by %d, want 1", name, d)
			}
			id := first(headerValues(fp.authz.onlyCheck(t, name), "x-request-id"))
			if log := fp.accessLog(t, id); log["response_code_details"] != "ext_authz_error" || log["response_flags"] != "UAEX" {
				t.Errorf("%s: access log details %q, flags %q; want ext_authz_error, UAEX", name, log["response_code_details"], log["response_flags"])
			}
		}
	})
}

// TestRealEnvoyErrorResponse: an error_response is an error (ext_authz.error), not a denial,
// yet carries the server's headers and body; without a status it takes status_on_error.
func TestRealEnvoyErrorResponse(t *testing.T) {
	fp := startFrontProxy(t)
	for _, c := range []struct {
		name   string
		status int
		want   int
	}{{"error-body", 0, 503}, {"error-body-502", 502, 502}} {
		errs := fp.statDelta("http.agents_ingress.ext_authz.error")
		resp, body := fp.send(t, c.name, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			er := &authv3.DeniedHttpResponse{
				Headers: []*corev3.HeaderValueOption{setHeader("content-type", "application/problem+json"), setHeader("x-agentauthz-decision-id", "dec-e")},
				Body:    problemBody,
			}
			if c.status != 0 {
				er.Status = typeStatus(c.status)
			}
			return &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: er},
			}, nil
		}, "GET", "/v1/tickets", nil, "")
		if resp.StatusCode != c.want || body != problemBody || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("X-Agentauthz-Decision-Id") != "dec-e" {
			t.Errorf("%s: got %d %q %v, want %d with the body and headers", c.name, resp.StatusCode, body, resp.Header, c.want)
		}
		if d := errs(); d != 1 {
			t.Errorf("%s: ext_authz.error grew by %d, want 1", c.name, d)
		}
		if n := len(fp.helpdesk.requestsOf(c.name)); n != 0 {
			t.Errorf("%s: the request reached the API", c.name)
		}
	}
}

// TestRealEnvoyFailsClosed stops the authorization server: Envoy refuses every request with
// status_on_error (503) and forwards nothing.
func TestRealEnvoyFailsClosed(t *testing.T) {
	fp := startFrontProxy(t)
	if resp, _ := fp.send(t, "up", allow, "GET", "/v1/tickets", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("with agentauthz up: status %d, want 200", resp.StatusCode)
	}
	fp.authz.g.Stop()
	errs := fp.statDelta("http.agents_ingress.ext_authz.error")
	for i := range 3 {
		probe := "down" + strconv.Itoa(i)
		resp, body := fp.send(t, probe, allow, "GET", "/v1/tickets", nil, "")
		if resp.StatusCode != 503 || body != "" {
			t.Errorf("agentauthz down: got %d %q, want 503 with no body", resp.StatusCode, body)
		}
		if n := len(fp.helpdesk.requestsOf(probe)); n != 0 {
			t.Errorf("agentauthz down: the request reached the API")
		}
	}
	stats := fp.envoy.Stats()
	if d := errs(); d != 3 {
		t.Errorf("ext_authz.error grew by %d, want 3", d)
	}
	if n := stats["http.agents_ingress.ext_authz.failure_mode_allowed"]; n != 0 {
		t.Errorf("ext_authz.failure_mode_allowed = %d, want 0", n)
	}
}
