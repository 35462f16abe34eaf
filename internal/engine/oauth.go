package engine

import (
	"context"
	"errors"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The sources of an agent's identity, as the decision log and the metrics name them.
const (
	SourceNone    = "none"     // no identity was established
	SourceX509    = "x509"     // the X.509-SVID of the agent's mTLS connection
	SourceJWTSVID = "jwt_svid" // a JWT-SVID, on a host that accepts them
	SourceOAuth   = "oauth"    // an OAuth access token, on a host that accepts them
)

// Sources lists the identity sources, for metrics.
var Sources = []string{SourceNone, SourceX509, SourceJWTSVID, SourceOAuth}

// tokenDescriptions are what a refused token's challenge and denial say, by reason: short,
// fixed, and never the token's own text (RFC 6750's error_description allows no quote or
// backslash, and the token is the sender's).
var tokenDescriptions = map[accesstoken.Reason]string{
	accesstoken.ReasonMalformed:   "The access token is malformed",
	accesstoken.ReasonHeader:      "The access token names keys or extensions of its own",
	accesstoken.ReasonIssuer:      "The access token is from an issuer this resource does not trust",
	accesstoken.ReasonAlgorithm:   "The access token is signed with an algorithm that is not accepted",
	accesstoken.ReasonType:        "The access token is not of an accepted type",
	accesstoken.ReasonUnknownKey:  "The access token is signed with an unknown key",
	accesstoken.ReasonSignature:   "The access token signature does not verify",
	accesstoken.ReasonExpired:     "The access token expired",
	accesstoken.ReasonNotYetValid: "The access token is not valid yet",
	accesstoken.ReasonAudience:    "The access token is for another resource",
	accesstoken.ReasonSubject:     "The access token names no subject",
	accesstoken.ReasonScope:       "The access token scope claim is malformed",
}

// oauthIdentity reads the access token of a request to a host that accepts them. Without a
// certificate, a valid token's subject, mapped to an agent by its issuer, is the agent; with
// one, the token must name the certificate's agent. A token that is present is always validated:
// a bad credential is refused, never ignored. Without either, the request is refused with the
// host's Bearer challenge. It returns a deny, or nil with the request's agent and token set.
func (e *Engine) oauthIdentity(ctx context.Context, snap *policy.Snapshot, oc *policy.OAuthConfig, r *Request, res *Result) *decision.Decision {
	req := &r.policy
	// Challenges point to the metadata of the resource the request is for.
	oc = oc.For(req.Target)
	value, n := req.Headers.Get("authorization")
	if n == 0 {
		if !req.Agent.IsZero() {
			return nil
		}
		d := decision.Denied(decision.CodeIdentityMissing,
			"The request carries no agent identity; send an access token for this host as Authorization: Bearer <token>, or call with your SPIFFE certificate.")
		d.Challenge = oc.Challenge("", "")
		return &d
	}
	invalid := func(description string) *decision.Decision {
		d := decision.Denied(decision.CodeOAuthTokenInvalid, description+"; obtain a new access token for "+oc.Resource()+" and retry.")
		d.Challenge = oc.Challenge("invalid_token", description)
		return &d
	}
	if n > 1 {
		return invalid("Send one access token, in one Authorization header")
	}
	token, err := accesstoken.Bearer(value)
	if err != nil {
		return invalid("The Authorization header is not a Bearer access token")
	}
	keys := e.cfg.OAuthKeys
	if keys == nil {
		keys = accesstoken.PolicyKeys{}
	}
	// Only a key fetch waits here, and never past the decision's deadline.
	vctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	tok, err := oc.Validator.Validate(vctx, token, e.cfg.Clock(), keys)
	cancel()
	if err != nil {
		var te *accesstoken.Error
		if errors.As(err, &te) && te.Reason != accesstoken.ReasonKeysUnavailable {
			return invalid(tokenDescriptions[te.Reason])
		}
		d := decision.Failed(decision.CodeOAuthKeysUnavailable,
			"The keys of your access token's issuer cannot be had right now; retry later.", err)
		return &d
	}
	res.Issuer, res.Subject = tok.Issuer.URL, tok.Subject
	id, mapped := snap.OAuthAgent(tok.Issuer, tok.Subject)
	if !req.Agent.IsZero() {
		// The certificate's identity wins, and a token that names another agent is refused: a
		// request is one agent's, never two.
		if !mapped || id != req.Agent {
			const description = "The access token names another agent than the certificate"
			d := decision.Denied(decision.CodeIdentityConflict, description+"; send the token of the certificate's agent, or only one of them.")
			d.Challenge = oc.Challenge("invalid_token", description)
			return &d
		}
	} else {
		if !mapped {
			d := decision.Denied(decision.CodeOAuthSubjectUnknown,
				"Your access token's subject ("+tok.Issuer.SubjectClaim+") is not an agent here; do not retry, ask an operator to map it to an agent.")
			return &d
		}
		req.Agent = id
		res.Agent, res.Source = id.String(), SourceOAuth
	}
	r.token = tok
	req.Token = &r.token
	return nil
}
