package gqlcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// FuzzCheckBody checks that no body panics, that a body strictjson refuses is never allowed,
// and that every allowed document, walked independently of the checker, holds no mutation or
// subscription and selects no field outside the bi agent's allowlist.
func FuzzCheckBody(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "bodies", "*.json"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	docs, _ := filepath.Glob(filepath.Join("testdata", "queries", "*.graphql"))
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body(f, string(b), "variables", map[string]any{"q": "2026-Q3"}))
		f.Add(body(f, string(b)))
	}
	for _, s := range []string{
		`{"query":"{ customers { ...F } } fragment F on Customer { name ... on Customer { email } }"}`,
		`{"query":"query A { customers { name } } query B { customers { phone } }","operationName":"A"}`,
		`{"query":"{ revenue(quarter: \"q\") { __typename t: total } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + strings.Repeat("a", 64) + `"}}}`,
		`[{"query":"{ customers { name } }"},{"query":"{ __type(name: \"Customer\") { name } }"}]`,
		`{"query":"query N($n: Int, $o: [Int!]) { customers(first: $n) { name } }","variables":{"n":1,"o":[1,2]}}`,
		`{"query":"{ ...R } fragment R on Query { ...S } fragment S on Query { ...R }"}`,
	} {
		f.Add([]byte(s))
	}
	c, fs := newChecker(f, Config{AllowBatch: true})
	allowed := map[string]bool{}
	for _, e := range biFields {
		allowed[e] = true
	}
	for _, fld := range []string{"total", "currency"} { // Revenue.*
		allowed["Revenue."+fld] = true
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := c.CheckBody(b, fs)
		checkResult(t, r)
		if strictjson.Check(b, strictjson.DefaultMaxDepth) != nil && r.OK() {
			t.Fatalf("allowed a body strictjson refuses: %q", b)
		}
		var entries []map[string]any
		var one map[string]any
		if json.Unmarshal(b, &one) == nil {
			entries = append(entries, one)
		} else if json.Unmarshal(b, &entries) != nil {
			entries = nil
		}
		for _, e := range entries {
			q, _ := e["query"].(string)
			if r.OK() {
				independent(t, c, allowed, q)
			}
			if q == "" {
				continue
			}
			name, _ := e["operationName"].(string)
			vars := ""
			if v, ok := e["variables"]; ok && v != nil {
				vb, _ := json.Marshal(v)
				vars = string(vb)
			}
			g := c.CheckParams(q, name, vars, fs)
			checkResult(t, g)
			if g.OK() {
				independent(t, c, allowed, q)
			}
		}
	})
}

// FuzzCheckQuery fuzzes the document and variables themselves (FuzzCheckBody mostly meets JSON
// errors), through both the POST and the GET path, with the same assertions.
func FuzzCheckQuery(f *testing.F) {
	docs, _ := filepath.Glob(filepath.Join("testdata", "queries", "*.graphql"))
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "", `{"q":"2026-Q3"}`)
	}
	f.Add("query A { customers { name } } query B { customers { phone } }", "A", "")
	f.Add("query N($n: Int, $o: [Int!]) { customers(first: $n) { ... on Customer { name } } }", "N", `{"n":1,"o":[1,2]}`)
	f.Add("{ ...R } fragment R on Query { customers { ...C } } fragment C on Customer { name orders { id } }", "", "")
	c, fs := newChecker(f, Config{})
	allowed := map[string]bool{"Revenue.total": true, "Revenue.currency": true}
	for _, e := range biFields {
		allowed[e] = true
	}
	f.Fuzz(func(t *testing.T, q, name, vars string) {
		m := map[string]any{"query": q, "operationName": name}
		if vars != "" {
			m["variables"] = json.RawMessage(vars)
		}
		b, err := json.Marshal(m)
		if err == nil {
			r := c.CheckBody(b, fs)
			checkResult(t, r)
			if r.OK() {
				independent(t, c, allowed, q)
			}
		}
		g := c.CheckParams(q, name, vars, fs)
		checkResult(t, g)
		if g.OK() {
			independent(t, c, allowed, q)
		}
	})
}

// checkResult checks the shape of any result: no internal error (a recovered panic), a 4xx
// status on deny, and short messages.
func checkResult(t *testing.T, r Result) {
	t.Helper()
	if r.OK() {
		if r.Detail != "" || len(r.Violations) != 0 {
			t.Fatalf("allow with detail: %+v", r)
		}
		return
	}
	if r.Code == decision.CodeInternal {
		t.Fatalf("internal error (a panic?): %+v", r)
	}
	if s := r.Code.Status(); s != 400 && s != 403 {
		t.Fatalf("status %d for %+v", s, r)
	}
	if len(r.Violations) == 0 || len(r.Violations) > maxViolations || len(r.Detail) > 400 {
		t.Fatalf("violations or detail out of bounds: %+v", r)
	}
	for _, v := range r.Violations {
		if len(v.Field) > 200 || len(v.Message) > 200 {
			t.Fatalf("long violation: %+v", v)
		}
	}
}

// independent parses and validates an allowed document again and walks every field with
// gqlparser's walker, checking it against the allowlist without the checker's code.
func independent(t *testing.T, c *Checker, allowed map[string]bool, q string) {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: q})
	if err != nil {
		t.Fatalf("allowed a document that does not parse: %v", err)
	}
	if errs := validator.ValidateWithRules(c.schema, doc, nil); len(errs) > 0 {
		t.Fatalf("allowed a document that does not validate: %v", errs)
	}
	for _, op := range doc.Operations {
		if op.Operation != ast.Query {
			t.Fatalf("allowed a %s in %q", op.Operation, q)
		}
	}
	var events validator.Events
	events.OnField(func(_ *validator.Walker, f *ast.Field) {
		if f.Name == "__typename" {
			return
		}
		parent := "<nil>"
		if f.ObjectDefinition != nil {
			parent = f.ObjectDefinition.Name
		}
		if !allowed[parent+"."+f.Name] {
			t.Fatalf("allowed forbidden field %s.%s in %q", parent, f.Name, q)
		}
	})
	validator.Walk(c.schema, doc, &events)
}
