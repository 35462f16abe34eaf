package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig configures an OIDC authenticator.
type OIDCConfig struct {
	// Issuer is the identity provider's issuer URL: https, or http to a loopback address. Its
	// discovery document (/.well-known/openid-configuration) names the JWKS.
	Issuer string
	// ClientID is the audience ID tokens must carry.
	ClientID string
	// NameClaim is the claim naming the approver (default "email"), matched against
	// "user:NAME" approvers.
	NameClaim string
	// GroupsClaim is the claim listing the approver's groups (default "groups"), matched
	// against "group:NAME" approvers.
	GroupsClaim string
	// HTTPClient fetches discovery and keys; nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	Log   *slog.Logger
}

// OIDC authenticates approvers by an OpenID Connect ID token sent as a bearer token, verified
// against the issuer's published keys (asymmetric algorithms only), its issuer, the client id
// as audience, and expiry.
type OIDC struct {
	verifier    *oidc.IDTokenVerifier
	nameClaim   string
	groupsClaim string
	log         *slog.Logger
}

var _ Authenticator = (*OIDC)(nil)

// oidcAlgs are the signature algorithms accepted: never none, never a shared-secret HMAC.
var oidcAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// NewOIDC fetches the issuer's discovery document (bounded by ctx) and returns the
// authenticator. Keys are fetched when first needed, and again when a token names a key not
// yet seen.
func NewOIDC(ctx context.Context, c OIDCConfig) (*OIDC, error) {
	u, err := url.Parse(c.Issuer)
	if err != nil || !allowedURL(u) {
		return nil, fmt.Errorf("oidc: issuer %q must be an https URL (or http to a loopback address)", c.Issuer)
	}
	if c.ClientID == "" {
		return nil, errors.New("oidc: a client id is required")
	}
	if c.NameClaim == "" {
		c.NameClaim = "email"
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), c.Issuer)
	if err != nil {
		// One line: a provider's error page can be many.
		return nil, fmt.Errorf("oidc: discovery at %s failed: %s", c.Issuer, clipText(strings.Join(strings.Fields(err.Error()), " "), 300))
	}
	cfg := &oidc.Config{ClientID: c.ClientID, SupportedSigningAlgs: oidcAlgs, Now: c.Clock}
	return &OIDC{
		// Verifier fetches keys with the provider's client, on a context of its own.
		verifier:    provider.Verifier(cfg),
		nameClaim:   c.NameClaim,
		groupsClaim: c.GroupsClaim,
		log:         log,
	}, nil
}

// Authenticate implements Authenticator. A bearer token that is not a JWT is left to the other
// authenticators of a Chain; a JWT that does not verify, or names no one, is refused.
func (o *OIDC) Authenticate(r *http.Request) (Approver, error) {
	token, ok := bearer(r)
	if !ok || strings.Count(token, ".") != 2 {
		return Approver{}, ErrUnauthenticated
	}
	idt, err := o.verifier.Verify(r.Context(), token)
	if err != nil {
		o.log.Info("OIDC token refused", "error", err.Error())
		return Approver{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Approver{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	name, _ := claims[o.nameClaim].(string)
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		o.log.Info("OIDC token refused: no name claim", "claim", o.nameClaim, "subject", idt.Subject)
		return Approver{}, fmt.Errorf("%w: the token has no %q claim", ErrUnauthenticated, o.nameClaim)
	case isWorkload(name):
		o.log.Warn("OIDC token refused: it names a workload identity", "name", name, "subject", idt.Subject)
		return Approver{}, fmt.Errorf("%w: %s is a workload identity; approvers are people", ErrUnauthenticated, name)
	case o.nameClaim == "email" && claims["email_verified"] == false:
		o.log.Info("OIDC token refused: email not verified", "name", name, "subject", idt.Subject)
		return Approver{}, fmt.Errorf("%w: the email address is not verified", ErrUnauthenticated)
	}
	return Approver{Name: name, Groups: stringsClaim(claims[o.groupsClaim])}, nil
}

// stringsClaim reads a claim that lists strings; a single string is a list of one. Anything
// else is no groups.
func stringsClaim(v any) []string {
	switch v := v.(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
