package approval_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// req is the parts of a request Digest binds.
type req struct {
	agent, method, host, path, rule, ct string
	body                                string
}

func (r req) digest() string {
	return approval.Digest(r.agent, r.method, r.host, r.path, r.rule, r.ct, []byte(r.body))
}

var base = req{
	agent:  "spiffe://example.test/agent/payer",
	method: "POST",
	host:   "api.example.test",
	path:   "/v1/transfers?dry_run=false",
	rule:   "transfer",
	ct:     "application/json",
	body:   `{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
}

// TestDigestCanonicalJSON: how a JSON body is spelled does not matter, what it says does.
func TestDigestCanonicalJSON(t *testing.T) {
	want := base.digest()
	if len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "" {
		t.Fatalf("Digest = %q, want 64 hex digits", want)
	}
	same := map[string]string{
		"member order":   `{"to":"DE89 3704","meta":{"b":null,"a":[1,2.5,"x"]},"amount":1500}`,
		"whitespace":     " {\n  \"amount\" : 1500 ,\t\"to\":\"DE89 3704\",\r\n\"meta\":{ \"a\":[ 1, 2.5, \"x\" ], \"b\":null } }\n",
		"1500.0":         `{"amount":1500.0,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
		"1.5e3":          `{"amount":1.5e3,"to":"DE89 3704","meta":{"a":[1e0,25E-1,"x"],"b":null}}`,
		"15E+2":          `{"amount":15E+2,"to":"DE89 3704","meta":{"a":[1.000,2.50,"x"],"b":null}}`,
		"string escapes": `{"amount":1500,"t\u006f":"DE89\u00203704","meta":{"a":[1,2.5,"\u0078"],"b":null}}`,
	}
	for name, body := range same {
		r := base
		r.body = body
		if got := r.digest(); got != want {
			t.Errorf("%s: digest changed:\n%s\n%s", name, body, base.body)
		}
	}
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"} {
		r := base
		r.ct = ct
		if got := r.digest(); got != want {
			t.Errorf("content-type %q: digest changed", ct)
		}
	}
	different := map[string]string{
		"amount":         `{"amount":1501,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
		"amount string":  `{"amount":"1500","to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
		"array order":    `{"amount":1500,"to":"DE89 3704","meta":{"a":[2.5,1,"x"],"b":null}}`,
		"null vs false":  `{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":false}}`,
		"member added":   `{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null},"c":1}`,
		"member missing": `{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,"x"]}}`,
		"string case":    `{"amount":1500,"to":"de89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
		"nested":         `{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,["x"]],"b":null}}`,
	}
	for name, body := range different {
		r := base
		r.body = body
		if r.digest() == want {
			t.Errorf("%s: same digest for a different body:\n%s", name, body)
		}
	}
}

// TestDigestParts: every part of the request is bound, except the case of the host.
func TestDigestParts(t *testing.T) {
	want := base.digest()
	for name, change := range map[string]func(*req){
		"agent":       func(r *req) { r.agent = "spiffe://example.test/agent/other" },
		"agent case":  func(r *req) { r.agent = "spiffe://example.test/agent/Payer" },
		"method":      func(r *req) { r.method = "PUT" },
		"method case": func(r *req) { r.method = "post" },
		"host":        func(r *req) { r.host = "api2.example.test" },
		"host port":   func(r *req) { r.host = "api.example.test:443" },
		"path":        func(r *req) { r.path = "/v1/transfer?dry_run=false" },
		"path escape": func(r *req) { r.path = "/v1/%74ransfers?dry_run=false" },
		"query":       func(r *req) { r.path = "/v1/transfers?dry_run=true" },
		"no query":    func(r *req) { r.path = "/v1/transfers" },
		"rule":        func(r *req) { r.rule = "transfer-2" },
		"body":        func(r *req) { r.body = `{"amount":15000,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}` },
		"not JSON":    func(r *req) { r.ct = "text/plain" },
		"empty body":  func(r *req) { r.body = "" },
	} {
		r := base
		change(&r)
		if r.digest() == want {
			t.Errorf("changing the %s does not change the digest", name)
		}
	}
	r := base
	r.host = "API.Example.TEST"
	if r.digest() != want {
		t.Error("the host's case changes the digest; host names are case-insensitive")
	}
}

// TestDigestBytes: a body that is not JSON, or not strict JSON, is bound byte for byte.
func TestDigestBytes(t *testing.T) {
	for _, tc := range []struct {
		ct, a, b string
	}{
		{"text/plain", `{"a":1,"b":2}`, `{"b":2,"a":1}`},
		{"text/plain", "hello", "hello "},
		{"application/grpc", "\x00\x00\x00\x00\x02\x08\x01", "\x00\x00\x00\x00\x02\x08\x02"},
		{"", `{"a":1}`, `{ "a":1}`},
		{"application/json", `{"a":1,"a":2}`, `{"a":2,"a":1}`}, // duplicate names: not strict JSON
		{"application/json", `{"a":1} {}`, `{"a":1}  {}`},      // trailing data
		{"application/json", "not json", "not json "},
	} {
		x := base
		x.ct, x.body = tc.ct, tc.a
		y := x
		y.body = tc.b
		if x.digest() == y.digest() {
			t.Errorf("%s: %q and %q share a digest", tc.ct, tc.a, tc.b)
		}
		if z := x; z.digest() != x.digest() {
			t.Errorf("%s: %q: digest not stable", tc.ct, tc.a)
		}
	}
	// The same bytes as JSON and as something else are different requests.
	x, y := base, base
	y.ct = "text/plain"
	if x.digest() == y.digest() {
		t.Error("a JSON body and the same bytes as text/plain share a digest")
	}
}

// TestDigestNumberPrecision: RFC 8785 reads numbers as float64. Two numbers an upstream reads
// differently (two 64-bit account ids) must never share a digest because float64 cannot tell
// them apart; a number float64 holds exactly may still be spelled any way.
func TestDigestNumberPrecision(t *testing.T) {
	for _, pair := range [][2]string{
		{`{"account":9007199254740993}`, `{"account":9007199254740992}`},
		{`{"account":12345678901234567891}`, `{"account":12345678901234567890}`},
		{`{"x":0.10000000000000001}`, `{"x":0.1}`},
		{`{"x":1e400}`, `{"x":1e401}`},
		{`{"x":-1e-400}`, `{"x":0}`},
		{`{"x":1e999999999999}`, `{"x":1e999999999998}`},
	} {
		x, y := base, base
		x.body, y.body = pair[0], pair[1]
		if x.digest() == y.digest() {
			t.Errorf("%s and %s share a digest", pair[0], pair[1])
		}
	}
	for _, pair := range [][2]string{
		{`{"x":0.1}`, `{"x":1e-1}`},
		{`{"x":9007199254740992}`, `{"x":9.007199254740992e15}`},
		{`{"x":100}`, `{"x":1E2}`},
		{`{"x":-0.5}`, `{"x":-5e-1}`},
		{`{"x":0}`, `{"x":0.000e10}`},
		{`{"x":1e21}`, `{"x":1000000000000000000000}`},
		{`{"x":123456789012345680000}`, `{"x":1.2345678901234568e20}`},
	} {
		x, y := base, base
		x.body, y.body = pair[0], pair[1]
		if x.digest() != y.digest() {
			t.Errorf("%s and %s are the same value but have different digests", pair[0], pair[1])
		}
	}
}

// TestDigestLengthPrefixed: moving bytes from one part to the next makes another digest.
func TestDigestLengthPrefixed(t *testing.T) {
	seen := map[string]string{}
	for _, r := range []req{
		{agent: "spiffe://a/b", method: "POST", host: "h", path: "/p", rule: "r", body: "x"},
		{agent: "spiffe://a/bP", method: "OST", host: "h", path: "/p", rule: "r", body: "x"},
		{agent: "spiffe://a/b", method: "POSTh", host: "", path: "/p", rule: "r", body: "x"},
		{agent: "spiffe://a/b", method: "POST", host: "h/p", path: "", rule: "r", body: "x"},
		{agent: "spiffe://a/b", method: "POST", host: "h", path: "/pr", rule: "", body: "x"},
		{agent: "spiffe://a/b", method: "POST", host: "h", path: "/p", rule: "rx", body: ""},
		{agent: "spiffe://a/b", method: "POST", host: "h", path: "/p", rule: "", body: "rx"},
		{agent: "", method: "spiffe://a/bPOST", host: "h", path: "/p", rule: "r", body: "x"},
	} {
		d := r.digest()
		if prev, dup := seen[d]; dup {
			t.Errorf("%+v and %s share a digest", r, prev)
		}
		seen[d] = strings.ReplaceAll(strings.Join([]string{r.agent, r.method, r.host, r.path, r.rule, r.body}, "|"), "\n", " ")
	}
}

// TestDisplayBody: approvers see JSON pretty-printed with redacted fields replaced, and never
// the raw bytes of anything else.
func TestDisplayBody(t *testing.T) {
	body := `{"to":"DE89","secret":"hunter2","card":{"number":"4111111111111111","exp":"12/29"},` +
		`"items":[{"pin":"1234"},{"pin":"5678"}],"a/b":"slash","t~":"tilde","n":1.50,"amount":10000000000000000001}`
	got := approval.DisplayBody("application/json", []byte(body),
		[]string{"/secret", "/card/number", "/items/1/pin", "/a~1b", "/t~0", "/missing", "/items/9/pin", "/items/01/pin", "/to/deeper"})
	for _, secret := range []string{"hunter2", "4111111111111111", "5678", "slash", "tilde"} {
		if strings.Contains(got, secret) {
			t.Errorf("the display shows the redacted %q:\n%s", secret, got)
		}
	}
	for _, shown := range []string{`"to": "DE89"`, `"exp": "12/29"`, `"pin": "1234"`, `"secret": "[redacted]"`,
		`"number": "[redacted]"`, `"n": 1.50`, "10000000000000000001", "\n  "} {
		if !strings.Contains(got, shown) {
			t.Errorf("the display lacks %q:\n%s", shown, got)
		}
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Errorf("the display is not JSON: %v\n%s", err, got)
	}
	if _, ok := v["missing"]; ok {
		t.Error("redacting a missing member added it")
	}

	if got := approval.DisplayBody("application/json", []byte(`{"secret":"x"}`), []string{""}); got != `"[redacted]"` {
		t.Errorf("redacting the whole body: %s", got)
	}
	if got := approval.DisplayBody("application/json", nil, nil); got != "" {
		t.Errorf("no body: %q", got)
	}
	for _, tc := range []struct{ ct, body string }{
		{"text/plain", "password=hunter2"},
		{"application/json", `{"secret":"hunter2","secret":"hunter2"}`}, // not strict JSON
		{"application/json", `{"secret":"hunter2"`},
		{"application/grpc", "\x00\x00\x00\x00\x09hunter2"},
		{"", "hunter2"},
	} {
		got := approval.DisplayBody(tc.ct, []byte(tc.body), []string{"/secret"})
		if strings.Contains(got, "hunter2") || !strings.Contains(got, "not shown") {
			t.Errorf("%s %q is shown as %q; want a description without the bytes", tc.ct, tc.body, got)
		}
	}
}
