package policy_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// argsPolicy bounds Query.customers(first) to 1..100 and Query.revenue(quarter) to a pattern.
const argsPolicy = `trust_domains: [example.test]
agents:
  - id: spiffe://example.test/agent/bi
    scopes: [bi]
graphql:
  - name: bi
    schema: bi.graphql
    fields:
      - agents: [spiffe://example.test/agent/bi]
        allow: [Query.*, Customer.*]
    arguments:
      - field: Query.customers
        args:
          first: {minimum: 1, maximum: 100}
      - field: Query.revenue
        args:
          quarter: {pattern: "[0-9]{4}-Q[1-4]", required: true}
hosts:
  - name: bi.example.test
    routes:
      - {name: bi-post, method: POST, path: /graphql, scope: bi, graphql: bi}
      - {name: bi-get, method: GET, path: /graphql, scope: bi, graphql: bi}
`

var argsFS = fstest.MapFS{"bi.graphql": {Data: []byte(
	"type Query {\n  customers(first: Int, after: String): [Customer]\n  revenue(quarter: String): Int\n}\ntype Customer {\n  name: String\n}\n")}}

func loadArgsPolicy(yaml string) (*policy.Snapshot, error) {
	return policy.Load([]policy.File{{Name: "args.yaml", Data: []byte(yaml), FS: argsFS, FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
}

// TestGraphQLArgumentsPolicy: a GraphQL API's argument rules decide POST and GET requests
// (graphql_argument, 400), and rules the schema cannot take are problems at their line.
func TestGraphQLArgumentsPolicy(t *testing.T) {
	snap, err := loadArgsPolicy(argsPolicy)
	if err != nil {
		t.Fatal(err)
	}
	agent := spiffeid.RequireFromString("spiffe://example.test/agent/bi")
	for _, tc := range []struct {
		method, target, body string
		code                 decision.Code
		field                string
	}{
		{"POST", "/graphql", `{"query":"{ customers(first: 100) { name } }"}`, decision.CodeAllowed, ""},
		{"POST", "/graphql", `{"query":"{ customers(first: 2147483647) { name } }"}`, decision.CodeGraphQLArgument, "graphql.Query.customers(first)"},
		{"POST", "/graphql", `{"query":"query Q($n: Int) { c: customers(first: $n) { name } }","variables":{"n":101}}`, decision.CodeGraphQLArgument, "graphql.Query.customers(first)"},
		{"POST", "/graphql", `{"query":"{ customers(after: \"x\") { name } }"}`, decision.CodeGraphQLArgument, "graphql.Query.customers(after)"},
		{"POST", "/graphql", `{"query":"{ revenue }"}`, decision.CodeGraphQLArgument, "graphql.Query.revenue(quarter)"},
		{"GET", "/graphql?query=%7B%20customers(first%3A%20101)%20%7B%20name%20%7D%20%7D", "", decision.CodeGraphQLArgument, "graphql.Query.customers(first)"},
		{"GET", "/graphql?query=%7B%20revenue(quarter%3A%20%222026-Q2%22)%20%7D", "", decision.CodeAllowed, ""},
	} {
		r := &policy.Request{Agent: agent, Method: tc.method, Host: "bi.example.test", Target: tc.target,
			Headers: hdrs{"content-type": {"application/json"}}, Body: []byte(tc.body)}
		if tc.body == "" {
			r.Headers = hdrs{}
		}
		d := snap.Decide(r)
		if d.Code != tc.code || tc.field != "" && (len(d.Violations) == 0 || d.Violations[0].Field != tc.field) {
			t.Errorf("%s %s %s: %s %+v, want %s %s", tc.method, tc.target, tc.body, d.Code, d.Violations, tc.code, tc.field)
		}
		if tc.code == decision.CodeGraphQLArgument && d.Status() != 400 {
			t.Errorf("graphql_argument answers %d, want 400", d.Status())
		}
	}
	for _, tc := range []struct{ replace, with, want string }{
		{"first: {minimum: 1, maximum: 100}", "frist: {maximum: 100}", "args.yaml:14:18: graphql[0].arguments[0].args.frist: Query.customers has no argument frist"},
		{"first: {minimum: 1, maximum: 100}", "first: {pattern: x}", "graphql[0].arguments[0].args.first: pattern, min_length and max_length apply to String and ID arguments, not Int"},
		{"- field: Query.revenue", "- field: Query.revenu", "args.yaml:15:9: graphql[0].arguments[1]: type Query has no field revenu"},
		{"first: {minimum: 1, maximum: 100}", "first: {minimum: 100, maximum: 1}", "minimum must not exceed maximum"},
		{"- field: Query.revenue", "- field: query", "graphql[0].arguments[1].field"},
	} {
		_, err := loadArgsPolicy(strings.Replace(argsPolicy, tc.replace, tc.with, 1))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.with, err, tc.want)
		}
	}
}
