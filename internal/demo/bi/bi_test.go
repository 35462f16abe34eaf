package bi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/demo/bi"
)

func start(t *testing.T) (*bi.API, *httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	api, err := bi.New(slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv, &logs
}

func post(t *testing.T, srv *httptest.Server, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/graphql", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(data))
}

func gql(query string, vars map[string]any) string {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return string(b)
}

func TestQueries(t *testing.T) {
	_, srv, logs := start(t)
	cases := []struct {
		name, body, want string
	}{
		{"revenue", gql(`query Q { revenue(quarter: "2026-Q3") { total currency } }`, nil),
			`{"data":{"revenue":{"total":1402118.75,"currency":"EUR"}}}`},
		{"unknown quarter is null", gql(`{ revenue(quarter: "1999-Q1") { total } }`, nil),
			`{"data":{"revenue":null}}`},
		{"aliases keep the selection's order", gql(`{ b: revenue(quarter: "2026-Q1") { currency } a: revenue(quarter: "2026-Q2") { total } }`, nil),
			`{"data":{"b":{"currency":"EUR"},"a":{"total":1318904.25}}}`},
		{"variables, fragments and __typename", gql(`query C($n: Int) { customers(first: $n) { ...F __typename } } fragment F on Customer { name orders { id } }`, map[string]any{"n": 1}),
			`{"data":{"customers":[{"name":"Globex GmbH","orders":[{"id":"o-9001"},{"id":"o-9002"}],"__typename":"Customer"}]}}`},
		{"skip and include", gql(`{ customers(first: 1) { name @skip(if: true) email @include(if: true) } }`, nil),
			`{"data":{"customers":[{"email":"ap@globex.example"}]}}`},
		{"nested back-reference", gql(`{ customers(first: 1) { orders { customer { phone } } } }`, nil),
			`{"data":{"customers":[{"orders":[{"customer":{"phone":"+49 30 5550104"}},{"customer":{"phone":"+49 30 5550104"}}]}]}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, got := post(t, srv, c.body)
			if status != 200 || got != c.want {
				t.Errorf("status %d\n got %s\nwant %s", status, got, c.want)
			}
		})
	}
	if !strings.Contains(logs.String(), `"root_fields":["revenue"]`) {
		t.Errorf("the log lacks the operation:\n%s", logs.String())
	}
}

func TestMutationRunsWhenItGetsHere(t *testing.T) {
	api, srv, _ := start(t)
	status, got := post(t, srv, gql(`mutation { deleteCustomer(id: "c-101") }`, nil))
	if status != 200 || got != `{"data":{"deleteCustomer":true}}` || api.Customers() != 3 {
		t.Errorf("status %d %s, %d customers", status, got, api.Customers())
	}
}

func TestBadRequests(t *testing.T) {
	_, srv, _ := start(t)
	for name, body := range map[string]string{
		"not json":          `query`,
		"unknown key":       `{"query":"{ revenue(quarter: \"x\") { total } }","extra":1}`,
		"no query":          `{}`,
		"invalid document":  gql(`{ nope }`, nil),
		"syntax error":      gql(`{ revenue(`, nil),
		"two ops, no name":  gql(`query A { customers { name } } query B { customers { name } }`, nil),
		"subscription":      gql(`subscription { revenueChanged { total } }`, nil),
		"missing variable":  gql(`query Q($q: String!) { revenue(quarter: $q) { total } }`, nil),
		"wrong type of var": gql(`query Q($n: Int) { customers(first: $n) { name } }`, map[string]any{"n": "x"}),
	} {
		if status, got := post(t, srv, body); status != 400 || !strings.Contains(got, `"errors"`) {
			t.Errorf("%s: status %d %s", name, status, got)
		}
	}
	resp, err := http.Post(srv.URL+"/graphql", "text/plain", strings.NewReader(`{"query":"{ customers { name } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d", resp.StatusCode)
	}
}

func TestGet(t *testing.T) {
	api, srv, _ := start(t)
	get := func(q string) (int, string) {
		resp, err := http.Get(srv.URL + "/graphql?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(data))
	}
	if status, got := get(`{ revenue(quarter: "2025-Q4") { total } }`); status != 200 || got != `{"data":{"revenue":{"total":1184250}}}` {
		t.Errorf("GET query: %d %s", status, got)
	}
	if status, _ := get(`mutation { deleteCustomer(id: "c-101") }`); status != 405 || api.Customers() != 4 {
		t.Errorf("GET mutation: %d, %d customers", status, api.Customers())
	}
}
