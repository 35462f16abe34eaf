// Package demoagent is the scripted agent of the demo. It plays two stories against Envoy's front
// door and prints each step as it goes:
//
//   - helpdesk: as the IT helpdesk agent, list open tickets, read one, comment on it, and ask for
//     a password reset for its requester (jdoe). agentauthz holds the reset for an IT admin's
//     approval (428 with approval_id); the agent prints what a human must do, retries the
//     identical request with the x-agentauthz-approval header every few seconds until it is
//     approved, succeeds once, and shows that replaying it is refused.
//   - bi: as the BI agent, run allowed GraphQL queries, then get refused a field holding
//     personal data (customers' e-mail) and a mutation, printing each refusal's problem details.
//   - helpdesk-mcp: the helpdesk agent again, at the helpdesk's MCP server (mcp.acme.internal,
//     Streamable HTTP) with the MCP Go SDK's client: list the tools, list open tickets, comment,
//     get refused a listing over the tool's limit and a tool it does not hold, and ask for the
//     password reset, held like the REST one until approved, then repeated with the approval.
//   - bi-mcp: the BI agent at the same MCP server: it sees no tool and may call none.
//
// An MCP refusal reaches the agent as a JSON-RPC error (CallTool's Go error), as a tool result
// whose isError is true, or as an HTTP status the SDK reports without its body; the MCP stories
// print each as the agent's model gets it.
//
// The agent also sends its own credential (Authorization: Bearer AgentToken) on every request, as
// an agent framework might: agentauthz must strip it, and the backends must never see it.
//
// cmd/demo-agent runs it against Envoy (compose/); the end-to-end tests (internal/e2e) run it in
// process with Run, through real Envoy.
package demoagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The hosts of the demo's two APIs and the approval header.
const (
	HelpdeskHost   = "helpdesk.acme.internal"
	BIHost         = "bi.acme.internal"
	ApprovalHeader = "x-agentauthz-approval"
)

// Stories are the REST stories, played when Config.Stories is empty; MCPStories are played
// when named. Config.Stories accepts the names of both.
var (
	Stories    = []string{"helpdesk", "bi"}
	MCPStories = []string{"helpdesk-mcp", "bi-mcp"}
)

// Config configures Run. Envoy is required.
type Config struct {
	// Envoy is the front door's base URL, e.g. https://envoy:8443 (compose) or
	// https://127.0.0.1:port (internal/stack). The agent's identity is that of its connection
	// to it.
	Envoy string
	// BIEnvoy is the front door of the BI story when the BI agent calls through another one;
	// "" means Envoy.
	BIEnvoy string
	// Stories to play, of Stories and MCPStories; empty plays Stories.
	Stories []string
	// Client makes the requests (in compose it presents the agent's X.509-SVID); nil means a
	// plain HTTP client.
	Client *http.Client
	// Out receives the narration; nil discards it.
	Out io.Writer
	// AgentToken is the agent's own credential, which it sends and agentauthz strips.
	AgentToken string
	// PollInterval is how often the held request is retried; 3s when zero.
	PollInterval time.Duration
	// ApprovalTimeout is how long the agent waits for a decision; 15m when zero.
	ApprovalTimeout time.Duration
	// ApprovalsURL is agentauthz's HTTP listener as a human reaches it, for the instructions.
	ApprovalsURL string
	// StartupWait retries each story's first request, every PollInterval, while the front door
	// is not reachable or answers 503, for services still starting; zero tries once.
	StartupWait time.Duration

	// MCP is the MCP endpoint as the agent reaches it; "" means Envoy's (BIEnvoy's for the BI
	// agent) with MCPPath. Every MCP request names MCPHost as its host.
	MCP string
	// MCPProtocolVersion is the MCP revision the agent asks for; "" means the SDK's newest.
	MCPProtocolVersion string
	// Direct says that the MCP stories talk to the MCP server with no agentauthz in front
	// (Client and AgentToken then carry the server's own credential): the story expects the
	// server's own answers, which let through what agentauthz would hold or refuse, and
	// still refuse what the server's input schemas and tool list refuse.
	Direct bool
}

// DefaultAgentToken is the agent's own credential when Config.AgentToken is empty.
const DefaultAgentToken = "agent-own-token-must-never-reach-an-api"

// Step is one request the agent made and what it got.
type Step struct {
	Story  string
	Name   string
	Method string
	Host   string
	Path   string
	Status int
	// Code, Detail and DecisionID are the problem details of a denial.
	Code       string
	Detail     string
	DecisionID string
	// ApprovalID is the approval that held or let through the request.
	ApprovalID string
	// Tool is an MCP step's tool ("" for a session opened or the tools listed), and Outcome
	// what the SDK's client handed the agent (OutcomeResult, ...).
	Tool    string
	Outcome string
}

// Report is what Run did.
type Report struct {
	Steps []Step
}

// Story returns the steps of one story.
func (r *Report) Story(name string) []Step {
	var out []Step
	for _, s := range r.Steps {
		if s.Story == name {
			out = append(out, s)
		}
	}
	return out
}

// Run plays the stories. It returns every step it made, and an error when a step did not get
// the answer the story expects.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Envoy == "" {
		return nil, errors.New("demoagent: Config.Envoy is required")
	}
	if cfg.BIEnvoy == "" {
		cfg.BIEnvoy = cfg.Envoy
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.AgentToken == "" {
		cfg.AgentToken = DefaultAgentToken
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 3 * time.Second
	}
	if cfg.ApprovalTimeout == 0 {
		cfg.ApprovalTimeout = 15 * time.Minute
	}
	if cfg.ApprovalsURL == "" {
		cfg.ApprovalsURL = "http://localhost:9002"
	}
	stories := cfg.Stories
	if len(stories) == 0 {
		stories = Stories
	}
	a := &agent{cfg: cfg, report: &Report{}}
	var errs []error
	for _, s := range stories {
		var err error
		switch s {
		case "helpdesk":
			err = a.helpdeskStory(ctx)
		case "bi":
			err = a.biStory(ctx)
		case "helpdesk-mcp":
			err = a.helpdeskMCPStory(ctx)
		case "bi-mcp":
			err = a.biMCPStory(ctx)
		default:
			err = fmt.Errorf("no story %q; the stories are %s", s, strings.Join(slices.Concat(Stories, MCPStories), ", "))
		}
		if err != nil {
			a.printf("   ✗ the %s story stopped: %v\n\n", s, err)
			errs = append(errs, fmt.Errorf("%s story: %w", s, err))
		}
	}
	return a.report, errors.Join(errs...)
}

// agent plays the stories.
type agent struct {
	cfg    Config
	report *Report
	story  string
	base   string
	n      int // step number within the story
}

func (a *agent) printf(format string, args ...any) { fmt.Fprintf(a.cfg.Out, format, args...) }

func (a *agent) begin(story, who, base string) {
	a.story, a.base, a.n = story, base, 0
	a.printf("== %s story: %s, through %s\n", story, who, base)
}

// call is one request of a story.
type call struct {
	name         string
	method, host string
	path         string
	body         string
	approval     string // sent in the approval header when set
	startup      bool   // retried while the front door is starting
	quiet        bool   // neither narrated nor recorded (the approval poll)
}

// answer is what came back: the status, the body, and the problem details of a denial.
type answer struct {
	status  int
	body    []byte
	problem problem
}

// problem is agentauthz's RFC 9457 problem details.
type problem struct {
	Code        string      `json:"code"`
	Detail      string      `json:"detail"`
	DecisionID  string      `json:"decision_id"`
	Rule        string      `json:"rule"`
	ApprovalID  string      `json:"approval_id"`
	ApprovalAt  string      `json:"approval_expires_at"`
	ApprovalSt  string      `json:"approval_state"`
	Violations  []violation `json:"violations"`
	contentType string
}

type violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// do sends c and records it as a step.
func (a *agent) do(ctx context.Context, c call) (answer, error) {
	if !c.quiet {
		a.n++
		a.printf("%2d. %s\n    %s %s%s", a.n, c.name, c.method, c.host, c.path)
		if c.approval != "" {
			a.printf(" with %s: %s", ApprovalHeader, c.approval)
		}
		a.printf("\n")
	}
	var ans answer
	var err error
	deadline := time.Now().Add(a.cfg.StartupWait)
	for {
		ans, err = a.send(ctx, c)
		retry := c.startup && time.Now().Before(deadline) && (err != nil || (ans.status == http.StatusServiceUnavailable && ans.problem.Code == ""))
		if !retry {
			break
		}
		a.printf("    … the front door is not ready (%s); retrying\n", describe(ans, err))
		select {
		case <-ctx.Done():
			return ans, ctx.Err()
		case <-time.After(a.cfg.PollInterval):
		}
	}
	if err != nil {
		return ans, err
	}
	if !c.quiet {
		a.record(c, ans)
	}
	return ans, nil
}

// record adds a step to the report.
func (a *agent) record(c call, ans answer) {
	a.report.Steps = append(a.report.Steps, Step{
		Story: a.story, Name: c.name, Method: c.method, Host: c.host, Path: c.path, Status: ans.status,
		Code: ans.problem.Code, Detail: ans.problem.Detail, DecisionID: ans.problem.DecisionID,
		ApprovalID: firstNonEmpty(ans.problem.ApprovalID, c.approval),
	})
}

func describe(ans answer, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("status %d", ans.status)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (a *agent) send(ctx context.Context, c call) (answer, error) {
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, a.base+c.path, body)
	if err != nil {
		return answer{}, err
	}
	req.Host = c.host
	req.Header.Set("Authorization", "Bearer "+a.cfg.AgentToken)
	req.Header.Set("User-Agent", "acme-demo-agent/1.0")
	req.Header.Set("Accept", "application/json")
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.approval != "" {
		req.Header.Set(ApprovalHeader, c.approval)
	}
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, err
	}
	ans := answer{status: resp.StatusCode, body: data}
	if ct := resp.Header.Get("content-type"); strings.HasPrefix(ct, "application/problem+json") {
		_ = json.Unmarshal(data, &ans.problem) // a malformed problem is shown by its status alone
		ans.problem.contentType = ct
	}
	return ans, nil
}

// expect checks the status of a step's answer and narrates a denial.
func (a *agent) expect(ans answer, want int, wantCode string) error {
	if ans.status >= 400 {
		a.refusal(ans)
	}
	if ans.status != want || (wantCode != "" && ans.problem.Code != wantCode) {
		got := fmt.Sprint(ans.status)
		if ans.problem.Code != "" {
			got += " " + ans.problem.Code
		} else if ans.status >= 400 && len(ans.body) > 0 {
			got += ": " + strings.TrimSpace(string(clip(ans.body, 200)))
		}
		wanted := fmt.Sprint(want)
		if wantCode != "" {
			wanted += " " + wantCode
		}
		return fmt.Errorf("step %d got %s, want %s", a.n, got, wanted)
	}
	return nil
}

// refusal prints a denial's problem details.
func (a *agent) refusal(ans answer) {
	p := ans.problem
	if p.Code == "" {
		a.printf("    ← %d %s\n", ans.status, http.StatusText(ans.status))
		return
	}
	a.printf("    ← %d %s: %s\n", ans.status, p.Code, p.Detail)
	for _, v := range p.Violations {
		a.printf("        - %s: %s\n", v.Field, v.Message)
	}
	if p.DecisionID != "" {
		a.printf("      (decision %s)\n", p.DecisionID)
	}
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "…"...)
	}
	return b
}

// decodeJSON reads an answer's JSON body into v.
func decodeJSON(ans answer, v any) error {
	if err := json.NewDecoder(bytes.NewReader(ans.body)).Decode(v); err != nil {
		return fmt.Errorf("the answer is not the JSON expected: %v", err)
	}
	return nil
}
