package demoagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The outcomes of an MCP step: what the SDK's client handed the agent.
const (
	// ProblemMetaKey is where agentauthz puts its problem details in a tool result it answers
	// with.
	ProblemMetaKey = "agentauthz/problem"
	// OutcomeResult is an answer: a tool result, the tools listed, a session opened.
	OutcomeResult = "result"
	// OutcomeToolError is a tool result with isError: the model reads its text.
	OutcomeToolError = "tool_error"
	// OutcomeRPCError is a JSON-RPC error, which CallTool returns as its Go error.
	OutcomeRPCError = "rpc_error"
	// OutcomeHTTPError is an HTTP refusal without a JSON-RPC error in it: the SDK reports
	// only the status text, and for most statuses ends the session.
	OutcomeHTTPError = "http_error"
)

// rejectedByTransport is the code of the SDK's own error for an HTTP answer it passes on
// without a JSON-RPC error of the server's (jsonrpc2.ErrRejected): 429 and 5xx statuses.
const rejectedByTransport = -32005

// mcpSession is the agent's MCP client session and what it needs to open another.
type mcpSession struct {
	client   *mcp.Client
	endpoint string
	http     *http.Client
	version  string
	cs       *mcp.ClientSession
}

// exchange records the HTTP answers to one step's requests, which the SDK does not show: the
// first refusal's status and problem details.
type exchange struct {
	status  int // the last answer's status
	refused int // the first answer's status of 400 or more, 0 for none
	problem problem
}

type (
	exchangeKey struct{}
	approvalKey struct{}
)

// mcpTransport sends the SDK's requests as the agent sends its REST requests: to the MCP host
// through the front door, with the agent's own credential (which agentauthz strips), and, on
// the retry of a held call, the approval header. It records each answer in the step's exchange.
type mcpTransport struct {
	base  http.RoundTripper
	host  string
	token string
}

func (t *mcpTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = t.host
	r.Header.Set("Authorization", "Bearer "+t.token)
	r.Header.Set("User-Agent", "acme-demo-agent/1.0")
	if id, _ := r.Context().Value(approvalKey{}).(string); id != "" {
		r.Header.Set(ApprovalHeader, id)
	}
	resp, err := t.base.RoundTrip(r)
	ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if err != nil || ex == nil {
		return resp, err
	}
	ex.status = resp.StatusCode
	if resp.StatusCode >= 400 && ex.refused == 0 {
		ex.refused = resp.StatusCode
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(data))
		if ct := resp.Header.Get("content-type"); strings.HasPrefix(ct, "application/problem+json") {
			_ = json.Unmarshal(data, &ex.problem) // a malformed problem is shown by its status alone
			ex.problem.contentType = ct
		}
	}
	return resp, nil
}

// mcpHTTPClient is c with the agent's transport around c's.
func mcpHTTPClient(c *http.Client, token string) *http.Client {
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: &mcpTransport{base: base, host: MCPHost, token: token},
		CheckRedirect: c.CheckRedirect, Jar: c.Jar, Timeout: c.Timeout}
}

// connect opens the session: server/discover at 2026-07-28, or the initialize handshake.
func (s *mcpSession) connect(ctx context.Context) error {
	cs, err := s.client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: s.endpoint, HTTPClient: s.http,
		// The agent asks and the server answers; it needs no stream of the server's own.
		DisableStandaloneSSE: true,
	}, &mcp.ClientSessionOptions{ProtocolVersion: s.version})
	if err != nil {
		return err
	}
	s.cs = cs
	return nil
}

func (s *mcpSession) close() {
	if s.cs != nil {
		s.cs.Close()
		s.cs = nil
	}
}

// mcpAnswer is what one MCP call got, as the agent's model would see it.
type mcpAnswer struct {
	outcome string
	result  *mcp.CallToolResult // OutcomeResult and OutcomeToolError
	err     error               // OutcomeRPCError and OutcomeHTTPError: CallTool's error
	rpc     *jsonrpc.Error      // OutcomeRPCError
	ex      exchange
	// problem is agentauthz's account of a refusal, from whichever place carried it: the
	// JSON-RPC error's data, the tool result's structured content, or the HTTP answer.
	problem problem
}

// approvalID is the approval that holds the call, wherever the answer names it.
func (a mcpAnswer) approvalID() string {
	if a.problem.ApprovalID != "" {
		return a.problem.ApprovalID
	}
	// A tool error may say it only in its text, which the model reads.
	for _, w := range strings.FieldsFunc(a.text(), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) {
		if isApprovalID(w) {
			return w
		}
	}
	return ""
}

// isApprovalID tells whether w has the form of an approval id: "apr_" and 26 characters of
// lower-case base32. (The approval package has the same check; the agent does not link
// agentauthz's policy engine for it.)
func isApprovalID(w string) bool {
	rest, ok := strings.CutPrefix(w, "apr_")
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// text is the result's text content.
func (a mcpAnswer) text() string {
	if a.result == nil {
		return ""
	}
	var parts []string
	for _, c := range a.result.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// classify reads CallTool's answer.
func classify(res *mcp.CallToolResult, err error, ex *exchange) (mcpAnswer, error) {
	a := mcpAnswer{result: res, err: err, ex: *ex}
	var rpc *jsonrpc.Error
	switch {
	case err == nil && res.IsError:
		a.outcome = OutcomeToolError
		// agentauthz puts its problem details in the result's _meta, where they cannot clash
		// with the tool's output schema; a gateway may also put them in structured content.
		for _, v := range []any{res.Meta[ProblemMetaKey], res.StructuredContent} {
			if v == nil || a.problem.Code != "" {
				continue
			}
			if b, err := json.Marshal(v); err == nil {
				_ = json.Unmarshal(b, &a.problem) // content that is no problem leaves it empty
			}
		}
	case err == nil:
		a.outcome = OutcomeResult
	case errors.As(err, &rpc) && rpc.Code != rejectedByTransport:
		a.outcome, a.rpc = OutcomeRPCError, rpc
		if len(rpc.Data) > 0 {
			_ = json.Unmarshal(rpc.Data, &a.problem) // data that is no problem leaves it empty
		}
	case ex.refused != 0:
		a.outcome = OutcomeHTTPError
	default:
		return a, err // no answer at all: the network, or the session already gone
	}
	if a.problem.Code == "" && ex.problem.Code != "" {
		a.problem = ex.problem
	}
	return a, nil
}

// callTool calls a tool once, with the approval header when approvalID is set.
func (s *mcpSession) callTool(ctx context.Context, name string, args map[string]any, approvalID string) (mcpAnswer, error) {
	ex := &exchange{}
	ctx = context.WithValue(ctx, exchangeKey{}, ex)
	if approvalID != "" {
		ctx = context.WithValue(ctx, approvalKey{}, approvalID)
	}
	res, err := s.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	return classify(res, err, ex)
}

// listTools lists the tools the server shows this agent.
func (s *mcpSession) listTools(ctx context.Context) ([]*mcp.Tool, mcpAnswer, error) {
	ex := &exchange{}
	res, err := s.cs.ListTools(context.WithValue(ctx, exchangeKey{}, ex), nil)
	a, cerr := classify(&mcp.CallToolResult{}, err, ex)
	if cerr != nil || res == nil {
		return nil, a, cerr
	}
	return res.Tools, a, nil
}

// argsJSON shows a call's arguments as they go on the wire.
func argsJSON(args map[string]any) string {
	b, err := json.Marshal(args)
	if err != nil {
		return fmt.Sprint(args)
	}
	return string(clip(b, 120))
}

// startupRetry tells whether a failed connect is the front door still starting: no answer,
// or 503 without problem details.
func startupRetry(err error, ex *exchange, deadline time.Time) bool {
	if err == nil || !time.Now().Before(deadline) {
		return false
	}
	return ex.refused == 0 || (ex.refused == http.StatusServiceUnavailable && ex.problem.Code == "")
}
