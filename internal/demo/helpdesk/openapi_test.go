package helpdesk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
)

const testToken = "SENTINEL-openapi-token"

// loadDescription reads the description the API serves, validated as an OpenAPI document.
func loadDescription(t *testing.T) (*openapi3.T, []byte) {
	t.Helper()
	data, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the description is not valid OpenAPI: %v", err)
	}
	return doc, data
}

// TestOpenAPIServed: GET /openapi.json serves the demo policy's helpdesk.openapi.json, byte for
// byte, behind the API's credential.
func TestOpenAPIServed(t *testing.T) {
	_, data := loadDescription(t)
	api, err := New(Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", OpenAPIPath, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("content-type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), data) {
		t.Fatalf("GET %s: %d %q, %d bytes; want 200 application/json, the %d bytes of the description",
			OpenAPIPath, rec.Code, rec.Header().Get("content-type"), rec.Body.Len(), len(data))
	}
	rec = httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", OpenAPIPath, nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("GET %s without the token: %d, want 401", OpenAPIPath, rec.Code)
	}
}

// TestOpenAPIMatchesHandlers holds the description to the handlers: every route the API serves
// is an operation of the description and every operation a route; and for each operation,
// requests built from the description (its examples; a value its schema allows that names
// nothing; a value its schema refuses; no credential) are served by the real handler with a
// status the operation documents and a response that its schema accepts.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	doc, _ := loadDescription(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return time.Date(2026, 9, 2, 10, 0, 0, 0, time.UTC) }
	newAPI := func() *API {
		api, err := New(Config{Token: testToken, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return api
	}

	// The routes and the operations, one to one.
	served := map[string]bool{}
	for _, r := range newAPI().routes() {
		served[r.pattern] = true
	}
	described := map[string]bool{}
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			described[m+" "+p] = true
		}
	}
	for r := range served {
		if !described[r] {
			t.Errorf("the API serves %s, which the description lacks", r)
		}
	}
	for o := range described {
		if !served[o] {
			t.Errorf("the description has %s, which the API does not serve", o)
		}
	}

	// A value each path parameter's schema allows that names no ticket or user.
	unknown := map[string]string{"id": "999999999999", "username": "nobody"}

	paths := make([]string, 0, len(doc.Paths.Map()))
	for p := range doc.Paths.Map() {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		item := doc.Paths.Value(p)
		for method, op := range item.Operations() {
			params := append(openapi3.Parameters{}, item.Parameters...)
			params = append(params, op.Parameters...)
			t.Run(op.OperationID, func(t *testing.T) {
				build := func(override map[string]string, badQuery bool) (string, []byte) {
					path, query := p, url.Values{}
					for _, pr := range params {
						v := fmt.Sprint(pr.Value.Example)
						if o, ok := override[pr.Value.Name]; ok {
							v = o
						}
						if pr.Value.Example == nil {
							t.Fatalf("parameter %s has no example to build a request from", pr.Value.Name)
						}
						if err := pr.Value.Schema.Value.VisitJSON(jsonValue(t, pr.Value.Schema.Value, v)); err != nil {
							t.Fatalf("parameter %s: %q is not valid by its own schema: %v", pr.Value.Name, v, err)
						}
						switch pr.Value.In {
						case "path":
							path = strings.ReplaceAll(path, "{"+pr.Value.Name+"}", url.PathEscape(v))
						case "query":
							query.Set(pr.Value.Name, v)
						}
					}
					if badQuery {
						for _, pr := range params {
							if s := pr.Value.Schema.Value; pr.Value.In == "query" && s.Min != nil {
								query.Set(pr.Value.Name, fmt.Sprint(*s.Min-1)) // below its minimum
							}
						}
					}
					if len(query) > 0 {
						path += "?" + query.Encode()
					}
					var body []byte
					if rb := op.RequestBody; rb != nil {
						mt := rb.Value.Content.Get("application/json")
						if mt == nil || mt.Example == nil {
							t.Fatal("the request body has no application/json example to build a request from")
						}
						body, _ = json.Marshal(mt.Example)
					}
					return path, body
				}
				var cases []probe
				path, body := build(nil, false)
				cases = append(cases, probe{"the examples", path, body, true, 0})
				cases = append(cases, probe{"no credential", path, body, false, http.StatusUnauthorized})
				if op.Responses.Status(http.StatusNotFound) != nil {
					over := map[string]string{}
					for _, pr := range params {
						if pr.Value.In == "path" {
							over[pr.Value.Name] = unknown[pr.Value.Name]
						}
					}
					path, body := build(over, false)
					cases = append(cases, probe{"nothing by that name", path, body, true, http.StatusNotFound})
				}
				if op.Responses.Status(http.StatusBadRequest) != nil {
					path, body := build(nil, op.RequestBody == nil)
					if op.RequestBody != nil {
						body = []byte(`{}`) // no required property
					}
					cases = append(cases, probe{"refused by the schema", path, body, true, http.StatusBadRequest})
				}
				for _, c := range cases {
					req := httptest.NewRequest(method, "https://helpdesk.acme.internal"+c.path, bytes.NewReader(c.body))
					if c.body != nil {
						req.Header.Set("Content-Type", "application/json")
					}
					if c.auth {
						req.Header.Set("Authorization", "Bearer "+testToken)
					}
					route, pathParams, err := router.FindRoute(req)
					if err != nil {
						t.Fatalf("%s: %s %s is no operation of the description: %v", c.name, method, c.path, err)
					}
					if route.Operation != op {
						t.Fatalf("%s: %s %s is operation %s", c.name, method, c.path, route.Operation.OperationID)
					}
					in := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route,
						Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
					reqErr := openapi3filter.ValidateRequest(context.Background(), in)
					if c.wantCode != http.StatusBadRequest && reqErr != nil {
						t.Fatalf("%s: the request built from the description is not valid by it: %v", c.name, reqErr)
					}
					if c.wantCode == http.StatusBadRequest && reqErr == nil {
						t.Fatalf("%s: the request meant to be refused is valid by the description", c.name)
					}
					req.Body = io.NopCloser(bytes.NewReader(c.body)) // ValidateRequest read it
					rec := httptest.NewRecorder()
					newAPI().ServeHTTP(rec, req)
					switch {
					case c.wantCode == 0 && (rec.Code < 200 || rec.Code > 299):
						t.Errorf("%s: %s %s: %d, want a success (%s)", c.name, method, c.path, rec.Code, rec.Body)
					case c.wantCode != 0 && rec.Code != c.wantCode:
						t.Errorf("%s: %s %s: %d, want %d (%s)", c.name, method, c.path, rec.Code, c.wantCode, rec.Body)
					}
					err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
						RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
						Options: in.Options,
					})
					if err != nil {
						t.Errorf("%s: %s %s: the %d response does not match the description: %v", c.name, method, c.path, rec.Code, err)
					}
				}
			})
		}
	}
}

// jsonValue is a parameter's text as the JSON value its schema types.
func jsonValue(t *testing.T, s *openapi3.Schema, v string) any {
	t.Helper()
	if s.Type.Is("integer") || s.Type.Is("number") {
		var n float64
		if err := json.Unmarshal([]byte(v), &n); err != nil {
			t.Fatalf("%q is not a number", v)
		}
		return n
	}
	return v
}

// probe is one request built from the description.
type probe struct {
	name     string
	path     string
	body     []byte
	auth     bool
	wantCode int // 0: a success
}
