package gqlcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/decision"
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
		{"duplicate query key", Config{}, `{"query":"` + strings.ReplaceAll(rev, `"`, `\"`) + `","query":"mutation{deleteCustomer(id:\"1\")}"}`, decision.CodeBodyMalformed, ""},
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

func TestPersisted(t *testing.T) {
	const doc = "query Q { revenue(quarter: \"2026-Q3\") { total currency } }"
	id, err := PersistedID(doc)
	if err != nil {
		t.Fatal(err)
	}
	same, _ := PersistedID("# a comment\nquery   Q {\n  revenue(quarter: \"2026-Q3\") {\n total, currency }\n}\n")
	if same != id || !isHash(id) {
		t.Fatalf("id %s, reformatted %s", id, same)
	}
	if other, _ := PersistedID(`query Q { revenue(quarter: "2026-Q4") { total currency } }`); other == id {
		t.Fatal("different documents share an id")
	}
	if _, err := PersistedID("{"); err == nil {
		t.Fatal("no error for a broken document")
	}
	c, fs := newChecker(t, Config{Persisted: []string{id}, PersistedOnly: true})
	want(t, c.CheckBody(body(t, doc), fs), "", "")
	want(t, c.CheckBody(body(t, "query Q {revenue(quarter:\"2026-Q3\"){total,currency}} # same"), fs), "", "")
	want(t, c.CheckBody(body(t, `{ customers { name } }`), fs), decision.CodeGraphQLNotPersisted, "graphql.query")
	want(t, c.CheckParams(`{ customers { name } }`, "", "", fs), decision.CodeGraphQLNotPersisted, "graphql.query")
	ext := func(h string) map[string]any {
		return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": h}}
	}
	want(t, c.CheckBody(body(t, doc, "extensions", ext(id)), fs), "", "")
	want(t, c.CheckBody(body(t, doc, "extensions", ext(sha256Hex(doc))), fs), "", "") // Apollo: hash of the text sent
	want(t, c.CheckBody(body(t, doc, "extensions", ext(strings.Repeat("a", 64))), fs), decision.CodeGraphQLInvalid, "")
	// Persisted documents are still checked.
	bad := `{ customers { email } }`
	badID, _ := PersistedID(bad)
	c2, fs2 := newChecker(t, Config{Persisted: []string{badID}, PersistedOnly: true})
	want(t, c2.CheckBody(body(t, bad), fs2), decision.CodeGraphQLField, "graphql.Customer.email")
	// Without PersistedOnly, the list refuses nothing.
	c3, fs3 := newChecker(t, Config{Persisted: []string{id}})
	want(t, c3.CheckBody(body(t, `{ customers { name } }`), fs3), "", "")
}

func TestNilAndForeignFieldSet(t *testing.T) {
	c, fs := newChecker(t, Config{})
	want(t, c.CheckBody(body(t, `{ __typename }`), nil), decision.CodeGraphQLField, "graphql.Query.__typename")
	want(t, c.CheckBody(body(t, `{ revenue(quarter: "q") { total } }`), nil), decision.CodeGraphQLField, "graphql.Query.revenue")
	empty, err := c.Fields(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, c.CheckBody(body(t, `{ __typename }`), empty), "", "")
	want(t, c.CheckBody(body(t, `{ customers { name } }`), empty), decision.CodeGraphQLField, "graphql.Query.customers")
	other, _ := newChecker(t, Config{})
	want(t, other.CheckBody(body(t, `{ __typename }`), fs), decision.CodeInternal, "")
}

// TestVariableDirective: the normalised form drops directives on variable definitions, so they
// are refused even where the schema defines one.
func TestVariableDirective(t *testing.T) {
	c, err := Compile(Config{SchemaSDL: "directive @v on VARIABLE_DEFINITION\ntype Query { a(x: Int): Int }"})
	if err != nil {
		t.Fatal(err)
	}
	fs, _ := c.Fields([]string{"Query.a"})
	want(t, c.CheckBody([]byte(`{"query":"query Q($x: Int @v) { a(x: $x) }"}`), fs), decision.CodeGraphQLInvalid, "graphql.variables.x")
	want(t, c.CheckBody([]byte(`{"query":"query Q($x: Int) { a(x: $x) }"}`), fs), "", "")
}

func TestCompileErrors(t *testing.T) {
	_, err := Compile(Config{SchemaName: "bad.graphql", SchemaSDL: "type Query {\n  a: Int\n  b: \n}",
		Operations: []string{"query", "delete"}, MaxDepth: -1, Persisted: []string{"ABC", strings.Repeat("0", 64)}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, s := range []string{"bad.graphql:4:1", `"delete"`, "max_depth", "persisted[0]"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q:\n%v", s, err)
		}
	}
	if _, err := Compile(Config{SchemaSDL: "type Query { a: Int }", PersistedOnly: true}); err == nil {
		t.Error("persisted_only without persisted compiled")
	}
	if _, err := Compile(Config{SchemaSDL: " "}); err == nil {
		t.Error("empty schema compiled")
	}
	c, _ := newChecker(t, Config{})
	_, err = c.Fields([]string{"Customer.name", "Nope.x", "Customer.ssn", "Customer", "Query.__schema", "String.*", "Revenue.*"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, s := range []string{"Nope.x", "Customer.ssn", `"Customer"`, "Query.__schema", "String.*"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q:\n%v", s, err)
		}
	}
}

// TestNoEcho: secrets in variables and long documents do not come back in results.
func TestNoEcho(t *testing.T) {
	c, fs := newChecker(t, Config{})
	const secret = "sk_live_DO_NOT_ECHO"
	for _, b := range [][]byte{
		body(t, `query Q($n: Int) { customers(first: $n) { name } }`, "variables", map[string]any{"n": secret}),
		body(t, `query Q($n: Int) { customers(first: $n) { name } }`, "variables", map[string]any{"n": []any{secret}}),
		body(t, `{ customers(first: 1) { name email } } # `+secret),
		body(t, `{ revenue(quarter: "q") { total `+strings.Repeat("x", 5000)+` } }`),
	} {
		r := c.CheckBody(b, fs)
		out, _ := json.Marshal(r)
		if r.OK() || strings.Contains(string(out), secret) || len(out) > 2000 {
			t.Errorf("result echoes or is too long (%d bytes): %s", len(out), out)
		}
	}
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
