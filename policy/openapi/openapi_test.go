package openapi

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// readFiles reads a document from files held in memory, named as the policy directory would
// hold them.
func readFiles(t testing.TB, name string, files map[string]string) (*Document, error) {
	t.Helper()
	return Read(name, "policy", func(n string) ([]byte, error) {
		data, ok := files[n]
		if !ok {
			return nil, fmt.Errorf("cannot read %s: file does not exist", n)
		}
		return []byte(data), nil
	})
}

// readTestdata reads a document from testdata/.
func readTestdata(t testing.TB, name string) *Document {
	t.Helper()
	d, err := Read(name, "testdata", func(n string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", n)) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func validate(t *testing.T, d *Document, l Location, instance string) error {
	t.Helper()
	s, err := d.Schema(l)
	if err != nil {
		t.Fatalf("compile %s: %v", l, err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(instance))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// TestVersionsAndFormats reads the same API written four ways, OpenAPI 3.0 and 3.1, in YAML and
// JSON, and expects the same operations, parameters and body checks from each.
func TestVersionsAndFormats(t *testing.T) {
	for _, name := range []string{"tickets-3.0.yaml", "tickets-3.0.json", "tickets-3.1.yaml", "tickets-3.1.json"} {
		t.Run(name, func(t *testing.T) {
			d := readTestdata(t, name)
			if d.ServerPath != "/api" {
				t.Errorf("server path %q, want /api", d.ServerPath)
			}
			var got []string
			for _, op := range d.Operations {
				if op.Problem != "" {
					t.Errorf("%s: %s", op.ID, op.Problem)
				}
				got = append(got, op.Method+" "+op.Path+" "+op.ID)
			}
			want := []string{"GET /tickets listTickets", "POST /tickets createTicket", "GET /tickets/{id} getTicket"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("operations %q, want %q", got, want)
			}
			list := d.Operation("listTickets")
			params := map[string]*Param{}
			for _, p := range list.Params {
				params[p.In+"."+p.Name] = p
			}
			if p := params["query.limit"]; p == nil || p.Value.Type != "integer" || *p.Value.Minimum != 2 || *p.Value.Maximum != 99 || p.Value.Extra {
				t.Errorf("limit: %+v (want an integer 2..99: exclusive bounds 1 and 100)", p)
			}
			if p := params["query.tag"]; p == nil || !p.Repeatable || p.Value.Type != "string" || strings.Join(p.Value.Enum, ",") != "a,b" {
				t.Errorf("tag: %+v (want a repeatable string a or b)", p)
			}
			if p := params["query.status"]; p == nil || !p.Required || p.Value.Type != "string" {
				t.Errorf("status: %+v (want a required string, null aside)", p)
			}
			if p := params["query.since"]; p == nil || !p.Value.Extra {
				t.Errorf("since: %+v (want its format checked by its schema)", p)
			}
			if p := params["header.X-Trace"]; p == nil {
				t.Error("the header parameter is not listed")
			}
			id := d.Operation("getTicket").Params[0]
			if id.In != "path" || id.Value.Pattern != "^[0-9]+$" || id.Value.MaxLength == nil || *id.Value.MaxLength != 12 {
				t.Errorf("id: %+v", id)
			}

			create := d.Operation("createTicket")
			if create.Body == nil || create.Body.JSON == nil || !create.Body.Required {
				t.Fatalf("createTicket body: %+v", create.Body)
			}
			if create.Approval == nil || create.Approval.Reason != "tickets page the on-call engineer" {
				t.Errorf("approval mark: %+v", create.Approval)
			}
			body := *create.Body.JSON
			for _, c := range []struct {
				instance string
				ok       bool
			}{
				{`{"subject":"VPN down","priority":3}`, true},
				{`{"subject":"VPN down","priority":null}`, true}, // nullable
				{`{"subject":"VPN down","priority":0}`, false},   // exclusiveMinimum: 0
				{`{"subject":"VPN down","priority":5}`, true},
				{`{"subject":"VPN down","priority":6}`, false},
				{`{"subject":null}`, false},                                                 // not nullable
				{`{"subject":"x","extra":1}`, false},                                        // additionalProperties: false
				{`{"subject":"x","parent":{"subject":"y","parent":{"subject":"z"}}}`, true}, // recursive
				{`{"subject":"x","parent":{"subject":"y","parent":{"subject":7}}}`, false},  // deep in the recursion
				{`{"subject":"x","count":2147483648}`, false},                               // format int32
				{`{"subject":"x","kind":"incident"}`, true},                                 // $ref with a sibling
				{`{"subject":"x","kind":"other"}`, false},
			} {
				err := validate(t, d, body, c.instance)
				if (err == nil) != c.ok {
					t.Errorf("%s: valid %v, want %v (%v)", c.instance, err == nil, c.ok, err)
				}
			}
		})
	}
}

// TestContractsAgree: the four spellings of one API give every operation the same contract,
// except where 3.0 and 3.1 really differ.
func TestContractsAgree(t *testing.T) {
	a := readTestdata(t, "tickets-3.1.yaml")
	b := readTestdata(t, "tickets-3.1.json")
	for _, op := range a.Operations {
		if changed := a.Contract(op).Changed(b.Contract(b.Operation(op.ID))); len(changed) > 0 {
			t.Errorf("%s: YAML and JSON differ in %v", op.ID, changed)
		}
	}
}

func TestBadDocuments(t *testing.T) {
	const info = "info: {title: t, version: '1'}\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"not YAML", map[string]string{"api.yaml": "openapi: [3.1.0\n"}, "policy/api.yaml:"},
		{"empty", map[string]string{"api.yaml": ""}, "policy/api.yaml: the file is empty"},
		{"not an object", map[string]string{"api.yaml": "- 1\n"}, "the top level is not an object"},
		{"swagger", map[string]string{"api.yaml": "swagger: '2.0'\n"}, "a Swagger 2.0 document"},
		{"no version", map[string]string{"api.yaml": info}, "no openapi version"},
		{"3.2", map[string]string{"api.yaml": "openapi: 3.2.0\n" + info}, "OpenAPI 3.2.0 is not read"},
		{"duplicate key", map[string]string{"api.yaml": "openapi: 3.1.0\nopenapi: 3.0.0\n"}, `policy/api.yaml:2:1: duplicate key "openapi"`},
		{"anchor", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "paths: &p {}\n"}, "anchors (&p) are not allowed"},
		{"two documents", map[string]string{"api.yaml": "openapi: 3.1.0\n---\nopenapi: 3.1.0\n"}, "more than one YAML document"},
		{"hex number", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "x-n: 0x10\n"}, `number "0x10"`},
		{"yes is not a boolean", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "x-b: !!bool yes\n"}, `boolean "yes"`},
		{"duplicate JSON key", map[string]string{"api.json": `{"openapi":"3.1.0","openapi":"3.0.0"}`}, "not strict JSON"},
		{"dialect", map[string]string{"api.yaml": "openapi: 3.1.0\njsonSchemaDialect: https://json-schema.org/draft-07/schema\n" + info}, "jsonSchemaDialect"},
		{"missing info", map[string]string{"api.yaml": "openapi: 3.1.0\npaths: {}\n"}, "not a valid OpenAPI document"},
		{"remote $ref", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "paths:\n  /a:\n    $ref: 'https://evil.example/paths.yaml#/a'\n"},
			"not to URLs"},
		{"absolute file $ref", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "paths:\n  /a:\n    $ref: '/etc/paths.yaml#/a'\n"},
			"clean relative path"},
		{"$ref out of the directory", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "paths:\n  /a:\n    $ref: '../paths.yaml#/a'\n"},
			"clean relative path"},
		{"missing file", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + "paths:\n  /a:\n    $ref: 'paths.yaml#/a'\n"},
			"cannot read paths.yaml"},
		{"a pattern RE2 cannot read", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + `paths:
  /a:
    get:
      parameters: [{name: q, in: query, schema: {type: string, pattern: '(?=a)'}}]
      responses: {'200': {description: ok}}
`}, "error parsing regexp"},
		{"parameter $ref cycle", map[string]string{"api.yaml": "openapi: 3.1.0\n" + info + `paths:
  /a:
    get:
      parameters: [{$ref: '#/components/parameters/A'}]
      responses: {'200': {description: ok}}
components:
  parameters:
    A: {$ref: '#/components/parameters/B'}
    B: {$ref: '#/components/parameters/A'}
`}, "policy/api.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "api.yaml"
			if _, ok := c.files["api.json"]; ok {
				name = "api.json"
			}
			_, err := readFiles(t, name, c.files)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
		})
	}
}

// TestRemoteSchemaRef: a $ref to a URL inside a schema is refused when the schema compiles, and
// never fetched.
func TestRemoteSchemaRef(t *testing.T) {
	d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    post:
      operationId: a
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                x: {$ref: 'https://schemas.example/x.json'}
      responses: {'200': {description: ok}}
`})
	if err != nil {
		// The OpenAPI library refuses it while loading: fine too, as long as it says why.
		if !strings.Contains(err.Error(), "not to URLs") {
			t.Fatalf("error %v, want one refusing the URL", err)
		}
		return
	}
	op := d.Operation("a")
	if op.Problem == "" && op.Body != nil && op.Body.JSON != nil {
		if _, err := d.Schema(*op.Body.JSON); err == nil || !strings.Contains(err.Error(), "not to URLs") {
			t.Fatalf("compiled a schema with a remote $ref: %v", err)
		}
	} else if !strings.Contains(op.Problem, "not to URLs") {
		t.Fatalf("problem %q, want one refusing the URL", op.Problem)
	}
}

// TestFilesBeside: $ref may name files beside the document, for any object, schemas included.
func TestFilesBeside(t *testing.T) {
	d := readTestdata(t, "split/api.yaml")
	op := d.Operation("addNote")
	if op == nil || op.Problem != "" {
		t.Fatalf("addNote: %+v", op)
	}
	if len(op.Params) != 1 || op.Params[0].Name != "id" || op.Params[0].Value.Pattern != "^[a-z]+$" {
		t.Errorf("params: %+v", op.Params)
	}
	if err := validate(t, d, *op.Body.JSON, `{"text":"hello"}`); err != nil {
		t.Errorf("a good note: %v", err)
	}
	if err := validate(t, d, *op.Body.JSON, `{"text":""}`); err == nil {
		t.Error("an empty note passed the schema in the other file")
	}
	if !strings.HasPrefix(op.At, "testdata/split/api.yaml:") {
		t.Errorf("At %q", op.At)
	}
}

// TestParameterProblems: what a route cannot check exactly is a problem of the operation, with
// its position.
func TestParameterProblems(t *testing.T) {
	for _, c := range []struct{ param, want string }{
		{`{name: q, in: query, style: deepObject, schema: {type: string}}`, "style deepObject is for objects"},
		{`{name: q, in: query, style: spaceDelimited, schema: {type: string}}`, "style spaceDelimited is for arrays"},
		{`{name: q, in: query, style: pipeDelimited, explode: true, schema: {type: array, items: {type: string}}}`, "explode: true is not defined"},
		{`{name: q, in: query, explode: false, schema: {type: object, properties: {a: {type: string}}}}`, "explode: false"},
		{`{name: q, in: query, schema: {type: array, contains: {const: x}, items: {type: string}}}`, "array keyword contains"},
		{`{name: q, in: query, schema: {type: array, minItems: 3, maxItems: 2, items: {type: string}}}`, "minItems and maxItems"},
		{`{name: q, in: query, schema: {type: array, items: {type: array, items: {type: string}}}}`, "an array of arrays"},
		{`{name: q, in: query, schema: {type: array}}`, "needs an items schema"},
		{`{name: q, in: query, schema: {type: object}}`, "an object parameter needs properties"},
		{`{name: q, in: query, style: deepObject, schema: {type: object, properties: {a: {type: string}}, additionalProperties: {type: string}}}`, "additionalProperties"},
		{`{name: q, in: query, style: deepObject, schema: {type: object, properties: {a: {type: string}}, minProperties: 1}}`, "object keyword minProperties"},
		{`{name: q, in: query, style: deepObject, schema: {type: object, properties: {a: {type: string}}, required: [a]}}`, "an optional object parameter with required properties"},
		{`{name: q, in: query, style: deepObject, schema: {type: object, properties: {a: {type: object}}}}`, "property a: an object value"},
		{`{name: q, in: query, schema: {type: [string, integer]}}`, "several types"},
		{`{name: q, in: query, schema: {minimum: 1}}`, "no type"},
		{`{name: q, in: query, content: {application/json: {schema: {type: object}}}}`, "content"},
		{`{name: q, in: query, schema: {type: integer, minimum: 5, maximum: 4}}`, "no integer"},
	} {
		t.Run(c.want, func(t *testing.T) {
			d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    get:
      operationId: a
      parameters:
        - ` + c.param + `
      responses: {'200': {description: ok}}
`})
			if err != nil {
				t.Fatal(err)
			}
			op := d.Operation("a")
			if !strings.Contains(op.Problem, c.want) || !strings.HasPrefix(op.Problem, "policy/api.yaml:8:11: query parameter q") {
				t.Errorf("problem %q, want one at policy/api.yaml:8:11 containing %q", op.Problem, c.want)
			}
		})
	}
}

// TestScalarBounds: integer bounds read exactly, whatever their spelling.
func TestScalarBounds(t *testing.T) {
	for _, c := range []struct {
		schema string
		lo, hi string
	}{
		{`{type: integer, minimum: 1.5, maximum: 9.5}`, "2", "9"},
		{`{type: integer, exclusiveMinimum: 1.5, exclusiveMaximum: 9.5}`, "2", "9"},
		{`{type: integer, exclusiveMinimum: -3, exclusiveMaximum: 3}`, "-2", "2"},
		{`{type: integer, minimum: -1e30}`, "", ""},
		{`{type: integer, format: int32}`, "-2147483648", "2147483647"},
		{`{type: integer, format: int32, maximum: 10}`, "-2147483648", "10"},
	} {
		d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    get:
      operationId: a
      parameters: [{name: n, in: query, schema: ` + c.schema + `}]
      responses: {'200': {description: ok}}
`})
		if err != nil {
			t.Fatal(err)
		}
		op := d.Operation("a")
		if op.Problem != "" {
			t.Fatalf("%s: %s", c.schema, op.Problem)
		}
		v := op.Params[0].Value
		show := func(p *int64) string {
			if p == nil {
				return ""
			}
			return fmt.Sprint(*p)
		}
		if show(v.Minimum) != c.lo || show(v.Maximum) != c.hi {
			t.Errorf("%s: bounds [%s, %s], want [%s, %s]", c.schema, show(v.Minimum), show(v.Maximum), c.lo, c.hi)
		}
	}
}

// TestBodyProblems: an operation whose body agentauthz cannot check says so.
func TestBodyProblems(t *testing.T) {
	d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /upload:
    post:
      operationId: upload
      requestBody:
        content:
          multipart/form-data:
            schema: {type: object}
      responses: {'200': {description: ok}}
  /both:
    post:
      operationId: both
      requestBody:
        content:
          application/xml: {schema: {type: object}}
          application/json: {schema: {type: object}}
      responses: {'200': {description: ok}}
`})
	if err != nil {
		t.Fatal(err)
	}
	if p := d.Operation("upload").Problem; !strings.Contains(p, "multipart/form-data, which agentauthz cannot check") {
		t.Errorf("upload: %q", p)
	}
	both := d.Operation("both")
	if both.Problem != "" || both.Body.JSON == nil || both.Body.Required {
		t.Errorf("both: %+v %+v", both.Problem, both.Body)
	}
}

// TestFormBodyProblems: a form body is read when its fields can be checked as query parameters
// are; anything else is a problem at its line.
func TestFormBodyProblems(t *testing.T) {
	for _, c := range []struct{ media, want string }{
		{`{schema: {type: object, properties: {a: {type: string}}}, encoding: {a: {style: form}}}`, "policy/api.yaml:9:104: a form body with an encoding object"},
		{`{schema: {type: object, properties: {a: {type: object, properties: {b: {type: string}}}}}}`, "form field a: an object field cannot be checked"},
		{`{schema: {type: object, additionalProperties: true, properties: {a: {type: string}}}}`, "policy/api.yaml:9:47: the form body: additionalProperties"},
		{`{schema: {type: object, properties: {a: {type: string}}, required: [b]}}`, `required field "b" is not among the properties`},
		{`{schema: {type: string}}`, "its schema must be of type object"},
		{`{schema: {type: object, properties: {a: {type: array, contains: {const: x}, items: {type: string}}}}}`, "form field a: array keyword contains"},
		{`{}`, "has no schema"},
	} {
		t.Run(c.want, func(t *testing.T) {
			d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    post:
      operationId: a
      requestBody:
        content:
          application/x-www-form-urlencoded: ` + c.media + `
      responses: {'200': {description: ok}}
`})
			if err != nil {
				t.Fatal(err)
			}
			if p := d.Operation("a").Problem; !strings.Contains(p, c.want) {
				t.Errorf("problem %q, want one containing %q", p, c.want)
			}
		})
	}
	for _, mt := range []string{"multipart/form-data", "text/plain", "application/octet-stream"} {
		d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    post:
      operationId: a
      requestBody: {content: {` + mt + `: {schema: {type: string}}}}
      responses: {'200': {description: ok}}
`})
		if err != nil {
			t.Fatal(err)
		}
		want := "policy/api.yaml:7:7: the request body is " + mt + ", which agentauthz cannot check"
		if p := d.Operation("a").Problem; !strings.HasPrefix(p, want) {
			t.Errorf("problem %q, want one starting %q", p, want)
		}
	}
}

// TestJSONLines: positions in a JSON document are found by its tokens.
func TestJSONLines(t *testing.T) {
	data := "{\n  \"a\": {\n    \"b\": [\n      1,\n      {\"c\": true}\n    ]\n  },\n  \"d\": 2\n}\n"
	f, err := parseFile("x.json", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	for ptr, want := range map[string][2]int{
		"/a": {2, 3}, "/a/b": {3, 5}, "/a/b/0": {4, 7}, "/a/b/1": {5, 7}, "/a/b/1/c": {5, 8}, "/d": {8, 3}, "/nope": {0, 0},
	} {
		line, col := f.line(ptr)
		if line != want[0] || col != want[1] {
			t.Errorf("%s: %d:%d, want %d:%d", ptr, line, col, want[0], want[1])
		}
	}
}

// TestYAMLValues: YAML scalars become the JSON values they stand for.
func TestYAMLValues(t *testing.T) {
	f, err := parseFile("x.yaml", []byte("a: 1\nb: 1.5e3\nc: true\nd: null\ne: 2024-01-02\nf: '7'\n200: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(f.value)
	want := `{"200":"x","a":1,"b":1.5e3,"c":true,"d":null,"e":"2024-01-02","f":"7"}`
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestContractStyle: a parameter written in another style, or a form body's field changed, is
// drift under a grant, as a changed schema is.
func TestContractStyle(t *testing.T) {
	doc := func(param, field string) *Document {
		d, err := readFiles(t, "api.yaml", map[string]string{"api.yaml": `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a:
    post:
      operationId: a
      parameters: [` + param + `]
      requestBody: {content: {application/x-www-form-urlencoded: {schema: {type: object, properties: {f: ` + field + `}}}}}
      responses: {'200': {description: ok}}
`})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	contract := func(d *Document) Contract { return d.Contract(d.Operation("a")) }
	const arr, str = "{type: array, items: {type: integer}}", "{type: string}"
	base := contract(doc("{name: t, in: query, schema: "+arr+"}", str))
	for _, c := range []struct {
		param, field string
		want         string
	}{
		{"{name: t, in: query, explode: false, schema: " + arr + "}", str, "query parameter t"},
		{"{name: t, in: query, style: pipeDelimited, explode: false, schema: " + arr + "}", str, "query parameter t"},
		{"{name: t, in: query, schema: {type: array, maxItems: 2, items: {type: integer}}}", str, "query parameter t"},
		{"{name: t, in: query, schema: " + arr + "}", "{type: string, maxLength: 3}", "request body"},
	} {
		if got := contract(doc(c.param, c.field)).Changed(base); strings.Join(got, ",") != c.want {
			t.Errorf("%s / %s: changed %q, want %q", c.param, c.field, got, c.want)
		}
	}
	if got := contract(doc("{name: t, in: query, explode: true, schema: "+arr+"}", str)).Changed(base); len(got) != 0 {
		t.Errorf("explode: true, the default, written out: changed %q", got)
	}
}
