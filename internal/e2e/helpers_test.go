package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// agentToken is the agents' own credential, which no API may ever see.
const agentToken = "SENTINEL-agent-own-token-77b2f0"

// answer is what an agent got back from Envoy.
type answer struct {
	status int
	header http.Header
	body   string
	// problem is the RFC 9457 body of a denial by agentauthz; nil for any other answer.
	problem map[string]any
}

// str returns a string member of the problem.
func (a answer) str(key string) string {
	s, _ := a.problem[key].(string)
	return s
}

// send makes one request through Envoy, as an agent framework would: with the agent's own
// credential. headers are "Name: value" lines.
func send(t testing.TB, c *http.Client, method, url, body string, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+agentToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.Header.Get("content-type") == "application/problem+json" {
		if err := json.Unmarshal(b, &a.problem); err != nil {
			t.Fatalf("%s %s: a problem body that is not JSON: %v: %s", method, url, err, b)
		}
	}
	return a
}

// wantDenial checks a denial by agentauthz as the agent sees it through Envoy: the status, the
// problem details (content type, code, status, detail, decision id) and the decision id header,
// and that agentauthz recorded that decision with that code.
func wantDenial(t testing.TB, s *stack.Stack, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.problem == nil || a.str("code") != code {
		t.Fatalf("got %d %q (%s), want %d %s with problem details", a.status, a.header.Get("content-type"), a.body, status, code)
	}
	id := a.header.Get(extauthz.DecisionIDHeader)
	if id == "" || a.str("decision_id") != id {
		t.Errorf("%s: header %s %q, problem decision_id %q; want the same id in both", code, extauthz.DecisionIDHeader, id, a.str("decision_id"))
	}
	if st, _ := a.problem["status"].(float64); int(st) != status || a.str("detail") == "" || a.str("title") == "" {
		t.Errorf("%s: problem %v, want status %d, a title and a detail", code, a.problem, status)
	}
	if cc := a.header.Get("cache-control"); cc != "no-store" {
		t.Errorf("%s: cache-control %q, want no-store", code, cc)
	}
	if d, ok := s.Authz.Decisions.Find(id); !ok || d.Code != code || d.Outcome != "deny" || d.Status != status {
		t.Errorf("%s: agentauthz recorded decision %s as %+v (found %v)", code, id, d, ok)
	}
}

// allowedID is the decision id of an allowed request as the upstream received it (the
// x-agentauthz-decision-id header agentauthz sets on every allow), checked against Envoy's
// access log (where the id arrives as dynamic metadata) and agentauthz's decision record. The
// upstream's x-request-id joins the three.
func allowedID(t testing.TB, s *stack.Stack, got http.Header, rule string) string {
	t.Helper()
	requestID := got.Get("x-request-id")
	line := s.WaitAccessLog(t, func(l map[string]string) bool { return l["request_id"] == requestID })
	id := line["decision_id"]
	if up := got.Values(extauthz.DecisionIDHeader); len(up) != 1 || up[0] != id {
		t.Errorf("request %s: the upstream received %s %q, want exactly the access log's decision id %q", requestID, extauthz.DecisionIDHeader, up, id)
	}
	d, ok := s.Authz.Decisions.Find(id)
	if !ok || d.Outcome != "allow" || d.Rule != rule || line["decision_outcome"] != "allow" || line["decision_rule"] != rule {
		t.Errorf("request %s: access log %v, decision %+v (found %v); want an allow by %s", requestID, line, d, ok, rule)
	}
	return id
}

// noCredentialLeak fails the test if the agent's own token reached an API anywhere.
func noCredentialLeak(t testing.TB, reqs []stack.Received) {
	t.Helper()
	for _, r := range reqs {
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, agentToken) {
					t.Errorf("%s %s reached the API with the agent's own token in %s", r.Method, r.URI, k)
				}
			}
		}
		if strings.Contains(string(r.Body), agentToken) || strings.Contains(r.URI, agentToken) {
			t.Errorf("%s %s reached the API with the agent's own token", r.Method, r.URI)
		}
	}
}

// approvalCall calls the approvals API as alice and decodes the JSON answer.
func approvalCall(t testing.TB, s *stack.Stack, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.Authz.ApprovalsURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+stack.AliceToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}
