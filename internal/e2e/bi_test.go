package e2e_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
	"github.com/agentauthz/agentauthz/internal/stack"
)

const biGraphQL = "https://" + demoagent.BIHost + "/graphql"

func graphqlBody(query string) string {
	b, _ := json.Marshal(map[string]string{"query": query}) // strings always marshal
	return string(b)
}

// TestBIStory plays the BI story over real HTTP through real Envoy: the BI agent's allowed
// queries (POST and GET) reach the BI API, with no credential; its query for customers'
// e-mail, a mutation, and a GET query for e-mail are refused, and reach nothing.
func TestBIStory(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	c := s.Client(stack.BIAgent)

	ok := func(method, target, body, rule string) answer {
		t.Helper()
		before := s.BI.Count()
		a := send(t, c, method, target, body)
		if a.status != 200 || !strings.Contains(a.body, `"data"`) || strings.Contains(a.body, `"errors"`) {
			t.Fatalf("%s %s: %d %s, want 200 with data", method, target, a.status, a.body)
		}
		got := s.BI.Received()
		if len(got) != before+1 {
			t.Fatalf("%s %s: the BI API received %d requests, want 1", method, target, len(got)-before)
		}
		r := got[before]
		if want := strings.TrimPrefix(target, "https://"+demoagent.BIHost); r.Method != method || r.URI != want || string(r.Body) != body || r.Peer != stack.EnvoyID {
			t.Errorf("the BI API received %s %s %q from %q, want %s %s %q from Envoy", r.Method, r.URI, r.Body, r.Peer, method, want, body)
		}
		if v := r.Header.Values("Authorization"); len(v) > 0 {
			t.Errorf("%s %s reached the BI API with Authorization %q; the policy removes it and injects none", method, target, v)
		}
		allowedID(t, s, r.Header, rule)
		return a
	}
	denied := func(method, target, body string, status int, code string) answer {
		t.Helper()
		before := s.BI.Count()
		a := send(t, c, method, target, body)
		wantDenial(t, s, a, status, code)
		if n := s.BI.Count() - before; n != 0 {
			t.Errorf("%s %s was denied, yet %d requests reached the BI API", method, target, n)
		}
		return a
	}

	if a := ok("POST", biGraphQL, graphqlBody(demoagent.RevenueQuery), "bi-graphql"); !strings.Contains(a.body, `"revenue"`) {
		t.Errorf("revenue: %s", a.body)
	}
	ok("POST", biGraphQL, graphqlBody(demoagent.CustomersQuery), "bi-graphql")
	ok("GET", biGraphQL+"?query="+url.QueryEscape(demoagent.RevenueQuery), "", "bi-graphql-get")

	email := denied("POST", biGraphQL, graphqlBody(demoagent.EmailQuery), 403, "graphql_field")
	if !strings.Contains(email.body, "Customer.email") {
		t.Errorf("the refusal does not name the field: %s", email.body)
	}
	denied("POST", biGraphQL, graphqlBody(demoagent.DeleteMutation), 403, "graphql_operation")
	denied("GET", biGraphQL+"?query="+url.QueryEscape(demoagent.EmailQuery), "", 403, "graphql_field")
	denied("GET", biGraphQL+"?query="+url.QueryEscape(demoagent.DeleteMutation), "", 403, "graphql_operation")

	if n := s.BIAPI.Customers(); n != 4 {
		t.Errorf("%d customers left, want all 4", n)
	}
	for _, r := range s.BI.Received() {
		if strings.Contains(string(r.Body)+r.URI, "email") || strings.Contains(string(r.Body)+r.URI, "mutation") {
			t.Errorf("a refused document reached the BI API: %s %s", r.URI, r.Body)
		}
	}
	noCredentialLeak(t, s.BI.Received())
}
