package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

const (
	bigOperations = 2000  // 1,000 paths with a GET and a POST each
	bigSchemas    = 10000 // component schemas, each body referring to a chain of them
)

// bigOpenAPI writes a generated OpenAPI 3.1 document of bigOperations operations and bigSchemas
// component schemas into dir, with a policy granting every operation through one tag, and a
// policy of the same routes written by hand. It returns the directory's two policies.
func bigOpenAPI(tb testing.TB, dir string) (openapiPolicy, handPolicy string) {
	tb.Helper()
	var b strings.Builder
	b.WriteString(`{"openapi":"3.1.0","info":{"title":"big","version":"1"},"paths":{`)
	paths := bigOperations / 2
	for i := 0; i < paths; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"/r%d/items/{id}":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string","pattern":"^[0-9]{1,12}$"}}],`+
			`"get":{"operationId":"get%d","tags":["all"],"parameters":[{"name":"limit","in":"query","schema":{"type":"integer","minimum":1,"maximum":100}}],"responses":{"200":{"description":"ok"}}},`+
			`"post":{"operationId":"post%d","tags":["all"],"requestBody":{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/S%d"}}}},"responses":{"200":{"description":"ok"}}}}`,
			i, i, i, i*(bigSchemas/paths))
	}
	b.WriteString(`},"components":{"schemas":{`)
	for s := 0; s < bigSchemas; s++ {
		if s > 0 {
			b.WriteByte(',')
		}
		// Each schema names the next: a body's schema reaches a chain of them.
		next := ""
		if (s+1)%(bigSchemas/paths) != 0 {
			next = fmt.Sprintf(`,"next":{"$ref":"#/components/schemas/S%d"}`, s+1)
		}
		fmt.Fprintf(&b, `"S%d":{"type":"object","additionalProperties":false,"required":["name"],"properties":{"name":{"type":"string","minLength":1,"maxLength":200},"count":{"type":"integer","minimum":0}%s}}`, s, next)
	}
	b.WriteString(`}}}`)
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	write("big.openapi.json", b.String())
	write("S.schema.json", `{"$ref":"#/$defs/S","$defs":{"S":{"type":"object","additionalProperties":false,"required":["name"],`+
		`"properties":{"name":{"type":"string","minLength":1,"maxLength":200},"count":{"type":"integer","minimum":0},"next":{"$ref":"#/$defs/S"}}}}}`)

	head := "trust_domains: [big.internal]\nagents:\n  - id: spiffe://big.internal/agent/a\n    scopes: [all:call]\nhosts:\n"
	openapiPolicy = head + "  - name: api.big.internal\n    openapi:\n      document: big.openapi.json\n      tags:\n        - {tag: all, scope: all:call}\n"
	var h strings.Builder
	h.WriteString(head + "  - name: api.big.internal\n    routes:\n")
	for i := 0; i < paths; i++ {
		fmt.Fprintf(&h, "      - {name: get%d, method: GET, path: \"/r%d/items/{id}\", scope: all:call, params: {id: {type: string, pattern: \"[0-9]{1,12}\"}}, "+
			"query: {limit: {type: integer, minimum: 1, maximum: 100}}}\n", i, i)
		fmt.Fprintf(&h, "      - {name: post%d, method: POST, path: \"/r%d/items/{id}\", scope: all:call, params: {id: {type: string, pattern: \"[0-9]{1,12}\"}}, "+
			"body: {json_schema: S.schema.json}}\n", i, i)
	}
	return openapiPolicy, h.String()
}

func loadBig(tb testing.TB, dir, name, text string) *policy.Snapshot {
	tb.Helper()
	snap, err := policy.Load([]policy.File{{Name: name, Dir: dir, Data: []byte(text), FS: os.DirFS(dir), FSDir: "."}},
		policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}

// TestBigOpenAPI: the generated document compiles into one route per operation, deciding as the
// routes written by hand do.
func TestBigOpenAPI(t *testing.T) {
	dir := t.TempDir()
	oa, hand := bigOpenAPI(t, dir)
	a, b := loadBig(t, dir, "openapi.yaml", oa), loadBig(t, dir, "hand.yaml", hand)
	if st := a.Stats(); st.Routes != bigOperations {
		t.Fatalf("routes: %+v", st)
	}
	body := `{"name":"x","next":{"name":"y","count":3}}`
	for _, c := range []struct {
		method, path, body string
		code               decision.Code
	}{
		{"GET", "/r999/items/42?limit=5", "", decision.CodeAllowed},
		{"GET", "/r999/items/42?limit=500", "", decision.CodeQueryInvalid},
		{"GET", "/r999/items/x", "", decision.CodePathParamInvalid},
		{"POST", "/r500/items/42", body, decision.CodeAllowed},
		{"POST", "/r500/items/42", `{"name":"x","next":{"count":3}}`, decision.CodeBodySchema},
		{"GET", "/r1000/items/42", "", decision.CodeRouteUnknown},
	} {
		for _, snap := range []*policy.Snapshot{a, b} {
			d := snap.Decide(bigRequest(c.method, c.path, c.body))
			if d.Code != c.code {
				t.Errorf("%s %s: %s, want %s (%+v)", c.method, c.path, d.Code, c.code, d.Violations)
			}
		}
	}
}

type bigHeaders map[string]string

func (h bigHeaders) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

func bigRequest(method, target, body string) *policy.Request {
	h := bigHeaders{}
	if body != "" {
		h["content-type"] = "application/json"
	}
	return &policy.Request{Agent: spiffeid.RequireFromString("spiffe://big.internal/agent/a"), Method: method, Host: "api.big.internal",
		Target: target, Headers: h, Body: []byte(body)}
}

// BenchmarkLoadOpenAPI2000 compiles the 2,000-operation, 10,000-schema document (read, checked
// and every granted operation's schemas compiled).
func BenchmarkLoadOpenAPI2000(b *testing.B) {
	dir := b.TempDir()
	oa, _ := bigOpenAPI(b, dir)
	b.ReportAllocs()
	for b.Loop() {
		loadBig(b, dir, "openapi.yaml", oa)
	}
}

// BenchmarkLoadHandWritten2000 compiles the same routes written by hand.
func BenchmarkLoadHandWritten2000(b *testing.B) {
	dir := b.TempDir()
	_, hand := bigOpenAPI(b, dir)
	b.ReportAllocs()
	for b.Loop() {
		loadBig(b, dir, "hand.yaml", hand)
	}
}

// BenchmarkDecideBig compares deciding on routes compiled from the document with deciding on the
// same routes written by hand.
func BenchmarkDecideBig(b *testing.B) {
	dir := b.TempDir()
	oa, hand := bigOpenAPI(b, dir)
	snaps := map[string]*policy.Snapshot{"openapi": loadBig(b, dir, "openapi.yaml", oa), "hand": loadBig(b, dir, "hand.yaml", hand)}
	for _, c := range []struct{ name, method, path, body string }{
		{"get", "GET", "/r999/items/42?limit=5", ""},
		{"post", "POST", "/r500/items/42", `{"name":"x","next":{"name":"y","count":3}}`},
	} {
		for _, kind := range []string{"openapi", "hand"} {
			b.Run(c.name+"/"+kind, func(b *testing.B) {
				snap := snaps[kind]
				b.ReportAllocs()
				for b.Loop() {
					if d := snap.Decide(bigRequest(c.method, c.path, c.body)); d.Code != decision.CodeAllowed {
						b.Fatal(d.Code)
					}
				}
			})
		}
	}
}
