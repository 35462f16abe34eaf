package demo_test

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// handwrittenPolicy is the demo policy with the helpdesk host's openapi block replaced by the
// routes it replaced (testdata/handwritten-helpdesk), recovered from the policy's history.
func handwrittenPolicy(t *testing.T) *policy.Snapshot {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(demo.Files, demo.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := fs.ReadFile(demo.Files, p)
		fsys[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	routes, err := os.ReadFile("testdata/handwritten-helpdesk/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("testdata/handwritten-helpdesk/comment.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	fsys[path.Join(demo.Dir, "comment.schema.json")] = &fstest.MapFile{Data: schema}

	// The helpdesk host's openapi block: from "    openapi:" under the host to the next line
	// indented less than its contents.
	acme := path.Join(demo.Dir, "acme.yaml")
	lines := strings.SplitAfter(string(fsys[acme].Data), "\n")
	host, start, end := -1, -1, -1
	for i, l := range lines {
		switch {
		case host < 0 && l == "  - name: helpdesk.acme.internal\n":
			host = i
		case host >= 0 && start < 0 && l == "    openapi:\n":
			start = i
		case start >= 0 && end < 0 && strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "      "):
			end = i
		}
	}
	if start < 0 || end < 0 {
		t.Fatal("the demo policy's helpdesk host has no openapi block")
	}
	replaced := strings.Join(lines[:start], "") + string(routes) + "\n" + strings.Join(lines[end:], "")
	fsys[acme] = &fstest.MapFile{Data: []byte(replaced)}

	files, err := policy.ReadFS(fsys, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatalf("the hand-written helpdesk host: %v", err)
	}
	return snap
}

type headers map[string]string

func (h headers) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// TestHelpdeskOpenAPIEquivalence: the demo policy's helpdesk host, written from the API's
// OpenAPI description, decides a generated corpus of requests (methods, paths, parameter values
// at and across their bounds, query strings, bodies, agents) as the routes written by hand that
// it replaced: the same outcome, reason code, HTTP status and route, request by request, but for
// two reset bodies the document's schema refuses and the protobuf message alone accepted.
func TestHelpdeskOpenAPIEquivalence(t *testing.T) {
	files, err := policy.ReadFS(demo.Files, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	fromOpenAPI, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	byHand := handwrittenPolicy(t)

	corpus := helpdeskCorpus()
	if len(corpus) < 1000 {
		t.Fatalf("a corpus of %d requests", len(corpus))
	}
	agents := []string{"spiffe://acme.internal/agent/helpdesk", "spiffe://acme.internal/agent/bi", "spiffe://acme.internal/agent/nobody"}
	// Where the two differ, and why. The hand-written route checked the reset's body against the
	// protobuf message alone, whose JSON mapping also accepts a field's camelCase name and null
	// for "not set"; the document's schema, checked after the message, accepts neither. The
	// helpdesk API itself refuses notifyUser as an unknown field. Each is a refusal by the
	// OpenAPI host of what the hand-written routes let through, never the reverse.
	stricter := map[string]string{
		`{"reason":"Locked out after travel.","notifyUser":true}`:  "the schema has no property notifyUser (the message's JSON name for notify_user)",
		`{"reason":"Locked out after travel.","notify_user":null}`: "the schema's notify_user is a boolean, not null",
	}
	seen := map[string]bool{}
	codes := map[decision.Code]int{}
	mismatches := 0
	for _, r := range corpus {
		for _, agent := range agents {
			req := r.request(agent)
			a, b := fromOpenAPI.Decide(req), byHand.Decide(req)
			codes[a.Code]++
			if a.Outcome == b.Outcome && a.Code == b.Code && a.Status() == b.Status() && a.Rule == b.Rule {
				continue
			}
			if why, ok := stricter[r.body]; ok && r.target == "/v1/users/jdoe/password-reset" && r.contentType == "application/json" &&
				a.Code == decision.CodeBodySchema && b.Code == decision.CodeApprovalRequired && a.Rule == b.Rule {
				seen[r.body] = true
				t.Logf("stricter from OpenAPI, as expected (%s): %s %s %s", why, r.method, r.target, r.body)
				continue
			}
			mismatches++
			if mismatches <= 20 {
				t.Errorf("%s %s %q (%s): from OpenAPI %s %d rule %q %v; by hand %s %d rule %q %v",
					r.method, r.target, clip(r.body), agent, a.Code, a.Status(), a.Rule, violations(a), b.Code, b.Status(), b.Rule, violations(b))
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d decisions differ", mismatches, len(corpus)*len(agents))
	}
	for body := range stricter {
		if !seen[body] {
			t.Errorf("the expected difference for %s did not occur: remove it from the list", body)
		}
	}
	// The corpus reaches every kind of decision the routes make, not only refusals.
	for _, c := range []decision.Code{decision.CodeAllowed, decision.CodeApprovalRequired, decision.CodeRouteUnknown, decision.CodeScopeMissing,
		decision.CodePathParamInvalid, decision.CodeQueryInvalid, decision.CodeBodySchema, decision.CodeBodyTooLarge, decision.CodeBodyContentType,
		decision.CodeBodyMissing, decision.CodeBodyMalformed, decision.CodeBodyNotAllowed, decision.CodeMethodOverride, decision.CodePathAmbiguous} {
		if codes[c] == 0 {
			t.Errorf("no request of the corpus was decided %s", c)
		}
	}
	t.Logf("%d requests × %d agents: %v", len(corpus), len(agents), codes)
}

func violations(d decision.Decision) []string {
	var out []string
	for _, v := range d.Violations {
		out = append(out, v.Field+" "+v.Rule)
	}
	return out
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

type corpusRequest struct {
	method, target, contentType, body string
}

func (c corpusRequest) request(agent string) *policy.Request {
	h := headers{}
	if c.contentType != "" {
		h["content-type"] = c.contentType
	}
	if c.body != "" {
		h["content-length"] = fmt.Sprint(len(c.body))
	}
	return &policy.Request{Agent: spiffeid.RequireFromString(agent), Method: c.method, Host: "helpdesk.acme.internal",
		Target: c.target, Headers: h, Body: []byte(c.body)}
}

// helpdeskCorpus generates requests around every route of the helpdesk host: each parameter
// at, inside and across its bounds and in spellings that decode alike, each route's body valid,
// at its limits and beyond, and every method on every path.
func helpdeskCorpus() []corpusRequest {
	ids := []string{"0", "1", "4711", "123456789012", "1234567890123", "", "abc", "12a", "-1", "+1", "1.5", "%31", "%3", "1%2F2", "%2e", "..", "１", "4711;x"}
	users := []string{"a", "jdoe", "j.doe-2_x", strings.Repeat("a", 64), strings.Repeat("a", 65), "A", "Jdoe", "1abc", "_a", "a b", "a%20b", "%61", "a%2Fb",
		"a+b", "é", "%C3%A9", "a.", "a..b"}
	statuses := []string{"open", "pending", "closed", "OPEN", "x", "", "open%20", "op%65n", "open,closed"}
	limits := []string{"0", "1", "2", "99", "100", "101", "-1", "01", "1.0", "1e2", "abc", "", "9223372036854775807", "9223372036854775808", "%31"}
	var out []corpusRequest
	add := func(method, target, ct, body string) {
		out = append(out, corpusRequest{method, target, ct, body})
	}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	json := "application/json"

	// Every method on every path shape.
	paths := []string{"/", "/v1", "/v1/tickets", "/v1/tickets/", "/v1/tickets/4711", "/v1/tickets/4711/", "/v1/tickets/4711/comments", "/v1/tickets/4711/comments/1",
		"/v1/users/jdoe", "/v1/users/jdoe/password-reset", "/openapi.json", "/v1//tickets", "/v1/./tickets", "/V1/tickets", "/v1/tickets?", "/v1/tickets#x", "/mcp"}
	for _, m := range methods {
		for _, p := range paths {
			add(m, p, "", "")
			add(m, p, json, `{"body":"x"}`)
		}
	}
	// Ticket ids on every route that takes one.
	for _, id := range ids {
		for _, m := range methods {
			add(m, "/v1/tickets/"+id, "", "")
		}
		add("POST", "/v1/tickets/"+id+"/comments", json, `{"body":"x"}`)
	}
	// The listing's query.
	for _, s := range statuses {
		for _, l := range limits {
			add("GET", "/v1/tickets?status="+s+"&limit="+l, "", "")
			add("GET", "/v1/tickets?limit="+l+"&status="+s, "", "")
		}
		add("GET", "/v1/tickets?status="+s, "", "")
		add("GET", "/v1/tickets?status="+s+"&status=open", "", "")
	}
	for _, l := range limits {
		add("GET", "/v1/tickets?limit="+l, "", "")
		add("GET", "/v1/tickets?limit="+l+"&limit=5", "", "")
	}
	for _, q := range []string{"x=1", "Status=open", "STATUS=open", "st%61tus=open", "status", "status=", "limit", "_method=DELETE", "x-http-method-override=DELETE",
		"status=open&&limit=5", "status=open&", "&status=open", "status=open%26limit=5", "status=open;limit=5", "status=%ZZ", "status=open&x", "limit=5&limit=5",
		"status[]=open", "status=%00", "q=%C3%A9", "status=op+en"} {
		add("GET", "/v1/tickets?"+q, "", "")
		add("GET", "/v1/tickets/4711?"+q, "", "")
	}
	// Usernames, with the reset's body.
	reset := `{"reason":"Locked out after travel.","notify_user":true}`
	for _, u := range users {
		add("POST", "/v1/users/"+u+"/password-reset", json, reset)
		add("GET", "/v1/users/"+u+"/password-reset", "", "")
	}
	// Comment bodies.
	comment := func(s string) string { return `{"body":"` + s + `"}` }
	for _, b := range []string{comment(""), comment("x"), comment(strings.Repeat("x", 3999)), comment(strings.Repeat("x", 4000)), comment(strings.Repeat("x", 4001)),
		comment(strings.Repeat("é", 4000)), comment(strings.Repeat("é", 4001)), comment(strings.Repeat("😀", 4000)), comment(strings.Repeat(`\u00e9`, 4000)),
		comment(strings.Repeat(`\u00e9`, 4001)), `{"body":"x","extra":1}`, `{"Body":"x"}`, `{}`, `[]`, `null`, `"x"`, `{"body":1}`, `{"body":null}`, `{"body":["x"]}`,
		`{"body":"x"}{"body":"y"}`, `{"body":"x","body":"y"}`, `{"body":"x"`, `{"body":"\ud800"}`, "{\"body\":\"\xff\"}", `  {"body":"x"}  `,
		comment(strings.Repeat("x", 16370)), comment(strings.Repeat("x", 16380)), ""} {
		for _, ct := range []string{json, "application/json; charset=utf-8", "application/json; charset=latin1", "text/plain", "application/x-www-form-urlencoded", ""} {
			add("POST", "/v1/tickets/4711/comments", ct, b)
		}
	}
	// Reset bodies.
	reason := func(n int) string { return `{"reason":"` + strings.Repeat("r", n) + `"}` }
	for _, b := range []string{reason(9), reason(10), reason(11), reason(499), reason(500), reason(501), reason(0), reset,
		`{"reason":"Locked out after travel.","notify_user":"true"}`, `{"reason":"Locked out after travel.","notify_user":null}`,
		`{"reason":"Locked out after travel.","notifyUser":true}`, `{"reason":"Locked out after travel.","extra":1}`, `{"notify_user":true}`, `{}`, `[]`,
		`{"reason":"Locked out after travel.","reason":"again and again"}`, `{"reason":"` + strings.Repeat("é", 500) + `"}`, `{"reason":"` + strings.Repeat("é", 501) + `"}`,
		`{"reason":"` + strings.Repeat("x", 4090) + `"}`, `{"reason":"          "}`, `{"reason":"Locked out after travel.","notify_user":1}`, ""} {
		for _, ct := range []string{json, "text/plain", ""} {
			add("POST", "/v1/users/jdoe/password-reset", ct, b)
		}
	}
	return out
}
