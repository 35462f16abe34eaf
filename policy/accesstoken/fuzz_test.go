package accesstoken_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// FuzzBearerToken reads an Authorization header value as the engine does (Bearer, then
// Validate) with a fixed clock. Whatever the input, it never panics, and a token it accepts says
// what one of the seeds signed by the issuer says: no change to a token keeps it valid with
// other claims.
func FuzzBearerToken(f *testing.F) {
	fx := newFixture(f)
	now := time.Now()
	es, rs := fx.iss.Key(jose.ES256), fx.iss.Key(jose.RS256)
	signed := map[string]string{} // subject → scopes of the tokens the issuer signed
	add := func(tok, subject, scopes string) {
		f.Add("Bearer " + tok)
		if subject != "" {
			signed[subject] = scopes
		}
	}
	c := fx.iss.Claims("helpdesk-client", "tickets.read tickets.write")
	add(fx.iss.Token(f, jose.ES256, c), "helpdesk-client", "tickets.read tickets.write")
	c = fx.iss.Claims("bi-client", "reports.read")
	c["scope"] = []string{"reports.read"}
	add(fx.iss.Token(f, jose.RS256, c), "bi-client", "reports.read")
	c = fx.iss.Claims("expired-client", "")
	c["exp"] = now.Add(-time.Hour).Unix()
	add(fx.iss.Token(f, jose.ES256, c), "", "")
	add(oauthtest.SignHS256(f, oauthtest.PublicJWK(f, es), es.ID, fx.iss.Claims("hs", "")), "", "")
	add(oauthtest.Unsigned(f, rs.ID, fx.iss.Claims("none", ""))[0], "", "")
	add(oauthtest.Sign(f, rs, oauthtest.Header("ES256", rs.ID), fx.iss.Claims("confused", "")), "", "")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer a.b.c.d.e")
	f.Add("Bearer eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, header string) {
		token, err := accesstoken.Bearer(header)
		if err != nil {
			return
		}
		tok, err := fx.v.Validate(context.Background(), token, now, accesstoken.PolicyKeys{})
		if err != nil {
			if reason(err) == "" {
				t.Fatalf("an error without a reason: %v", err)
			}
			return
		}
		scopes, ok := signed[tok.Subject]
		if !ok || strings.Join(tok.Scopes, " ") != scopes || tok.Issuer != fx.cfg {
			t.Fatalf("accepted a token the issuer never signed: %+v", tok)
		}
	})
}
