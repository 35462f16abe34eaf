package engine

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// jwtIdentity establishes the agent from a JWT-SVID, on a host whose policy accepts them, for a
// request without an X.509 identity. It returns a deny when a token is present but invalid;
// without a token it leaves the request as it is (the policy refuses it for lack of identity).
func jwtIdentity(r *policy.Request, cfg *policy.JWTSVIDConfig, bundles jwtbundle.Source) *decision.Decision {
	value, n := r.Headers.Get(cfg.Header)
	if n == 0 {
		return nil
	}
	invalid := func(detail string) *decision.Decision {
		d := decision.Denied(decision.CodeJWTSVIDInvalid, detail)
		return &d
	}
	if n > 1 {
		return invalid("Send one JWT-SVID, in one " + cfg.Header + " header.")
	}
	token := value
	if cfg.Header == "authorization" {
		scheme, rest, ok := strings.Cut(value, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return invalid("Send the JWT-SVID as Authorization: Bearer <token>.")
		}
		token = strings.TrimSpace(rest)
	}
	if bundles == nil {
		return invalid("This gateway has no JWT bundles to validate JWT-SVIDs; use your X.509 SVID.")
	}
	// ParseAndValidate refuses alg none and HMAC, unknown keys, expired tokens, a foreign trust
	// domain without a bundle, and tokens for other audiences.
	svid, err := jwtsvid.ParseAndValidate(token, bundles, cfg.Audiences)
	if err != nil {
		return invalid("Your JWT-SVID is not valid here (expired, wrong audience, unknown key or trust domain); fetch a fresh one for audience " + cfg.Audiences[0] + ".")
	}
	r.Agent = svid.ID
	return nil
}
