package gqlcheck

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
)

// FuzzArguments checks that no document or variables make the argument checker panic, and that
// whatever it allows keeps every rule when read independently of it: gqlparser's own reading
// of each field's arguments (Field.ArgumentMap, with the variables coerced as
// validator.VariableValues coerces them, schema defaults included), in every operation.
func FuzzArguments(f *testing.F) {
	for _, s := range []struct{ query, vars string }{
		{`{ customers(first: 100) { name } }`, ``},
		{`{ customers(first: 2147483647) { name } }`, ``},
		{`query Q($n: Int = 500) { customers(first: $n) { name } }`, `{}`},
		{`query Q($n: Int) { a: customers(first: $n) { name } }`, `{"n": 101}`},
		{`{ ...F } fragment F on Query { customers(first: 5, tags: ["a", "b"]) { orders(first: 60) { id } } }`, ``},
		{`query A { revenue(quarter: "2026-Q1") { total } } query B { customers(first: 500) { name } }`, `{}`},
		{`{ search(text: "x") { id ... on Customer { children(first: 9) { id } } } }`, ``},
		{`query Q($t: [String!], $m: Float) { customers(tags: $t, min: $m, region: US) { name } }`, `{"t": ["a"], "m": 1e300}`},
		{`{ node(id: 42) { children(first: 5) { ... on Order { total } } } ids(list: [1, null, "x"]) }`, ``},
		{`query Q($n: Int) { node(id: "1") { children(first: $n) { id } } }`, `{"n": 0}`},
		{`query Q($q: String! = "2026-Q4") { revenue(quarter: $q) { total } }`, `{"q": null}`},
	} {
		f.Add(s.query, s.vars)
	}
	c, fs := argsChecker(f)
	quarter := regexp.MustCompile(`^(?:[0-9]{4}-Q[1-4])$`)
	digits := regexp.MustCompile(`^(?:[0-9]+)$`)
	f.Fuzz(func(t *testing.T, query, vars string) {
		body := map[string]any{"query": query}
		if vars != "" {
			var v any
			dec := json.NewDecoder(strings.NewReader(vars))
			dec.UseNumber()
			if dec.Decode(&v) != nil {
				return
			}
			body["variables"] = v
		}
		data, err := json.Marshal(body)
		if err != nil {
			return
		}
		res := c.CheckBody(data, fs)
		checkResult(t, res)
		if !res.OK() || query == "" {
			return
		}
		doc, err := parser.ParseQuery(&ast.Source{Input: query})
		if err != nil {
			t.Fatalf("allowed a document that does not parse: %q", query)
		}
		//lint:ignore SA1019 the checker's own validation, repeated for the oracle
		if errs := validator.Validate(c.schema, doc); len(errs) > 0 {
			t.Fatalf("allowed a document that does not validate: %q: %v", query, errs)
		}
		raw, _ := body["variables"].(map[string]any)
		for _, op := range doc.Operations {
			coerced, err := validator.VariableValues(c.schema, op, raw)
			if err != nil {
				continue // another operation's declarations: the variables are not its own
			}
			oracleWalk(doc, op.SelectionSet, map[string]bool{}, func(fld *ast.Field) {
				if fld.Definition == nil || fld.ObjectDefinition == nil {
					return
				}
				args := argumentMap(fld, coerced)
				if args == nil {
					return
				}
				bad := func(what string) {
					t.Fatalf("allowed %q with variables %s: %s.%s %s (%v)", query, vars, fld.ObjectDefinition.Name, fld.Name, what, args)
				}
				parent := fld.ObjectDefinition.Name
				switch {
				case parent == "Query" && fld.Name == "customers":
					if n, ok := args["first"]; ok && n != nil && !inRange(n, 1, 100) {
						bad("first out of 1..100")
					}
					if m, ok := args["min"]; ok && m != nil && !inRange(m, 0, 1000) {
						bad("min out of 0..1000")
					}
					if r, ok := args["region"]; ok && r != nil && r != "EU" && r != "US" {
						bad("region not EU or US")
					}
					if l, ok := args["tags"].([]any); ok && len(l) > 3 {
						bad("more than 3 tags")
					}
					if fld.Arguments.ForName("after") != nil {
						bad("after given")
					}
				case parent == "Query" && fld.Name == "revenue":
					if q, ok := args["quarter"].(string); ok && !quarter.MatchString(q) {
						bad("quarter breaks the pattern")
					}
				case parent == "Query" && fld.Name == "search":
					if s, ok := args["text"].(string); !ok || s == "" {
						bad("text missing")
					}
					if n := args["limit"]; n == nil || !inRange(n, math.MinInt64, 100) {
						bad("limit over 100 or missing (its default is 500)")
					}
				case parent == "Query" && fld.Name == "node":
					if id, ok := args["id"].(string); ok && !digits.MatchString(id) {
						bad("id not digits")
					}
				case fld.Name == "children":
					if n, ok := args["first"]; ok && n != nil && !inRange(n, math.MinInt64, 5) {
						bad("children first over 5")
					}
					// Order.children takes at least 1, and a selection on Node may be an Order's.
					if n, ok := args["first"]; ok && n != nil && parent != "Customer" && !inRange(n, 1, 5) {
						bad("children first under 1 where the node may be an Order")
					}
				case parent == "Customer" && fld.Name == "orders":
					if n := args["first"]; n != nil && !inRange(n, math.MinInt64, 50) {
						bad("orders first over 50")
					}
				}
			})
		}
	})
}

// argumentMap is gqlparser's reading of a field's arguments, or nil where it panics (on a literal
// it cannot convert).
func argumentMap(f *ast.Field, vars map[string]any) (m map[string]any) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	return f.ArgumentMap(vars)
}

func inRange(v any, lo, hi float64) bool {
	switch x := v.(type) {
	case int64:
		return float64(x) >= lo && float64(x) <= hi
	case int:
		return float64(x) >= lo && float64(x) <= hi
	case float64:
		return x >= lo && x <= hi
	case json.Number:
		f, err := x.Float64()
		return err == nil && f >= lo && f <= hi
	}
	return false
}

// oracleWalk visits every field of a selection set, fragments expanded once each.
func oracleWalk(doc *ast.QueryDocument, ss ast.SelectionSet, done map[string]bool, visit func(*ast.Field)) {
	for _, sel := range ss {
		switch x := sel.(type) {
		case *ast.Field:
			visit(x)
			oracleWalk(doc, x.SelectionSet, done, visit)
		case *ast.InlineFragment:
			oracleWalk(doc, x.SelectionSet, done, visit)
		case *ast.FragmentSpread:
			if !done[x.Name] {
				done[x.Name] = true
				if def := doc.Fragments.ForName(x.Name); def != nil {
					oracleWalk(doc, def.SelectionSet, done, visit)
				}
			}
		}
	}
}
