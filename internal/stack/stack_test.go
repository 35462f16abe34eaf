package stack_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/agentauthz/agentauthz/internal/stack"
)

// TestStack: a request of the helpdesk agent goes through real Envoy and real agentauthz to the
// helpdesk API, with the injected credential; a denied one answers with agentauthz's problem.
func TestStack(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	c := s.Client(stack.HelpdeskAgent)
	get := func(url string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer agent-own")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("https://helpdesk.acme.internal/v1/tickets/4711"); resp.StatusCode != 200 {
		t.Fatalf("reading a ticket: %d %s", resp.StatusCode, body)
	}
	got := s.Helpdesk.Received()
	if len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+stack.HelpdeskToken || got[0].Peer != stack.EnvoyID {
		t.Errorf("the helpdesk API received %+v, want one request from Envoy with the injected credential", got)
	}
	resp, body := get("https://helpdesk.acme.internal/v1/tickets?limit=5000")
	if resp.StatusCode != 400 || resp.Header.Get("content-type") != "application/problem+json" || resp.Header.Get("x-agentauthz-decision-id") == "" {
		t.Errorf("an invalid query: %d %v %s, want 400 with problem details", resp.StatusCode, resp.Header, body)
	}
	if n := s.Helpdesk.Count(); n != 1 {
		t.Errorf("%d requests reached the helpdesk API, want 1", n)
	}
}
