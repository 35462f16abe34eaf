package demoagent_test

// What the MCP Go SDK's client (v1.8.0) makes of each way a gateway could refuse a tools/call:
// the Go error or result CallTool returns, and whether the session takes the next call. The
// gateway here is a real HTTP server in front of the real helpdesk MCP server: it answers one
// tool call itself, as agentauthz would, and passes everything else on with the helpdesk's
// credential.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
)

const helpdeskToken = "SENTINEL-helpdesk-token"

// startHelpdesk runs the helpdesk process (REST and MCP) and returns its API and base URL.
func startHelpdesk(t testing.TB) (*helpdesk.API, string) {
	t.Helper()
	api, err := helpdesk.New(helpdesk.Config{Token: helpdeskToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(helpdeskmcp.Routes(api, nil))
	t.Cleanup(srv.Close)
	return api, srv.URL
}

// refusal is a gateway's own answer to one tools/call: status, content type and body, where
// the body's "ID" is replaced by the call's JSON-RPC id.
type refusal struct {
	status      int
	contentType string
	body        string
}

// gateway passes requests on to upstream with the helpdesk credential in place of the agent's,
// except tools/call of the tool named refuse, which it answers with answer. It records the
// headers of every POST.
type gateway struct {
	upstream *httputil.ReverseProxy
	refuse   string
	answer   refusal

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	header http.Header
	body   []byte
}

func newGateway(t testing.TB, upstream, refuse string, answer refusal) (*gateway, string) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{refuse: refuse, answer: answer}
	g.upstream = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = helpdeskmcp.Host
		r.Out.Header.Set("Authorization", "Bearer "+helpdeskToken)
	}, ErrorLog: nil}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL + helpdeskmcp.Path
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	g.mu.Lock()
	g.seen = append(g.seen, seenRequest{r.Header.Clone(), body})
	g.mu.Unlock()
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if r.Method == http.MethodPost && json.Unmarshal(body, &msg) == nil && msg.Method == "tools/call" && msg.Params.Name == g.refuse {
		w.Header().Set("Content-Type", g.answer.contentType)
		w.WriteHeader(g.answer.status)
		io.WriteString(w, strings.ReplaceAll(g.answer.body, `"ID"`, string(msg.ID)))
		return
	}
	g.upstream.ServeHTTP(w, r)
}

// The answers a gateway could give. data and the problem carry what agentauthz says of a
// denial: reason code, detail, decision id.
const (
	rpcError  = `{"jsonrpc":"2.0","id":"ID","error":{"code":-32001,"message":"tool_not_held: this agent may not call delete_ticket","data":{"code":"tool_not_held","decision_id":"dec_1"}}}`
	toolErr   = `{"jsonrpc":"2.0","id":"ID","result":{"content":[{"type":"text","text":"Refused by agentauthz (tool_not_held): this agent may not call delete_ticket. Decision dec_1."}],"isError":true}}`
	forbidden = `{"type":"urn:agentauthz:tool_not_held","title":"Forbidden","status":403,"code":"tool_not_held","detail":"this agent may not call delete_ticket","decision_id":"dec_1"}`
	held      = `{"type":"urn:agentauthz:approval_required","title":"Precondition Required","status":428,"code":"approval_required","detail":"an IT admin must approve","approval_id":"apr_1","decision_id":"dec_2"}`
	limited   = `{"type":"urn:agentauthz:approval_limit","title":"Too Many Requests","status":429,"code":"approval_limit","detail":"too many approvals pending","decision_id":"dec_3"}`
)

// outcome is what the SDK client surfaced.
type outcome struct {
	err      error
	rpc      *jsonrpc.Error // the JSON-RPC error inside err, if any
	result   *mcp.CallToolResult
	next     error // the next call's error: nil when the session took it
	nextRuns bool  // the next call reached the upstream server
}

func callThrough(t *testing.T, version string, answer refusal) outcome {
	t.Helper()
	api, base := startHelpdesk(t)
	_, endpoint := newGateway(t, base, "delete_ticket", answer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "research", Version: "1"}, &mcp.ClientOptions{Logger: slog.New(slog.DiscardHandler)})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, DisableStandaloneSSE: true},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var o outcome
	o.result, o.err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_ticket", Arguments: map[string]any{"id": "4711"}})
	errors.As(o.err, &o.rpc)
	_, o.next = cs.CallTool(ctx, &mcp.CallToolParams{Name: "add_comment", Arguments: map[string]any{"ticket_id": "4711", "body": "next"}})
	tk, _ := api.Ticket("4711")
	o.nextRuns = len(tk.Comments) == 1
	return o
}

func TestWhatTheSDKClientMakesOfARefusal(t *testing.T) {
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		for _, c := range []struct {
			name   string
			answer refusal
			// want
			errText  string // the Go error's text; "" for none
			rpcCode  int64  // the JSON-RPC error's code, 0 for none
			rpcData  string // its data
			isError  bool   // a result with isError
			usable   bool   // the session takes the next call
			nextText string // the next call's error when the session is gone
		}{
			{name: "a: 200 JSON-RPC error", answer: refusal{200, "application/json", rpcError},
				errText: `calling "tools/call": tool_not_held: this agent may not call delete_ticket`,
				rpcCode: -32001, rpcData: `{"code":"tool_not_held","decision_id":"dec_1"}`, usable: true},
			{name: "b: 403 JSON-RPC error", answer: refusal{403, "application/json", rpcError},
				errText: `calling "tools/call": sending "tools/call": tool_not_held: this agent may not call delete_ticket: rejected by transport: Forbidden`,
				rpcCode: -32001, rpcData: `{"code":"tool_not_held","decision_id":"dec_1"}`, usable: true},
			{name: "c: 200 tool result with isError", answer: refusal{200, "application/json", toolErr},
				isError: true, usable: true},
			{name: "d: 403 problem+json", answer: refusal{403, "application/problem+json", forbidden},
				errText:  `calling "tools/call": sending "tools/call": Forbidden`,
				nextText: `connection closed: calling "tools/call": client is closing: sending "tools/call": Forbidden`},
			{name: "e: 428 problem+json", answer: refusal{428, "application/problem+json", held},
				errText:  `calling "tools/call": sending "tools/call": Precondition Required`,
				nextText: `connection closed: calling "tools/call": client is closing: sending "tools/call": Precondition Required`},
			{name: "f: 400 JSON-RPC error -32001", answer: refusal{400, "application/json", rpcError},
				errText: `calling "tools/call": sending "tools/call": tool_not_held: this agent may not call delete_ticket: rejected by transport: Bad Request`,
				rpcCode: -32001, rpcData: `{"code":"tool_not_held","decision_id":"dec_1"}`, usable: true},
			{name: "g: 429 problem+json", answer: refusal{429, "application/problem+json", limited},
				errText: `calling "tools/call": rejected by transport: sending "tools/call": Too Many Requests`,
				rpcCode: -32005, usable: true}, // -32005 is the SDK's own ErrRejected, not the gateway's
		} {
			t.Run(version+"/"+c.name, func(t *testing.T) {
				o := callThrough(t, version, c.answer)
				t.Logf("error: %v", o.err)
				if o.result != nil {
					t.Logf("result: isError %v, content %s", o.result.IsError, contentText(o.result))
				}
				t.Logf("next call: %v (reached the server: %v)", o.next, o.nextRuns)
				gotErr := ""
				if o.err != nil {
					gotErr = o.err.Error()
				}
				if gotErr != c.errText {
					t.Errorf("error %q, want %q", gotErr, c.errText)
				}
				var code int64
				var data string
				if o.rpc != nil {
					code, data = o.rpc.Code, string(o.rpc.Data)
				}
				if code != c.rpcCode || data != c.rpcData {
					t.Errorf("JSON-RPC error %d %s, want %d %s", code, data, c.rpcCode, c.rpcData)
				}
				if c.isError != (o.result != nil && o.result.IsError) {
					t.Errorf("result %+v, want isError %v", o.result, c.isError)
				}
				if c.isError && !strings.Contains(contentText(o.result), "Refused by agentauthz (tool_not_held)") {
					t.Errorf("result text %q", contentText(o.result))
				}
				if c.usable != (o.next == nil && o.nextRuns) {
					t.Errorf("next call: %v (reached the server: %v), want usable %v", o.next, o.nextRuns, c.usable)
				}
				if !c.usable && (o.next == nil || o.next.Error() != c.nextText || !errors.Is(o.next, mcp.ErrConnectionClosed)) {
					t.Errorf("next call's error %v, want %q (ErrConnectionClosed)", o.next, c.nextText)
				}
			})
		}
	}
}

func contentText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// The headers the SDK client sends with a tools/call, at each revision. At 2026-07-28
// (SEP-2243) it names the method and the tool in Mcp-Method and Mcp-Name, and each argument
// whose input schema property is annotated x-mcp-header in Mcp-Param-<name>, once tools/list
// has told it the schema; before 2026-07-28 it sends none of them. A call made before
// tools/list lacks Mcp-Param-*, and the SDK's own server refuses it (400, header mismatch). At
// 2026-07-28 the body's params carry _meta with the protocol version, the client's info and
// its capabilities.
func TestWhatTheSDKClientSendsWithACall(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "annotated", Version: "1"}, nil)
	type args struct {
		ID string `json:"id"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "get_ticket", InputSchema: json.RawMessage(
		`{"type":"object","properties":{"id":{"type":"string","x-mcp-header":"Ticket"}},"required":["id"],"additionalProperties":false}`)},
		func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
		})
	upstream := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true, DisableLocalhostProtection: true}))
	t.Cleanup(upstream.Close)

	for _, c := range []struct {
		version string
		listed  bool   // tools/list before the call
		want    string // the call's MCP headers
		meta    bool   // params._meta present
		refused string // the call's error
	}{
		{"2025-06-18", true, "Mcp-Protocol-Version: 2025-06-18", false, ""},
		{"2025-11-25", false, "Mcp-Protocol-Version: 2025-11-25", false, ""},
		{"2026-07-28", false, "Mcp-Method: tools/call, Mcp-Name: get_ticket, Mcp-Protocol-Version: 2026-07-28", true,
			`calling "tools/call": sending "tools/call": header mismatch: missing Mcp-Param-Ticket header for parameter "id": rejected by transport: Bad Request`},
		{"2026-07-28", true, "Mcp-Method: tools/call, Mcp-Name: get_ticket, Mcp-Param-Ticket: 4711, Mcp-Protocol-Version: 2026-07-28", true, ""},
	} {
		g, endpoint := newGateway(t, upstream.URL, "", refusal{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		client := mcp.NewClient(&mcp.Implementation{Name: "research", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, DisableStandaloneSSE: true},
			&mcp.ClientSessionOptions{ProtocolVersion: c.version})
		if err != nil {
			t.Fatal(err)
		}
		if c.listed {
			if _, err := cs.ListTools(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_ticket", Arguments: map[string]any{"id": "4711"}})
		if c.refused == "" && (err != nil || res.IsError) || c.refused != "" && (err == nil || err.Error() != c.refused) {
			t.Errorf("%s (listed %v): %+v %v, want refused %q", c.version, c.listed, res, err, c.refused)
		}
		cs.Close()
		cancel()
		g.mu.Lock()
		last := g.seen[len(g.seen)-1]
		g.mu.Unlock()
		var got []string
		for k, vs := range last.header {
			if strings.HasPrefix(k, "Mcp-") {
				got = append(got, k+": "+strings.Join(vs, ","))
			}
		}
		slices.Sort(got)
		if strings.Join(got, ", ") != c.want {
			t.Errorf("%s (listed %v): headers %s, want %s", c.version, c.listed, strings.Join(got, ", "), c.want)
		}
		var body struct {
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal(last.body, &body); err != nil {
			t.Fatal(err)
		}
		if hasMeta := body.Params.Meta["io.modelcontextprotocol/protocolVersion"] == c.version; hasMeta != c.meta {
			t.Errorf("%s: body %s, want _meta %v", c.version, last.body, c.meta)
		}
		t.Logf("%s (listed %v): %s\n  body %s", c.version, c.listed, strings.Join(got, ", "), last.body)
	}
}
