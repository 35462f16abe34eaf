package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// TestOpenAPIParameterForms: the style and explode forms a document declares are read as the
// document writes them, each item checked as the items' schema says, the array's bounds
// enforced, and every spelling two upstreams could read differently refused.
func TestOpenAPIParameterForms(t *testing.T) {
	snap, err := loadStore(t, "testdata/openapi-forms")
	if err != nil {
		t.Fatal(err)
	}
	const agent = "spiffe://example.org/agent/reader"
	ok, query, path := decision.CodeAllowed, decision.CodeQueryInvalid, decision.CodePathParamInvalid
	const s = "GET /search?page=1&"
	form, json := headers{"content-type": "application/x-www-form-urlencoded"}, headers{"content-type": "application/json"}
	cases := []decideCase{
		{name: "form, exploded", req: s + "tag=red&tag=green", code: ok},
		{name: "form, exploded: at most maxItems", req: s + "tag=red&tag=green&tag=blue&tag=grey", code: query, viol: []string{"query.tag max_items"}},
		{name: "form, exploded: at least minItems", req: s + "tag=red", code: query, viol: []string{"query.tag min_items"}},
		{name: "form, exploded: unique", req: s + "tag=red&tag=red", code: query, viol: []string{"query.tag unique_items"}},
		{name: "form, exploded: each item", req: s + "tag=red&tag=pink", code: query, viol: []string{"query.tag enum"}},
		{name: "form, exploded: one value holds one item", req: s + "tag=red,green&tag=blue", code: query, viol: []string{"query.tag enum"}},

		{name: "form, not exploded", req: s + "ids=1,2,999", code: ok},
		{name: "form, not exploded: an item", req: s + "ids=1,1000", code: query, viol: []string{"query.ids maximum"}},
		{name: "form, not exploded: maxItems", req: s + "ids=1,2,3,4,5", code: query, viol: []string{"query.ids max_items"}},
		{name: "form, not exploded: maxItems exactly", req: s + "ids=1,2,3,4", code: ok},
		{name: "form, not exploded: unique", req: s + "ids=1,2,1", code: query, viol: []string{"query.ids unique_items"}},
		{name: "form, not exploded: given once", req: s + "ids=1&ids=2", code: query, viol: []string{"query.ids repeated"}},
		{name: "form, not exploded: an encoded comma is ambiguous", req: s + "ids=1%2C2", code: query, viol: []string{"query.ids ambiguous"}},
		{name: "form, not exploded: an empty item", req: s + "ids=1,,2", code: query, viol: []string{"query.ids ambiguous"}},
		{name: "form, not exploded: a trailing comma", req: s + "ids=1,", code: query, viol: []string{"query.ids ambiguous"}},
		{name: "form, not exploded: empty", req: s + "ids=", code: query, viol: []string{"query.ids ambiguous"}},
		{name: "numbers the same as JSON values", req: s + "weights=1.5,1.50", code: query, viol: []string{"query.weights unique_items"}},
		{name: "numbers that differ", req: s + "weights=1.5,15e-1,2", code: query, viol: []string{"query.weights unique_items"}},
		{name: "numbers, unique", req: s + "weights=1.5,2", code: ok},

		{name: "spaceDelimited", req: s + "words=alpha%20beta+gamma", code: ok},
		{name: "spaceDelimited: each item", req: s + "words=alpha%20Beta", code: query, viol: []string{"query.words pattern"}},
		{name: "spaceDelimited: an empty item", req: s + "words=alpha%20%20beta", code: query, viol: []string{"query.words ambiguous"}},
		{name: "spaceDelimited: a comma is no delimiter", req: s + "words=alpha,beta", code: query, viol: []string{"query.words pattern"}},
		{name: "pipeDelimited", req: s + "codes=ab%7Ccd", code: ok},
		{name: "pipeDelimited: minItems", req: s + "codes=ab", code: query, viol: []string{"query.codes min_items"}},
		{name: "pipeDelimited: each item", req: s + "codes=ab%7Cabcd", code: query, viol: []string{"query.codes max_length"}},

		{name: "deepObject", req: s + "filter%5Bstatus%5D=open&filter%5Bowner%5D=bob", code: ok},
		{name: "deepObject: a property", req: s + "filter%5Bstatus%5D=pending", code: query, viol: []string{"query.filter[status] enum"}},
		{name: "deepObject: a property not listed", req: s + "filter%5Bcolor%5D=red", code: query, viol: []string{"query.filter[color] unknown"}},
		{name: "deepObject: the object itself is no parameter", req: s + "filter=open", code: query, viol: []string{"query.filter unknown"}},
		{name: "deepObject: a property once", req: s + "filter%5Bstatus%5D=open&filter%5Bstatus%5D=closed", code: query, viol: []string{"query.filter[status] repeated"}},

		{name: "form object: its required property", req: "GET /search?size=10", code: query, viol: []string{"query.page required"}},
		{name: "form object: a property", req: s + "size=51", code: query, viol: []string{"query.size maximum"}},
		{name: "form object: the object's name is no parameter", req: s + "paging=1", code: query, viol: []string{"query.paging unknown"}},

		{name: "simple path array", req: "GET /items/1,2,3/.red", code: ok},
		{name: "simple path array: maxItems", req: "GET /items/1,2,3,4/.red", code: path, viol: []string{"path.ids max_items"}},
		{name: "simple path array: an item", req: "GET /items/1,0/.red", code: path, viol: []string{"path.ids minimum"}},
		{name: "simple path array: an encoded comma", req: "GET /items/1%2C2/.red", code: path, viol: []string{"path.ids ambiguous"}},
		{name: "label", req: "GET /items/1/.green", code: ok},
		{name: "label: without its dot", req: "GET /items/1/green", code: path, viol: []string{"path.label style"}},
		{name: "label: an encoded dot is refused before", req: "GET /items/1/%2Egreen", code: decision.CodePathAmbiguous, viol: []string{"path encoded_dot"}},
		{name: "label: the value", req: "GET /items/1/.blue", code: path, viol: []string{"path.label enum"}},
		{name: "label array", req: "GET /colors/.red,green", code: ok},
		{name: "label array: unique", req: "GET /colors/.red,red", code: path, viol: []string{"path.colors unique_items"}},
		{name: "label array: exploded is not what the document says", req: "GET /colors/.red.green", code: path, viol: []string{"path.colors enum"}},

		{name: "form body", req: "POST /login", hdr: form, body: "user=bob&remember=true&scopes=read&scopes=write", code: ok},
		{name: "form body, charset", req: "POST /login", hdr: headers{"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, body: "user=bob", code: ok},
		{name: "form body: a field", req: "POST /login", hdr: form, body: "user=Bob", code: decision.CodeBodySchema, viol: []string{"body.user pattern"}},
		{name: "form body: required field", req: "POST /login", hdr: form, body: "remember=false", code: decision.CodeBodySchema, viol: []string{"body.user required"}},
		{name: "form body: unknown field", req: "POST /login", hdr: form, body: "user=bob&admin=true", code: decision.CodeBodySchema, viol: []string{"body.admin unknown"}},
		{name: "form body: a field once", req: "POST /login", hdr: form, body: "user=bob&user=eve", code: decision.CodeBodySchema, viol: []string{"body.user repeated"}},
		{name: "form body: an array's maxItems", req: "POST /login", hdr: form, body: "user=bob&scopes=read&scopes=write&scopes=read", code: decision.CodeBodySchema, viol: []string{"body.scopes max_items"}},
		{name: "form body: a method override", req: "POST /login", hdr: form, body: "user=bob&_method=DELETE", code: decision.CodeMethodOverride, viol: []string{"body._method method_override"}},
		{name: "form body: malformed", req: "POST /login", hdr: form, body: "user=bob&&remember=true", code: decision.CodeBodyMalformed, viol: []string{"body empty_pair"}},
		{name: "form body: a raw space", req: "POST /login", hdr: form, body: "user=bob smith", code: decision.CodeBodyMalformed, viol: []string{"body space"}},
		{name: "form body: not JSON", req: "POST /login", hdr: json, body: `{"user":"bob"}`, code: decision.CodeBodyContentType, viol: []string{"header.content-type media_type"}},
		{name: "form body: required", req: "POST /login", hdr: form, code: decision.CodeBodyMissing, viol: []string{"body required"}},
		{name: "JSON or form: JSON", req: "POST /notes", hdr: json, body: `{"text":"hi"}`, code: ok},
		{name: "JSON or form: JSON's schema", req: "POST /notes", hdr: json, body: `{"text":"hello, world"}`, code: decision.CodeBodySchema, viol: []string{"/text maxLength"}},
		{name: "JSON or form: form", req: "POST /notes", hdr: form, body: "text=hi", code: ok},
		{name: "JSON or form: the form's schema", req: "POST /notes", hdr: form, body: "text=hello%2C+world", code: decision.CodeBodySchema, viol: []string{"body.text max_length"}},
		{name: "JSON or form: JSON sent as a form", req: "POST /notes", hdr: form, body: `{"text":"hi"}`, code: decision.CodeBodyMalformed, viol: []string{"body character"}},
		{name: "JSON or form: the document's text/plain is refused", req: "POST /notes", hdr: headers{"content-type": "text/plain"}, body: "hi", code: decision.CodeBodyContentType, viol: []string{"header.content-type media_type"}},
		{name: "JSON or form: optional", req: "POST /notes", code: ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.host, tc.agent = "forms.example.org", agent
			r := request(t, tc)
			d := snap.Decide(r)
			var viol []string
			for _, v := range d.Violations {
				viol = append(viol, v.Field+" "+v.Rule)
			}
			if d.Code != tc.code || fmt.Sprint(viol) != fmt.Sprint(tc.viol) {
				t.Errorf("%s %s: %s %q, want %s %q (%s)", r.Method, r.Target, d.Code, viol, tc.code, tc.viol, d.Detail)
			}
		})
	}
}

// TestOpenAPIParameterFormProblems: a form agentauthz cannot check is a problem at the
// parameter's line in the document, never a looser check.
func TestOpenAPIParameterFormProblems(t *testing.T) {
	for _, c := range []struct{ param, want string }{
		{`{name: id, in: path, required: true, style: matrix, schema: {type: string}}`, "style matrix: a matrix parameter starts with ;"},
		{`{name: id, in: path, required: true, style: label, explode: true, schema: {type: array, items: {type: string}}}`, "a label array with explode: true"},
		{`{name: id, in: path, required: true, schema: {type: object, properties: {a: {type: string}}}}`, "an object path parameter"},
		{`{name: q, in: query, style: deepObject, schema: {type: object, properties: {_method: {type: string}}}}`, "query parameter _method asks upstreams to change the method"},
		{`{name: q, in: query, schema: {type: object, properties: {Id: {type: string}}}}`, "query parameter Id (property Id of q) clashes"},
	} {
		t.Run(c.want, func(t *testing.T) {
			dir := t.TempDir()
			doc := "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a/{id}:\n    get:\n      operationId: a\n      parameters:\n" +
				"        - {name: id, in: path, required: true, schema: {type: string}}\n        - {name: ID, in: query, schema: {type: string}}\n" +
				"        - " + c.param + "\n      responses: {'200': {description: ok}}\n"
			if strings.Contains(c.param, "in: path") {
				doc = strings.Replace(doc, "        - {name: id, in: path, required: true, schema: {type: string}}\n", "", 1)
			}
			pol := "trust_domains: [example.org]\nhosts:\n  - name: h.example.org\n    openapi:\n      document: api.yaml\n      operations:\n        - {id: a, scope: s}\n"
			for name, data := range map[string]string{"api.yaml": doc, "policy.yaml": pol} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := loadStore(t, dir)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Load: %v, want problems", err)
			}
			text := strings.ReplaceAll(problems.Error(), dir+string(filepath.Separator), "")
			if !strings.Contains(text, c.want) || !strings.Contains(text, "api.yaml:") {
				t.Errorf("problems:\n%s\nwant one at a line of api.yaml containing %q", text, c.want)
			}
		})
	}
}

// FuzzOpenAPIParameterForms decides requests with arbitrary queries, path segments and form
// bodies against the parameter forms policy: never a panic, and an allowed request is one every
// reading agrees on: each delimited array splits the same way before and after decoding, into
// no more items than the document allows, none of them empty.
func FuzzOpenAPIParameterForms(f *testing.F) {
	snap, err := loadStore(f, "testdata/openapi-forms")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("page=1&ids=1,2&words=a%20b&codes=a%7Cb&filter%5Bstatus%5D=open", "1,2", ".red", "user=bob&scopes=read")
	f.Add("page=1&tag=red&tag=green&weights=1.5,2", "3", ".green", "user=a&remember=false")
	f.Add("page=1&ids=1%2C2", "1%2C2", "green", "user=a&_method=PUT")
	f.Fuzz(func(t *testing.T, query, ids, label, form string) {
		for _, tc := range []decideCase{
			{req: "GET /search?" + query},
			{req: "GET /items/" + ids + "/" + label},
			{req: "POST /login", hdr: headers{"content-type": "application/x-www-form-urlencoded"}, body: form},
		} {
			tc.host, tc.agent = "forms.example.org", "spiffe://example.org/agent/reader"
			method, target, _ := strings.Cut(tc.req, " ")
			r := &Request{Method: method, Target: target, Host: tc.host, Headers: tc.hdr, Body: []byte(tc.body)}
			if r.Headers == nil {
				r.Headers = headers{}
			}
			r.Agent = spiffeid.RequireFromString(tc.agent)
			d := snap.Decide(r)
			if d.Code == "" {
				t.Fatalf("%s %s: no decision", method, target)
			}
			if d.Code != decision.CodeAllowed {
				continue
			}
			var delimited []string
			switch {
			case strings.HasPrefix(target, "/search?"):
				for _, pair := range strings.Split(query, "&") {
					if v, ok := strings.CutPrefix(pair, "ids="); ok {
						delimited = append(delimited, v)
					}
				}
			case strings.HasPrefix(target, "/items/") && !strings.ContainsAny(ids, "/?"):
				delimited = append(delimited, ids)
			}
			for _, v := range delimited {
				items := strings.Split(v, ",")
				if len(items) > 4 || strings.Contains(strings.ToLower(v), "%2c") || slices.Contains(items, "") {
					t.Fatalf("%s %s: allowed an ambiguous or oversized array %q", method, target, v)
				}
			}
		}
	})
}

// BenchmarkDecideParameterForms: the cost of reading parameters in the document's forms.
func BenchmarkDecideParameterForms(b *testing.B) {
	snap, err := loadStore(b, "testdata/openapi-forms")
	if err != nil {
		b.Fatal(err)
	}
	form := headers{"content-type": "application/x-www-form-urlencoded"}
	for _, c := range []struct{ name, method, target, body string }{
		{"form", "GET", "/search?page=1&size=10", ""},
		{"form-exploded-unique", "GET", "/search?page=1&tag=red&tag=green&tag=blue", ""},
		{"form-delimited-unique", "GET", "/search?page=1&ids=1,2,3,4", ""},
		{"deepObject", "GET", "/search?page=1&filter%5Bstatus%5D=open&filter%5Bowner%5D=bob", ""},
		{"label-path-array", "GET", "/colors/.red,green,blue", ""},
		{"form-body", "POST", "/login", "user=bob&remember=true&scopes=read&scopes=write"},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := headers{}
			if c.body != "" {
				h = form
			}
			r := &Request{Agent: spiffeid.RequireFromString("spiffe://example.org/agent/reader"), Method: c.method, Host: "forms.example.org",
				Target: c.target, Headers: h, Body: []byte(c.body)}
			b.ReportAllocs()
			for b.Loop() {
				if d := snap.Decide(r); d.Code != decision.CodeAllowed {
					b.Fatal(d.Code, d.Violations)
				}
			}
		})
	}
}
