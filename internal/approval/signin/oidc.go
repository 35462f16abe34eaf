package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
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

var _ api.Authenticator = (*OIDC)(nil)

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
	if err != nil || !allowedIssuer(u) {
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
		return nil, fmt.Errorf("oidc: discovery at %s failed: %s", c.Issuer, clip(strings.Join(strings.Fields(err.Error()), " "), 300))
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

// Authenticate implements api.Authenticator. A bearer token that is not a JWT is left to the other
// authenticators of a Chain; a JWT that does not verify, or names no one, is refused.
func (o *OIDC) Authenticate(r *http.Request) (approval.Approver, error) {
	token, ok := bearer(r)
	if !ok || strings.Count(token, ".") != 2 {
		return approval.Approver{}, api.ErrUnauthenticated
	}
	idt, err := o.verifier.Verify(r.Context(), token)
	if err != nil {
		o.log.Info("OIDC token refused", "error", err.Error())
		return approval.Approver{}, fmt.Errorf("%w: %v", api.ErrUnauthenticated, err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return approval.Approver{}, fmt.Errorf("%w: %v", api.ErrUnauthenticated, err)
	}
	name, _ := claims[o.nameClaim].(string)
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		o.log.Info("OIDC token refused: no name claim", "claim", o.nameClaim, "subject", idt.Subject)
		return approval.Approver{}, fmt.Errorf("%w: the token has no %q claim", api.ErrUnauthenticated, o.nameClaim)
	case approval.IsWorkload(name):
		o.log.Warn("OIDC token refused: it names a workload identity", "name", name, "subject", idt.Subject)
		return approval.Approver{}, fmt.Errorf("%w: %s is a workload identity; approvers are people", api.ErrUnauthenticated, name)
	case o.nameClaim == "email" && claims["email_verified"] == false:
		o.log.Info("OIDC token refused: email not verified", "name", name, "subject", idt.Subject)
		return approval.Approver{}, fmt.Errorf("%w: the email address is not verified", api.ErrUnauthenticated)
	}
	return approval.Approver{Name: name, Groups: stringsClaim(claims[o.groupsClaim])}, nil
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

// allowedIssuer reports whether u may be an issuer: https, or http to a loopback address.
func allowedIssuer(u *url.URL) bool {
	switch {
	case u.Host == "":
		return false
	case u.Scheme == "https":
		return true
	case u.Scheme == "http":
		if strings.EqualFold(u.Hostname(), "localhost") {
			return true
		}
		ip := net.ParseIP(u.Hostname())
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// clip shortens s to at most n bytes, on a character boundary, ending in "…" if cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)] + "…"
}
