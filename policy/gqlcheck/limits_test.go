package gqlcheck

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

func TestVariables(t *testing.T) {
	c, fs := newChecker(t, Config{})
	const q = `query Q($q: String!) { revenue(quarter: $q) { total } }`
	const n = `query N($n: Int) { customers(first: $n) { name } }`
	tests := []struct {
		name  string
		query string
		vars  any
		code  decision.Code
		field string
	}{
		{"ok", q, map[string]any{"q": "2026-Q3"}, "", ""},
		{"number for string", q, map[string]any{"q": 5}, decision.CodeGraphQLInvalid, "graphql.variables.q"},
		{"missing", q, nil, decision.CodeGraphQLInvalid, "graphql.variables.q"},
		{"null", q, map[string]any{"q": nil}, decision.CodeGraphQLInvalid, "graphql.variables.q"},
		{"object for string", q, map[string]any{"q": map[string]any{"a": 1}}, decision.CodeGraphQLInvalid, "graphql.variables.q"},
		{"undeclared", q, map[string]any{"q": "x", "secret": "y"}, decision.CodeGraphQLInvalid, "graphql.variables.secret"},
		{"int ok", n, map[string]any{"n": 5}, "", ""},
		{"int absent", n, nil, "", ""},
		{"float for int", n, map[string]any{"n": 5.5}, decision.CodeGraphQLInvalid, "graphql.variables.n"},
		{"bool for int", n, map[string]any{"n": true}, decision.CodeGraphQLInvalid, "graphql.variables.n"},
		{"huge", n, map[string]any{"n": json.Number("1e999")}, decision.CodeGraphQLInvalid, "graphql.variables.n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := []any{}
			if tt.vars != nil {
				extra = []any{"variables", tt.vars}
			}
			want(t, c.CheckBody(body(t, tt.query, extra...), fs), tt.code, tt.field)
		})
	}
}

func TestVariableMessages(t *testing.T) {
	c, fs := newChecker(t, Config{})
	r := c.CheckBody([]byte(`{"query":"query Q($q: String!) { revenue(quarter: $q) { total } }","variables":{"q":5}}`), fs)
	if len(r.Violations) != 1 || r.Violations[0].Message != "must be String, not a number" ||
		r.Detail != "Variable $q (String!) must be String, not a number; fix it and retry." {
		t.Fatalf("%+v", r)
	}
	for msg, want := range map[string]string{
		"must be defined":                   "must be defined",
		"cannot use bool as Int":            "must be Int, not a boolean",
		"must be a Filter, not a slice":     "must be Filter, not a list",
		"SECRET is not a valid Color":       "does not match the declared type",
		"cannot use 1e+300 as ID: integers": "does not match the declared type",
	} {
		if got := safeMessage(msg); got != want {
			t.Errorf("safeMessage(%q) = %q, want %q", msg, got, want)
		}
	}
}

// repeat joins n copies of s with spaces; f gets the index when s contains %d.
func repeat(n int, s string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strings.ReplaceAll(s, "%d", strconv.Itoa(i))
	}
	return strings.Join(parts, " ")
}

// nested returns a document whose fields nest depth levels deep, all of them allowed:
// customers, then orders and customer in turn, then a leaf.
func nested(depth int) string {
	q := "name" // under a Customer
	if depth%2 == 1 {
		q = "id" // under an Order
	}
	for d := depth - 1; d >= 1; d-- {
		switch {
		case d == 1:
			q = "customers { " + q + " }"
		case d%2 == 0:
			q = "orders { " + q + " }"
		default:
			q = "customer { " + q + " }"
		}
	}
	return "{ " + q + " }"
}

func TestLimits(t *testing.T) {
	c, fs := newChecker(t, Config{})
	tests := []struct {
		name, query string
		code        decision.Code
		field       string
	}{
		{"depth 10", nested(10), "", ""},
		{"depth 11", nested(11), decision.CodeGraphQLLimit, "graphql.depth"},
		{"depth via fragments", "{ customers { ...A } } fragment A on Customer { orders { ...B } } fragment B on Order { customer { ...A } }", decision.CodeGraphQLInvalid, ""},
		{"depth 11 via fragments", "{ customers { ...A } } fragment A on Customer { orders { customer { orders { customer { ...B } } } } } fragment B on Customer { orders { customer { orders { customer { orders { id } } } } } }", decision.CodeGraphQLLimit, "graphql.depth"},
		{"10 aliases", "{ customers { " + repeat(10, "a%d: name") + " } }", "", ""},
		{"11 aliases", "{ customers { " + repeat(11, "a%d: name") + " } }", decision.CodeGraphQLLimit, "graphql.aliases"},
		{"500 aliases", "{ customers { " + repeat(500, "a%d: name") + " } }", decision.CodeGraphQLLimit, "graphql.aliases"},
		{"aliases via fragment", "{ customers { ...F ...F } orders: customers { ...F } } fragment F on Customer { a: name b: name c: name d: name }", decision.CodeGraphQLLimit, "graphql.aliases"},
		{"10 root fields", "{ " + repeat(10, "customers { name }") + " }", "", ""},
		{"11 root fields", "{ " + repeat(11, "customers { name }") + " }", decision.CodeGraphQLLimit, "graphql.root_fields"},
		{"root fields via fragment", "{ ...R ...R } fragment R on Query { " + repeat(6, "__typename") + " }", decision.CodeGraphQLLimit, "graphql.root_fields"},
		{"50 repeats", "{ customers { " + repeat(51, "name") + " } }", "", ""},
		{"51 repeats", "{ customers { " + repeat(52, "name") + " } }", decision.CodeGraphQLLimit, "graphql.repeated_fields"},
		// 1990 copies of one field took gqlparser's validator over a second: refused before it.
		{"1990 repeats", "{ customers { " + repeat(1990, "name") + " } }", decision.CodeGraphQLLimit, "graphql.repeated_fields"},
		{"repeats via fragments", "{ customers { name ...F ...F } } fragment F on Customer { " + repeat(30, "name") + " }", decision.CodeGraphQLLimit, "graphql.repeated_fields"},
		{"repeats of distinct fragments", "{ customers { " + repeat(60, "...F%d") + " } } " + repeat(60, "fragment F%d on Customer { name }"), decision.CodeGraphQLLimit, "graphql.repeated_fields"},
		{"repeated subtrees", "{ " + repeat(10, "customers { orders { id id id id id id } }") + " }", decision.CodeGraphQLLimit, "graphql.repeated_fields"},
		{"tokens", "{ customers { " + repeat(2000, "name") + " } }", decision.CodeGraphQLLimit, "graphql.tokens"},
		{"comment tokens", "{ customers { name } }" + strings.Repeat("#\n", 2000), decision.CodeGraphQLLimit, "graphql.tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, c.CheckBody(body(t, tt.query), fs), tt.code, tt.field)
		})
	}
}

// TestFragmentBomb: fragments spread twice at each of many levels expand to 2^n fields; the walk
// must stay linear and the limits must still see the expansion.
func TestFragmentBomb(t *testing.T) {
	c, fs := newChecker(t, Config{MaxTokens: 100000, MaxRootFields: 1000})
	var b strings.Builder
	b.WriteString("{ ...F0 }\n")
	for i := range 60 {
		b.WriteString("fragment F" + strconv.Itoa(i) + " on Query { ...F" + strconv.Itoa(i+1) + " ...F" + strconv.Itoa(i+1) + " }\n")
	}
	b.WriteString("fragment F60 on Query { __typename }\n")
	want(t, c.CheckBody(body(t, b.String()), fs), decision.CodeGraphQLLimit, "graphql.root_fields")
}
