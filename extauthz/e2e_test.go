package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

var update = flag.Bool("update", false, "rewrite testdata/checks/*.want.json from the server's answers (review the diff before committing)")

// helpdeskToken is the helpdesk API credential the demo policy injects.
const helpdeskToken = "e2e-helpdesk-api-token"

const checksDir = "testdata/checks"

// demoAgents are the agents of the demo policy.
var demoAgents = []string{"spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi"}

func ctxFor(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// want is the expected answer to one check, kept beside it as NAME.want.json.
type want struct {
	// Why says what the case shows; -update keeps it.
	Why   string `json:"why"`
	Allow bool   `json:"allow"`
	// Status is the HTTP status: 200 on allow, the denial's status otherwise.
	Status int `json:"status"`
	// GRPCCode is the CheckResponse's status code (google.rpc.Code), e.g. "OK", "PERMISSION_DENIED".
	GRPCCode string `json:"grpc_code"`
	// Code, Rule and Agent are the decision's reason code, deciding route and agent, as the
	// dynamic metadata and the problem body carry them.
	Code  string `json:"code"`
	Rule  string `json:"rule,omitempty"`
	Agent string `json:"agent,omitempty"`
	// Violations are the problem's violations (field and rule; the message is prose).
	Violations []violation `json:"violations,omitempty"`
	// ApprovalState is the state of the approval a denial names (approval_required and the other
	// approval codes); its id is random, so only its form is checked.
	ApprovalState string `json:"approval_state,omitempty"`
	// On allow: the headers set (with their values) and removed, the query parameters removed,
	// and every header the upstream sees once Envoy applied them (repeated headers joined by ",").
	HeadersSet     map[string]string `json:"headers_set,omitempty"`
	HeadersRemoved []string          `json:"headers_removed,omitempty"`
	QueryRemoved   []string          `json:"query_removed,omitempty"`
	Upstream       map[string]string `json:"upstream_headers,omitempty"`
	// BodyContains lists substrings the problem body must hold; -update keeps it.
	BodyContains []string `json:"body_contains,omitempty"`
}

type violation struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// checkCase is one testdata/checks/NAME.json with its NAME.want.json.
type checkCase struct {
	name     string
	req      *authv3.CheckRequest
	wantPath string
	want     *want // nil when the want file does not exist yet
}

func loadCases(tb testing.TB) []checkCase {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(checksDir, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	requests := map[string]bool{}
	var cases []checkCase
	for _, p := range paths {
		if strings.HasSuffix(p, ".want.json") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		requests[name] = true
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		cr := &authv3.CheckRequest{}
		if err := protojson.Unmarshal(data, cr); err != nil {
			tb.Fatalf("%s: not a CheckRequest: %v", p, err)
		}
		c := checkCase{name: name, req: cr, wantPath: filepath.Join(checksDir, name+".want.json")}
		switch data, err := os.ReadFile(c.wantPath); {
		case errors.Is(err, os.ErrNotExist):
			if !*update {
				tb.Fatalf("%s has no %s: write it, or run go test -update and review it", p, c.wantPath)
			}
		case err != nil:
			tb.Fatal(err)
		default:
			c.want = &want{}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(c.want); err != nil {
				tb.Fatalf("%s: %v", c.wantPath, err)
			}
		}
		cases = append(cases, c)
	}
	wants, _ := filepath.Glob(filepath.Join(checksDir, "*.want.json"))
	for _, p := range wants {
		if name := strings.TrimSuffix(filepath.Base(p), ".want.json"); !requests[name] {
			tb.Errorf("%s has no request %s.json", p, name)
		}
	}
	if len(cases) == 0 {
		tb.Fatalf("no cases in %s", checksDir)
	}
	return cases
}

// TestChecks sends every testdata CheckRequest to a real server over gRPC on loopback and
// compares the answer with NAME.want.json. The demo holds password resets for approval: each
// case is a fresh request, so those are 428 approval_required, pending.
func TestChecks(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	cases := loadCases(t)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store,
		Approvals: &approval.Gate{Store: memstore.New()}})
	client := servertest.Client(t, srv)
	var ids sync.Map // decision id -> case name

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			resp, err := client.Check(ctxFor(t), c.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			id := resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
			if other, dup := ids.LoadOrStore(id, c.name); dup {
				t.Errorf("decision id %s also answered %s", id, other)
			}
			got := answer(t, c.req, resp)
			if *update {
				if c.want != nil {
					got.Why, got.BodyContains = c.want.Why, c.want.BodyContains
				}
				writeWant(t, c.wantPath, got)
				checkBodyContains(t, resp, got.BodyContains)
				return
			}
			if diff := cmp.Diff(c.want, got, cmpopts.IgnoreFields(want{}, "Why", "BodyContains"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s (%s)\nanswer differs from %s (-want +got):\n%s", c.name, c.want.Why, c.wantPath, diff)
			}
			checkBodyContains(t, resp, c.want.BodyContains)
		})
	}
}

func writeWant(tb testing.TB, path string, w *want) {
	tb.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(w); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func checkBodyContains(tb testing.TB, resp *authv3.CheckResponse, subs []string) {
	tb.Helper()
	body := resp.GetDeniedResponse().GetBody()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			tb.Errorf("problem body does not contain %q:\n%s", s, body)
		}
	}
}

var decisionIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// answer checks the invariants every CheckResponse must keep and reads it into a want.
func answer(tb testing.TB, req *authv3.CheckRequest, resp *authv3.CheckResponse) *want {
	tb.Helper()
	got := &want{GRPCCode: rpccode.Code(resp.GetStatus().GetCode()).String()}

	// Dynamic metadata, for Envoy's access log.
	meta := resp.GetDynamicMetadata().AsMap()
	for k := range meta {
		switch k {
		case "decision_id", "agent", "rule", "code", "outcome", "response_rule":
		default:
			tb.Errorf("unexpected dynamic metadata field %q", k)
		}
	}
	id, _ := meta["decision_id"].(string)
	if !decisionIDPattern.MatchString(id) {
		tb.Errorf("dynamic metadata decision_id = %q, want 32 hex digits", id)
	}
	got.Code, _ = meta["code"].(string)
	got.Agent, _ = meta["agent"].(string)
	got.Rule, _ = meta["rule"].(string)
	outcome, _ := meta["outcome"].(string)
	if raw := string(mustJSON(tb, resp)); strings.Contains(raw, helpdeskToken) && resp.GetOkResponse() == nil {
		tb.Errorf("a denial carries the helpdesk credential: %s", raw)
	}
	if strings.Contains(mustJSON(tb, resp.GetDynamicMetadata()), helpdeskToken) {
		tb.Errorf("dynamic metadata carries the helpdesk credential")
	}

	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		got.Allow, got.Status = true, 200
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			tb.Errorf("ok_response with gRPC status %s", got.GRPCCode)
		}
		if outcome != "allow" || got.Code != string(decision.CodeAllowed) {
			tb.Errorf("ok_response with metadata outcome %q, code %q", outcome, got.Code)
		}
		readOK(tb, req, r.OkResponse, id, got)
	case *authv3.CheckResponse_DeniedResponse:
		got.Status = int(r.DeniedResponse.GetStatus().GetCode())
		if outcome != "deny" {
			tb.Errorf("denied_response with metadata outcome %q", outcome)
		}
		wantRPC := codes.PermissionDenied
		switch {
		case got.Status == 401:
			wantRPC = codes.Unauthenticated
		case got.Status == 503:
			wantRPC = codes.Unavailable
		}
		if c := codes.Code(resp.GetStatus().GetCode()); c != wantRPC {
			tb.Errorf("HTTP %d denial with gRPC status %s, want %s", got.Status, c, wantRPC)
		}
		if got.Status != decision.Code(got.Code).Status() {
			tb.Errorf("HTTP status %d, but code %q has status %d", got.Status, got.Code, decision.Code(got.Code).Status())
		}
		got.Violations = readProblem(tb, r.DeniedResponse, id, got)
	default:
		tb.Fatalf("CheckResponse has no http_response: %v", resp)
	}
	return got
}

// readOK applies an OkHttpResponse to the request's headers as Envoy does (set, then remove)
// and records what the upstream sees.
func readOK(tb testing.TB, req *authv3.CheckRequest, ok *authv3.OkHttpResponse, id string, got *want) {
	tb.Helper()
	// Only header mutations are part of the contract: nothing else may be asked of Envoy.
	rest := proto.Clone(ok).(*authv3.OkHttpResponse)
	rest.Headers, rest.HeadersToRemove, rest.QueryParametersToRemove = nil, nil, nil
	if diff := cmp.Diff(&authv3.OkHttpResponse{}, rest, protocmp.Transform()); diff != "" {
		tb.Errorf("ok_response asks Envoy for more than header and query changes (-want +got):\n%s", diff)
	}
	got.HeadersRemoved = ok.GetHeadersToRemove()
	got.QueryRemoved = ok.GetQueryParametersToRemove()

	up := requestHeaders(tb, req)
	for _, h := range ok.GetHeaders() {
		//lint:ignore SA1019 the deprecated append flag must stay unset: Envoy would read it instead
		if h.GetAppend() != nil || h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			tb.Errorf("header %s: the grant must replace what the agent sent (OVERWRITE_IF_EXISTS_OR_ADD), got %v", h.GetHeader().GetKey(), h)
		}
		k := h.GetHeader().GetKey()
		if got.HeadersSet == nil {
			got.HeadersSet = map[string]string{}
		}
		if _, dup := got.HeadersSet[k]; dup {
			tb.Errorf("header %s set twice", k)
		}
		got.HeadersSet[k] = h.GetHeader().GetValue()
		up = slices.DeleteFunc(up, func(kv [2]string) bool { return kv[0] == k })
		up = append(up, [2]string{k, h.GetHeader().GetValue()})
	}
	for _, k := range ok.GetHeadersToRemove() {
		if strings.HasPrefix(k, ":") || k == "host" {
			tb.Errorf("headers_to_remove names %s, which Envoy refuses to remove", k)
		}
		up = slices.DeleteFunc(up, func(kv [2]string) bool { return kv[0] == k })
	}
	got.Upstream = map[string]string{}
	for _, kv := range up {
		if prev, ok := got.Upstream[kv[0]]; ok {
			got.Upstream[kv[0]] = prev + "," + kv[1]
		} else {
			got.Upstream[kv[0]] = kv[1]
		}
	}
	// Every allow tells the upstream its decision id, replacing any the agent sent; it differs
	// per answer, so it is checked here and left out of the recorded answer.
	if got.HeadersSet[extauthz.DecisionIDHeader] != id || got.Upstream[extauthz.DecisionIDHeader] != id {
		tb.Errorf("the upstream gets %s %q (set %q), want the decision id %q", extauthz.DecisionIDHeader,
			got.Upstream[extauthz.DecisionIDHeader], got.HeadersSet[extauthz.DecisionIDHeader], id)
	}
	delete(got.HeadersSet, extauthz.DecisionIDHeader)
	delete(got.Upstream, extauthz.DecisionIDHeader)
	if len(got.HeadersSet) == 0 {
		got.HeadersSet = nil
	}
}

// requestHeaders lists the request's header lines from headers or header_map, without the
// x-envoy-auth-partial-body header that Envoy adds to the check only.
func requestHeaders(tb testing.TB, req *authv3.CheckRequest) [][2]string {
	tb.Helper()
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	var hs [][2]string
	for k, v := range httpReq.GetHeaders() {
		hs = append(hs, [2]string{k, v})
	}
	for _, hv := range httpReq.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		hs = append(hs, [2]string{hv.GetKey(), v})
	}
	return slices.DeleteFunc(hs, func(kv [2]string) bool { return kv[0] == extauthz.PartialBodyHeader })
}

// readProblem checks a denial's headers and RFC 9457 body and returns its violations.
func readProblem(tb testing.TB, d *authv3.DeniedHttpResponse, id string, got *want) []violation {
	tb.Helper()
	wantHeaders := []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/problem+json"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{Header: &corev3.HeaderValue{Key: "cache-control", Value: "no-store"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{Header: &corev3.HeaderValue{Key: extauthz.DecisionIDHeader, Value: id}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
	}
	if diff := cmp.Diff(wantHeaders, d.GetHeaders(), protocmp.Transform(),
		protocmp.SortRepeated(func(a, b *corev3.HeaderValueOption) bool { return a.GetHeader().GetKey() < b.GetHeader().GetKey() })); diff != "" {
		tb.Errorf("denial headers (-want +got):\n%s", diff)
	}

	var p struct {
		Type       *string `json:"type"`
		Title      *string `json:"title"`
		Status     *int    `json:"status"`
		Detail     *string `json:"detail"`
		Code       *string `json:"code"`
		DecisionID *string `json:"decision_id"`
		Rule       *string `json:"rule"`
		// On approval codes.
		ApprovalID      *string `json:"approval_id"`
		ApprovalState   *string `json:"approval_state"`
		ApprovalExpires *string `json:"approval_expires_at"`
		Violations      []struct {
			Field   string `json:"field"`
			Rule    string `json:"rule"`
			Message string `json:"message"`
		} `json:"violations"`
	}
	dec := json.NewDecoder(strings.NewReader(d.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("problem body is not the problem JSON: %v\n%s", err, d.GetBody())
	}
	if dec.More() {
		tb.Errorf("problem body has trailing data: %s", d.GetBody())
	}
	switch {
	case p.Type == nil || *p.Type != "urn:agentauthz:problem:"+got.Code:
		tb.Errorf("problem type %v, want urn:agentauthz:problem:%s", deref(p.Type), got.Code)
	case p.Title == nil || *p.Title == "":
		tb.Errorf("problem has no title")
	case p.Status == nil || *p.Status != got.Status:
		tb.Errorf("problem status %v, HTTP status %d", deref(p.Status), got.Status)
	case p.Detail == nil || *p.Detail == "":
		tb.Errorf("problem has no detail")
	case p.Code == nil || *p.Code != got.Code:
		tb.Errorf("problem code %v, metadata code %q", deref(p.Code), got.Code)
	case p.DecisionID == nil || *p.DecisionID != id:
		tb.Errorf("problem decision_id %v, %s header %q", deref(p.DecisionID), extauthz.DecisionIDHeader, id)
	}
	if p.Rule != nil && *p.Rule == "" || p.Rule == nil && got.Rule != "" || p.Rule != nil && *p.Rule != got.Rule {
		tb.Errorf("problem rule %v, metadata rule %q", deref(p.Rule), got.Rule)
	}
	checkApprovalFields(tb, got, p.ApprovalID, p.ApprovalState, p.ApprovalExpires)
	var vs []violation
	for _, v := range p.Violations {
		if v.Field == "" || v.Rule == "" || v.Message == "" {
			tb.Errorf("incomplete violation %+v", v)
		}
		vs = append(vs, violation{Field: v.Field, Rule: v.Rule})
	}
	return vs
}

var approvalIDPattern = regexp.MustCompile(`^apr_[a-z2-7]{26}$`)

// checkApprovalFields checks a problem's approval members: a held request names its pending
// approval and when it lapses; approval_denied, _used and _expired name theirs; nothing else
// names one.
func checkApprovalFields(tb testing.TB, got *want, id, state, expires *string) {
	tb.Helper()
	if state != nil {
		got.ApprovalState = *state
	}
	switch decision.Code(got.Code) {
	case decision.CodeApprovalRequired:
		if id == nil || !approvalIDPattern.MatchString(*id) || state == nil || expires == nil {
			tb.Errorf("approval_required without approval_id, approval_state and approval_expires_at")
		} else if _, err := time.Parse(time.RFC3339, *expires); err != nil {
			tb.Errorf("approval_expires_at %q: %v", *expires, err)
		}
	case decision.CodeApprovalDenied, decision.CodeApprovalUsed, decision.CodeApprovalExpired:
		if id == nil || !approvalIDPattern.MatchString(*id) || state == nil {
			tb.Errorf("%s without approval_id and approval_state", got.Code)
		}
	default:
		if id != nil || state != nil || expires != nil {
			tb.Errorf("a %s denial names an approval", got.Code)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func mustJSON(tb testing.TB, m proto.Message) string {
	tb.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestGRPCServices checks what else the gRPC listener serves: health.
func TestGRPCServices(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", Store: store})
	if srv.HTTPAddr() != nil {
		t.Errorf("HTTPAddr() = %v with no HTTP listener configured", srv.HTTPAddr())
	}
	conn := servertest.Dial(t, srv.GRPCAddr().String())

	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
		resp, err := health.Check(ctxFor(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health Check(%q): %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health Check(%q) = %v, want SERVING", svc, resp.GetStatus())
		}
	}
	if svc := "envoy.service.auth.v3.Authorization"; authv3.Authorization_ServiceDesc.ServiceName != svc {
		t.Errorf("Authorization service name %q, want %q", authv3.Authorization_ServiceDesc.ServiceName, svc)
	}

	// gRPC server reflection, served only when configured: internal/server's TestReflection.
}

func httpGet(tb testing.TB, url string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequestWithContext(ctxFor(tb), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if ct := resp.Header.Get("content-type"); ct != "application/json" {
		tb.Errorf("GET %s: content-type %q", url, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("GET %s: %v\n%s", url, err, body)
	}
	return resp.StatusCode, m
}

// TestHTTPHealth checks /healthz and /readyz with the demo policy loaded.
func TestHTTPHealth(t *testing.T) {
	store, snap := servertest.DemoStore(t, helpdeskToken)
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store})
	base := "http://" + srv.HTTPAddr().String()

	status, body := httpGet(t, base+"/healthz")
	if diff := cmp.Diff(map[string]any{"status": "ok"}, body); status != 200 || diff != "" {
		t.Errorf("/healthz = %d, body (-want +got):\n%s", status, diff)
	}
	status, body = httpGet(t, base+"/readyz")
	if snap.Revision() == "" {
		t.Fatal("the demo policy has no revision")
	}
	wantReady := map[string]any{
		"status": "ready", "policy_revision": snap.Revision(),
		"agents": 2.0, "hosts": 4.0, "routes": 9.0, "mcp_servers": 1.0, "mcp_tools": 4.0,
	}
	if diff := cmp.Diff(wantReady, body); status != 200 || diff != "" {
		t.Errorf("/readyz = %d, body (-want +got):\n%s", status, diff)
	}
}

// TestNotReady starts a server whose Store holds no policy yet: it is not ready, and every check
// is denied with policy_not_loaded.
func TestNotReady(t *testing.T) {
	store := &policy.Store{}
	srv := servertest.Start(t, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store})

	status, body := httpGet(t, "http://"+srv.HTTPAddr().String()+"/readyz")
	if status != http.StatusServiceUnavailable || body["status"] != "not ready" {
		t.Errorf("/readyz = %d %v, want 503 not ready", status, body)
	}
	status, _ = httpGet(t, "http://"+srv.HTTPAddr().String()+"/healthz")
	if status != http.StatusOK {
		t.Errorf("/healthz = %d, want 200: the process is up", status)
	}

	conn := servertest.Dial(t, srv.GRPCAddr().String())
	hr, err := healthpb.NewHealthClient(conn).Check(ctxFor(t), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health = %v, want NOT_SERVING", hr.GetStatus())
	}

	req := extauthz.HTTPRequest{
		Principal: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
	}.CheckRequest()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctxFor(t), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	got := answer(t, req, resp)
	wantNR := &want{Status: 503, GRPCCode: "UNAVAILABLE", Code: "policy_not_loaded"}
	if diff := cmp.Diff(wantNR, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("check without a policy (-want +got):\n%s", diff)
	}

	// Loading a policy makes the same server decide.
	_, snap := servertest.DemoStore(t, helpdeskToken)
	store.Swap(snap)
	resp, err = authv3.NewAuthorizationClient(conn).Check(ctxFor(t), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() == nil {
		t.Errorf("check after the policy was loaded: %v", resp)
	}
	if status, _ = httpGet(t, "http://"+srv.HTTPAddr().String()+"/readyz"); status != 200 {
		t.Errorf("/readyz after the policy was loaded = %d, want 200", status)
	}
}

// TestUnixSocket serves on a unix socket, as Envoy's sidecar deployments do.
func TestUnixSocket(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	sock := filepath.Join(t.TempDir(), "authz.sock")
	srv := servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, Store: store})
	if got := srv.GRPCAddr().Network(); got != "unix" {
		t.Errorf("GRPCAddr().Network() = %q, want unix", got)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket: %v", sock, err)
	}
	req := extauthz.HTTPRequest{
		Principal: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
	}.CheckRequest()
	resp, err := authv3.NewAuthorizationClient(servertest.Dial(t, "unix:"+sock)).Check(ctxFor(t), req)
	if err != nil {
		t.Fatalf("Check over %s: %v", sock, err)
	}
	if got := answer(t, req, resp); !got.Allow || got.Rule != "get-ticket" {
		t.Errorf("Check over the unix socket = %+v, want allow by get-ticket", got)
	}
}

// TestRefusesPlaintextOnNonLoopback: plaintext gRPC is only for loopback and unix sockets,
// unless the operator says Insecure.
func TestRefusesPlaintextOnNonLoopback(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0"} {
		if srv, err := server.Start(server.Config{GRPCAddr: addr, Store: store}); err == nil {
			srv.Shutdown()
			t.Errorf("server.Start(%q) served plaintext on a non-loopback address", addr)
		} else if !strings.Contains(err.Error(), "insecure") {
			t.Errorf("server.Start(%q): %v; the error should say how to override", addr, err)
		}
	}
	for _, addr := range []string{"unix:", "127.0.0.1", "nonsense"} {
		if srv, err := server.Start(server.Config{GRPCAddr: addr, Store: store}); err == nil {
			srv.Shutdown()
			t.Errorf("server.Start(%q) accepted a malformed address", addr)
		}
	}
	srv := servertest.Start(t, server.Config{GRPCAddr: "0.0.0.0:0", Insecure: true, Store: store})
	if srv.GRPCAddr() == nil {
		t.Fatal("no gRPC address")
	}
	for _, addr := range []string{"localhost:0", "[::1]:0"} {
		srv, err := server.Start(server.Config{GRPCAddr: addr, Store: store})
		if err != nil {
			if strings.Contains(err.Error(), "refusing") {
				t.Errorf("server.Start(%q) refused a loopback address: %v", addr, err)
			}
			continue // e.g. no IPv6 loopback here
		}
		srv.Shutdown()
	}
}

// TestCheckContext: a check whose deadline passed is answered, not failed: 503
// deadline_exceeded, which Envoy turns into the agent's answer.
func TestCheckContext(t *testing.T) {
	store, _ := servertest.DemoStore(t, helpdeskToken)
	srv := extauthz.NewForStore(store)
	req := extauthz.HTTPRequest{
		Principal: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711",
	}.CheckRequest()

	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want *want
	}{
		{"deadline", expired, &want{Status: 503, GRPCCode: "UNAVAILABLE", Code: "deadline_exceeded"}},
		{"cancelled", cancelled, &want{Status: 503, GRPCCode: "UNAVAILABLE", Code: "internal_error"}},
	} {
		resp, err := srv.Check(tc.ctx, req)
		resp = onTheWire(t, resp)
		if err != nil {
			t.Fatalf("%s: Check: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, answer(t, req, resp), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// onTheWire returns the answer as Envoy receives it: marshalled and decoded again. Answers carry
// parts in wire form (the dynamic metadata), so only the decoded message shows them all.
func onTheWire(t testing.TB, resp *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	if resp == nil {
		return nil
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatalf("marshalling the answer: %v", err)
	}
	out := &authv3.CheckResponse{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("decoding the answer: %v", err)
	}
	return out
}
