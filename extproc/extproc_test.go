package extproc_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/extproc"
)

// authzMetadata is ext_authz's answer as Envoy forwards it: string fields in the namespace.
func authzMetadata(fields map[string]any) *corev3.Metadata {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extproc.MetadataNamespace: s}}
}

// allowed is the metadata of an allowed MCP request of the helpdesk agent.
func allowed(agent, method string) *corev3.Metadata {
	return authzMetadata(map[string]any{"agent": agent, "decision_id": "d-123", "rule": "helpdesk-mcp",
		"outcome": "allow", "code": "allowed", "mcp_method": method, "mcp_server": "helpdesk"})
}

var buffered = &extprocv3.ProtocolConfiguration{ResponseBodyMode: procv3.ProcessingMode_BUFFERED}

// headersMsg is the first message Envoy sends with the shipped configuration: the response
// headers, the metadata and the protocol configuration.
func headersMsg(md *corev3.Metadata, pc *extprocv3.ProtocolConfiguration, eos bool, headers ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(headers); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: headers[i], RawValue: []byte(headers[i+1])})
	}
	return &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: hm, EndOfStream: eos}},
		MetadataContext: md,
		ProtocolConfig:  pc,
	}
}

func bodyMsg(md *corev3.Metadata, body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}},
		MetadataContext: md,
	}
}

// exchange sends msgs on one stream and returns the answer to each.
func (ps *procServer) exchange(t testing.TB, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := ps.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	toolsJSON = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}},` +
		`{"name":"reset_password","inputSchema":{"type":"object"}},{"name":"comment_ticket","inputSchema":{"type":"object"}}]}}`
	filteredJSON = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}},` +
		`{"name":"comment_ticket","inputSchema":` + tightSchema + `}]}}`
	emptyTools = `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}`
)

// answer is what one answer to the body or headers does: the body sent (nil when it passes
// unchanged), and the headers set and removed.
type answer struct {
	body    *string
	set     map[string]string
	removed []string
	status  extprocv3.CommonResponse_ResponseStatus
}

func readCommon(t *testing.T, c *extprocv3.CommonResponse) answer {
	t.Helper()
	a := answer{set: map[string]string{}, status: c.GetStatus()}
	if m := c.GetBodyMutation(); m != nil {
		b := string(m.GetBody())
		a.body = &b
	}
	for _, h := range c.GetHeaderMutation().GetSetHeaders() {
		a.set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue()) + h.GetHeader().GetValue()
	}
	a.removed = c.GetHeaderMutation().GetRemoveHeaders()
	return a
}

// checkReplaced checks that an answer replaces the body by want, with the headers that match.
func checkReplaced(t *testing.T, a answer, want, contentType string) {
	t.Helper()
	if a.body == nil || *a.body != want {
		t.Fatalf("body %v, want %s", deref(a.body), want)
	}
	if a.set["content-length"] != itoa(len(want)) || a.set["content-type"] != contentType {
		t.Errorf("headers set %v, want content-length %d and content-type %s", a.set, len(want), contentType)
	}
	if len(a.removed) != 1 || a.removed[0] != "content-encoding" {
		t.Errorf("headers removed %v, want content-encoding", a.removed)
	}
}

func TestFilteredList(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	md := allowed(helpdeskAgent, "tools/list")
	resps := ps.exchange(t,
		headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json", "content-length", itoa(len(toolsJSON))),
		bodyMsg(md, toolsJSON))
	h := resps[0].GetResponseHeaders()
	if h == nil || h.GetResponse() != nil || resps[0].GetModeOverride() != nil {
		t.Fatalf("headers answered %v, want a plain continue", resps[0])
	}
	checkReplaced(t, readCommon(t, resps[1].GetResponseBody().GetResponse()), filteredJSON, "application/json")

	asked := ps.lists.requests()
	if len(asked) != 1 {
		t.Fatalf("Lists asked %d times", len(asked))
	}
	got := asked[0]
	want := extproc.ListRequest{Agent: helpdeskAgent, Server: "helpdesk", Method: "tools/list", DecisionID: "d-123",
		Rule: "helpdesk-mcp", Status: 200, ContentType: "application/json", Body: []byte(toolsJSON)}
	if got.Agent != want.Agent || got.Server != want.Server || got.Method != want.Method || got.DecisionID != want.DecisionID ||
		got.Rule != want.Rule || got.Status != want.Status || got.ContentType != want.ContentType || string(got.Body) != toolsJSON {
		t.Errorf("Lists asked\n\t%+v\nwant\n\t%+v", got, want)
	}
	if n := counted(t, ps.reg, "tools/list", "filtered"); n != 1 {
		t.Errorf("filtered counted %v times", n)
	}
}

func TestUnchangedListPasses(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	const body = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"list_tickets"}]}}`
	md := allowed(helpdeskAgent, "tools/list")
	resps := ps.exchange(t, headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"), bodyMsg(nil, body))
	if b := resps[1].GetResponseBody(); b == nil || b.GetResponse() != nil {
		t.Fatalf("body answered %v, want it to pass unchanged", resps[1])
	}
}

// TestFailsClosed: each way the answer cannot be filtered as asked sends an empty list.
func TestFailsClosed(t *testing.T) {
	type step struct {
		md      *corev3.Metadata
		pc      *extprocv3.ProtocolConfiguration
		eos     bool
		headers []string
	}
	json := []string{":status", "200", "content-type", "application/json"}
	for _, c := range []struct {
		name    string
		cfg     extproc.Config
		head    step
		body    *string // sent after the headers when not nil
		want    string
		lists   func(*viewLists)
		atHeads bool   // the headers' answer replaces the body
		outcome string // counted; "" for emptied
	}{
		{name: "the body is not buffered", head: step{allowed(helpdeskAgent, "tools/list"),
			&extprocv3.ProtocolConfiguration{ResponseBodyMode: procv3.ProcessingMode_STREAMED}, false, json}, want: emptyTools, atHeads: true},
		{name: "no protocol configuration", head: step{allowed(helpdeskAgent, "tools/list"), nil, false, json}, want: emptyTools, atHeads: true},
		{name: "no body", head: step{allowed(helpdeskAgent, "prompts/list"), buffered, true, json},
			want: `{"jsonrpc":"2.0","id":null,"result":{"prompts":[]}}`, atHeads: true},
		{name: "no metadata", head: step{nil, buffered, false, json},
			want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}`, atHeads: true},
		{name: "metadata that is not strings", head: step{authzMetadata(map[string]any{"agent": 1.0, "mcp_method": true}), buffered, false, json},
			want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}`, atHeads: true},
		{name: "no agent: nothing shown, the id kept", head: step{authzMetadata(map[string]any{"mcp_method": "tools/list"}), buffered, false, json},
			body: ptr(toolsJSON), want: `{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}`},
		{name: "an agent the view does not know", head: step{allowed(biAgent, "tools/list"), buffered, false, json},
			body: ptr(toolsJSON), want: `{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}`, outcome: "filtered"},
		{name: "filtering panics", head: step{allowed(helpdeskAgent, "tools/list"), buffered, false, json},
			body: ptr(toolsJSON), want: emptyTools, lists: func(l *viewLists) { l.panicFor = helpdeskAgent }},
		{name: "filtering returns nothing", head: step{allowed(helpdeskAgent, "tools/list"), buffered, false, json},
			body: ptr(toolsJSON), want: emptyTools, lists: func(l *viewLists) { l.nilFor = helpdeskAgent }},
		{name: "compressed", head: step{allowed(helpdeskAgent, "tools/list"), buffered, false,
			[]string{":status", "200", "content-type", "application/json", "content-encoding", "gzip"}},
			body: ptr("\x1f\x8b\x08\x00"), want: emptyTools},
		{name: "two content types", head: step{allowed(helpdeskAgent, "tools/list"), buffered, false,
			[]string{":status", "200", "content-type", "application/json", "content-type", "text/html"}},
			body: ptr(toolsJSON), want: emptyTools},
		{name: "unreadable", head: step{allowed(helpdeskAgent, "tools/list"), buffered, false, json},
			body: ptr(toolsJSON + "garbage"), want: emptyTools},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := startProc(t, c.cfg)
			if c.lists != nil {
				c.lists(ps.lists)
			}
			msgs := []*extprocv3.ProcessingRequest{headersMsg(c.head.md, c.head.pc, c.head.eos, c.head.headers...)}
			if c.body != nil {
				msgs = append(msgs, bodyMsg(nil, *c.body))
			}
			resps := ps.exchange(t, msgs...)
			var a answer
			if c.atHeads {
				a = readCommon(t, resps[0].GetResponseHeaders().GetResponse())
				if a.status != extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
					t.Errorf("headers answered with %v, want CONTINUE_AND_REPLACE", a.status)
				}
			} else {
				if h := resps[0].GetResponseHeaders(); h == nil || h.GetResponse() != nil {
					t.Fatalf("headers answered %v, want a plain continue", resps[0])
				}
				a = readCommon(t, resps[1].GetResponseBody().GetResponse())
			}
			checkReplaced(t, a, c.want, "application/json")
			method := "tools/list"
			if c.head.md == nil || strings.Contains(c.name, "not strings") {
				method = "other"
			} else if strings.Contains(c.want, "prompts") {
				method = "prompts/list"
			}
			outcome := c.outcome
			if outcome == "" {
				outcome = "emptied"
			}
			if n := counted(t, ps.reg, method, outcome); n != 1 {
				t.Errorf("%s counted %v times for %s", outcome, n, method)
			}
		})
	}
}

// withMethod is m with the request's HTTP method as Envoy sends the attribute.
func withMethod(m *extprocv3.ProcessingRequest, method string) *extprocv3.ProcessingRequest {
	attrs, _ := structpb.NewStruct(map[string]any{extproc.AttributeRequestMethod: method})
	m.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": attrs}
	return m
}

// TestNotAList: the answer to any other method passes, and Envoy is told not to send its body;
// sent anyway, it passes unchanged. Without a method, only the answer to a GET or DELETE does.
func TestNotAList(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	for _, c := range []struct {
		md         *corev3.Metadata
		httpMethod string
	}{
		{allowed(helpdeskAgent, "tools/call"), "POST"},
		{allowed(helpdeskAgent, "notifications/initialized"), ""},
		{authzMetadata(map[string]any{"agent": helpdeskAgent}), "GET"},
		{authzMetadata(map[string]any{"agent": helpdeskAgent}), "DELETE"},
	} {
		resps := ps.exchange(t,
			withMethod(headersMsg(c.md, buffered, false, ":status", "200", "content-type", "text/event-stream"), c.httpMethod),
			bodyMsg(nil, `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"reset_password"}]}}`+"\n\n"))
		if h := resps[0].GetResponseHeaders(); h == nil || h.GetResponse() != nil {
			t.Errorf("headers answered %v, want a plain continue", resps[0])
		}
		if mo := resps[0].GetModeOverride(); mo.GetResponseBodyMode() != procv3.ProcessingMode_NONE || mo == nil {
			t.Errorf("mode override %v, want response_body_mode NONE", mo)
		}
		if b := resps[1].GetResponseBody(); b == nil || b.GetResponse() != nil {
			t.Errorf("body answered %v, want it to pass", resps[1])
		}
	}
	if len(ps.lists.requests()) != 0 {
		t.Error("Lists was asked about an answer that is not a list")
	}
	if n := counted(t, ps.reg, "other", "passed"); n != 4 {
		t.Errorf("passed counted %v times", n)
	}
}

// TestNoMethod: an answer to a request that is not a GET or DELETE, for which ext_authz named no
// JSON-RPC method, is not known not to be a list: its body is replaced, unless it has none.
func TestNoMethod(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	md := authzMetadata(map[string]any{"agent": helpdeskAgent})
	for _, httpMethod := range []string{"POST", ""} {
		resps := ps.exchange(t, withMethod(headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"), httpMethod))
		a := readCommon(t, resps[0].GetResponseHeaders().GetResponse())
		if a.status != extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
			t.Errorf("%q: headers answered with %v", httpMethod, a.status)
		}
		checkReplaced(t, a, `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}`, "application/json")
	}
	// A 202 without a body (the answer to a JSON-RPC response the agent sent) passes.
	resps := ps.exchange(t, withMethod(headersMsg(md, buffered, true, ":status", "202"), "POST"))
	if h := resps[0].GetResponseHeaders(); h == nil || h.GetResponse() != nil {
		t.Errorf("headers answered %v, want a plain continue", resps[0])
	}
}

// TestTooLarge: a body over MaxBody is not handed to Lists; the agent gets 502 with an empty
// list.
func TestTooLarge(t *testing.T) {
	ps := startProc(t, extproc.Config{MaxBody: 64})
	md := allowed(helpdeskAgent, "tools/list")
	resps := ps.exchange(t, headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"), bodyMsg(nil, toolsJSON))
	ir := resps[1].GetImmediateResponse()
	if ir.GetStatus().GetCode() != 502 || string(ir.GetBody()) != emptyTools {
		t.Fatalf("answered %v, want 502 with an empty list", resps[1])
	}
	if len(ps.lists.requests()) != 0 {
		t.Error("Lists was handed a body over the limit")
	}
	if n := counted(t, ps.reg, "tools/list", "emptied"); n != 1 {
		t.Errorf("emptied counted %v times", n)
	}
}

// TestBodyInPieces: a second body message means the body was not buffered whole, and the first
// piece went on: the exchange ends with 502 and an empty list.
func TestBodyInPieces(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	md := allowed(helpdeskAgent, "tools/list")
	resps := ps.exchange(t, headersMsg(md, buffered, false, ":status", "200", "content-type", "application/json"),
		bodyMsg(nil, toolsJSON), bodyMsg(nil, toolsJSON))
	ir := resps[2].GetImmediateResponse()
	if ir.GetStatus().GetCode() != 502 || string(ir.GetBody()) != emptyTools {
		t.Fatalf("answered %v, want 502 with an empty list", resps[2])
	}
}

// TestRequestsPass: request messages, which the shipped configuration does not send, pass.
func TestRequestsPass(t *testing.T) {
	ps := startProc(t, extproc.Config{})
	resps := ps.exchange(t,
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{}}},
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("x")}}},
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}},
		&extprocv3.ProcessingRequest{},
	)
	if resps[0].GetRequestHeaders() == nil || resps[1].GetRequestBody() == nil || resps[2].GetRequestTrailers() == nil ||
		resps[3].GetResponseTrailers() == nil {
		t.Errorf("answered %v", resps)
	}
	if resps[1].GetRequestBody().GetResponse() != nil {
		t.Error("a request body was changed")
	}
	if resps[4].GetImmediateResponse().GetStatus().GetCode() != 502 {
		t.Errorf("a message of no kind answered %v", resps[4])
	}
}

func TestMetadataNamespace(t *testing.T) {
	if extproc.MetadataNamespace != extauthz.MetadataNamespace {
		t.Errorf("extproc reads %q, extauthz writes %q", extproc.MetadataNamespace, extauthz.MetadataNamespace)
	}
}

// counted is agentauthz_mcp_list_responses_total{method, outcome}.
func counted(t *testing.T, reg prometheus.Gatherer, method, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "agentauthz_mcp_list_responses_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return "<unchanged>"
	}
	return *s
}
