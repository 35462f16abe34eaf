package policy_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// headerPolicy has one host with the defaults, one that refuses a header of its own and trusts
// two forwarded-context headers, and one that injects a forwarded-context header.
const headerPolicy = `trust_domains: [example.test]
agents:
  - id: spiffe://example.test/agent/a
    scopes: [read]
hosts:
  - name: plain.example.test
    remove_headers: [authorization]
    routes:
      - {name: plain-get, method: GET, path: /v1/things, scope: read}
  - name: custom.example.test
    refuse_headers: [x-rewrite-target]
    trust_forwarded_headers: [x-forwarded-prefix, forwarded]
    routes:
      - {name: custom-get, method: GET, path: /v1/things, scope: read}
  - name: injects.example.test
    inject_headers:
      - {name: x-forwarded-host, env: PUBLIC_HOST}
    routes:
      - {name: injects-get, method: GET, path: /v1/things, scope: read}
`

func loadHeaderPolicy(t *testing.T, yaml string) (*policy.Snapshot, error) {
	t.Helper()
	return policy.Load([]policy.File{{Name: "headers.yaml", Data: []byte(yaml), FS: fstest.MapFS{}, FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
}

func headerRequest(host, target string, h hdrs) *policy.Request {
	return &policy.Request{Agent: spiffeid.RequireFromString("spiffe://example.test/agent/a"),
		Method: "GET", Host: host, Target: target, Headers: h}
}

// TestOverrideHeadersRefused: every header that names another path, host or method is refused
// on every host, whatever its value, before the path is read or the host looked up: path and
// host overrides as header_override, method overrides as method_override.
func TestOverrideHeadersRefused(t *testing.T) {
	snap, err := loadHeaderPolicy(t, headerPolicy)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]decision.Code{
		"path_override": decision.CodeHeaderOverride, "host_override": decision.CodeHeaderOverride,
		"method_override": decision.CodeMethodOverride,
	}
	names := 0
	for rule, list := range policy.OverrideHeaders() {
		for _, name := range list {
			names++
			for _, host := range []string{"plain.example.test", "custom.example.test", "unknown.example.test"} {
				for _, target := range []string{"/v1/things", "/v1/%2e%2e/admin"} {
					for _, value := range []string{"/v1/admin", "", "evil.example.test"} {
						d := snap.Decide(headerRequest(host, target, hdrs{name: {value}}))
						wantRule := rule
						if rule == "method_override" {
							wantRule = "forbidden"
						}
						if d.Code != want[rule] || len(d.Violations) != 1 ||
							d.Violations[0].Field != "header."+name || d.Violations[0].Rule != wantRule || d.Status() != 400 {
							t.Errorf("%s: %q on %s %s: %s %+v; want %s header.%s %s", name, value, host, target,
								d.Code, d.Violations, want[rule], name, wantRule)
						}
					}
				}
			}
		}
	}
	for _, name := range []string{"x-original-url", "x-rewrite-url", "x-original-uri", "x-forwarded-uri",
		"x-envoy-original-path", "x-original-host", "x-http-method-override"} {
		found := false
		for _, list := range policy.OverrideHeaders() {
			found = found || slices.Contains(list, name)
		}
		if !found {
			t.Errorf("%s is not refused", name)
		}
	}
	if names < 14 {
		t.Errorf("%d override headers, want every one of the frameworks' (14 or more)", names)
	}
}

// TestRefuseHeadersPerHost: a host's refuse_headers are refused on that host only, as
// header_override, and a host without them allows the header.
func TestRefuseHeadersPerHost(t *testing.T) {
	snap, err := loadHeaderPolicy(t, headerPolicy)
	if err != nil {
		t.Fatal(err)
	}
	d := snap.Decide(headerRequest("custom.example.test", "/v1/things", hdrs{"x-rewrite-target": {"/admin"}}))
	if d.Code != decision.CodeHeaderOverride || len(d.Violations) != 1 || d.Violations[0].Field != "header.x-rewrite-target" ||
		d.Violations[0].Rule != "refused" || d.Status() != 400 {
		t.Errorf("custom host: %s %+v; want header_override header.x-rewrite-target refused", d.Code, d.Violations)
	}
	if d := snap.Decide(headerRequest("plain.example.test", "/v1/things", hdrs{"x-rewrite-target": {"/admin"}})); !d.Allowed() {
		t.Errorf("plain host: %s %+v; want allowed", d.Code, d.Violations)
	}
}

// TestForwardedHeadersStripped: on allow, every forwarded-context header is removed unless the
// host trusts it or injects it, and no header Envoy sets before the check is ever removed.
func TestForwardedHeadersStripped(t *testing.T) {
	snap, err := loadHeaderPolicy(t, headerPolicy)
	if err != nil {
		t.Fatal(err)
	}
	sent := hdrs{}
	for _, name := range policy.ForwardedHeaders() {
		sent[name] = []string{"evil.example.test"}
	}
	for _, tc := range []struct {
		host string
		keep []string
	}{
		{"plain.example.test", nil},
		{"custom.example.test", []string{"x-forwarded-prefix", "forwarded"}},
		{"injects.example.test", []string{"x-forwarded-host"}}, // replaced by the injected value
	} {
		d := snap.Decide(headerRequest(tc.host, "/v1/things", sent))
		if !d.Allowed() {
			t.Fatalf("%s: %s %+v", tc.host, d.Code, d.Violations)
		}
		for _, name := range policy.ForwardedHeaders() {
			if removed := slices.Contains(d.Grant.Remove, name); removed == slices.Contains(tc.keep, name) {
				t.Errorf("%s: %s removed=%v, want %v", tc.host, name, removed, !removed)
			}
		}
		for _, name := range policy.EnvoyHeaders() {
			if slices.Contains(d.Grant.Remove, name) {
				t.Errorf("%s: removes %s, which Envoy sets", tc.host, name)
			}
		}
		if tc.host == "injects.example.test" && (len(d.Grant.Set) != 1 || d.Grant.Set[0].Name != "x-forwarded-host") {
			t.Errorf("%s: sets %+v", tc.host, d.Grant.Set)
		}
	}
	for _, name := range policy.EnvoyHeaders() {
		if slices.Contains(policy.ForwardedHeaders(), name) {
			t.Errorf("%s is removed by default, but Envoy sets it", name)
		}
		for _, list := range policy.OverrideHeaders() {
			if slices.Contains(list, name) {
				t.Errorf("%s is refused, but Envoy sets it", name)
			}
		}
	}
}

// TestHeaderSettingsProblems: refuse_headers and trust_forwarded_headers that contradict each
// other, the defaults or Envoy are refused when the policy loads, at their line.
func TestHeaderSettingsProblems(t *testing.T) {
	for _, tc := range []struct{ replace, with, want string }{
		{"refuse_headers: [x-rewrite-target]", "refuse_headers: [x-original-url]", "refused on every host already"},
		{"refuse_headers: [x-rewrite-target]", "refuse_headers: [x-forwarded-for]", "set by Envoy"},
		{"refuse_headers: [x-rewrite-target]", "refuse_headers: [x-forwarded-prefix]", "both refused and trusted"},
		{"refuse_headers: [x-rewrite-target]", "refuse_headers: [content-type]", "cannot be refused"},
		{"refuse_headers: [x-rewrite-target]", "refuse_headers: [X-Rewrite-Target]", "refuse_headers[0]"},
		{"trust_forwarded_headers: [x-forwarded-prefix, forwarded]", "trust_forwarded_headers: [x-forwarded-for]", "trust_forwarded_headers[0]"},
		{"trust_forwarded_headers: [x-forwarded-prefix, forwarded]", "trust_forwarded_headers: [x-original-url]", "trust_forwarded_headers[0]"},
		{"remove_headers: [authorization]", "remove_headers: [authorization, x-host]\n    trust_forwarded_headers: [x-host]", "both trusted and removed"},
	} {
		yaml := strings.Replace(headerPolicy, tc.replace, tc.with, 1)
		_, err := loadHeaderPolicy(t, yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "headers.yaml:") {
			t.Errorf("%s: %v; want a problem with %q at its line", tc.with, err, tc.want)
		}
	}
	shadow := policy.File{Name: "shadow.yaml", FS: fstest.MapFS{}, FSDir: ".", Data: []byte(`shadow: true
hosts:
  - name: plain.example.test
    refuse_headers: [x-other]
    routes:
      - {name: plain-shadow, method: GET, path: /v1/other, scope: read}
`)}
	_, err := policy.Load([]policy.File{{Name: "headers.yaml", Data: []byte(headerPolicy), FS: fstest.MapFS{}, FSDir: "."}, shadow},
		policy.Options{Secrets: policy.Placeholders})
	if err == nil || !strings.Contains(err.Error(), "a shadow file cannot change the headers") {
		t.Errorf("a shadow file refusing headers of a host defined elsewhere: %v", err)
	}
}
