package gqlcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// biFields is the bi agent's allowlist.
var biFields = []string{"Query.revenue", "Query.customers", "Revenue.*", "Customer.name",
	"Customer.orders", "Order.id", "Order.total", "Order.customer"}

func biSDL(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bi.graphql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newChecker compiles the BI schema with cfg's other settings and the bi agent's fields.
func newChecker(t testing.TB, cfg Config) (*Checker, *FieldSet) {
	t.Helper()
	cfg.SchemaName, cfg.SchemaSDL = "bi.graphql", biSDL(t)
	c, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Fields(biFields)
	if err != nil {
		t.Fatal(err)
	}
	return c, fs
}

// body builds a JSON request body.
func body(t testing.TB, query string, extra ...any) []byte {
	t.Helper()
	m := map[string]any{"query": query}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func want(t *testing.T, r Result, code decision.Code, field string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("code %q, want %q (detail %q, violations %+v)", r.Code, code, r.Detail, r.Violations)
	}
	if code != "" && (r.Detail == "" || len(r.Violations) == 0) {
		t.Fatalf("deny without detail or violations: %+v", r)
	}
	if field == "" {
		return
	}
	for _, v := range r.Violations {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("no violation of %s in %+v", field, r.Violations)
}

func TestTestdataQueries(t *testing.T) {
	c, fs := newChecker(t, Config{})
	wantCode := map[string]decision.Code{
		"deny_mutation":           decision.CodeGraphQLOperation,
		"deny_query_and_mutation": decision.CodeGraphQLOperation,
		"deny_subscription":       decision.CodeGraphQLOperation,
		"deny_email":              decision.CodeGraphQLField,
		"deny_alias":              decision.CodeGraphQLField,
		"deny_named_fragment":     decision.CodeGraphQLField,
		"deny_inline_fragment":    decision.CodeGraphQLField,
		"deny_nested":             decision.CodeGraphQLField,
		"deny_introspection":      decision.CodeGraphQLField,
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "queries", "*.graphql"))
	if len(files) < 10 {
		t.Fatalf("only %d test documents", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".graphql")
		t.Run(name, func(t *testing.T) {
			doc, _ := os.ReadFile(f)
			code, ok := wantCode[name]
			if !ok && !strings.HasPrefix(name, "allow_") {
				t.Fatal("no expectation for", name)
			}
			var extra []any
			if strings.Contains(string(doc), "$q") {
				extra = []any{"variables", map[string]any{"q": "2026-Q3"}}
			}
			if name == "deny_query_and_mutation" { // the query is selected: the mutation still counts
				extra = []any{"operationName", "Safe"}
			}
			r := c.CheckBody(body(t, string(doc), extra...), fs)
			want(t, r, code, "")
			if code != "" && code.Status() != 403 {
				t.Fatalf("status %d", code.Status())
			}
		})
	}
}

func TestCheckBody(t *testing.T) {
	const rev = `{ revenue(quarter: "2026-Q3") { total } }`
	tests := []struct {
		name  string
		cfg   Config
		body  string
		code  decision.Code
		field string
	}{
		{"typical", Config{}, `{"query":"query Q { revenue(quarter: \"2026-Q3\") { total currency } }"}`, "", ""},
		{"customers", Config{}, `{"query":"{ customers(first: 5) { name orders { id total } } }","operationName":null,"variables":null,"extensions":null}`, "", ""},
		{"typename", Config{}, `{"query":"{ __typename customers { __typename name } }"}`, "", ""},
		{"email", Config{}, `{"query":"{ customers(first: 5) { name email } }"}`, decision.CodeGraphQLField, "graphql.Customer.email"},
		{"alias", Config{}, `{"query":"{ customers { n: name e: email } }"}`, decision.CodeGraphQLField, "graphql.Customer.email"},
		{"named fragment", Config{}, `{"query":"fragment F on Customer { email } { customers { ...F } }"}`, decision.CodeGraphQLField, "graphql.Customer.email"},
		{"inline fragment", Config{}, `{"query":"{ customers { ... on Customer { phone } } }"}`, decision.CodeGraphQLField, "graphql.Customer.phone"},
		{"nested", Config{}, `{"query":"{ customers { orders { customer { phone } } } }"}`, decision.CodeGraphQLField, "graphql.Customer.phone"},
		{"mutation", Config{}, `{"query":"mutation { deleteCustomer(id: \"1\") }"}`, decision.CodeGraphQLOperation, "graphql.mutation"},
		{"query and mutation", Config{}, `{"query":"query A { revenue(quarter: \"q\") { total } } mutation B { deleteCustomer(id: \"1\") }","operationName":"A"}`, decision.CodeGraphQLOperation, "graphql.mutation"},
		{"subscription", Config{}, `{"query":"subscription { revenueChanged { total } }"}`, decision.CodeGraphQLOperation, "graphql.subscription"},
		{"mutation allowed", Config{Operations: []string{"query", "mutation"}}, `{"query":"mutation { deleteCustomer(id: \"1\") }"}`, decision.CodeGraphQLField, "graphql.Mutation.deleteCustomer"},
		{"unknown field", Config{}, `{"query":"{ revenue(quarter: \"2026-Q3\") { nosuchfield } }"}`, decision.CodeGraphQLInvalid, "graphql.query"},
		{"syntax", Config{}, `{"query":"{ revenue(quarter: \"2026-Q3\") { total }"}`, decision.CodeGraphQLInvalid, "graphql.query"},
		{"lexer", Config{}, `{"query":"{ revenue(quarter: \"2026-Q3) { total } }"}`, decision.CodeGraphQLInvalid, "graphql.query"},
		{"missing argument", Config{}, `{"query":"{ revenue { total } }"}`, decision.CodeGraphQLInvalid, "graphql.query"},
		{"only fragments", Config{}, `{"query":"fragment F on Customer { name }"}`, decision.CodeGraphQLInvalid, ""},
		{"schema", Config{}, `{"query":"{ __schema { types { name } } }"}`, decision.CodeGraphQLField, "graphql.Query.__schema"},
		{"type", Config{}, `{"query":"{ __type(name: \"Customer\") { fields { name } } }"}`, decision.CodeGraphQLField, "graphql.Query.__type"},
		{"schema in fragment", Config{}, `{"query":"{ ...F } fragment F on Query { __schema { queryType { name } } }"}`, decision.CodeGraphQLField, "graphql.Query.__schema"},
		{"schema allowed", Config{AllowIntrospection: true}, `{"query":"{ __schema { types { name } } }"}`, "", ""},
		{"type allowed", Config{AllowIntrospection: true}, `{"query":"{ __type(name: \"Customer\") { fields { name } } }"}`, "", ""},
		{"no operationName", Config{}, `{"query":"query A { revenue(quarter: \"q\") { total } } query B { revenue(quarter: \"r\") { total } }"}`, decision.CodeGraphQLInvalid, "graphql.operationName"},
		{"bad operationName", Config{}, `{"query":"query A { revenue(quarter: \"q\") { total } }","operationName":"B"}`, decision.CodeGraphQLInvalid, "graphql.operationName"},
		{"two queries named", Config{}, `{"query":"query A { revenue(quarter: \"q\") { total } } query B { customers { email } }","operationName":"A"}`, decision.CodeGraphQLField, "graphql.Customer.email"},
		{"duplicate query key", Config{}, `{"query":"` + strings.ReplaceAll(rev, `"`, `\"`) + `","query":"mutation{deleteCustomer(id:\"1\")}"}`, decision.CodeBodyMalformed, "body/query"},
		{"trailing data", Config{}, `{"query":"{ __typename }"} {}`, decision.CodeBodyMalformed, ""},
		{"invalid utf8", Config{}, "{\"query\":\"{ __typename } #\xff\"}", decision.CodeBodyMalformed, ""},
		{"unknown key", Config{}, `{"query":"{ __typename }","mutation":"x"}`, decision.CodeBodySchema, "body.mutation"},
		{"query not string", Config{}, `{"query":["{ __typename }"]}`, decision.CodeBodySchema, "body.query"},
		{"no query", Config{}, `{"operationName":"A"}`, decision.CodeBodySchema, "body.query"},
		{"empty query", Config{}, `{"query":""}`, decision.CodeBodySchema, "body.query"},
		{"blank query", Config{}, `{"query":"  # nothing\n"}`, decision.CodeGraphQLInvalid, ""},
		{"not an object", Config{}, `"{ __typename }"`, decision.CodeBodySchema, "body"},
		{"variables array", Config{}, `{"query":"{ __typename }","variables":[]}`, decision.CodeBodySchema, "body.variables"},
		{"other extension", Config{}, `{"query":"{ __typename }","extensions":{"tracing":true}}`, decision.CodeBodySchema, "body.extensions.tracing"},
		{"bad hash", Config{}, `{"query":"{ __typename }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"ABC"}}}`, decision.CodeBodySchema, "body.extensions.persistedQuery.sha256Hash"},
		{"wrong hash", Config{}, `{"query":"{ __typename }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + strings.Repeat("0", 64) + `"}}}`, decision.CodeGraphQLInvalid, "graphql.extensions.persistedQuery.sha256Hash"},
		{"batch off", Config{}, `[{"query":"{ revenue(quarter:\"q\") { total } }"},{"query":"mutation { deleteCustomer(id:\"1\") }"}]`, decision.CodeGraphQLLimit, "graphql.batch"},
		{"batch second", Config{AllowBatch: true}, `[{"query":"{ revenue(quarter:\"q\") { total } }"},{"query":"mutation { deleteCustomer(id:\"1\") }"}]`, decision.CodeGraphQLOperation, "graphql.mutation"},
		{"batch ok", Config{AllowBatch: true}, `[{"query":"{ revenue(quarter:\"q\") { total } }"},{"query":"{ customers { name } }"}]`, "", ""},
		{"batch empty", Config{AllowBatch: true}, `[]`, decision.CodeBodySchema, "body"},
		{"batch too long", Config{AllowBatch: true, MaxBatch: 2}, `[{"query":"{ __typename }"},{"query":"{ __typename }"},{"query":"{ __typename }"}]`, decision.CodeGraphQLLimit, "graphql.batch"},
		{"batch bad entry", Config{AllowBatch: true}, `[{"query":"{ __typename }"},{"query":"{ __typename }","x":1}]`, decision.CodeBodySchema, "body[1].x"},
		{"body depth", Config{MaxBodyDepth: 3}, `{"query":"{ __typename }","variables":{"a":{"b":{"c":1}}}}`, decision.CodeBodyMalformed, ""},
		{"var directive", Config{}, `{"query":"query Q($q: String! @deprecated) { revenue(quarter: $q) { total } }","variables":{"q":"x"}}`, decision.CodeGraphQLInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fs := newChecker(t, tt.cfg)
			want(t, c.CheckBody([]byte(tt.body), fs), tt.code, tt.field)
		})
	}
}

func TestBatchDetailNamesEntry(t *testing.T) {
	c, fs := newChecker(t, Config{AllowBatch: true})
	r := c.CheckBody([]byte(`[{"query":"{ revenue(quarter:\"q\") { total } }"},{"query":"mutation { deleteCustomer(id:\"1\") }"}]`), fs)
	if !strings.HasPrefix(r.Detail, "Batch entry 2 of 2: ") || r.Code.Status() != 403 {
		t.Fatalf("%+v", r)
	}
}

func TestCheckParams(t *testing.T) {
	c, fs := newChecker(t, Config{Operations: []string{"query", "mutation"}})
	want(t, c.CheckParams(`query Q($q: String!) { revenue(quarter: $q) { total } }`, "Q", `{"q":"2026-Q3"}`, fs), "", "")
	want(t, c.CheckParams(`{ customers(first: 5) { name } }`, "", "", fs), "", "")
	want(t, c.CheckParams(`mutation { deleteCustomer(id: "1") }`, "", "", fs), decision.CodeGraphQLOperation, "graphql.mutation")
	want(t, c.CheckParams(`{ customers { email } }`, "", "", fs), decision.CodeGraphQLField, "graphql.Customer.email")
	want(t, c.CheckParams("", "", "", fs), decision.CodeQueryInvalid, "query.query")
	want(t, c.CheckParams("{ __typename }", "", `{"a":1,"a":2}`, fs), decision.CodeQueryInvalid, "query.variables")
	want(t, c.CheckParams("{ __typename }", "", `[1]`, fs), decision.CodeQueryInvalid, "query.variables")
	want(t, c.CheckParams("{ __typename \xff }", "", "", fs), decision.CodeQueryInvalid, "query.query")
	want(t, c.CheckParams(`query Q($q: String!) { revenue(quarter: $q) { total } }`, "", `{"q":5}`, fs), decision.CodeGraphQLInvalid, "graphql.variables.q")
	want(t, c.CheckParams(`{ __typename }`, "", "null", fs), "", "")
}

func BenchmarkCheckBody(b *testing.B) {
	c, fs := newChecker(b, Config{})
	req := []byte(`{"query":"query Q { revenue(quarter: \"2026-Q3\") { total currency } }"}`)
	if r := c.CheckBody(req, fs); !r.OK() {
		b.Fatal(r)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.CheckBody(req, fs)
	}
}
