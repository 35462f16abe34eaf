// Package bi is the demo's business-intelligence API, bi.acme.internal: GraphQL at /graphql over
// the demo schema (demo/policy/bi.graphql, the one agentauthz checks documents against) with
// canned data in memory. It asks for no credential (agentauthz injects none for it) and answers
// whatever reaches it, personal data and mutations included: keeping those from agents is
// agentauthz's job, and the demo shows it doing so.
//
//	POST /graphql   {"query": "...", "operationName": "...", "variables": {...}}
//	GET  /graphql?query=...&operationName=...&variables=...   (queries only)
//
// cmd/bi-api serves it; the end-to-end tests (internal/e2e) run it in process behind real Envoy.
package bi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/agentauthz/agentauthz/internal/demo"
)

// SchemaFile is the demo policy's GraphQL schema inside demo.Files.
const SchemaFile = demo.Dir + "/bi.graphql"

// API is the BI GraphQL API. It is safe for concurrent use.
type API struct {
	schema *ast.Schema
	log    *slog.Logger

	mu        sync.Mutex // held for each operation: a mutation changes the data
	revenue   map[string]*Revenue
	customers []*Customer
}

// New returns the API with the demo's schema and data. log receives one line per request; nil
// discards.
func New(log *slog.Logger) (*API, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sdl, err := fs.ReadFile(demo.Files, SchemaFile)
	if err != nil {
		return nil, fmt.Errorf("bi: %w", err)
	}
	schema, err := gqlparser.LoadSchema(&ast.Source{Name: "bi.graphql", Input: string(sdl)})
	if err != nil {
		return nil, fmt.Errorf("bi: schema: %w", err)
	}
	return &API{schema: schema, log: log, revenue: seedRevenue(), customers: seedCustomers()}, nil
}

// request is a GraphQL-over-HTTP request.
type request struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// response is a GraphQL response.
type response struct {
	Data   any        `json:"data,omitempty"`
	Errors []gqlError `json:"errors,omitempty"`
}

// ServeHTTP serves /graphql and logs each request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, resp, op := a.serve(r)
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status,
		"authorization_header", r.Header.Get("Authorization") != ""}
	if op != nil {
		attrs = append(attrs, "operation", string(op.Operation), "operation_name", op.Name, "root_fields", rootFields(op))
	}
	if len(resp.Errors) > 0 {
		attrs = append(attrs, "error", resp.Errors[0].Message)
	}
	a.log.Info("request", attrs...)
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("allow", "GET, POST")
	}
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp) // the client went away; nothing to do
}

func fail(status int, format string, args ...any) (int, response, *ast.OperationDefinition) {
	return status, response{Errors: []gqlError{{Message: fmt.Sprintf(format, args...)}}}, nil
}

func (a *API) serve(r *http.Request) (int, response, *ast.OperationDefinition) {
	if r.URL.Path != "/graphql" {
		return fail(http.StatusNotFound, "not found: the API is at /graphql")
	}
	var req request
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		req.Query, req.OperationName = q.Get("query"), q.Get("operationName")
		if v := q.Get("variables"); v != "" {
			if err := json.Unmarshal([]byte(v), &req.Variables); err != nil {
				return fail(http.StatusBadRequest, "variables is not a JSON object")
			}
		}
	case http.MethodPost:
		if mt, _, err := mime.ParseMediaType(r.Header.Get("content-type")); err != nil || mt != "application/json" {
			return fail(http.StatusUnsupportedMediaType, "send the request as application/json")
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			return fail(http.StatusBadRequest, `send {"query": "...", "operationName": "...", "variables": {...}}`)
		}
	default:
		return fail(http.StatusMethodNotAllowed, "use GET or POST")
	}
	if strings.TrimSpace(req.Query) == "" {
		return fail(http.StatusBadRequest, "no query")
	}
	doc, errs := gqlparser.LoadQueryWithRules(a.schema, req.Query, nil)
	if len(errs) > 0 {
		out := response{}
		for _, e := range errs {
			out.Errors = append(out.Errors, gqlError{Message: e.Message})
		}
		return http.StatusBadRequest, out, nil
	}
	op := doc.Operations.ForName(req.OperationName)
	if op == nil {
		return fail(http.StatusBadRequest, "name the operation to run with operationName")
	}
	switch {
	case op.Operation == ast.Subscription:
		return fail(http.StatusBadRequest, "subscriptions are not served over HTTP")
	case op.Operation == ast.Mutation && r.Method == http.MethodGet:
		status, resp, _ := fail(http.StatusMethodNotAllowed, "mutations need POST")
		return status, resp, op
	}
	vars, err := validator.VariableValues(a.schema, op, req.Variables)
	if err != nil {
		status, resp, _ := fail(http.StatusBadRequest, "%s", err.Error())
		return status, resp, op
	}
	a.mu.Lock()
	e := &executor{api: a, doc: doc, vars: vars}
	data := e.run(op)
	a.mu.Unlock()
	return http.StatusOK, response{Data: data, Errors: e.errors}, op
}

func rootFields(op *ast.OperationDefinition) []string {
	var names []string
	for _, sel := range op.SelectionSet {
		if f, ok := sel.(*ast.Field); ok {
			names = append(names, f.Name)
		}
	}
	return names
}

// resolve answers one field of typ on parent. Called with a.mu held.
func (a *API) resolve(typ, field string, parent any, args map[string]any) (any, error) {
	switch typ + "." + field {
	case "Query.revenue":
		q, _ := args["quarter"].(string)
		return a.revenue[q], nil
	case "Query.customers":
		cs := a.customers
		if v, ok := args["first"]; ok && v != nil {
			n, ok := asInt(v)
			if !ok || n < 0 {
				return nil, errors.New("first must be zero or more")
			}
			if n < len(cs) {
				cs = cs[:n]
			}
		}
		return append([]*Customer{}, cs...), nil
	case "Revenue.total":
		return parent.(*Revenue).Total, nil
	case "Revenue.currency":
		return parent.(*Revenue).Currency, nil
	case "Customer.name":
		return parent.(*Customer).Name, nil
	case "Customer.email":
		return parent.(*Customer).Email, nil
	case "Customer.phone":
		return parent.(*Customer).Phone, nil
	case "Customer.orders":
		return parent.(*Customer).Orders, nil
	case "Order.id":
		return parent.(*Order).ID, nil
	case "Order.total":
		return parent.(*Order).Total, nil
	case "Order.customer":
		return parent.(*Order).Customer, nil
	case "Mutation.deleteCustomer":
		id, _ := args["id"].(string)
		for i, c := range a.customers {
			if c.ID == id {
				a.customers = append(a.customers[:i:i], a.customers[i+1:]...)
				a.log.Warn("customer deleted", "id", id)
				return true, nil
			}
		}
		return false, nil
	}
	return nil, fmt.Errorf("%s.%s is not served by this API", typ, field)
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}

// Customers returns how many customers there are: a mutation that got through changes it.
func (a *API) Customers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.customers)
}
