// Package policytest runs the test files that sit beside a policy: each case is a request as an
// agent sends it through Envoy, and the outcome, status and reason code the policy must give.
// Security teams run them with `agentauthz test DIR` before a policy ships.
//
// A test file is a YAML list of cases, named *_test.yaml, in the policy's directory:
//
//   - name: helpdesk lists open tickets
//     principal: spiffe://acme.internal/agent/helpdesk
//     method: GET                       # default GET
//     host: helpdesk.acme.internal
//     path: /v1/tickets?status=open
//     headers: {content-type: application/json}
//     body: '{"body": "..."}'
//     mcp: {tool: add_comment, arguments: {...}}  # on an MCP route, instead of method and body
//     want: allow                       # allow or deny
//     status: 200                       # optional
//     code: allowed                     # optional: the stable reason code
//     rule: list-tickets                # optional: the route that decided
//     violations: [query.limit]         # optional: fields the denial must name
//     shadow_code: scope_missing        # optional: what a shadow rule would decide
//
// A case may give the claims of an OAuth access token the agent sends (as Authorization: Bearer)
// instead of, or beside, its principal; exp, nbf and iat may be durations from now, and exp
// defaults to five minutes from now (see Claims for how the token is made and checked):
//
//   - name: the helpdesk client's token lists tickets
//     claims:
//     iss: https://idp.acme.internal/oauth2/default
//     aud: https://helpdesk.acme.internal
//     client_id: 0oa8helpdesk
//     scope: tickets.read
//     host: helpdesk.acme.internal
//     path: /v1/tickets
//     want: allow
//
// Instead of principal, method, host, path, headers and body, a case may name a CheckRequest as
// Envoy sends it (protojson, as captured from Envoy or grpcurl), by a path relative to the test
// file; a case gives one or the other, never both:
//
//   - name: helpdesk lists open tickets, as captured
//     check_request: checks/list-tickets.json
//     want: allow
package policytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// Case is one test case.
type Case struct {
	Name      string            `yaml:"name"`
	Principal string            `yaml:"principal"`
	Method    string            `yaml:"method"`
	Host      string            `yaml:"host"`
	Path      string            `yaml:"path"`
	Headers   map[string]string `yaml:"headers"`
	Body      string            `yaml:"body"`
	// MCP, on an MCP route, is the MCP message the case sends, in place of method and body.
	MCP *MCP `yaml:"mcp"`
	// Claims are the claims of an access token the request carries as Authorization: Bearer.
	Claims map[string]any `yaml:"claims"`
	// CheckRequest names a protojson CheckRequest file, relative to the test file, that is the
	// whole request instead of the fields above. ReadCases reads it.
	CheckRequest string `yaml:"check_request"`

	Want       string   `yaml:"want"`
	Status     int      `yaml:"status"`
	Code       string   `yaml:"code"`
	Rule       string   `yaml:"rule"`
	Violations []string `yaml:"violations"`
	ShadowRule string   `yaml:"shadow_rule"`
	ShadowCode string   `yaml:"shadow_code"`
	// Response is the upstream's answer to the allowed request, and what the agent must read
	// of it under the route's response rule.
	Response *Response `yaml:"response"`

	file string
	line int
	// req is the CheckRequest read from CheckRequest.
	req *authv3.CheckRequest
}

// Result is the outcome of one case.
type Result struct {
	File, Name string
	Line       int
	// Problems is empty when the case passed.
	Problems []string
	Decision decision.Decision
}

// Passed reports whether the case passed.
func (r Result) Passed() bool { return len(r.Problems) == 0 }

// Files lists the test files of a policy directory (or of the directory of a policy file).
func Files(policyPath string) ([]string, error) {
	dir := policyPath
	if st, err := os.Stat(policyPath); err != nil {
		return nil, err
	} else if !st.IsDir() {
		dir = filepath.Dir(policyPath)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*_test.yaml"))
	if err != nil {
		return nil, err
	}
	more, _ := filepath.Glob(filepath.Join(dir, "*_test.yml"))
	matches = append(matches, more...)
	sort.Strings(matches)
	return matches, nil
}

// ReadCases reads a test file strictly: an unknown key is an error naming the file and line.
func ReadCases(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: no test cases", path)
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: a test file is a list of cases", path, list.Line)
	}
	var cases []Case
	var problems []string
	for _, n := range list.Content {
		var c Case
		dec := yaml.NewDecoder(bytes.NewReader(mustMarshal(n)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", path, n.Line, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", "; ")))
			continue
		}
		c.file, c.line = path, n.Line
		if c.Response != nil {
			if err := c.Response.read(filepath.Dir(path)); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: %s: %v", path, n.Line, c.Name, err))
				continue
			}
		}
		switch {
		case c.Name == "":
			problems = append(problems, fmt.Sprintf("%s:%d: a case needs a name", path, n.Line))
		case c.Want != "allow" && c.Want != "deny":
			problems = append(problems, fmt.Sprintf("%s:%d: %s: want must be allow or deny", path, n.Line, c.Name))
		case c.CheckRequest != "":
			if given := c.requestFields(); len(given) > 0 {
				problems = append(problems, fmt.Sprintf("%s:%d: %s: check_request is the whole request; drop %s", path, n.Line, c.Name, strings.Join(given, ", ")))
				continue
			}
			file := c.CheckRequest
			if !filepath.IsAbs(file) {
				file = filepath.Join(filepath.Dir(path), file)
			}
			req, err := ReadCheckRequest(file)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: %s: check_request: %v", path, n.Line, c.Name, err))
				continue
			}
			c.req = req
			cases = append(cases, c)
		case c.Host == "" || c.Path == "":
			problems = append(problems, fmt.Sprintf("%s:%d: %s: a case needs host and path, or check_request", path, n.Line, c.Name))
		case c.Claims != nil && hasHeader(c.Headers, "authorization"):
			problems = append(problems, fmt.Sprintf("%s:%d: %s: claims are sent as the authorization header; drop headers.authorization", path, n.Line, c.Name))
		case c.MCP != nil && (c.Method != "" || c.Body != ""):
			problems = append(problems, fmt.Sprintf("%s:%d: %s: mcp is the message: drop method and body", path, n.Line, c.Name))
		case c.MCP != nil:
			r := extauthz.HTTPRequest{Headers: c.Headers}
			if err := c.MCP.Apply(&r); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: %s: %v", path, n.Line, c.Name, err))
				continue
			}
			c.Method, c.Headers, c.Body = r.Method, r.Headers, r.Body
			cases = append(cases, c)
		default:
			cases = append(cases, c)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return cases, nil
}

// requestFields lists the request fields a case sets, by their keys.
func (c *Case) requestFields() []string {
	var given []string
	for _, f := range []struct {
		key string
		set bool
	}{
		{"principal", c.Principal != ""}, {"method", c.Method != ""}, {"host", c.Host != ""},
		{"path", c.Path != ""}, {"headers", c.Headers != nil}, {"body", c.Body != ""}, {"mcp", c.MCP != nil}, {"claims", c.Claims != nil},
	} {
		if f.set {
			given = append(given, f.key)
		}
	}
	return given
}

// ReadCheckRequest reads a CheckRequest as Envoy sends it, in protojson (the form grpcurl and
// Envoy's debug log show), strictly: an unknown field is an error.
func ReadCheckRequest(path string) (*authv3.CheckRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cr := &authv3.CheckRequest{}
	if err := protojson.Unmarshal(data, cr); err != nil {
		return nil, fmt.Errorf("%s: not a CheckRequest: %s", path, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return cr, nil
}

func mustMarshal(n *yaml.Node) []byte {
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil // a node yaml.Unmarshal produced always marshals
	}
	return b
}

// hasHeader reports whether h names header, in any case.
func hasHeader(h map[string]string, header string) bool {
	for k := range h {
		if strings.EqualFold(k, header) {
			return true
		}
	}
	return false
}

// Engine returns the engine that `agentauthz test` and `agentauthz check` decide with: the
// policy in snap, JWT-SVIDs validated against bundles (nil refuses every token), OAuth access
// tokens against keys (nil: the policy's; a Claims answers for the tokens it signs too), and
// approvals held in memory, so that a held request is answered as the server answers it (428
// with an approval id) while nothing is stored.
func Engine(snap *policy.Snapshot, bundles jwtbundle.Source, keys accesstoken.Keys) *engine.Engine {
	return engine.New(engine.Config{
		Store:      policy.NewStore(snap),
		Approvals:  &approval.Gate{Store: memstore.New()},
		JWTBundles: bundles,
		OAuthKeys:  keys,
		// Offline, nothing waits on a network: the deadline only guards against a policy that
		// takes pathologically long, and must not turn a slow CI machine's answer into a deny.
		Timeout: time.Minute,
	})
}

// Run decides every case with the engine, through the same reading of Envoy's CheckRequest
// that the server uses: a case gets the answer Envoy would get. The claims of cases are signed
// by claims, which the engine must have as its keys (nil: cases with claims fail).
func Run(ctx context.Context, e *engine.Engine, claims *Claims, cases []Case) []Result {
	out := make([]Result, 0, len(cases))
	for _, c := range cases {
		cr := c.req
		if cr == nil {
			headers := c.Headers
			if c.Claims != nil {
				tok, err := claimsToken(claims, c.Claims)
				if err != nil {
					out = append(out, Result{File: c.file, Name: c.Name, Line: c.line, Problems: []string{err.Error()}})
					continue
				}
				headers = make(map[string]string, len(c.Headers)+1)
				for k, v := range c.Headers {
					headers[k] = v
				}
				headers["authorization"] = "Bearer " + tok
			}
			cr = extauthz.HTTPRequest{Principal: c.Principal, Method: c.Method, Host: c.Host, Path: c.Path, Headers: headers, Body: c.Body}.CheckRequest()
		}
		r := extauthz.ReadRequest(cr)
		res := e.Decide(ctx, &r)
		why := c.judge(&res.Decision)
		if c.Response != nil {
			why = append(why, c.judgeResponse(ctx, e, &res)...)
		}
		out = append(out, Result{File: c.file, Name: c.Name, Line: c.line, Problems: why, Decision: res.Decision})
	}
	return out
}

func claimsToken(claims *Claims, c map[string]any) (string, error) {
	if claims == nil {
		return "", fmt.Errorf("this run signs no claims")
	}
	return claims.Token(c)
}

func (c *Case) judge(d *decision.Decision) []string {
	var why []string
	// The status Envoy answers with: an MCP client's refusals are JSON-RPC answers, most of
	// them with status 200.
	status := d.Status()
	if st, _, ok := d.MCPAnswer(""); ok {
		status = st
	}
	got := fmt.Sprintf("%s %d %s", d.Outcome, status, d.Code)
	if d.Rule != "" {
		got += " (rule " + d.Rule + ")"
	}
	if (c.Want == "allow") != d.Allowed() {
		why = append(why, "want "+c.Want+", got "+got)
	}
	if c.Status != 0 && c.Status != status {
		why = append(why, fmt.Sprintf("want status %d, got %s", c.Status, got))
	}
	if c.Code != "" && c.Code != string(d.Code) {
		why = append(why, fmt.Sprintf("want code %s, got %s", c.Code, got))
	}
	if c.Rule != "" && c.Rule != d.Rule {
		why = append(why, fmt.Sprintf("want rule %s, got %s", c.Rule, got))
	}
	for _, f := range c.Violations {
		found := false
		for _, v := range d.Violations {
			found = found || v.Field == f
		}
		if !found {
			why = append(why, fmt.Sprintf("want a violation of %s, got %s", f, violationFields(d.Violations)))
		}
	}
	if c.ShadowRule != "" && c.ShadowRule != d.ShadowRule {
		why = append(why, fmt.Sprintf("want shadow rule %s, got %q", c.ShadowRule, d.ShadowRule))
	}
	if c.ShadowCode != "" && c.ShadowCode != string(d.ShadowCode) {
		why = append(why, fmt.Sprintf("want shadow code %s, got %q", c.ShadowCode, d.ShadowCode))
	}
	return why
}

func violationFields(vs []decision.Violation) string {
	if len(vs) == 0 {
		return "none"
	}
	fields := make([]string, len(vs))
	for i, v := range vs {
		fields[i] = v.Field
	}
	return strings.Join(fields, ", ")
}
