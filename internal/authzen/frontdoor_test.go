package authzen_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// checksDir holds the project's CheckRequests, as Envoy sends them (extauthz's end-to-end tests).
const checksDir = "../../extauthz/testdata/checks"

// conversion is the AuthZEN evaluation a PEP sends for the HTTP request a CheckRequest
// describes.
type conversion struct {
	ev map[string]any
	// refused says the AuthZEN reader refuses the request as ambiguous (request_malformed),
	// where Envoy's door lets the policy refuse it.
	refused string
	// skip says why no evaluation can say what the CheckRequest says.
	skip string
}

// toEvaluation converts a CheckRequest to an evaluation as docs/authzen.md maps an HTTP
// request: the principal is the subject, the method the action, https://HOST + the raw path
// the resource; the headers but the pseudo-headers, host (ReadRequest proved they agree) and
// Envoy's partial-body marker (body_truncated) go in context.headers, the body in context.body,
// or body_base64 when it is not UTF-8.
func toEvaluation(cr *authv3.CheckRequest) conversion {
	facts := extauthz.ReadRequest(cr)
	if facts.Unreadable != nil {
		return conversion{skip: "Envoy could not have sent it: " + facts.Unreadable.Detail}
	}
	var c conversion
	headers := map[string]any{}
	truncated := false
	add := func(k, v string) string {
		switch {
		case strings.HasPrefix(k, ":") || k == "host":
			return ""
		case k == extauthz.PartialBodyHeader:
			truncated = v == "true"
			return ""
		case !utf8.ValidString(v):
			return "header " + k + " is not UTF-8 text, which JSON cannot carry"
		case k == "" || k != strings.ToLower(k) || strings.ContainsAny(k, " \t\"(),/:;<=>?@[\\]{}"):
			c.refused = "a header name that is not a lower-case token"
		case strings.ContainsAny(v, "\r\n\x00"):
			c.refused = "a header value with CR, LF or NUL"
		}
		headers[k] = v
		return ""
	}
	httpReq := cr.GetAttributes().GetRequest().GetHttp()
	if hm := httpReq.GetHeaderMap(); hm != nil {
		for _, hv := range hm.GetHeaders() {
			if _, dup := headers[hv.GetKey()]; dup {
				return conversion{skip: "header_map repeats " + hv.GetKey() + "; AuthZEN's headers hold one value per name"}
			}
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			if why := add(hv.GetKey(), v); why != "" {
				return conversion{skip: why}
			}
		}
	} else {
		for k, v := range httpReq.GetHeaders() {
			if why := add(k, v); why != "" {
				return conversion{skip: why}
			}
		}
	}
	switch {
	case !strings.HasPrefix(facts.Target, "/"):
		return conversion{skip: "the path is not origin-form (" + facts.Target + "): no https URL says it"}
	case strings.ContainsAny(facts.Host, "/?#@"):
		return conversion{skip: "the host holds a character a URL's host cannot"}
	case strings.Contains(facts.Target, "#"):
		c.refused = "a fragment in the path"
	}
	ctx := map[string]any{"headers": headers}
	if truncated {
		ctx["body_truncated"] = true
	}
	if len(facts.Body) > 0 {
		if utf8.Valid(facts.Body) {
			ctx["body"] = string(facts.Body)
		} else {
			ctx["body_base64"] = base64.StdEncoding.EncodeToString(facts.Body)
		}
	}
	c.ev = httpEval(cr.GetAttributes().GetSource().GetPrincipal(), facts.Method, "https://"+facts.Host+facts.Target, ctx)
	return c
}

// TestSameAnswerAsEnvoy: every CheckRequest of the project's end-to-end tests that an AuthZEN
// evaluation can say gets the same decision through AuthZEN as through Envoy's door of the same
// server: allow or deny, reason code, status and rule, and for a held request the same approval.
// Where the AuthZEN reader refuses what Envoy's door lets the policy refuse (a fragment, a
// header name or value no HTTP request may hold), both deny. The rest are listed with why.
func TestSameAnswerAsEnvoy(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(checksDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := startPDP(t)
	client := servertest.Client(t, p.srv)
	var (
		mu                  sync.Mutex
		compared, refused   int
		skipped             []string
		allowed, approvalsN int
	)
	t.Run("checks", func(t *testing.T) {
		for _, path := range paths {
			if strings.HasSuffix(path, ".want.json") {
				continue
			}
			name := strings.TrimSuffix(filepath.Base(path), ".json")
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				cr := &authv3.CheckRequest{}
				if err := protojson.Unmarshal(data, cr); err != nil {
					t.Fatalf("not a CheckRequest: %v", err)
				}
				conv := toEvaluation(cr)
				if conv.skip != "" {
					mu.Lock()
					skipped = append(skipped, name+": "+conv.skip)
					mu.Unlock()
					return
				}
				envoy := servertest.Check(t, client, cr)
				az := p.evaluation(t, conv.ev)
				if conv.refused != "" {
					if envoy.Allow || az.Decision || az.Code != "request_malformed" {
						t.Errorf("%s: Envoy's door %v %s, AuthZEN %+v; want both to deny, AuthZEN as request_malformed", conv.refused, envoy.Allow, envoy.Code, az)
					}
					mu.Lock()
					refused++
					mu.Unlock()
					return
				}
				status := az.Status
				if az.Decision {
					status = 200
				}
				if az.Decision != envoy.Allow || az.Code != envoy.Code || status != envoy.Status || az.Rule != envoy.Rule {
					t.Errorf("Envoy's door: allow=%v %d %s rule=%q; AuthZEN: allow=%v %d %s rule=%q\n%s",
						envoy.Allow, envoy.Status, envoy.Code, envoy.Rule, az.Decision, status, az.Code, az.Rule, jsonText(t, conv.ev))
				}
				if id := envoy.ProblemString("approval_id"); id != "" && az.Context["approval_id"] != id {
					t.Errorf("Envoy's door held approval %s, AuthZEN %v", id, az.Context["approval_id"])
				}
				mu.Lock()
				compared++
				if envoy.Allow {
					allowed++
				}
				if envoy.Code == "approval_required" {
					approvalsN++
				}
				mu.Unlock()
			})
		}
	})
	sort.Strings(skipped)
	t.Logf("%d CheckRequests compared (%d allowed, %d held), %d refused by both, %d not expressible:\n  %s",
		compared, allowed, approvalsN, refused, len(skipped), strings.Join(skipped, "\n  "))
	if compared < 120 || allowed < 15 || approvalsN < 1 {
		t.Errorf("only %d CheckRequests compared (%d allowed, %d held); the end-to-end tests have more", compared, allowed, approvalsN)
	}
}

// TestSameAnswerAsEnvoyMCP: every MCP tool call of the demo policy's test cases gets the same
// decision asked as an AuthZEN mcp_tool evaluation as sent through Envoy's door as a JSON-RPC
// POST: outcome, reason code, rule, and, for a held call, the same approval.
func TestSameAnswerAsEnvoyMCP(t *testing.T) {
	cases, err := policytest.ReadCases("../demo/policy/acme_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := startPDP(t)
	client := servertest.Client(t, p.srv)
	compared := 0
	for _, c := range cases {
		if c.MCP == nil || c.MCP.Tool == "" || c.MCP.Version == "2026-07-28" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			cr := extauthz.HTTPRequest{Principal: c.Principal, Method: c.Method, Host: c.Host, Path: c.Path,
				Headers: c.Headers, Body: c.Body}.CheckRequest()
			envoy := servertest.Check(t, client, cr)
			ev := map[string]any{
				"subject": map[string]any{"type": "agent", "id": c.Principal},
				"action":  map[string]any{"name": "tools/call"},
				"resource": map[string]any{"type": "mcp_tool", "id": c.MCP.Tool,
					"properties": map[string]any{"server": c.Host + c.Path, "arguments": c.MCP.Arguments}},
			}
			az := p.evaluation(t, ev)
			if az.Decision != envoy.Allow || az.Code != envoy.Code || az.Rule != envoy.Rule {
				t.Errorf("Envoy's door: allow=%v %s rule=%q; AuthZEN: allow=%v %s rule=%q", envoy.Allow, envoy.Code, envoy.Rule, az.Decision, az.Code, az.Rule)
			}
			if az.Code == "approval_required" {
				meta, _ := envoy.Problem["result"].(map[string]any)["_meta"].(map[string]any)
				problem, _ := meta["agentauthz/problem"].(map[string]any)
				if id := problem["approval_id"]; id == nil || az.Context["approval_id"] != id {
					t.Errorf("Envoy's door held approval %v, AuthZEN %v: one call, one approval", id, az.Context["approval_id"])
				}
			}
			compared++
		})
	}
	if compared < 6 {
		t.Errorf("only %d MCP tool calls compared", compared)
	}
}
