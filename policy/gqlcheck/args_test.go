package gqlcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// argsSDL has every kind of argument the rules apply to: Int, Float, String, ID, an enum,
// lists, schema defaults, and an interface field.
const argsSDL = `
type Query {
  customers(first: Int, after: ID, region: Region, tags: [String!], min: Float): [Customer]
  revenue(quarter: String!): Revenue
  search(text: String, limit: Int = 500): [Node]
  node(id: ID!): Node
  ids(list: [ID]): [ID]
}
enum Region { EU US APAC }
interface Node {
  id: ID
  children(first: Int): [Node]
}
type Customer implements Node {
  id: ID
  name: String
  children(first: Int): [Node]
  orders(first: Int = 10): [Order]
}
type Order implements Node {
  id: ID
  children(first: Int): [Node]
  total: Float
}
type Revenue { total: Float }
`

func ptr[T any](v T) *T { return &v }

// argsRules bound the arguments of argsSDL's fields.
func argsRules() []FieldArguments {
	return []FieldArguments{
		{Field: "Query.customers", Args: map[string]ArgumentRule{
			"first":  {Minimum: ptr[int64](1), Maximum: ptr[int64](100)},
			"region": {Enum: []string{"EU", "US"}},
			"tags":   {MaxItems: ptr(3), MaxLength: ptr(8)},
			"min":    {Minimum: ptr[int64](0), Maximum: ptr[int64](1000)},
		}},
		{Field: "Query.revenue", Args: map[string]ArgumentRule{"quarter": {Pattern: "[0-9]{4}-Q[1-4]"}}},
		{Field: "Query.search", Args: map[string]ArgumentRule{"text": {Required: true, MinLength: ptr(1)}, "limit": {Maximum: ptr[int64](100)}}},
		{Field: "Query.node", Args: map[string]ArgumentRule{"id": {Pattern: "[0-9]+"}}},
		{Field: "Query.ids", Args: map[string]ArgumentRule{"list": {MaxItems: ptr(2), Pattern: "[0-9]+"}}},
		{Field: "Node.children", Args: map[string]ArgumentRule{"first": {Maximum: ptr[int64](5)}}},
		{Field: "Customer.orders", Args: map[string]ArgumentRule{"first": {Maximum: ptr[int64](50)}}},
		// A rule on one implementation of Node.children: a selection on Node may resolve to it.
		{Field: "Order.children", Args: map[string]ArgumentRule{"first": {Minimum: ptr[int64](1), Maximum: ptr[int64](5)}}},
	}
}

func argsChecker(t testing.TB) (*Checker, *FieldSet) {
	t.Helper()
	c, err := Compile(Config{SchemaName: "args.graphql", SchemaSDL: argsSDL, Arguments: argsRules(), MaxDepth: 10})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Fields([]string{"Query.*", "Customer.*", "Order.*", "Node.*", "Revenue.*"})
	if err != nil {
		t.Fatal(err)
	}
	return c, fs
}

// TestArguments: argument rules apply to literals and to variables' values, through aliases,
// inline and named fragments, in every operation of the document, to the schema's default of
// an argument left out, to every item of a list, and to a field selected on an interface or on
// a type implementing one.
func TestArguments(t *testing.T) {
	c, fs := argsChecker(t)
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		viol        string // "field rule", "" when allowed
	}{
		{"at the bound", `{ customers(first: 100) { name } }`, nil, ""},
		{"over the bound", `{ customers(first: 101) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"the largest Int", `{ customers(first: 2147483647) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"under the bound", `{ customers(first: 0) { name } }`, nil, "graphql.Query.customers(first) minimum"},
		{"negative", `{ customers(first: -5) { name } }`, nil, "graphql.Query.customers(first) minimum"},
		{"left out, no default", `{ customers { name } }`, nil, ""},
		{"null", `{ customers(first: null) { name } }`, nil, ""},
		{"variable within", `query Q($n: Int) { customers(first: $n) { name } }`, map[string]any{"n": 5}, ""},
		{"variable over", `query Q($n: Int) { customers(first: $n) { name } }`, map[string]any{"n": 2147483647}, "graphql.Query.customers(first) maximum"},
		{"variable not sent", `query Q($n: Int) { customers(first: $n) { name } }`, nil, ""},
		{"variable default over", `query Q($n: Int = 500) { customers(first: $n) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"variable default overridden", `query Q($n: Int = 500) { customers(first: $n) { name } }`, map[string]any{"n": 50}, ""},
		{"alias", `{ a: customers(first: 5) { name } b: customers(first: 500) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"named fragment", `{ ...F } fragment F on Query { c: customers(first: 500) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"nested fragments", `{ ...F } fragment F on Query { ...G } fragment G on Query { customers(first: 500) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"inline fragment", `{ ... on Query { customers(first: 500) { name } } }`, nil, "graphql.Query.customers(first) maximum"},
		{"fragment with a variable", `query Q($n: Int) { ...F } fragment F on Query { customers(first: $n) { name } }`, map[string]any{"n": 500}, "graphql.Query.customers(first) maximum"},
		{"skipped field", `{ customers(first: 500) @skip(if: true) { name } }`, nil, "graphql.Query.customers(first) maximum"},
		{"another operation", `query A { revenue(quarter: "2026-Q1") { total } } query B { customers(first: 500) { name } }`, map[string]any{}, "graphql.Query.customers(first) maximum"},
		{"unlisted argument", `{ customers(after: "x") { name } }`, nil, "graphql.Query.customers(after) unknown"},
		{"enum allowed", `{ customers(region: EU) { name } }`, nil, ""},
		{"enum refused", `{ customers(region: APAC) { name } }`, nil, "graphql.Query.customers(region) enum"},
		{"enum by variable", `query Q($r: Region) { customers(region: $r) { name } }`, map[string]any{"r": "APAC"}, "graphql.Query.customers(region) enum"},
		{"float within", `{ customers(min: 999.5) { name } }`, nil, ""},
		{"float over", `{ customers(min: 1000.5) { name } }`, nil, "graphql.Query.customers(min) maximum"},
		{"float under", `{ customers(min: -0.5) { name } }`, nil, "graphql.Query.customers(min) minimum"},
		{"float int literal", `{ customers(min: 2000) { name } }`, nil, "graphql.Query.customers(min) maximum"},
		{"float variable over", `query Q($m: Float) { customers(min: $m) { name } }`, map[string]any{"m": 1e300}, "graphql.Query.customers(min) maximum"},
		{"list within", `{ customers(tags: ["a", "b", "c"]) { name } }`, nil, ""},
		{"list too long", `{ customers(tags: ["a", "b", "c", "d"]) { name } }`, nil, "graphql.Query.customers(tags) max_items"},
		{"list item too long", `{ customers(tags: ["a", "123456789"]) { name } }`, nil, "graphql.Query.customers(tags) max_length"},
		{"single value as list", `{ customers(tags: "123456789") { name } }`, nil, "graphql.Query.customers(tags) max_length"},
		{"list by variable", `query Q($t: [String!]) { customers(tags: $t) { name } }`, map[string]any{"t": []any{"a", "b", "c", "d"}}, "graphql.Query.customers(tags) max_items"},
		{"list with a variable item", `query Q($s: String!) { customers(tags: ["a", $s]) { name } }`, map[string]any{"s": "123456789"}, "graphql.Query.customers(tags) max_length"},
		{"pattern", `{ revenue(quarter: "2026-Q3") { total } }`, nil, ""},
		{"pattern refused", `{ revenue(quarter: "2026-Q5") { total } }`, nil, "graphql.Query.revenue(quarter) pattern"},
		{"pattern is anchored", `{ revenue(quarter: "x2026-Q3") { total } }`, nil, "graphql.Query.revenue(quarter) pattern"},
		{"pattern by variable", `query Q($q: String!) { revenue(quarter: $q) { total } }`, map[string]any{"q": "all"}, "graphql.Query.revenue(quarter) pattern"},
		{"block string", `{ revenue(quarter: """2026-Q5""") { total } }`, nil, "graphql.Query.revenue(quarter) pattern"},
		{"escaped string", `{ revenue(quarter: "2026-Q\u0035") { total } }`, nil, "graphql.Query.revenue(quarter) pattern"},
		{"required given", `{ search(text: "a", limit: 5) { id } }`, nil, ""},
		{"required missing", `{ search(limit: 5) { id } }`, nil, "graphql.Query.search(text) required"},
		{"required null", `{ search(text: null, limit: 5) { id } }`, nil, "graphql.Query.search(text) required"},
		{"required variable null", `query Q($s: String) { search(text: $s, limit: 5) { id } }`, map[string]any{"s": nil}, "graphql.Query.search(text) required"},
		{"min length", `{ search(text: "", limit: 5) { id } }`, nil, "graphql.Query.search(text) min_length"},
		{"schema default over the bound", `{ search(text: "a") { id } }`, nil, "graphql.Query.search(limit) maximum"},
		{"ID pattern", `{ node(id: "42") { id } }`, nil, ""},
		{"ID as an integer", `{ node(id: 42) { id } }`, nil, ""},
		{"ID pattern refused", `{ node(id: "x") { id } }`, nil, "graphql.Query.node(id) pattern"},
		{"list of IDs", `{ ids(list: [1, "2"]) }`, nil, ""},
		{"list of IDs refused", `{ ids(list: [1, "x"]) }`, nil, "graphql.Query.ids(list) pattern"},
		{"list with null items", `{ ids(list: [null, 1]) }`, nil, ""},
		{"interface field", `{ node(id: "1") { children(first: 10) { id } } }`, nil, "graphql.Node.children(first) maximum"},
		{"interface field on the type", `{ node(id: "1") { ... on Customer { children(first: 10) { id } } } }`, nil, "graphql.Node.children(first) maximum"},
		{"interface field within", `{ node(id: "1") { children(first: 5) { ... on Order { children(first: 1) { id } } } } }`, nil, ""},
		{"implementation's rule through the interface", `{ node(id: "1") { children(first: 0) { id } } }`, nil, "graphql.Order.children(first) minimum"},
		{"implementation's rule on another implementation", `{ node(id: "1") { ... on Customer { children(first: 0) { id } } } }`, nil, ""},
		{"implementation's rule on it", `{ node(id: "1") { ... on Order { children(first: 0) { id } } } }`, nil, "graphql.Order.children(first) minimum"},
		{"type field", `{ customers(first: 1) { orders(first: 60) { id } } }`, nil, "graphql.Customer.orders(first) maximum"},
		{"type field through the interface fragment", `{ node(id: "1") { ...C } } fragment C on Customer { orders(first: 60) { id } }`, nil, "graphql.Customer.orders(first) maximum"},
		{"type field default", `{ customers(first: 1) { orders { id } } }`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := map[string]any{"query": tc.query}
			if tc.vars != nil {
				b["variables"] = tc.vars
			}
			if strings.Contains(tc.query, "query A") {
				b["operationName"] = "A"
			}
			data, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			res := c.CheckBody(data, fs)
			checkResult(t, res)
			got := ""
			if !res.OK() {
				if res.Code != decision.CodeGraphQLArgument || len(res.Violations) == 0 {
					t.Fatalf("%s: %s %+v (%s), want graphql_argument", tc.query, res.Code, res.Violations, res.Detail)
				}
				got = res.Violations[0].Field + " " + res.Violations[0].Rule
			}
			if got != tc.viol {
				t.Errorf("%s %v: %q (%s), want %q", tc.query, tc.vars, got, res.Detail, tc.viol)
			}
		})
	}
}

// TestArgumentsGET: the rules apply to a GET request's query and variables as to a POST body's,
// and to every entry of a batch.
func TestArgumentsGET(t *testing.T) {
	c, fs := argsChecker(t)
	res := c.CheckParams(`query Q($n: Int) { customers(first: $n) { name } }`, "", `{"n": 1000}`, fs)
	if res.Code != decision.CodeGraphQLArgument {
		t.Errorf("GET: %s %+v, want graphql_argument", res.Code, res.Violations)
	}
	if res := c.CheckParams(`{ customers(first: 10) { name } }`, "", "", fs); !res.OK() {
		t.Errorf("GET within the bounds: %s %+v", res.Code, res.Violations)
	}
	cb, fsb := func() (*Checker, *FieldSet) {
		c, err := Compile(Config{SchemaName: "args.graphql", SchemaSDL: argsSDL, Arguments: argsRules(), AllowBatch: true})
		if err != nil {
			t.Fatal(err)
		}
		fs, _ := c.Fields([]string{"Query.*", "Customer.*"})
		return c, fs
	}()
	res = cb.CheckBody([]byte(`[{"query":"{ customers(first: 1) { name } }"},{"query":"{ customers(first: 101) { name } }"}]`), fsb)
	if res.Code != decision.CodeGraphQLArgument || !strings.HasPrefix(res.Detail, "Batch entry 2 of 2") {
		t.Errorf("batch: %s %q, want graphql_argument for entry 2", res.Code, res.Detail)
	}
}

// TestArgumentRuleProblems: rules that name what the schema lacks, or that cannot apply to the
// argument's type, are refused at compile time, each as an ArgumentError naming its entry.
func TestArgumentRuleProblems(t *testing.T) {
	for _, tc := range []struct {
		args FieldArguments
		arg  string
		want string
	}{
		{FieldArguments{Field: "customers"}, "", "must be Type.field"},
		{FieldArguments{Field: "Nope.customers"}, "", "no type Nope"},
		{FieldArguments{Field: "Region.EU"}, "", "not an object or interface type"},
		{FieldArguments{Field: "Query.nope"}, "", "has no field nope"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"nope": {}}}, "nope", "has no argument nope"},
		{FieldArguments{Field: "Query.revenue", Args: map[string]ArgumentRule{"quarter": {Maximum: ptr[int64](3)}}}, "quarter", "minimum and maximum apply to Int and Float"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"first": {Pattern: "[0-9]"}}}, "first", "pattern, min_length and max_length apply to String and ID"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"first": {Enum: []string{"1"}}}}, "first", "enum applies to"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"region": {Enum: []string{"EU", "MARS"}}}}, "region", "MARS is not a value of Region"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"first": {MaxItems: ptr(3)}}}, "first", "max_items applies to list"},
		{FieldArguments{Field: "Query.customers", Args: map[string]ArgumentRule{"first": {Minimum: ptr[int64](5), Maximum: ptr[int64](1)}}}, "first", "minimum must not exceed"},
		{FieldArguments{Field: "Query.revenue", Args: map[string]ArgumentRule{"quarter": {Pattern: "("}}}, "quarter", "pattern does not compile"},
	} {
		_, err := Compile(Config{SchemaName: "args.graphql", SchemaSDL: argsSDL, Arguments: []FieldArguments{{Field: "Query.node"}, tc.args}})
		var ae *ArgumentError
		if !errors.As(err, &ae) || ae.Entry != 1 || ae.Arg != tc.arg || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an ArgumentError for entry 1, argument %q, saying %q", tc.args, err, tc.arg, tc.want)
		}
	}
	_, err := Compile(Config{SchemaName: "args.graphql", SchemaSDL: argsSDL, Arguments: []FieldArguments{{Field: "Query.node"}, {Field: "Query.node"}}})
	if err == nil || !strings.Contains(err.Error(), "arguments[1]: field Query.node has rules already") {
		t.Errorf("a field listed twice: %v", err)
	}
}

// TestArgumentsNoValue: a message never quotes the value it refuses.
func TestArgumentsNoValue(t *testing.T) {
	c, fs := argsChecker(t)
	res := c.CheckBody([]byte(fmt.Sprintf(`{"query":"{ revenue(quarter: \"%s\") { total } }"}`, "SENTINEL-9")), fs)
	if res.OK() || strings.Contains(fmt.Sprintf("%+v", res), "SENTINEL") {
		t.Errorf("%+v", res)
	}
}
