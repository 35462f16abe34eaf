package gqlcheck

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/decision"
)

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

// TestAbstractTypes: fields selected on an interface are checked as Interface.field, fields in
// a fragment on a concrete type as Type.field, whatever the parent field returns.
func TestAbstractTypes(t *testing.T) {
	c, err := Compile(Config{SchemaName: "docs.graphql", SchemaSDL: `
interface Node { id: ID }
type User implements Node { id: ID secret: String }
type Doc implements Node { id: ID title: String }
union Result = User | Doc
type Query { node: Node search: [Result] }`})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Fields([]string{"Query.node", "Query.search", "Node.id", "Doc.title"})
	if err != nil {
		t.Fatal(err)
	}
	for q, wantField := range map[string]string{
		`{ node { id } }`: "",
		`{ node { __typename ... on Doc { title } } }`:      "",
		`{ search { __typename ... on Doc { title } } }`:    "",
		`{ node { ... on User { id } } }`:                   "graphql.User.id",
		`{ node { ... on User { secret } } }`:               "graphql.User.secret",
		`{ search { ... on User { secret } } }`:             "graphql.User.secret",
		`{ search { ...U } } fragment U on User { secret }`: "graphql.User.secret",
		`{ search { ... on Node { id } } }`:                 "",
	} {
		code := decision.Code("")
		if wantField != "" {
			code = decision.CodeGraphQLField
		}
		t.Run(q, func(t *testing.T) { want(t, c.CheckBody(body(t, q), fs), code, wantField) })
	}
}

// TestConcurrent shares one Checker and FieldSet between goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	c, fs := newChecker(t, Config{AllowBatch: true})
	bodies := [][]byte{
		body(t, `query Q($q: String!) { revenue(quarter: $q) { total } }`, "variables", map[string]any{"q": "x"}),
		body(t, `{ customers { name email ...F } } fragment F on Customer { orders { id } }`),
		body(t, `mutation { deleteCustomer(id: "1") }`),
		[]byte(`[{"query":"{ customers { name } }"},{"query":"{ __type(name: \"Customer\") { name } }"}]`),
	}
	want := make([]Result, len(bodies))
	for i, b := range bodies {
		want[i] = c.CheckBody(b, fs)
	}
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			for i := range 200 {
				k := (g + i) % len(bodies)
				if r := c.CheckBody(bodies[k], fs); r.Code != want[k].Code {
					t.Errorf("body %d: %s, want %s", k, r.Code, want[k].Code)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
