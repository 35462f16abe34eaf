package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/decision"
)

const (
	reader  = "spiffe://example.org/agent/reader"      // things:read, things:search, users:read, pairs:read
	admin   = "spiffe://example.org/agent/admin"       // all scopes
	partner = "spiffe://partner.example/agent/partner" // no scope
)

// decideCredential is what the test policy injects for api.example.org.
const decideCredential = "decide-test-credential"

func loadDecidePolicy(t testing.TB) *Snapshot {
	t.Helper()
	files, err := ReadPath("testdata/decide.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Load(files, Options{Secrets: func(r SecretRef) (string, error) {
		if r.Env != "DECIDE_TEST_TOKEN" {
			return "", fmt.Errorf("unexpected credential %s", r)
		}
		return decideCredential, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

type decideCase struct {
	name   string
	agent  string // SPIFFE ID; empty for no identity
	req    string // "METHOD /target"
	host   string // default api.example.org
	hdr    headers
	body   string
	code   decision.Code
	rule   string
	viol   []string // "field rule"
	remove []string // RemoveQuery
}

func TestDecide(t *testing.T) {
	snap := loadDecidePolicy(t)
	const uuid = "123e4567-e89b-12d3-a456-426614174000"
	ok := decision.CodeAllowed
	cases := []decideCase{
		// Who is calling, and from where.
		{name: "no identity", req: "GET /v1/things", code: decision.CodeIdentityMissing},
		{name: "trust domain unknown", agent: "spiffe://evil.example/agent/reader", req: "GET /v1/things", code: decision.CodeTrustDomainUnknown},
		{name: "agent unknown", agent: "spiffe://example.org/agent/nobody", req: "GET /v1/things", code: decision.CodeAgentUnknown},
		{name: "agent differs by path case", agent: "spiffe://example.org/agent/Reader", req: "GET /v1/things", code: decision.CodeAgentUnknown},
		{name: "no method", agent: reader, req: " /v1/things", code: decision.CodeRequestMalformed},
		{name: "no host", agent: reader, req: "GET /v1/things", host: "-", code: decision.CodeRequestMalformed},
		{name: "method override header", agent: reader, req: "GET /v1/things", hdr: headers{"x-http-method-override": "DELETE"},
			code: decision.CodeMethodOverride, viol: []string{"header.x-http-method-override forbidden"}},
		{name: "x-original-method header", agent: reader, req: "GET /v1/things", hdr: headers{"x-original-method": "DELETE"},
			code: decision.CodeMethodOverride, viol: []string{"header.x-original-method forbidden"}},

		// The target is read strictly before any route is looked at.
		{name: "dot segment", agent: admin, req: "DELETE /v1/things/../things/x", code: decision.CodePathAmbiguous, viol: []string{"path dot_segment"}},
		{name: "empty segment", agent: reader, req: "GET /v1//things", code: decision.CodePathAmbiguous, viol: []string{"path empty_segment"}},
		{name: "trailing slash", agent: reader, req: "GET /v1/things/", code: decision.CodePathAmbiguous, viol: []string{"path empty_segment"}},
		{name: "encoded slash", agent: reader, req: "GET /v1/users/a%2Fb", code: decision.CodePathAmbiguous, viol: []string{"path encoded_slash"}},
		{name: "encoded literal letter", agent: admin, req: "DELETE /v1/things/se%61rch", code: decision.CodePathAmbiguous, viol: []string{"path encoded_unreserved"}},
		{name: "malformed query", agent: reader, req: "GET /v1/things?page=1&&x", code: decision.CodeQueryInvalid, viol: []string{"query empty_pair"}},
		{name: "query invalid utf-8", agent: reader, req: "GET /v1/things/search?q=%FF", code: decision.CodeQueryInvalid, viol: []string{"query bad_value"}},

		// Hosts: case-insensitive, exact otherwise.
		{name: "host unknown", agent: reader, req: "GET /v1/things", host: "evil.example.org", code: decision.CodeHostUnknown},
		{name: "host with port", agent: reader, req: "GET /v1/things", host: "api.example.org:443", code: decision.CodeHostUnknown},
		{name: "host with trailing dot", agent: reader, req: "GET /v1/things", host: "api.example.org.", code: decision.CodeHostUnknown},
		{name: "host upper case", agent: reader, req: "GET /v1/things", host: "API.Example.ORG", code: ok, rule: "list-things"},
		{name: "host with Kelvin sign", agent: reader, req: "GET /v1/things", host: "api.example.or\u212a", code: decision.CodeHostUnknown},
		{name: "policy host upper case", agent: reader, req: "GET /", host: "other.example.org", code: ok, rule: "other-root"},

		// Routes and scopes.
		{name: "root", agent: admin, req: "GET /", code: ok, rule: "root"},
		{name: "root without scope", agent: reader, req: "GET /", code: decision.CodeScopeMissing, rule: "root"},
		{name: "root with query", agent: admin, req: "GET /?x=1", code: decision.CodeQueryInvalid, rule: "root", viol: []string{"query.x unknown"}},
		{name: "root wrong method", agent: admin, req: "POST /", code: decision.CodeRouteUnknown},
		{name: "method is case-sensitive", agent: reader, req: "get /v1/things", code: decision.CodeRouteUnknown},
		{name: "no route for method", agent: admin, req: "POST /v1/things", code: decision.CodeRouteUnknown},
		{name: "no route for path", agent: admin, req: "GET /v1/nothing", code: decision.CodeRouteUnknown},
		{name: "path longer than any template", agent: admin, req: "GET /v1/things/search/extra", code: decision.CodeRouteUnknown},
		{name: "path shorter than any template", agent: admin, req: "GET /v1", code: decision.CodeRouteUnknown},
		{name: "literal case matters", agent: admin, req: "GET /V1/things", code: decision.CodeRouteUnknown},
		{name: "agent without scopes", agent: partner, req: "GET /v1/things", code: decision.CodeScopeMissing, rule: "list-things"},

		// A literal segment beats a parameter, and matching backtracks when the literal branch
		// has no route for the method.
		{name: "literal route", agent: admin, req: "GET /v1/things/search?q=a", code: ok, rule: "search-things"},
		{name: "literal route fails validation, no fallback", agent: admin, req: "GET /v1/things/search", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q required"}},
		{name: "param route", agent: admin, req: "GET /v1/things/" + uuid, code: ok, rule: "get-thing"},
		{name: "param route bad value", agent: admin, req: "GET /v1/things/42", code: decision.CodePathParamInvalid, rule: "get-thing", viol: []string{"path.id type"}},
		{name: "backtrack to param for another method", agent: admin, req: "DELETE /v1/things/search", code: ok, rule: "delete-thing"},
		{name: "backtrack to param, scope missing", agent: reader, req: "DELETE /v1/things/search", code: decision.CodeScopeMissing, rule: "delete-thing"},
		{name: "literal beats param even without its scope", agent: reader, req: "GET /v1/users/@me", code: decision.CodeScopeMissing, rule: "get-me"},
		{name: "literal with its scope", agent: admin, req: "GET /v1/users/@me", code: ok, rule: "get-me"},
		{name: "param next to literal", agent: reader, req: "GET /v1/users/alice", code: ok, rule: "get-user"},
		{name: "encoded sub-delim in param", agent: reader, req: "GET /v1/users/alice%40example.org", code: ok, rule: "get-user"},
		// %40me is @me to an upstream that decodes before routing: it must not pass as {name}.
		{name: "encoded literal does not take the param route", agent: reader, req: "GET /v1/users/%40me", code: decision.CodePathAmbiguous, viol: []string{"path encoded_literal"}},
		{name: "encoded literal, even with its scope", agent: admin, req: "GET /v1/users/%40me", code: decision.CodePathAmbiguous, viol: []string{"path encoded_literal"}},
		{name: "encoded literal deeper in the path", agent: reader, req: "GET /v1/users/%40me/profile", code: decision.CodePathAmbiguous, viol: []string{"path encoded_literal"}},
		{name: "encoded segment without literal sibling", agent: reader, req: "GET /v1/users/%40you", code: ok, rule: "get-user"},
		{name: "backtrack deeper than the literal", agent: reader, req: "GET /v1/users/@me/profile", code: ok, rule: "get-user-part"},
		{name: "two params", agent: reader, req: "GET /v1/pairs/5/true", code: ok, rule: "get-pair"},
		{name: "two params both bad", agent: reader, req: "GET /v1/pairs/0/yes", code: decision.CodePathParamInvalid, rule: "get-pair",
			viol: []string{"path.left minimum", "path.right type"}},
		{name: "two params maximum", agent: reader, req: "GET /v1/pairs/1001/false", code: decision.CodePathParamInvalid, rule: "get-pair", viol: []string{"path.left maximum"}},
		{name: "path integer leading zero", agent: reader, req: "GET /v1/pairs/007/true", code: decision.CodePathParamInvalid, rule: "get-pair", viol: []string{"path.left type"}},
		{name: "path param plus is not a space", agent: reader, req: "GET /v1/pairs/+5/true", code: decision.CodePathParamInvalid, rule: "get-pair", viol: []string{"path.left type"}},
		{name: "path param pattern", agent: admin, req: "DELETE /v1/things/ABC", code: decision.CodePathParamInvalid, rule: "delete-thing", viol: []string{"path.id pattern"}},

		// Query parameters of a strict route.
		{name: "string min_length", agent: reader, req: "GET /v1/things/search?q=", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q min_length"}},
		{name: "string max_length", agent: reader, req: "GET /v1/things/search?q=123456789", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q max_length"}},
		{name: "string max_length in bytes", agent: reader, req: "GET /v1/things/search?q=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q max_length"}},
		{name: "string decoded", agent: reader, req: "GET /v1/things/search?q=a+b%21", code: ok, rule: "search-things"},
		{name: "required given twice", agent: reader, req: "GET /v1/things/search?q=a&q=b", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q repeated"}},
		{name: "repeatable", agent: reader, req: "GET /v1/things/search?q=a&tag=red&tag=green&tag=red", code: ok, rule: "search-things"},
		{name: "repeatable checks each value", agent: reader, req: "GET /v1/things/search?q=a&tag=red&tag=blue", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.tag enum"}},
		{name: "enum is case-sensitive", agent: reader, req: "GET /v1/things/search?q=a&tag=Red", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.tag enum"}},
		{name: "not repeatable", agent: reader, req: "GET /v1/things/search?q=a&limit=1&limit=2", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.limit repeated"}},
		{name: "repeated once is one violation", agent: reader, req: "GET /v1/things/search?q=a&limit=1&limit=2&limit=3&limit=4", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.limit repeated"}},
		{name: "integer in range", agent: reader, req: "GET /v1/things/search?q=a&limit=100&offset=-5", code: ok, rule: "search-things"},
		{name: "integer minimum", agent: reader, req: "GET /v1/things/search?q=a&limit=0", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.limit minimum"}},
		{name: "integer maximum", agent: reader, req: "GET /v1/things/search?q=a&limit=101", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.limit maximum"}},
		{name: "integer plus sign", agent: reader, req: "GET /v1/things/search?q=a&offset=%2B5", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer plus as space", agent: reader, req: "GET /v1/things/search?q=a&offset=+5", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer leading zero", agent: reader, req: "GET /v1/things/search?q=a&offset=05", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer trailing space", agent: reader, req: "GET /v1/things/search?q=a&offset=5%20", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer minus zero", agent: reader, req: "GET /v1/things/search?q=a&offset=-0", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer overflow", agent: reader, req: "GET /v1/things/search?q=a&offset=9223372036854775808", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer min int64", agent: reader, req: "GET /v1/things/search?q=a&offset=-9223372036854775808", code: ok, rule: "search-things"},
		{name: "integer empty", agent: reader, req: "GET /v1/things/search?q=a&offset=", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "integer without value", agent: reader, req: "GET /v1/things/search?q=a&offset", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.offset type"}},
		{name: "boolean", agent: reader, req: "GET /v1/things/search?q=a&exact=false", code: ok, rule: "search-things"},
		{name: "boolean upper case", agent: reader, req: "GET /v1/things/search?q=a&exact=True", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.exact type"}},
		{name: "boolean as digit", agent: reader, req: "GET /v1/things/search?q=a&exact=1", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.exact type"}},
		{name: "uuid", agent: reader, req: "GET /v1/things/search?q=a&owner=" + uuid, code: ok, rule: "search-things"},
		{name: "uuid upper case", agent: reader, req: "GET /v1/things/search?q=a&owner=" + strings.ToUpper(uuid), code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.owner type"}},
		{name: "uuid without hyphens", agent: reader, req: "GET /v1/things/search?q=a&owner=" + strings.ReplaceAll(uuid, "-", ""), code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.owner type"}},
		{name: "uuid in braces", agent: reader, req: "GET /v1/things/search?q=a&owner=%7B" + uuid + "%7D", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.owner type"}},
		{name: "pattern", agent: reader, req: "GET /v1/things/search?q=a&code=ABC-12", code: ok, rule: "search-things"},
		{name: "pattern anchored at the end", agent: reader, req: "GET /v1/things/search?q=a&code=ABC-12x", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.code pattern"}},
		{name: "pattern anchored at the start", agent: reader, req: "GET /v1/things/search?q=a&code=xABC-12", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.code pattern"}},
		{name: "unknown parameter", agent: reader, req: "GET /v1/things/search?q=a&x=1", code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.x unknown"}},
		{name: "name differs by case", agent: reader, req: "GET /v1/things/search?Q=a", code: decision.CodeQueryInvalid, rule: "search-things",
			viol: []string{"query.Q unknown", "query.q required"}},
		{name: "encoded name is decoded", agent: reader, req: "GET /v1/things/search?%71=a", code: ok, rule: "search-things"},
		{name: "every violation listed", agent: reader, req: "GET /v1/things/search?limit=0&exact=1&zzz=1&tag=blue", code: decision.CodeQueryInvalid, rule: "search-things",
			viol: []string{"query.limit minimum", "query.exact type", "query.zzz unknown", "query.tag enum", "query.q required"}},
		{name: "method override parameter", agent: reader, req: "GET /v1/things/search?q=a&_method=DELETE", code: decision.CodeMethodOverride, rule: "search-things",
			viol: []string{"query._method method_override"}},
		{name: "method override parameter encoded", agent: reader, req: "GET /v1/things/search?q=a&%5Fmethod=DELETE", code: decision.CodeMethodOverride, rule: "search-things",
			viol: []string{"query._method method_override"}},

		// A route that strips unknown query parameters still refuses what could be read as a
		// declared one.
		{name: "strip unknown", agent: reader, req: "GET /v1/things?page=2&utm_source=x", code: ok, rule: "list-things", remove: []string{"utm_source"}},
		{name: "strip each name once", agent: reader, req: "GET /v1/things?utm=1&fbclid=z&utm=2", code: ok, rule: "list-things", remove: []string{"utm", "fbclid"}},
		{name: "strip nothing", agent: reader, req: "GET /v1/things?page=0&sort=desc", code: ok, rule: "list-things"},
		{name: "no query", agent: reader, req: "GET /v1/things", code: ok, rule: "list-things"},
		{name: "strip refuses case variant", agent: reader, req: "GET /v1/things?Page=2", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.Page unknown"}},
		{name: "strip refuses upper-case variant", agent: reader, req: "GET /v1/things?SORT=asc&x=1", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.SORT unknown"}},
		{name: "strip refuses percent-escapes", agent: reader, req: "GET /v1/things?utm%5Fsource=x", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.utm_source unknown"}},
		{name: "encoded declared name is the declared name", agent: reader, req: "GET /v1/things?p%61ge=1", code: ok, rule: "list-things"},
		{name: "strip still checks declared", agent: reader, req: "GET /v1/things?page=01&x=1", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.page type"}},
		{name: "strip still checks enum", agent: reader, req: "GET /v1/things?sort=up", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.sort enum"}},
		{name: "strip still refuses repeats", agent: reader, req: "GET /v1/things?page=1&page=2", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.page repeated"}},
		{name: "strip never strips method override", agent: reader, req: "GET /v1/things?x-http-method-override=DELETE", code: decision.CodeMethodOverride, rule: "list-things",
			viol: []string{"query.x-http-method-override method_override"}},
		{name: "strip never strips _METHOD", agent: reader, req: "GET /v1/things?_METHOD=DELETE", code: decision.CodeMethodOverride, rule: "list-things",
			viol: []string{"query._METHOD method_override"}},

		// Bodies: no route takes one.
		{name: "content-length", agent: reader, req: "GET /v1/things", hdr: headers{"content-length": "5"}, code: decision.CodeBodyNotAllowed, rule: "list-things", viol: []string{"body forbidden"}},
		{name: "content-length zero", agent: reader, req: "GET /v1/things", hdr: headers{"content-length": "0"}, code: ok, rule: "list-things"},
		{name: "chunked", agent: reader, req: "GET /v1/things", hdr: headers{"transfer-encoding": "chunked"}, code: decision.CodeBodyNotAllowed, rule: "list-things", viol: []string{"body forbidden"}},
		{name: "body", agent: reader, req: "GET /v1/things", body: "{}", code: decision.CodeBodyNotAllowed, rule: "list-things", viol: []string{"body forbidden"}},
		{name: "bad query before body", agent: reader, req: "GET /v1/things?sort=up", body: "{}", code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.sort enum"}},
	}
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, tc)
			d := snap.Decide(r)
			wantOutcome := decision.Deny
			if tc.code == decision.CodeAllowed {
				wantOutcome = decision.Allow
			}
			if d.Outcome != wantOutcome || d.Code != tc.code || d.Rule != tc.rule {
				t.Errorf("%s %s: got %s %s rule=%q, want %s %s rule=%q (%s)", r.Method, r.Target,
					d.Outcome, d.Code, d.Rule, wantOutcome, tc.code, tc.rule, d.Detail)
			}
			var viol []string
			for _, v := range d.Violations {
				viol = append(viol, v.Field+" "+v.Rule)
				if v.Message == "" {
					t.Errorf("violation %s has no message", v.Field)
				}
			}
			if fmt.Sprintf("%q", viol) != fmt.Sprintf("%q", tc.viol) {
				t.Errorf("violations = %q, want %q", viol, tc.viol)
			}
			if fmt.Sprintf("%q", d.RemoveQuery) != fmt.Sprintf("%q", tc.remove) {
				t.Errorf("RemoveQuery = %q, want %q", d.RemoveQuery, tc.remove)
			}
			if d.Status() != tc.code.Status() {
				t.Errorf("Status() = %d, want %d", d.Status(), tc.code.Status())
			}
			if wantOutcome == decision.Allow {
				if d.Grant == nil {
					t.Fatal("allowed without a grant")
				}
				checkGrant(t, hostKey(r.Host), d.Grant)
			} else {
				if d.Detail == "" {
					t.Error("denied without a detail")
				}
				if d.Grant != nil || d.RemoveQuery != nil {
					t.Errorf("a deny carries a grant %+v or strips %q", d.Grant, d.RemoveQuery)
				}
			}
		})
	}
}

// checkGrant checks what an allowed request to host carries.
func checkGrant(t *testing.T, host string, g *decision.Grant) {
	t.Helper()
	switch host {
	case "api.example.org":
		if len(g.Set) != 1 || g.Set[0].Name != "authorization" || g.Set[0].Value.Reveal() != "Bearer "+decideCredential {
			t.Errorf("grant sets %+v", g.Set)
		}
		// authorization is injected, so it is replaced rather than removed; the forwarded-context
		// headers the host does not trust are removed.
		if want := append([]string{"cookie"}, ForwardedHeaders()...); fmt.Sprint(g.Remove) != fmt.Sprint(want) {
			t.Errorf("grant removes %q, want %q", g.Remove, want)
		}
	default:
		if len(g.Set) != 0 || fmt.Sprint(g.Remove) != fmt.Sprint(ForwardedHeaders()) {
			t.Errorf("grant for %s = %+v, want the forwarded-context headers removed, nothing set", host, g)
		}
	}
}

func request(t *testing.T, tc decideCase) *Request {
	t.Helper()
	method, target, found := strings.Cut(tc.req, " ")
	if !found {
		t.Fatalf("req %q is not METHOD TARGET", tc.req)
	}
	r := &Request{Method: method, Target: target, Host: "api.example.org", Headers: tc.hdr, Body: []byte(tc.body)}
	if r.Headers == nil {
		r.Headers = headers{}
	}
	switch tc.host {
	case "":
	case "-":
		r.Host = ""
	default:
		r.Host = tc.host
	}
	if tc.agent != "" {
		r.Agent = spiffeid.RequireFromString(tc.agent)
	}
	return r
}

func TestDecidePartialBody(t *testing.T) {
	snap := loadDecidePolicy(t)
	d := snap.Decide(&Request{
		Agent: spiffeid.RequireFromString(reader), Method: "GET", Host: "api.example.org",
		Target: "/v1/things", Headers: headers{}, BodyPartial: true,
	})
	if d.Code != decision.CodeBodyNotAllowed {
		t.Errorf("partial body: %s, want %s", d.Code, decision.CodeBodyNotAllowed)
	}
}

// TestDecideTooManyViolations: a denial lists at most maxViolations.
func TestDecideTooManyViolations(t *testing.T) {
	snap := loadDecidePolicy(t)
	var q []string
	for i := 0; i < 3*maxViolations; i++ {
		q = append(q, "x"+strconv.Itoa(i)+"=1")
	}
	d := snap.Decide(&Request{
		Agent: spiffeid.RequireFromString(reader), Method: "GET", Host: "api.example.org",
		Target: "/v1/things/search?" + strings.Join(q, "&"), Headers: headers{},
	})
	if d.Code != decision.CodeQueryInvalid || len(d.Violations) != maxViolations {
		t.Errorf("got %s with %d violations, want %s with %d", d.Code, len(d.Violations), decision.CodeQueryInvalid, maxViolations)
	}
}

func TestParseInteger(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"-7", -7, true},
		{"100", 100, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"", 0, false},
		{"-", 0, false},
		{"-0", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{"-01", 0, false},
		{"+1", 0, false},
		{"+0", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1\t", 0, false},
		{"--1", 0, false},
		{"1-", 0, false},
		{"1_000", 0, false},
		{"1,000", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"0x10", 0, false},
		{"\u0661", 0, false}, // ARABIC-INDIC DIGIT ONE
		{"９", 0, false},      // FULLWIDTH DIGIT NINE
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"99999999999999999999", 0, false},
		{"00000000000000000001", 0, false},
	} {
		got, ok := parseInteger(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseInteger(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIsUUID(t *testing.T) {
	for in, want := range map[string]bool{
		"123e4567-e89b-12d3-a456-426614174000":   true,
		"00000000-0000-0000-0000-000000000000":   true,
		"123E4567-E89B-12D3-A456-426614174000":   false,
		"123e4567-e89b-12d3-a456-42661417400":    false,
		"123e4567-e89b-12d3-a456-4266141740000":  false,
		"123e4567e89b12d3a456426614174000":       false,
		"{123e4567-e89b-12d3-a456-426614174000}": false,
		"urn:uuid:123e4567-e89b-12d3-a456-42661": false,
		"123e4567-e89b-12d3-a456_426614174000":   false,
		"123e4567-e89b-12d3-a456-42661417400g":   false,
		"123e4567+e89b-12d3-a456-426614174000":   false,
		"":                                       false,
	} {
		if got := isUUID(in); got != want {
			t.Errorf("isUUID(%q) = %v, want %v", in, got, want)
		}
	}
}

// BenchmarkDecide measures decisions on the demo policy: an allow that reads only headers, an
// allow with a checked query, and denials at the query and at the route.
func BenchmarkDecide(b *testing.B) {
	snap := loadDemo(b, Options{Secrets: Placeholders})
	helpdesk := spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk")
	for _, bc := range []struct {
		name    string
		method  string
		target  string
		allowed bool
	}{
		{"allow", "GET", "/v1/tickets/12345", true},
		{"allow-query", "GET", "/v1/tickets?status=open&limit=50", true},
		{"deny-query", "GET", "/v1/tickets?status=open&limit=1000", false},
		{"deny-route", "GET", "/v1/admin/users", false},
		{"deny-scope", "DELETE", "/v1/tickets/12345", false},
	} {
		r := &Request{Agent: helpdesk, Method: bc.method, Host: "helpdesk.acme.internal", Target: bc.target,
			Headers: headers{"accept": "application/json", "user-agent": "agent/1.0"}}
		if d := snap.Decide(r); d.Allowed() != bc.allowed {
			b.Fatalf("%s: %+v", bc.name, d)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = snap.Decide(r)
			}
		})
	}
}
