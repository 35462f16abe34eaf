package authzen_test

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy"
)

// withOAuth decides from oauthtest's policy, the issuer's keys fetched as serve fetches them.
func withOAuth(t testing.TB, iss *oauthtest.Issuer) option {
	return func(cfg *serverConfig, _ *pdp) {
		snap, err := policy.Load([]policy.File{{Name: "oauth.yaml", Data: []byte(oauthtest.Policy(iss.URL))}}, policy.Options{
			Secrets: func(policy.SecretRef) (string, error) { return credential, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store = policy.NewStore(snap)
		cfg.OAuthKeys = oauthkeys.New(oauthkeys.Config{})
	}
}

// tokenEval is the evaluation of an HTTP request by the agent its access token names.
func tokenEval(method, url, token string) map[string]any {
	ev := httpEval("", method, url, nil)
	ev["subject"] = map[string]any{"type": authzen.SubjectAccessToken, "id": "authorization"}
	if token != "" {
		ev["context"] = map[string]any{"headers": map[string]any{"authorization": "Bearer " + token}}
	}
	return ev
}

// TestOAuthSubject: a PEP asks about a request it has not identified, by the access token it
// carries: decided as the agent the token names, as through Envoy's door; without a token, or
// without the route's OAuth scope, the denial carries the challenge Envoy would answer with.
func TestOAuthSubject(t *testing.T) {
	iss := oauthtest.Start(t)
	p := startPDP(t, withOAuth(t, iss))
	const list = "https://helpdesk.acme.internal/v1/tickets"
	rm := `Bearer resource_metadata="` + oauthtest.Audience + `/.well-known/oauth-protected-resource"`
	read := iss.Token(t, jose.ES256, iss.Claims(oauthtest.HelpdeskClient, "tickets.read"))
	if v := p.evaluation(t, tokenEval("GET", list, read)); !v.Decision || v.Rule != "list-tickets" {
		t.Errorf("a token with tickets.read: %+v", v)
	}
	recs := p.decisions.records()
	if d := recs[len(recs)-1]; d.IdentitySource != "oauth" || d.Agent != oauthtest.Helpdesk || d.Subject != oauthtest.HelpdeskClient {
		t.Errorf("recorded as %+v", d)
	}
	v := p.evaluation(t, tokenEval("GET", list, ""))
	if v.Decision || v.Code != "identity_missing" || v.Status != 401 || v.Context["www_authenticate"] != rm {
		t.Errorf("no token: %+v", v)
	}
	v = p.evaluation(t, tokenEval("POST", "https://helpdesk.acme.internal/v1/tickets/4711/comments", read))
	if want := rm + `, error="insufficient_scope", scope="tickets.write"`; v.Decision || v.Code != "oauth_scope_missing" || v.Context["www_authenticate"] != want {
		t.Errorf("without tickets.write: %+v, want www_authenticate %s", v, want)
	}
	// A host without oauth has no token to go by.
	if v := p.evaluation(t, tokenEval("GET", "https://reports.acme.internal/v1/revenue", read)); v.Decision || v.Code != "identity_missing" || v.Context["www_authenticate"] != nil {
		t.Errorf("a host without oauth: %+v", v)
	}
	bad := tokenEval("GET", list, read)
	bad["subject"] = map[string]any{"type": authzen.SubjectAccessToken, "id": "x-token"}
	if v := p.evaluation(t, bad); v.Decision || v.Code != "request_malformed" || !strings.Contains(v.Context["detail"].(string), `"authorization"`) {
		t.Errorf("an access_token subject naming another header: %+v", v)
	}
}
