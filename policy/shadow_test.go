package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// Shadow routes and shadow files: evaluated against every request, their would-be decision
// recorded in Decision.Shadow*, never deciding.

const (
	shadowCredential = "shadow-test-credential"
	shadowReader     = "spiffe://example.org/agent/reader"
	shadowWriter     = "spiffe://example.org/agent/writer"
	shadowReporter   = "spiffe://example.org/agent/reporter"    // only in the shadow file
	shadowAuditor    = "spiffe://partner.example/agent/auditor" // only in the shadow file, from its trust domain
	shadowAPI        = "api.example.org"
	shadowReports    = "reports.example.org" // only in the shadow file
)

func shadowSecrets(r SecretRef) (string, error) {
	if r.Env != "SHADOW_TEST_TOKEN" {
		return "", fmt.Errorf("unexpected credential %s", r)
	}
	return shadowCredential, nil
}

func loadShadowFiles(t *testing.T, files []File) *Snapshot {
	t.Helper()
	snap, err := Load(files, Options{Secrets: shadowSecrets})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return snap
}

func readShadowPath(t *testing.T, p string) []File {
	t.Helper()
	files, err := ReadPath(p)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// withoutShadowRoutes is routes.yaml with the lines between its BEGIN and END markers removed.
func withoutShadowRoutes(t *testing.T) []File {
	t.Helper()
	files := readShadowPath(t, "testdata/shadow/routes.yaml")
	var kept []string
	skip, found := false, 0
	for _, line := range strings.SplitAfter(string(files[0].Data), "\n") {
		switch strings.TrimSpace(line) {
		case "# BEGIN shadow routes":
			skip, found = true, found+1
		case "# END shadow routes":
			skip, found = false, found+1
			continue
		}
		if !skip {
			kept = append(kept, line)
		}
	}
	if found != 2 {
		t.Fatalf("routes.yaml lacks the BEGIN/END shadow routes markers")
	}
	stripped := strings.Join(kept, "")
	if strings.Contains(stripped, "shadow: true") {
		t.Fatalf("stripping left a shadow route:\n%s", stripped)
	}
	files[0].Data = []byte(stripped)
	return files
}

// liveFileOnly is the shadow directory without its shadow file.
func liveFileOnly(t *testing.T) []File {
	t.Helper()
	var live []File
	for _, f := range readShadowPath(t, "testdata/shadow/dir") {
		if filepath.Base(f.Name) == "live.yaml" {
			live = append(live, f)
		}
	}
	if len(live) != 1 {
		t.Fatalf("testdata/shadow/dir has no live.yaml")
	}
	return live
}

type shadowHeaders map[string]string

func (h shadowHeaders) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

type shadowReq struct {
	agent, host, method, target string
	hdr                         shadowHeaders
	body                        string
}

func (r shadowReq) String() string {
	return fmt.Sprintf("%s %s %s%s", r.agent, r.method, r.host, r.target)
}

func (r shadowReq) request(t *testing.T) *Request {
	t.Helper()
	req := &Request{Method: r.method, Host: r.host, Target: r.target, Headers: r.hdr, Body: []byte(r.body)}
	if req.Method == "" {
		req.Method = "GET"
	}
	if req.Host == "" {
		req.Host = shadowAPI
	}
	if req.Headers == nil {
		req.Headers = shadowHeaders{}
	}
	if r.agent != "" {
		id, err := spiffeid.FromString(r.agent)
		if err != nil {
			t.Fatalf("%s: %v", r.agent, err)
		}
		req.Agent = id
	}
	return req
}

// verdict is what a decision says, live and shadow.
type verdict struct {
	code          decision.Code
	rule          string
	shadowRule    string
	shadowCode    decision.Code
	shadowOutcome decision.Outcome
}

func verdictOf(d decision.Decision) verdict {
	return verdict{d.Code, d.Rule, d.ShadowRule, d.ShadowCode, d.ShadowOutcome}
}

func checkShadowCase(t *testing.T, snap *Snapshot, r shadowReq, want verdict) decision.Decision {
	t.Helper()
	d := snap.Decide(r.request(t))
	if got := verdictOf(d); got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", r, got, want)
	}
	// The live outcome follows the live code alone, and a denial carries no grant.
	if wantAllow := want.code == decision.CodeAllowed; d.Allowed() != wantAllow || (d.Outcome == decision.Allow) != wantAllow {
		t.Errorf("%s: outcome %v, code %s", r, d.Outcome, d.Code)
	}
	if !d.Allowed() && d.Grant != nil {
		t.Errorf("%s: a denial carries a grant", r)
	}
	if d.ShadowRule == "" && (d.ShadowCode != "" || d.ShadowOutcome != decision.Deny) {
		t.Errorf("%s: shadow code %q outcome %v without a shadow rule", r, d.ShadowCode, d.ShadowOutcome)
	}
	return d
}

const (
	shAllowed      = decision.CodeAllowed
	shQueryInvalid = decision.CodeQueryInvalid
	shAllow        = decision.Allow
	shDeny         = decision.Deny
)

// TestShadowRouteStricter: a shadow route with the same method and path as a live route is
// evaluated beside it. The live route decides; the shadow route's verdict is recorded.
func TestShadowRouteStricter(t *testing.T) {
	snap := loadShadowFiles(t, readShadowPath(t, "testdata/shadow/routes.yaml"))
	for _, tc := range []struct {
		req  shadowReq
		want verdict
	}{
		// Allowed by the live route (limit ≤ 100); the shadow version (limit ≤ 10) would deny.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=50"},
			verdict{shAllowed, "list-tickets", "list-tickets-v2", shQueryInvalid, shDeny}},
		// Within both limits: the shadow version would allow too.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5"},
			verdict{shAllowed, "list-tickets", "list-tickets-v2", shAllowed, shAllow}},
		{shadowReq{agent: shadowReader, target: "/v1/tickets?status=open"},
			verdict{shAllowed, "list-tickets", "list-tickets-v2", shAllowed, shAllow}},
		// Beyond both.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=500"},
			verdict{shQueryInvalid, "list-tickets", "list-tickets-v2", shQueryInvalid, shDeny}},
		// A path no shadow route matches records nothing.
		{shadowReq{agent: shadowReader, target: "/v1/tickets/42"},
			verdict{shAllowed, "get-ticket", "", "", shDeny}},
		// The shadow route keeps the live route's rules on everything else: a body is refused.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5", hdr: shadowHeaders{"content-length": "2"}, body: "{}"},
			verdict{decision.CodeBodyNotAllowed, "list-tickets", "list-tickets-v2", decision.CodeBodyNotAllowed, shDeny}},
		// Refused before any route, live or shadow: nothing to record.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5", hdr: shadowHeaders{"x-http-method-override": "DELETE"}},
			verdict{decision.CodeMethodOverride, "", "", "", shDeny}},
		{shadowReq{agent: "spiffe://example.org/agent/nobody", target: "/v1/tickets?limit=5"},
			verdict{decision.CodeAgentUnknown, "", "", "", shDeny}},
	} {
		d := checkShadowCase(t, snap, tc.req, tc.want)
		if d.Allowed() {
			checkShadowGrant(t, tc.req, d.Grant)
		}
	}
}

// checkShadowGrant: an allow carries the live host's grant: the credential it injects.
func checkShadowGrant(t *testing.T, r shadowReq, g *decision.Grant) {
	t.Helper()
	if g == nil || len(g.Set) != 1 || g.Set[0].Name != "authorization" || g.Set[0].Value.Reveal() != "Bearer "+shadowCredential {
		t.Errorf("%s: allowed with grant %+v, want the host's credential", r, g)
	}
}

// TestShadowRouteNew: a route that exists only in shadow is as if absent: the request is denied
// route_unknown, and what the route would have decided is recorded.
func TestShadowRouteNew(t *testing.T) {
	snap := loadShadowFiles(t, readShadowPath(t, "testdata/shadow/routes.yaml"))
	for _, tc := range []struct {
		req  shadowReq
		want verdict
	}{
		{shadowReq{agent: shadowReader, target: "/v1/reports"},
			verdict{decision.CodeRouteUnknown, "", "list-reports", shAllowed, shAllow}},
		{shadowReq{agent: shadowReader, target: "/v1/reports?x=1"},
			verdict{decision.CodeRouteUnknown, "", "list-reports", shQueryInvalid, shDeny}},
		// The shadow route needs a scope the reader lacks: recorded as scope_missing.
		{shadowReq{agent: shadowReader, method: "POST", target: "/v1/tickets/7/close"},
			verdict{decision.CodeRouteUnknown, "", "close-ticket", decision.CodeScopeMissing, shDeny}},
		{shadowReq{agent: shadowWriter, method: "POST", target: "/v1/tickets/7/close"},
			verdict{decision.CodeRouteUnknown, "", "close-ticket", shAllowed, shAllow}},
		{shadowReq{agent: shadowWriter, method: "POST", target: "/v1/tickets/x/close"},
			verdict{decision.CodeRouteUnknown, "", "close-ticket", decision.CodePathParamInvalid, shDeny}},
		// Another method on the shadow path: no shadow route matches.
		{shadowReq{agent: shadowWriter, method: "DELETE", target: "/v1/tickets/7/close"},
			verdict{decision.CodeRouteUnknown, "", "", "", shDeny}},
	} {
		checkShadowCase(t, snap, tc.req, tc.want)
	}
}

// TestShadowFile: a whole file in shadow beside a live one. Its new agents and host do not
// exist for live decisions; for the record, they do.
func TestShadowFile(t *testing.T) {
	snap := loadShadowFiles(t, readShadowPath(t, "testdata/shadow/dir"))
	for _, tc := range []struct {
		req  shadowReq
		want verdict
	}{
		// A new agent calling a new host: unknown live, allowed in shadow.
		{shadowReq{agent: shadowReporter, host: shadowReports, target: "/v1/reports"},
			verdict{decision.CodeAgentUnknown, "", "list-reports", shAllowed, shAllow}},
		// A new agent from a trust domain only the shadow file names.
		{shadowReq{agent: shadowAuditor, host: shadowReports, target: "/v1/reports"},
			verdict{decision.CodeTrustDomainUnknown, "", "list-reports", shAllowed, shAllow}},
		// A live agent calling the new host with a scope granted in shadow.
		{shadowReq{agent: shadowReader, host: shadowReports, target: "/v1/reports"},
			verdict{decision.CodeHostUnknown, "", "list-reports", shAllowed, shAllow}},
		{shadowReq{agent: shadowReader, host: "REPORTS.example.org", target: "/v1/reports"},
			verdict{decision.CodeHostUnknown, "", "list-reports", shAllowed, shAllow}},
		// A new agent calling a live host: still unknown live; the shadow route it matches
		// needs a scope it does not hold.
		{shadowReq{agent: shadowReporter, target: "/v1/tickets?limit=5"},
			verdict{decision.CodeAgentUnknown, "", "list-tickets-v2", decision.CodeScopeMissing, shDeny}},
		// The shadow file's stricter route on the live host.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=50"},
			verdict{shAllowed, "list-tickets", "list-tickets-v2", shQueryInvalid, shDeny}},
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5"},
			verdict{shAllowed, "list-tickets", "list-tickets-v2", shAllowed, shAllow}},
		{shadowReq{agent: shadowReader, target: "/v1/tickets/9"},
			verdict{shAllowed, "get-ticket", "", "", shDeny}},
		// A host neither file names.
		{shadowReq{agent: shadowReader, host: "elsewhere.example.org", target: "/v1/reports"},
			verdict{decision.CodeHostUnknown, "", "", "", shDeny}},
	} {
		d := checkShadowCase(t, snap, tc.req, tc.want)
		if d.Allowed() {
			checkShadowGrant(t, tc.req, d.Grant)
		}
	}
}

// shadowTable is every request TestShadowNeverDecides compares: each agent (live, shadow-only,
// unknown, from an unknown trust domain, none) against each host and path, and requests refused
// for their form.
func shadowTable() []shadowReq {
	agents := []string{shadowReader, shadowWriter, shadowReporter, shadowAuditor,
		"spiffe://example.org/agent/nobody", "spiffe://partner.example/agent/nobody", "spiffe://elsewhere.example/agent/x", ""}
	hosts := []string{shadowAPI, "API.example.org", shadowReports, "nowhere.example.org"}
	targets := []struct{ method, target string }{
		{"GET", "/v1/tickets"}, {"GET", "/v1/tickets?limit=5"}, {"GET", "/v1/tickets?limit=50"},
		{"GET", "/v1/tickets?limit=500"}, {"GET", "/v1/tickets?status=open&limit=10"}, {"GET", "/v1/tickets?x=1"},
		{"GET", "/v1/tickets/1"}, {"GET", "/v1/tickets/abc"}, {"GET", "/v1/reports"}, {"GET", "/v1/reports?limit=1"},
		{"POST", "/v1/tickets/7/close"}, {"POST", "/v1/tickets"}, {"DELETE", "/v1/tickets/7"},
		{"GET", "/v1/tickets/../reports"}, {"GET", "/v1//tickets"}, {"GET", "/"},
	}
	var reqs []shadowReq
	for _, a := range agents {
		for _, h := range hosts {
			for _, tg := range targets {
				reqs = append(reqs, shadowReq{agent: a, host: h, method: tg.method, target: tg.target})
			}
		}
	}
	reqs = append(reqs,
		shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5", hdr: shadowHeaders{"x-http-method-override": "DELETE"}},
		shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5", hdr: shadowHeaders{"content-length": "2"}, body: "{}"},
		shadowReq{agent: shadowReader, host: shadowReports, target: "/v1/reports", hdr: shadowHeaders{"transfer-encoding": "chunked"}},
		shadowReq{agent: shadowReader, method: "GET", host: shadowAPI, target: "/v1/tickets?_method=DELETE"},
	)
	return reqs
}

// live is everything of a decision that Envoy enforces or the agent reads.
type live struct {
	Outcome     decision.Outcome
	Code        decision.Code
	Rule        string
	Detail      string
	Violations  []decision.Violation
	Grant       decision.Grant
	HasGrant    bool
	RemoveQuery []string
	Status      int
}

func liveOf(d decision.Decision) live {
	l := live{Outcome: d.Outcome, Code: d.Code, Rule: d.Rule, Detail: d.Detail, Violations: d.Violations,
		RemoveQuery: d.RemoveQuery, Status: d.Status()}
	if d.Grant != nil {
		l.Grant, l.HasGrant = *d.Grant, true
	}
	return l
}

// TestShadowNeverDecides: for every request of a table, the policy with its shadow routes or
// shadow file decides exactly as the policy without them.
func TestShadowNeverDecides(t *testing.T) {
	for _, tc := range []struct {
		name         string
		with, wthout []File
	}{
		{"shadow routes in an ordinary file", readShadowPath(t, "testdata/shadow/routes.yaml"), withoutShadowRoutes(t)},
		{"a shadow file beside a live one", readShadowPath(t, "testdata/shadow/dir"), liveFileOnly(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			with, without := loadShadowFiles(t, tc.with), loadShadowFiles(t, tc.wthout)
			if !with.hasShadow || without.hasShadow {
				t.Fatalf("hasShadow: with %v, without %v", with.hasShadow, without.hasShadow)
			}
			recorded, differ := 0, 0
			for _, r := range shadowTable() {
				dw, dwo := with.Decide(r.request(t)), without.Decide(r.request(t))
				if dwo.ShadowRule != "" {
					t.Errorf("%s: the policy without shadow recorded shadow rule %s", r, dwo.ShadowRule)
				}
				if dw.ShadowRule != "" {
					recorded++
					if dw.ShadowCode != dw.Code {
						differ++
					}
				}
				if lw, lwo := liveOf(dw), liveOf(dwo); !reflect.DeepEqual(lw, lwo) {
					t.Errorf("%s: shadow changed the live decision:\nwith shadow    %+v\nwithout shadow %+v", r, lw, lwo)
				}
			}
			// The table must exercise the shadow rules, and find them disagreeing with the live
			// decision, or it proves nothing.
			if recorded == 0 || differ == 0 {
				t.Errorf("%d requests recorded a shadow verdict, %d differing from the live one; the table misses the shadow rules", recorded, differ)
			}
			t.Logf("%d requests, %d with a shadow verdict, %d of them differing", len(shadowTable()), recorded, differ)
		})
	}
}

// TestShadowExplain: explanations name shadow routes as such and say what they would decide.
func TestShadowExplain(t *testing.T) {
	snap := loadShadowFiles(t, readShadowPath(t, "testdata/shadow/routes.yaml"))
	for _, tc := range []struct {
		req       shadowReq
		want, not []string
	}{
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=50"},
			[]string{
				"route list-tickets (GET /v1/tickets): matched; needs scope tickets:read (held); decides allow allowed",
				"shadow route list-tickets-v2 (GET /v1/tickets): matched; would decide deny query_invalid (recorded, not enforced)",
				"shadow route list-reports (GET /v1/reports): skipped, path does not match",
				"shadow route close-ticket (POST /v1/tickets/{id}/close): skipped, method is GET",
			}, nil},
		{shadowReq{agent: shadowReader, target: "/v1/reports"},
			[]string{
				"shadow route list-reports (GET /v1/reports): matched; would decide allow allowed (recorded, not enforced)",
				"no route decided: route_unknown",
			}, []string{"decides allow"}},
		// Refused before any route: no route, live or shadow, is said to have been outranked.
		{shadowReq{agent: shadowReader, target: "/v1/tickets?limit=5", hdr: shadowHeaders{"x-http-method-override": "DELETE"}},
			[]string{"no route decided: method_override"},
			[]string{"takes precedence", "would decide"}},
	} {
		d, steps := snap.Explain(tc.req.request(t))
		if want := snap.Decide(tc.req.request(t)); !reflect.DeepEqual(verdictOf(d), verdictOf(want)) {
			t.Errorf("%s: Explain decided %+v, Decide %+v", tc.req, verdictOf(d), verdictOf(want))
		}
		text := strings.Join(steps, "\n")
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: explanation lacks %q:\n%s", tc.req, w, text)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(text, n) {
				t.Errorf("%s: explanation says %q:\n%s", tc.req, n, text)
			}
		}
	}
}

// TestShadowFileExplain: agents and hosts that only a shadow file defines are said to be so, and
// a live route is not said to be outranked when the request was refused before any route.
func TestShadowFileExplain(t *testing.T) {
	snap := loadShadowFiles(t, readShadowPath(t, "testdata/shadow/dir"))
	for _, tc := range []struct {
		req       shadowReq
		want, not []string
	}{
		{shadowReq{agent: shadowReporter, target: "/v1/tickets?limit=5"},
			[]string{
				"agent: defined only in shadow files",
				"shadow route list-tickets-v2 (GET /v1/tickets): matched; would decide deny scope_missing (recorded, not enforced)",
				"no route decided: agent_unknown",
			},
			[]string{"takes precedence"}},
		{shadowReq{agent: shadowReader, host: shadowReports, target: "/v1/reports"},
			[]string{
				"host reports.example.org: defined only in shadow files",
				"shadow route list-reports (GET /v1/reports): matched; would decide allow allowed (recorded, not enforced)",
				"no route decided: host_unknown",
			}, nil},
	} {
		_, steps := snap.Explain(tc.req.request(t))
		text := strings.Join(steps, "\n")
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: explanation lacks %q:\n%s", tc.req, w, text)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(text, n) {
				t.Errorf("%s: explanation says %q:\n%s", tc.req, n, text)
			}
		}
	}
}

// TestShadowLoadProblems: shadow routes share the rules of route shapes and names: two shadow
// routes of one shape would leave it open which one is recorded, and a name must say which
// route decided, live or shadow.
func TestShadowLoadProblems(t *testing.T) {
	for _, tc := range []struct {
		path string
		must []string
	}{
		{"testdata/shadow/bad-shape.yaml", []string{
			`testdata/shadow/bad-shape.yaml:15:9: hosts[0].routes[2]: GET /v1/tickets has the same method and path shape as route "list-tickets-v2" (/v1/tickets)`,
		}},
		{"testdata/shadow/bad-shape-files", []string{
			`hosts[0].routes[0]: GET /v1/tickets/{n} has the same method and path shape as route "get-ticket-v2" (/v1/tickets/{ticket})`,
		}},
		{"testdata/shadow/bad-names.yaml", []string{
			`testdata/shadow/bad-names.yaml:10:15: hosts[0].routes[1].name: route name "list-tickets" is already used at testdata/shadow/bad-names.yaml hosts[0].routes[0]`,
			`testdata/shadow/bad-names.yaml:23:15: hosts[1].routes[1].name: route name "get-ticket" is already used at testdata/shadow/bad-names.yaml hosts[1].routes[0]`,
		}},
		{"testdata/shadow/bad-names-files", []string{
			`rollout.yaml:6:15: hosts[0].routes[0].name: route name "list-tickets" is already used at testdata/shadow/bad-names-files/live.yaml hosts[0].routes[0]`,
		}},
	} {
		_, err := Load(readShadowPath(t, tc.path), Options{Secrets: shadowSecrets})
		var problems Problems
		if !errors.As(err, &problems) {
			t.Errorf("%s: Load = %v, want problems", tc.path, err)
			continue
		}
		if len(problems) != len(tc.must) {
			t.Errorf("%s: %d problems, want %d:\n%s", tc.path, len(problems), len(tc.must), problems.Error())
		}
		for _, m := range tc.must {
			found := false
			for _, p := range problems {
				found = found || strings.Contains(p, m)
			}
			if !found {
				t.Errorf("%s: no problem says %q; got:\n%s", tc.path, m, problems.Error())
			}
		}
	}
}

// TestShadowSameShapeAsLive: a shadow route may share its method and path shape with a live
// route (that is how a stricter version is rolled out), in the same file or another.
func TestShadowSameShapeAsLive(t *testing.T) {
	dir := t.TempDir()
	live := `trust_domains: [example.org]
agents:
  - {id: "spiffe://example.org/agent/reader", scopes: [tickets:read]}
hosts:
  - name: api.example.org
    routes:
      - {name: get-ticket, method: GET, path: "/v1/tickets/{id}", scope: tickets:read, params: {id: {type: string}}}
      - {name: get-ticket-v2, shadow: true, method: GET, path: "/v1/tickets/{n}", scope: tickets:read, params: {n: {type: integer}}}
`
	if err := os.WriteFile(filepath.Join(dir, "live.yaml"), []byte(live), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := loadShadowFiles(t, readShadowPath(t, dir))
	checkShadowCase(t, snap, shadowReq{agent: shadowReader, target: "/v1/tickets/abc"},
		verdict{shAllowed, "get-ticket", "get-ticket-v2", decision.CodePathParamInvalid, shDeny})
	checkShadowCase(t, snap, shadowReq{agent: shadowReader, target: "/v1/tickets/12"},
		verdict{shAllowed, "get-ticket", "get-ticket-v2", shAllowed, shAllow})
	if st := snap.Stats(); st.Routes != 2 {
		t.Errorf("Stats().Routes = %d, want 2 (the shadow route counts)", st.Routes)
	}
}
