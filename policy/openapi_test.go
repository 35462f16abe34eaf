package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

const (
	storeReader = "spiffe://example.org/agent/reader" // things:read, users:read
	storeWriter = "spiffe://example.org/agent/writer" // things:write
)

func loadStore(t testing.TB, dir string) (*Snapshot, error) {
	t.Helper()
	files, err := ReadPath(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return Load(files, Options{Secrets: Placeholders})
}

// copyStore copies testdata/openapi into a temporary directory, with policy.yaml replaced when
// policy is not empty.
func copyStore(t testing.TB, policy string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"policy.yaml", "store.openapi.yaml", "tight.schema.json"} {
		data, err := os.ReadFile(filepath.Join("testdata/openapi", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "policy.yaml" && policy != "" {
			data = []byte(policy)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestOpenAPIDecide: an OpenAPI host's operations decide as routes written by hand would, with
// the document's types and the policy's tightenings both applied.
func TestOpenAPIDecide(t *testing.T) {
	snap, err := loadStore(t, "testdata/openapi")
	if err != nil {
		t.Fatal(err)
	}
	const uuid = "123e4567-e89b-12d3-a456-426614174000"
	ok, held := decision.CodeAllowed, decision.CodeApprovalRequired
	json := headers{"content-type": "application/json"}
	host := "store.example.org"
	cases := []decideCase{
		{name: "list", agent: storeReader, req: "GET /v2/things?q=abc&page=5&color=red&color=blue&since=2024-01-31&price=1.5", code: ok, rule: "list-things"},
		{name: "no query", agent: storeReader, req: "GET /v2/things", code: ok, rule: "list-things"},
		{name: "page within the document's bound, beyond the policy's", agent: storeReader, req: "GET /v2/things?page=30",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.page maximum"}},
		{name: "page beyond the document's bound", agent: storeReader, req: "GET /v2/things?page=60",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.page maximum"}},
		{name: "maxLength counts characters", agent: storeReader, req: "GET /v2/things?q=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9", code: ok, rule: "list-things"},
		{name: "q too long", agent: storeReader, req: "GET /v2/things?q=12345678901",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.q max_length"}},
		{name: "array item outside the enum", agent: storeReader, req: "GET /v2/things?color=red&color=green",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.color enum"}},
		{name: "format checked by the schema", agent: storeReader, req: "GET /v2/things?since=2024-13-01",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.since format"}},
		{name: "number below its minimum", agent: storeReader, req: "GET /v2/things?price=-1",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.price minimum"}},
		{name: "not a number", agent: storeReader, req: "GET /v2/things?price=1e",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.price type"}},
		{name: "scalar repeated", agent: storeReader, req: "GET /v2/things?page=1&page=2",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.page repeated"}},
		{name: "undeclared parameter", agent: storeReader, req: "GET /v2/things?x=1",
			code: decision.CodeQueryInvalid, rule: "list-things", viol: []string{"query.x unknown"}},
		{name: "without the base path", agent: storeReader, req: "GET /things", code: decision.CodeRouteUnknown},
		{name: "uuid", agent: storeReader, req: "GET /v2/things/" + uuid, code: ok, rule: "get-thing"},
		{name: "not a uuid", agent: storeReader, req: "GET /v2/things/nope",
			code: decision.CodePathParamInvalid, rule: "get-thing", viol: []string{"path.id format"}},
		{name: "an operation no scope names", agent: storeReader, req: "DELETE /v2/things/" + uuid, code: decision.CodeRouteUnknown},
		{name: "the multipart upload the policy does not grant", agent: storeWriter, req: "POST /v2/upload", code: decision.CodeRouteUnknown},
		{name: "scope missing", agent: storeWriter, req: "GET /v2/things", code: decision.CodeScopeMissing, rule: "list-things"},
		{name: "granted by tag", agent: storeReader, req: "GET /v2/users/bob", code: ok, rule: "get-user"},
		{name: "pattern of the tag's operation", agent: storeReader, req: "GET /v2/users/Bob",
			code: decision.CodePathParamInvalid, rule: "get-user", viol: []string{"path.name pattern"}},
		{name: "required parameter missing", agent: storeReader, req: "GET /v2/search",
			code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q required"}},
		{name: "tightened min_length", agent: storeReader, req: "GET /v2/search?q=ab",
			code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.q min_length"}},
		{name: "an unanchored pattern matches anywhere", agent: storeReader, req: "GET /v2/search?q=abc&code=xaby", code: ok, rule: "search-things"},
		{name: "an unanchored pattern still must match", agent: storeReader, req: "GET /v2/search?q=abc&code=xy",
			code: decision.CodeQueryInvalid, rule: "search-things", viol: []string{"query.code pattern"}},
		{name: "held: the document's mark, honoured", agent: storeWriter, req: "POST /v2/things", hdr: json, body: `{"name":"lamp","note":null}`,
			code: held, rule: "create-thing"},
		{name: "the document's schema", agent: storeWriter, req: "POST /v2/things", hdr: json, body: `{"name":"lamp","extra":1}`,
			code: decision.CodeBodySchema, rule: "create-thing", viol: []string{"body additionalProperties"}},
		{name: "the policy's schema, first", agent: storeWriter, req: "POST /v2/things", hdr: json, body: `{"name":"a lamp of brass"}`,
			code: decision.CodeBodySchema, rule: "create-thing", viol: []string{"/name maxLength"}},
		{name: "int32", agent: storeWriter, req: "POST /v2/things", hdr: json, body: `{"name":"lamp","count":2147483648}`,
			code: decision.CodeBodySchema, rule: "create-thing", viol: []string{"/count format"}},
		{name: "the policy's size limit", agent: storeWriter, req: "POST /v2/things", hdr: json, body: `{"name":"lamp","note":"` + strings.Repeat("x", 300) + `"}`,
			code: decision.CodeBodyTooLarge, rule: "create-thing", viol: []string{"body max_bytes"}},
		{name: "the body is required", agent: storeWriter, req: "POST /v2/things",
			code: decision.CodeBodyMissing, rule: "create-thing", viol: []string{"body required"}},
		{name: "another content type", agent: storeWriter, req: "POST /v2/things", hdr: headers{"content-type": "text/plain"}, body: `{"name":"lamp"}`,
			code: decision.CodeBodyContentType, rule: "create-thing", viol: []string{"header.content-type media_type"}},
		{name: "a route written by hand beside the document's", agent: storeReader, req: "GET /health", code: ok, rule: "health"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.host = host
			r := request(t, tc)
			d := snap.Decide(r)
			var viol []string
			for _, v := range d.Violations {
				viol = append(viol, v.Field+" "+v.Rule)
			}
			if d.Code != tc.code || d.Rule != tc.rule || fmt.Sprint(viol) != fmt.Sprint(tc.viol) {
				t.Errorf("%s %s: %s rule=%q %q, want %s rule=%q %q (%s)", r.Method, r.Target, d.Code, d.Rule, viol, tc.code, tc.rule, tc.viol, d.Detail)
			}
			if tc.code == held && (d.Hold == nil || d.Hold.Reason != "New things are reviewed." || d.Hold.Approvers[0] != "group:ops") {
				t.Errorf("hold %+v", d.Hold)
			}
		})
	}
}

// TestOpenAPIProblems: what the policy says of a document that the document does not bear out
// is a problem when the policy loads, pointing at the policy's line or the document's.
func TestOpenAPIProblems(t *testing.T) {
	const head = "trust_domains: [example.org]\nhosts:\n  - name: store.example.org\n    openapi:\n      document: store.openapi.yaml\n"
	for _, c := range []struct {
		name, policy string
		want         []string
	}{
		{"operation the document lacks", head + "      operations:\n        - {id: listThing, scope: a}\n",
			[]string{`policy.yaml:7:16: hosts[0].openapi.operations[0].id: the document store.openapi.yaml has no operation "listThing"`}},
		{"tag the document lacks", head + "      tags:\n        - {tag: thing, scope: a}\n",
			[]string{`policy.yaml:7:17: hosts[0].openapi.tags[0].tag: no operation of the document store.openapi.yaml has tag "thing"`}},
		{"granted twice", head + "      tags:\n        - {tag: users, scope: a}\n      operations:\n        - {id: getUser, scope: b}\n",
			[]string{"operation getUser is granted scope b here and, by tag users, scope a"}},
		{"two tags, two scopes", head + "      tags:\n        - {tag: things, scope: a}\n        - {tag: admin, scope: b}\n" +
			"      ignore_approval_extension: true\n",
			[]string{"operation deleteThing has tags things and admin, granted different scopes (a, b): grant it by operationId"}},
		{"no scope", head + "      operations:\n        - {id: getUser}\n",
			[]string{"operation getUser has no scope"}},
		{"an operation that cannot be a route", head + "      operations:\n        - {id: upload, scope: a}\n",
			[]string{"store.openapi.yaml:55:5: operation upload cannot be granted (", "multipart/form-data, which agentauthz cannot check"}},
		{"tightening a parameter the operation lacks", head + "      operations:\n        - id: getUser\n          scope: a\n          query:\n            page: {type: integer}\n",
			[]string{`hosts[0].openapi.operations[0].query.page: operation getUser has no query parameter "page"`}},
		{"loosening: repeatable", head + "      operations:\n        - id: listThings\n          scope: a\n          query:\n            page: {type: integer, repeatable: true}\n",
			[]string{"the document allows page once: a policy can only tighten it"}},
		{"loosening: an optional body", head + "      ignore_approval_extension: true\n      operations:\n        - id: createThing\n          scope: a\n          body: {optional: true}\n",
			[]string{"the document requires a body: a policy can only tighten it"}},
		{"a route written by hand on an operation", head + "      operations:\n        - {id: getUser, scope: a}\n    routes:\n" +
			"      - {name: del, method: DELETE, path: \"/v2/things/{x}\", scope: a, params: {x: {type: string}}}\n",
			[]string{"DELETE /v2/things/{x} is operation deleteThing of the host's OpenAPI document: grant it under openapi"}},
		{"the approval mark unanswered", head + "      operations:\n        - {id: createThing, scope: a}\n",
			[]string{"the document marks it x-agentauthz-approval"}},
		{"the approval mark answered twice", head + "      ignore_approval_extension: true\n      approval_extension: {approvers: [group:ops]}\n",
			[]string{"honour the document's x-agentauthz-approval (approval_extension) or ignore it, not both"}},
		{"route names collide", head + "      operations:\n        - {id: getUser, scope: a}\n    routes:\n" +
			"      - {name: get-user, method: GET, path: /x, scope: a}\n",
			[]string{`route name "get-user" is already used`}},
		{"no such document", "trust_domains: [example.org]\nhosts:\n  - name: h.example.org\n    openapi: {document: nope.yaml}\n",
			[]string{"hosts[0].openapi.document: cannot read nope.yaml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyStore(t, c.policy)
			_, err := loadStore(t, dir)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Load: %v, want problems", err)
			}
			text := strings.ReplaceAll(problems.Error(), dir+string(filepath.Separator), "")
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("problems:\n%s\nwant one containing %q", text, w)
				}
			}
		})
	}
}

// TestOpenAPIDrift: lint with an older copy of the document reports each granted operation
// whose contract changed, and operations a tag newly grants, at their lines in the new document.
func TestOpenAPIDrift(t *testing.T) {
	dir := copyStore(t, "")
	old := filepath.Join(t.TempDir(), "store.openapi.yaml")
	orig, err := os.ReadFile(filepath.Join(dir, "store.openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := loadStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := snap.OpenAPIDrift(map[string]string{"store.openapi.yaml": old}); err != nil || len(got) != 0 {
		t.Fatalf("unchanged document: %q, %v", got, err)
	}

	// The API widens page, renames the body's schema field bound, adds an operation under the
	// users tag, and changes an operation the policy does not grant.
	changed := strings.NewReplacer(
		"maximum: 50", "maximum: 500",
		"name: {type: string, minLength: 1, maxLength: 20}", "name: {type: string, minLength: 1, maxLength: 200}",
		"  /search:", "  /users:\n    get:\n      operationId: listUsers\n      tags: [users]\n      responses: {\"200\": {description: ok}}\n  /search:",
		"deleted}}", "gone}}",
	).Replace(string(orig))
	if err := os.WriteFile(filepath.Join(dir, "store.openapi.yaml"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err = loadStore(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := snap.OpenAPIDrift(map[string]string{"store.openapi.yaml": old})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.Join(got, "\n"), dir+string(filepath.Separator), "")
	for _, w := range []string{
		"store.openapi.yaml:19:5: operation createThing changed since " + old + " under the grant of scope things:write (policy.yaml:",
		"): request body",
		"store.openapi.yaml:8:5: operation listThings changed since " + old + " under the grant of scope things:read (policy.yaml:",
		"): query parameter page",
		"operation listUsers is new since " + old + ", and tag users grants it scope users:read (policy.yaml:",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("drift:\n%s\nwant %q", text, w)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(got), text)
	}
	if _, err := snap.OpenAPIDrift(map[string]string{"other.yaml": old}); err == nil {
		t.Error("a baseline for a document the policy does not name was accepted")
	}
}

// TestRouteName: operationIds become route names.
func TestRouteName(t *testing.T) {
	for id, want := range map[string]string{
		"resetPassword": "reset-password", "ResetPassword": "reset-password", "reset_password": "reset-password",
		"getV2Thing": "get-v2-thing", "list-tickets": "list-tickets", "HTTPGet": "httpget", "a.b": "a.b",
	} {
		if got, ok := RouteName(id); !ok || got != want {
			t.Errorf("RouteName(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
	for _, id := range []string{"get/thing", "-x", "ünïcode", strings.Repeat("a", 65)} {
		if got, ok := RouteName(id); ok {
			t.Errorf("RouteName(%q) = %q, want a refusal", id, got)
		}
	}
}
