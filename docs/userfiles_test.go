package docs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy"
)

// The two other files users write, beside policies: policy test files and the approvers file.
// Their keys are described here, rendered into the reference, and checked against the decoders'
// own keys (TestUserFileKeys), so that neither can change without the other.
const (
	// testFileExample is the reference's example test file, run against exampleFile.
	testFileExample = "testdata/reference/example_test.yaml"
	// approversExample is the reference's example approvers file.
	approversExample = "testdata/approvers/approvers.yaml"
)

// userKey is one key of a user file: its type and what it means.
type userKey struct{ key, typ, desc string }

var testCaseKeys = []userKey{
	{"name", "string", "What the case checks, as failures name it. Required."},
	{"principal", "string", "The agent's SPIFFE ID, as the URI SAN of its X.509-SVID (what Envoy reports as the source principal). Left out: a request without a client certificate (an agent identified by an access token, or none)."},
	{"method", "string", "The HTTP method. Default GET."},
	{"host", "string", "The :authority the agent addresses, e.g. helpdesk.acme.internal. Required unless `check_request`."},
	{"path", "string", "The path and query exactly as sent, percent-encoding kept, e.g. /v1/tickets?status=open. Required unless `check_request`."},
	{"headers", "map of string to string", "Request headers, by lower-case name, e.g. {content-type: application/json}."},
	{"body", "string", "The request body, exactly as sent."},
	{"mcp", "[MCP message](#mcp-message)", "On an MCP route, the JSON-RPC message the agent sends, in place of `method` and `body`: the case POSTs it as application/json with the MCP headers."},
	{"claims", "map of string to any", "The claims of an OAuth access token the request carries as `Authorization: Bearer`, signed for this run with a key only the test knows (so a case proves nothing to a running server). `exp`, `nbf` and `iat` may be durations from now (5m, -1h); `exp` defaults to five minutes from now. Not together with an authorization header."},
	{"check_request", "string", "A CheckRequest as Envoy sends it (protojson, e.g. captured with grpcurl), by a path relative to the test file: the whole request. Not together with principal, method, host, path, headers, body, mcp or claims."},
	{"want", "string", "`allow` or `deny`. Required."},
	{"status", "integer", "The HTTP status the agent must get: 200 when allowed, the denial's status otherwise (403, 400, 428 for an approval hold, ...)."},
	{"code", "string", "The reason code the decision must carry (allowed, scope_missing, approval_required, ...)."},
	{"rule", "string", "The route that must decide, by name (an MCP tool as server/tool)."},
	{"violations", "list of string", "Fields the denial must name, e.g. query.limit, or body for a JSON body."},
	{"shadow_rule", "string", "The shadow route that must match the request too."},
	{"shadow_code", "string", "What that shadow route must decide (its reason code)."},
	{"response", "[response](#response)", "The upstream's answer to the allowed request, and what the agent must read of it under the route's (or tool's) response rule. Only with `want: allow`."},
}

var responseKeys = []userKey{
	{"status", "integer", "The answer's HTTP status. Default 200."},
	{"content_type", "string", "The answer's content type. Default application/json."},
	{"content_encoding", "string", "The answer's content-encoding, if any."},
	{"body", "string", "The answer's body, exactly as the upstream sends it."},
	{"file", "string", "A file holding the answer's body, relative to the test file, in place of `body`."},
	{"expect", "[expect](#expect)", "What the agent must get. Only what is set is checked."},
}

var responseExpectKeys = []userKey{
	{"removed", "list of string", "The field paths the rule removes, in any order; an empty list asserts none."},
	{"masked", "list of string", "The field paths the rule masks, in any order; an empty list asserts none."},
	{"body", "string", "The JSON the agent reads, compared as JSON (member order and spacing aside)."},
	{"refused", "boolean", "The answer is refused (502 `response_refused`)."},
	{"status", "integer", "The HTTP status the agent gets."},
	{"outcome", "string", "`passed`, `reduced`, `withheld` or `refused`."},
}

var mcpKeys = []userKey{
	{"method", "string", "The JSON-RPC method. Default tools/call when `tool` is given."},
	{"tool", "string", "The tool a tools/call calls (params.name)."},
	{"arguments", "map of string to any", "The tool's arguments (params.arguments)."},
	{"params", "map of string to any", "The params of another method (resources/read's uri, prompts/get's name)."},
	{"version", "string", "The MCP protocol revision the message is sent as: 2025-06-18, 2025-11-25 (the default) or 2026-07-28."},
}

var approversKeys = []userKey{
	{"approvers", "list of [approver](#approvers-file)", "Everyone who may sign in to the approvals API and console with a token. Required, at least one."},
}

var approverKeys = []userKey{
	{"name", "string", "The approver's name: what an approval rule's `user:NAME` names, and what the approval records. Required, unique in the file; a SPIFFE ID is refused (workloads never approve)."},
	{"groups", "list of string", "The groups the approver is in: what `group:NAME` names."},
	{"token_sha256", "string", "The SHA-256 of the approver's bearer token, as 64 hex digits (`printf '%s' \"$TOKEN\" \\| sha256sum`): the file never holds the token. Required; no two approvers may share a token."},
}

// renderUserFiles is the reference's sections on the test file and the approvers file.
func renderUserFiles(testExample, approvers string) string {
	var b strings.Builder
	b.WriteString("## Policy test files\n\n")
	b.WriteString("`agentauthz test DIR` runs the test files beside a policy: every file named \\*\\_test.yaml (or \\*\\_test.yml) in the policy's directory. " +
		"A test file is a YAML list of cases; each is a request as an agent sends it through Envoy, and what the policy must answer. " +
		"A key not listed here is an error, with its file and line. `agentauthz lint` reads the test files too, and reports a rule, an agent or a host the policy lacks (a case that wants an allow, or names a rule) and a reason code that does not exist.\n\n")
	renderKeys(&b, testCaseKeys)
	b.WriteString("An example, the tests of the example policy above ([docs/testdata/reference/example_test.yaml](testdata/reference/example_test.yaml), run by the test that writes this page):\n\n")
	b.WriteString("```yaml\n" + testExample + "```\n\n")
	b.WriteString("### MCP message\n\n")
	renderKeys(&b, mcpKeys)
	b.WriteString("### response\n\n")
	renderKeys(&b, responseKeys)
	b.WriteString("#### expect\n\n")
	renderKeys(&b, responseExpectKeys)
	b.WriteString("## Approvers file\n\n")
	b.WriteString("`agentauthz serve --approvers FILE` reads who may decide held requests with a bearer token (an identity provider may sign approvers in too: `--oidc-issuer`). " +
		"The file is read strictly: an unknown key, an empty name, a name listed twice, a malformed hash or a token shared by two approvers is an error, and every problem is reported at once. " +
		"`agentauthz lint --approvers FILE` reports each approval rule that none of the file's approvers may approve, and each `user:` or `group:` of a rule that names none of them.\n\n")
	renderKeys(&b, approversKeys)
	b.WriteString("Each approver:\n\n")
	renderKeys(&b, approverKeys)
	b.WriteString("An example ([docs/testdata/approvers/approvers.yaml](testdata/approvers/approvers.yaml), read by the test that writes this page):\n\n")
	b.WriteString("```yaml\n" + approvers + "```\n\n")
	return b.String()
}

func renderKeys(b *strings.Builder, keys []userKey) {
	b.WriteString("| key | type | description |\n|---|---|---|\n")
	for _, k := range keys {
		fmt.Fprintf(b, "| %s | %s | %s |\n", code(k.key), k.typ, k.desc)
	}
	b.WriteString("\n")
}

// yamlKeys are the keys a decoder's struct reads.
func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}

func keyNames(keys []userKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.key)
	}
	sort.Strings(out)
	return out
}

// TestUserFileKeys: the reference lists exactly the keys the test-file decoder reads. (The
// approvers file's keys are checked by internal/approval/signin's tests, against its decoder.)
func TestUserFileKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  reflect.Type
		keys []userKey
	}{
		{"test case", reflect.TypeFor[policytest.Case](), testCaseKeys},
		{"MCP message", reflect.TypeFor[policytest.MCP](), mcpKeys},
		{"response", reflect.TypeFor[policytest.Response](), responseKeys},
		{"expect", reflect.TypeFor[policytest.ResponseExpect](), responseExpectKeys},
	} {
		if got, want := keyNames(tc.keys), yamlKeys(tc.typ); !slices.Equal(got, want) {
			t.Errorf("%s: the reference lists %v; the decoder reads %v", tc.name, got, want)
		}
	}
	ref, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	section := string(ref)[strings.Index(string(ref), "## Approvers file"):]
	for _, k := range signin.FileKeys() {
		if !strings.Contains(section, "| `"+k+"` |") {
			t.Errorf("the reference's approvers file lacks key %s", k)
		}
	}
	if got, want := len(signin.FileKeys()), len(approversKeys)+len(approverKeys); got != want {
		t.Errorf("the approvers file has %d keys, the reference %d", got, want)
	}
}

// TestUserFileExamples: the reference's example test file passes against the example policy,
// and its example approvers file is read by serve's reader, each token its comment's command
// hashes signing in as its approver.
func TestUserFileExamples(t *testing.T) {
	files, err := policy.ReadPath(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policytest.ReadCases(testFileExample)
	if err != nil {
		t.Fatal(err)
	}
	if problems := policytest.Lint(cases, snap); len(problems) > 0 {
		t.Errorf("lint: %s", strings.Join(problems, "\n"))
	}
	claims := policytest.NewClaims(snap, nil)
	e := policytest.Engine(snap, nil, claims)
	for _, r := range policytest.Run(context.Background(), e, claims, cases) {
		if !r.Passed() {
			t.Errorf("%s:%d: %s: %s", r.File, r.Line, r.Name, strings.Join(r.Problems, "; "))
		}
	}

	tokens, err := signin.ReadTokens(approversExample)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens.Approvers()) != 2 {
		t.Fatalf("approvers: %v", tokens.Approvers())
	}
	// The tokens behind the example's hashes: each signs in as its approver.
	for token, name := range map[string]string{"7sJ0vQy2mZr9XbK4pL8eWc1nHd6uFa3T": "alice", "Qm4Zx8Rk2Vn6Yb1Lp9Wc3Hj7Fd5Ts0Ga": "bob"} {
		sum := sha256.Sum256([]byte(token))
		data, _ := os.ReadFile(approversExample)
		if !strings.Contains(string(data), hex.EncodeToString(sum[:])) {
			t.Errorf("the example lacks the hash of %s's token", name)
		}
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		who, err := tokens.Authenticate(r)
		if err != nil || who.Name != name {
			t.Errorf("%s's token signs in as %q (%v)", name, who.Name, err)
		}
	}
	// The command the reference gives hashes the token alone, without a newline.
	if !regexp.MustCompile(`printf '%s' "\$[A-Z_]+" \| sha256sum`).MatchString(readFile(t, approversExample)) {
		t.Error("the example approvers file no longer shows how to hash a token")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
