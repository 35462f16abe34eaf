package policy

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/decision"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden with the problems Load reports now (review the diff by hand)")

// unsetCredential is the environment variable the bad policies inject from; the tests unset it.
const unsetCredential = "AGENTAUTHZ_TEST_UNSET_CREDENTIAL"

// positioned is the shape of a problem that points at a node: "file:line:col: message".
var positioned = regexp.MustCompile(`^testdata/bad/[^:\s]+\.yaml:[0-9]+:[0-9]+: \S`)

// badCases says, for each policy under testdata/bad, what its problems must include. The golden
// files pin the exact text; these pin the facts a careless -update must not lose: which file,
// which line and column, which key.
var badCases = map[string]struct {
	must []string
	// unpositioned problems are allowed: they concern the whole file or the whole policy.
	unpositioned bool
}{
	"unknown-key": {must: []string{`unknown-key.yaml:5:5: unknown field "scoeps"`}},
	"wrong-type": {must: []string{
		`wrong-type.yaml:12:30: expected bool, got "yes"`,
		`wrong-type.yaml:14:43: invalid integer`,
		`wrong-type.yaml:16:17: expected scalar, got sequence`,
		`wrong-type.yaml:20:15: expected fields for agentauthz.policy.v1.Param, got scalar`,
	}},
	"validate": {must: []string{
		`validate.yaml:2:32: trust_domains[1]: does not match regex pattern`,
		`validate.yaml:9:15: hosts[0].routes[0].name: does not match regex pattern`,
		`validate.yaml:10:17: hosts[0].routes[0].method:`,
		`validate.yaml:11:15: hosts[0].routes[0].path:`,
		`validate.yaml:15:15: hosts[0].routes[1].path:`,
		`validate.yaml:16:16: hosts[0].routes[1].scope:`,
		`validate.yaml:18:22: hosts[0].routes[1].params["id"].type: must be in list`,
	}},
	"several": {must: []string{
		`several.yaml:5:5: unknown field "scoeps"`,
		`several.yaml:12:15: field env is already set for oneof source`,
		`several.yaml:18:22: expected scalar, got sequence`,
		`several.yaml:20:60: unknown field "requried"`,
		`several.yaml:4:9: agents[0].id: does not have prefix`,
		`several.yaml:8:22: hosts[0].remove_headers[0]:`,
	}},
	"two-files": {must: []string{
		`two-files/agents.yaml:5:5: unknown field "descripton"`,
		`two-files/hosts.yaml:5:17: hosts[0].routes[0].method:`,
	}},
	"duplicate-keys": {must: []string{
		`duplicate-keys.yaml:6:1: duplicate key "trustDomains" (first at line 2)`,
		`duplicate-keys.yaml:14:9: duplicate key "scope" (first at line 13)`,
		`duplicate-keys.yaml:21:11: duplicate key "page" (first at line 20)`,
	}},
	"camel-case-keys": {must: []string{
		`camel-case-keys.yaml:4:9: agents[0].id: trust domain "partner.example" is not in trust_domains`,
		`camel-case-keys.yaml:10:15: hosts[0].inject_headers[0].name: header host cannot be injected`,
		`camel-case-keys.yaml:21:20: hosts[0].routes[0].query._method: _method asks upstreams`,
	}},
	"duplicate-and-more": {must: []string{
		`duplicate-and-more.yaml:5:5: unknown field "scoeps"`,
		`duplicate-and-more.yaml:10:17: hosts[0].routes[0].method: does not match regex pattern`,
		`duplicate-and-more.yaml:13:9: duplicate key "scope" (first at line 12)`,
	}},
	"response-rules": {must: []string{
		`response-rules.yaml:19:11: hosts[0].routes[0].response: an MCP route's responses are its tools' results`,
		`response-rules.yaml:28:24: hosts[1].routes[0].response.json_schema: set allow or json_schema, not both`,
		`response-rules.yaml:34:23: hosts[1].routes[1].response.allow[1]: "~" in a JSON pointer`,
		`response-rules.yaml:36:24: hosts[1].routes[1].response.redact[0].pointer: /x is both allowed and removed`,
		`response-rules.yaml:49:24: hosts[1].routes[2].response.agents[2].agents[0]: agent spiffe://example.org/agent/a already has a response rule`,
		`response-rules.yaml:56:24: hosts[1].routes[3].response.json_schema: anyOf at response-anyof.schema.json#/properties/id`,
	}},
	"field-number-key": {must: []string{`field-number-key.yaml:13:9: key "4": write the field name scope, not its number`}},
	"anchors": {must: []string{
		`anchors.yaml:5:13: anchors (&read)`,
		`anchors.yaml:7:13: aliases (*read)`,
		`anchors.yaml:11:9: anchors (&base)`,
		`anchors.yaml:16:9: merge keys (<<)`,
	}},
	"two-documents": {must: []string{`two-documents.yaml:5:1: a policy file holds one YAML document`}},
	"empty":         {must: []string{`testdata/bad/empty.yaml: the file is empty`}, unpositioned: true},
	"comment-only":  {must: []string{`testdata/bad/comment-only.yaml: the file is empty`}, unpositioned: true},
	"syntax-error":  {must: []string{`testdata/bad/syntax-error.yaml:1: did not find expected ',' or ']'`}, unpositioned: true},
	"not-a-mapping": {must: []string{`not-a-mapping.yaml:1:1: expected fields for agentauthz.policy.v1.Policy, got sequence`}},
	"param-rules": {must: []string{
		`param-rules.yaml:14:18: hosts[0].routes[0].query["limit"]: minimum must not exceed maximum (param.range)`,
		`param-rules.yaml:15:17: hosts[0].routes[0].query["name"]: minimum and maximum apply only to type integer`,
		`param-rules.yaml:16:17: hosts[0].routes[0].query["page"]: pattern, enum, min_length and max_length apply only to type string`,
		`param-rules.yaml:17:14: hosts[0].routes[0].query["q"]: min_length must not exceed max_length`,
		`param-rules.yaml:18:22: hosts[0].routes[0].query["on"].type: must be in list`,
	}},
	"path-params": {must: []string{
		`path-params.yaml:11:15: hosts[0].routes[0].path: path parameter {id} has no type`,
		`path-params.yaml:19:17: hosts[0].routes[1].params.part: parameter "part" is not in the path`,
		`path-params.yaml:25:15: hosts[0].routes[2].params.id: path parameters are always required and single`,
		`path-params.yaml:31:15: hosts[0].routes[3].params.id: pattern: error parsing regexp: missing closing ]`,
		`path-params.yaml:37:15: hosts[0].routes[4].params.id: pattern: error parsing regexp: unexpected )`,
		`path-params.yaml:43:20: hosts[0].routes[5].query._method: _method asks upstreams to change the method`,
		`path-params.yaml:44:35: hosts[0].routes[5].query.X-HTTP-Method-Override: X-HTTP-Method-Override asks upstreams`,
	}},
	"agents": {must: []string{
		`agents.yaml:3:9: agents[0].id: trust domain "partner.example" is not in trust_domains`,
		`agents.yaml:5:9: agents[1].id: not a SPIFFE ID`,
		`agents.yaml:7:9: agents[2].id: not a SPIFFE ID`,
		`agents.yaml:11:9: agents[4].id: agent spiffe://acme.internal/agent/d is already defined at testdata/bad/agents.yaml agents[3]`,
	}},
	"duplicate-agent": {must: []string{`duplicate-agent/b.yaml:4:9: agents[0].id: agent spiffe://acme.internal/agent/a is already defined at testdata/bad/duplicate-agent/a.yaml agents[0]`}},
	"duplicates": {must: []string{
		`duplicates.yaml:18:9: hosts[0].routes[2]: GET /v1/t/{b} has the same method and path shape as route "get-thing-a" (/v1/t/{a})`,
		`duplicates.yaml:26:15: hosts[1].routes[0].name: route name "list-things" is already used at testdata/bad/duplicates.yaml hosts[0].routes[0]`,
		`duplicates.yaml:30:11: hosts[2].name: host api.acme.internal is already defined at testdata/bad/duplicates.yaml hosts[0]`,
	}},
	"templates": {must: []string{
		`templates.yaml:11:15: hosts[0].routes[0].path: dot segments are not allowed`,
		`templates.yaml:15:15: hosts[0].routes[1].path: dot segments are not allowed`,
		`templates.yaml:19:15: hosts[0].routes[2].path: segment "{id}x": a parameter takes a whole segment`,
		`templates.yaml:25:15: hosts[0].routes[3].path: segment "{}"`,
		`templates.yaml:29:15: hosts[0].routes[4].path: parameter {id} appears twice`,
		`templates.yaml:35:15: hosts[0].routes[5].path: parameter "{1st}": a name is letters, digits and _`,
	}},
	"template-encoded": {must: []string{
		`template-encoded.yaml:11:15: hosts[0].routes[0].path: does not match regex pattern`,
		`template-encoded.yaml:15:15: hosts[0].routes[1].path: does not match regex pattern`,
		`template-encoded.yaml:19:15: hosts[0].routes[2].path: does not match regex pattern`,
	}},
	"credentials": {must: []string{
		`credentials.yaml:10:9: hosts[0].inject_headers[0]: credential for header authorization: environment variable AGENTAUTHZ_TEST_UNSET_CREDENTIAL is not set`,
		`credentials.yaml:13:9: hosts[0].inject_headers[1]: credential for header x-api-key: cannot read credential file: open testdata/bad/missing-credential.txt:`,
	}},
	"inject-headers": {must: []string{
		`inject-headers.yaml:8:15: hosts[0].inject_headers[0].name: header host cannot be injected`,
		`inject-headers.yaml:10:15: hosts[0].inject_headers[1].name: header transfer-encoding cannot be injected`,
		`inject-headers.yaml:12:15: hosts[0].inject_headers[2].name: header connection cannot be injected`,
	}},
	"inject-pseudo-header": {must: []string{
		`inject-pseudo-header.yaml:8:15: hosts[0].inject_headers[0].name: does not match regex pattern`,
		`inject-pseudo-header.yaml:10:15: hosts[0].inject_headers[1].name: does not match regex pattern`,
	}},
	"no-trust-domains": {must: []string{`policy: no trust_domains`}, unpositioned: true},
	"oauth":            {},
	"oauth-schema":     {},
}

// TestLoadBadPolicies loads each policy under testdata/bad (a file, or a directory of files)
// and compares every problem Load reports with its golden file. Run with -update to rewrite
// the golden files, then review them by hand.
func TestLoadBadPolicies(t *testing.T) {
	t.Setenv(unsetCredential, "")
	os.Unsetenv(unsetCredential) // t.Setenv restores it after the test

	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() && filepath.Ext(e.Name()) != ".yaml" {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			tc, ok := badCases[name]
			if !ok {
				t.Fatalf("testdata/bad/%s has no entry in badCases", e.Name())
			}
			files, err := ReadPath(filepath.Join("testdata", "bad", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			snap, err := Load(files, Options{})
			if err == nil {
				t.Fatalf("Load succeeded (%+v); want problems", snap.Stats())
			}
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Load error is %T, not Problems: %v", err, err)
			}
			for _, p := range problems {
				if strings.ContainsAny(p, "\r\n") {
					t.Errorf("problem spans several lines:\n%s", p)
				}
				if !tc.unpositioned && !positioned.MatchString(p) {
					t.Errorf("problem has no file:line:col: position:\n%s", p)
				}
			}
			got := strings.Join(problems, "\n") + "\n"
			golden := filepath.Join("testdata", "bad", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestLoadBadPolicies -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\n--- got:\n%s--- want:\n%s", golden, got, want)
			}
			for _, m := range tc.must {
				if !strings.Contains(got, m) {
					t.Errorf("no problem contains %q; got:\n%s", m, got)
				}
			}
		})
	}
	for name := range badCases {
		if !seen[name] {
			t.Errorf("badCases names %s, which is not under testdata/bad", name)
		}
	}
}

func TestProblemsError(t *testing.T) {
	if got := (Problems{"a.yaml:1:1: x"}).Error(); got != "a.yaml:1:1: x" {
		t.Errorf("one problem: Error() = %q", got)
	}
	if got, want := (Problems{"a.yaml:1:1: x", "b.yaml:2:2: y"}).Error(), "2 problems:\na.yaml:1:1: x\nb.yaml:2:2: y"; got != want {
		t.Errorf("two problems: Error() = %q, want %q", got, want)
	}
}

func TestLoadNoFiles(t *testing.T) {
	if _, err := Load(nil, Options{}); err == nil {
		t.Fatal("Load(nil) succeeded")
	}
	dir := t.TempDir()
	if _, err := ReadPath(dir); err == nil || !strings.Contains(err.Error(), "holds no policy files") {
		t.Errorf("ReadPath(empty dir) = %v; want 'holds no policy files'", err)
	}
	if _, err := ReadPath(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("ReadPath(missing file) succeeded")
	}
}

// loadDemo loads the demo policy from the file system; package demo embeds the same files, but
// importing it here would be an import cycle.
func loadDemo(t testing.TB, opts Options) *Snapshot {
	t.Helper()
	files, err := ReadFS(os.DirFS("../internal/demo"), "policy")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Load(files, opts)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestLoadDemo(t *testing.T) {
	const token = "demo-token-sentinel-51b0"
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", token)
	snap := loadDemo(t, Options{}) // the real credential source, as serve uses
	if got, want := snap.Stats(), (Stats{Agents: 2, Hosts: 4, Routes: 9, MCPServers: 1, MCPTools: 4}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if rev := snap.Revision(); !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(rev) {
		t.Errorf("Revision() = %q, want 12 hex digits", rev)
	}
	d := snap.Decide(&Request{
		Agent: spiffeid.RequireFromString("spiffe://acme.internal/agent/helpdesk"), Method: "GET",
		Host: "helpdesk.acme.internal", Target: "/v1/tickets/42", Headers: headers{},
	})
	if !d.Allowed() || d.Rule != "get-ticket" {
		t.Fatalf("helpdesk GET /v1/tickets/42: %+v", d)
	}
	if len(d.Grant.Set) != 1 || d.Grant.Set[0].Name != "authorization" || d.Grant.Set[0].Value.Reveal() != "Bearer "+token {
		t.Errorf("grant sets %+v, want authorization: Bearer <token>", d.Grant.Set)
	}
	if got, want := d.Grant.Remove, append([]string{"cookie", "proxy-authorization"}, ForwardedHeaders()...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("grant removes %v, want %v (authorization is replaced, not removed; forwarded-context headers removed)", got, want)
	}
	assertNoSecret(t, token, d)

	files, err := ReadPath("../internal/demo/policy")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Dir != "../internal/demo/policy" {
		t.Errorf("ReadPath(dir) = %+v", files)
	}
}

func TestRevision(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/merge/trust.yaml", filepath.Join(dir, "trust.yaml"))
	copyFile(t, "testdata/merge/hosts.yml", filepath.Join(dir, "hosts.yml"))
	load := func() string {
		t.Helper()
		files, err := ReadPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := Load(files, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Revision()
	}
	first := load()
	if again := load(); again != first {
		t.Errorf("revision changed between two loads of the same files: %s, then %s", first, again)
	}

	// Files in another order: the same revision.
	files, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	reversed := []File{files[1], files[0]}
	snap, err := Load(reversed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Revision() != first {
		t.Errorf("revision depends on file order: %s vs %s", snap.Revision(), first)
	}

	// One byte more in one file (a comment): a new revision.
	hosts := filepath.Join(dir, "hosts.yml")
	data, err := os.ReadFile(hosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, append(data, "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := load()
	if edited == first {
		t.Errorf("revision %s did not change when a file changed", first)
	}
	// Back as it was: the first revision again.
	if err := os.WriteFile(hosts, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if restored := load(); restored != first {
		t.Errorf("revision after restoring the file = %s, want %s", restored, first)
	}
	// A line moved from the end of one file to the start of the next: the same bytes in the
	// same order, yet different files, so a new revision.
	trust, err := os.ReadFile("testdata/merge/trust.yaml")
	if err != nil {
		t.Fatal(err)
	}
	moved := func(first, second string) string {
		t.Helper()
		snap, err := Load([]File{{Name: "a.yaml", Data: []byte(first)}, {Name: "b.yaml", Data: []byte(second)}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Revision()
	}
	if moved(string(trust)+"# moved\n", string(data)) == moved(string(trust), "# moved\n"+string(data)) {
		t.Error("revision does not separate one file from the next")
	}
}

func TestLoadDirectoryMerges(t *testing.T) {
	files, err := ReadPath("testdata/merge")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.Name))
	}
	if got, want := strings.Join(names, " "), "hosts.yml trust.yaml"; got != want {
		t.Fatalf("ReadPath read %q, want %q: *_test.yaml, dotfiles, other extensions and subdirectories are not policy", got, want)
	}
	snap, err := Load(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := snap.Stats(), (Stats{Agents: 1, Hosts: 1, Routes: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	// The agent from one file may call the host from the other.
	d := snap.Decide(&Request{
		Agent: spiffeid.RequireFromString("spiffe://example.org/agent/a"), Method: "GET",
		Host: "api.example.org", Target: "/v1/things", Headers: headers{},
	})
	if !d.Allowed() {
		t.Errorf("merged policy denies: %+v", d)
	}
}

func TestIsPolicyFile(t *testing.T) {
	for name, want := range map[string]bool{
		"policy.yaml":           true,
		"policy.yml":            true,
		"dir/policy.yaml":       true,
		"policy_test.yaml":      false,
		"policy_test.yml":       false,
		"dir/policy_test.yaml":  false,
		"policy.test.yaml":      true,
		".policy.yaml":          false,
		"dir/.hidden.yaml":      false,
		"policy.yaml~":          false,
		"policy.yaml.bak":       false,
		"policy.json":           false,
		"policy.YAML":           false,
		"README.md":             false,
		"_test.yaml":            false,
		"contest.yaml":          true,
		"dir.yaml/inner_x.yaml": true,
		"api.openapi.yaml":      false,
		"api.openapi.yml":       false,
		"openapi.yaml":          true,
	} {
		if got := IsPolicyFile(name); got != want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestCredentialFile reads a credential from a file named relative to the policy file: its
// trailing newline is not part of it, and it never shows in a printed decision.
func TestCredentialFile(t *testing.T) {
	const secret = "file-credential-sentinel-7c1e"
	for _, path := range []string{"testdata/credentials", "testdata/credentials/policy.yaml"} {
		t.Run(path, func(t *testing.T) {
			files, err := ReadPath(path)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := Load(files, Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := snap.Decide(&Request{
				Agent: spiffeid.RequireFromString("spiffe://example.org/agent/a"), Method: "GET",
				Host: "api.example.org", Target: "/v1/things", Headers: headers{},
			})
			if !d.Allowed() {
				t.Fatalf("denied: %+v", d)
			}
			if got := d.Grant.Set[0].Value.Reveal(); got != secret {
				t.Errorf("credential = %q, want %q (one trailing newline trimmed)", got, secret)
			}
			assertNoSecret(t, secret, d)
		})
	}
}

// TestCredentialNeverInProblems loads policies whose credentials are read but refused, next to
// other problems, and checks that no problem quotes a credential.
func TestCredentialNeverInProblems(t *testing.T) {
	const envSecret, fileSecret = "env-secret-sentinel-93d2", "file-secret-sentinel-0a4f"
	t.Setenv("AGENTAUTHZ_TEST_CREDENTIAL", envSecret+"\nX-Injected: 1")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "crlf.txt"), fileSecret+"\r\nsecond line\n")
	writeFile(t, filepath.Join(dir, "nul.txt"), fileSecret+"\x00")
	writeFile(t, filepath.Join(dir, "empty.txt"), "\n")
	writeFile(t, filepath.Join(dir, "ok.txt"), fileSecret+"\n")
	writeFile(t, filepath.Join(dir, "policy.yaml"), `trust_domains: [example.org]
agents:
  - id: spiffe://example.org/agent/a
    scopes: [things:read]
  - id: spiffe://other.example/agent/b
hosts:
  - name: api.example.org
    inject_headers:
      - {name: x-env, env: AGENTAUTHZ_TEST_CREDENTIAL}
      - {name: x-crlf, file: crlf.txt}
      - {name: x-nul, file: nul.txt}
      - {name: x-empty, file: empty.txt}
      - {name: x-ok, file: ok.txt}
      - {name: x-ok, file: ok.txt}
    routes:
      - name: list-things
        method: GET
        path: /v1/things/{id}
        scope: things:read
`)
	files, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(files, Options{})
	var problems Problems
	if !errors.As(err, &problems) {
		t.Fatalf("Load = %v, want Problems", err)
	}
	text := err.Error()
	for _, s := range []string{envSecret, fileSecret, "X-Injected", "second line"} {
		if strings.Contains(text, s) {
			t.Errorf("problems quote credential text %q:\n%s", s, text)
		}
	}
	for _, m := range []string{
		"inject_headers[0]: credential for header x-env contains a line break or NUL",
		"inject_headers[1]: credential for header x-crlf contains a line break or NUL",
		"inject_headers[2]: credential for header x-nul contains a line break or NUL",
		"inject_headers[3]: credential for header x-empty: credential file " + filepath.Join(dir, "empty.txt") + " is empty",
		"inject_headers[5].name: header x-ok is injected twice",
		"agents[1].id: trust domain \"other.example\" is not in trust_domains",
		"path parameter {id} has no type",
	} {
		if !strings.Contains(text, m) {
			t.Errorf("no problem contains %q:\n%s", m, text)
		}
	}
	if len(problems) != 7 {
		t.Errorf("%d problems, want 7:\n%s", len(problems), text)
	}
}

// TestEmbeddedRelativeCredentialFile: an embedded policy has no directory to resolve against.
func TestEmbeddedRelativeCredentialFile(t *testing.T) {
	policy := []byte(`trust_domains: [example.org]
hosts:
  - name: api.example.org
    inject_headers:
      - {name: x-api-key, file: key.txt}
    routes:
      - {name: r, method: GET, path: /, scope: s}
`)
	called := 0
	_, err := Load([]File{{Name: "embedded.yaml", Data: policy}}, Options{Secrets: func(SecretRef) (string, error) {
		called++
		return "x", nil
	}})
	if err == nil || !strings.Contains(err.Error(), "embedded.yaml:5:33: hosts[0].inject_headers[0].file: an embedded policy cannot read credential files by relative path") {
		t.Errorf("Load = %v", err)
	}
	if called != 0 {
		t.Errorf("the secret source was called %d times", called)
	}
}

// TestSecretSourceCalledOncePerHeader: Load reads each credential once, with the file
// resolved against the policy file's directory.
func TestSecretSourceCalledOncePerHeader(t *testing.T) {
	var refs []SecretRef
	files, err := ReadPath("testdata/credentials/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(files, Options{Secrets: func(r SecretRef) (string, error) {
		refs = append(refs, r)
		return "v", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := SecretRef{File: filepath.Join("testdata", "credentials", "api-key.txt")}
	if len(refs) != 1 || refs[0] != want {
		t.Errorf("secret source called with %+v, want [%+v]", refs, want)
	}
	if got := want.String(); got != "file testdata/credentials/api-key.txt" {
		t.Errorf("SecretRef.String() = %q", got)
	}
	if got, _ := Placeholders(SecretRef{Env: "X"}); got != "<environment variable X>" {
		t.Errorf("Placeholders = %q", got)
	}
}

// assertNoSecret checks every way a decision may be printed or encoded.
func assertNoSecret(t *testing.T, secret string, d decision.Decision) {
	t.Helper()
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprint(d), fmt.Sprintf("%v", d), fmt.Sprintf("%+v", d), fmt.Sprintf("%#v", d),
		fmt.Sprint(*d.Grant), fmt.Sprintf("%+v", *d.Grant), fmt.Sprintf("%#v", *d.Grant),
		fmt.Sprint(d.Grant.Set), fmt.Sprintf("%s %q", d.Grant.Set[0].Value, d.Grant.Set[0].Value), string(js),
		string(d.Problem("id")),
	} {
		if strings.Contains(s, secret) {
			t.Errorf("the credential shows in %s", s)
		}
	}
	if got := fmt.Sprintf("%+v", *d.Grant); !strings.Contains(got, "[redacted]") {
		t.Errorf("grant prints as %s, want [redacted] for the value", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// headers is a Headers for tests: lower-case name to value, each header once.
type headers map[string]string

func (h headers) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}
