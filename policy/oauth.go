package policy

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// OAuthConfig says how a host accepts OAuth access tokens. It is compiled at load and shared.
//
// A host with oauth is one OAuth protected resource (RFC 9728) for each of its audiences that is
// an https URL of the host itself: "https://host" is the host as a whole, "https://host/mcp" the
// resource at path /mcp (an MCP server's endpoint, say). The host's OAuthConfig is the view of
// the host as a whole; For gives the view of the resource at a request's path.
type OAuthConfig struct {
	// Validator validates the host's tokens: its issuers and audiences.
	Validator *accesstoken.Validator
	// resource is the identifier of the resource this view is, "" when the host itself is none.
	resource string
	// params are the auth-params every challenge of the view carries before its error, each
	// name=value: the resource's metadata pointer (resource_metadata), when it has one.
	params []string
	// scopes, on the view of a resource with a path, are the OAuth scopes its routes need.
	scopes []string
	// paths are the views of the host's resources with a path, by that path; metadata the
	// host's protected-resource metadata documents, by the path they are served at. Both are set
	// on the host's view only.
	paths    map[string]*OAuthConfig
	metadata map[string]*oauthMetadata
}

// Challenge is the WWW-Authenticate value of a 401 on the host (RFC 6750 §3): errCode empty for a
// request without a token, "invalid_token" for a refused one, with description. A request
// without a token to a resource with a path (an MCP server) is also told the scopes its routes
// need, which MCP clients ask for first.
func (c *OAuthConfig) Challenge(errCode, description string) string {
	var scopes []string
	if errCode == "" {
		scopes = c.scopes
	}
	return bearerChallenge(c.params, errCode, description, scopes)
}

// Resource is the identifier of the resource the view is, or the host's first audience when the
// host itself is none: what a client must ask the authorization server for a token for.
func (c *OAuthConfig) Resource() string {
	if c.resource != "" {
		return c.resource
	}
	return c.Validator.Audiences()[0]
}

// For returns the view of the resource a request target addresses: the resource whose path is
// the target's path exactly, or else the host's. It only chooses what a challenge points to;
// the route that serves a resource's path checks the token's audience (see route.oauthResource).
func (c *OAuthConfig) For(target string) *OAuthConfig {
	if len(c.paths) == 0 {
		return c
	}
	path, _, _ := strings.Cut(target, "?")
	if v := c.paths[path]; v != nil {
		return v
	}
	return c
}

// bearerChallenge writes a Bearer challenge: params, then error, error_description and scope when
// given. The values are agentauthz's own (error codes, fixed descriptions, scope tokens from the
// policy), none of which holds a quote or a backslash.
func bearerChallenge(params []string, errCode, description string, scopes []string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	add := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
		sep = ", "
	}
	for _, p := range params {
		name, value, _ := strings.Cut(p, "=")
		add(name, value)
	}
	if errCode != "" {
		add("error", errCode)
	}
	if description != "" {
		add("error_description", description)
	}
	if len(scopes) > 0 {
		add("scope", strings.Join(scopes, " "))
	}
	return b.String()
}

// OAuth returns how the host named by an :authority accepts OAuth access tokens, or nil when it
// does not.
func (s *Snapshot) OAuth(authority string) *OAuthConfig {
	if h := s.hosts[hostKey(authority)]; h != nil && h.live {
		return h.oauth
	}
	return nil
}

// OAuthIssuers returns the policy's OAuth issuers, in policy order. They must not be modified.
func (s *Snapshot) OAuthIssuers() []*accesstoken.Issuer { return s.oauthIssuers }

// OAuthAgent returns the agent the policy maps a subject of iss's tokens to.
func (s *Snapshot) OAuthAgent(iss *accesstoken.Issuer, subject string) (spiffeid.ID, bool) {
	id, ok := s.oauthAgents[oauthSubject{iss, subject}]
	return id, ok
}

// oauthSubject is one subject of one issuer.
type oauthSubject struct {
	iss     *accesstoken.Issuer
	subject string
}

// oauthIssuers compiles a file's OAuth issuers: URLs, keys from files (read now), algorithms,
// and each subject's agent, which an ordinary file must define.
func (c *compiler) oauthIssuers(src *source) {
	for i, ip := range src.policy.GetOauthIssuers() {
		at := fmt.Sprintf("oauth_issuers[%d]", i)
		if src.policy.GetShadow() {
			c.addf(src, at, "a shadow file cannot define OAuth issuers: define them in an ordinary file")
			continue
		}
		name := ip.GetName()
		if first, dup := c.issuerAt[name]; dup {
			c.addf(src, at+".name", "OAuth issuer %q is already defined at %s", name, first)
			continue
		}
		if first, dup := c.issuerURLAt[ip.GetIssuer()]; dup {
			c.addf(src, at+".issuer", "issuer %s is already defined at %s", ip.GetIssuer(), first)
			continue
		}
		c.issuerAt[name] = src.file.Name + " " + at
		c.issuerURLAt[ip.GetIssuer()] = src.file.Name + " " + at
		iss := &accesstoken.Issuer{
			Name: name, URL: ip.GetIssuer(), Skew: accesstoken.DefaultSkew,
			SubjectClaim: ip.GetSubjectClaim(), ScopeClaim: ip.GetScopeClaim(),
		}
		if err := checkFetchURL(iss.URL, true); err != nil {
			c.addf(src, at+".issuer", "%v", err)
		}
		switch {
		case ip.GetJwksFile() != "":
			data, err := c.readRef(src, ip.GetJwksFile())
			if err == nil {
				iss.Keys, err = accesstoken.ParseKeySet(data)
			}
			if err != nil {
				c.addf(src, at+".jwks_file", "%v", err)
			}
		case ip.GetJwksUrl() != "":
			if err := checkFetchURL(ip.GetJwksUrl(), false); err != nil {
				c.addf(src, at+".jwks_url", "%v", err)
			}
			iss.JWKSURL = ip.GetJwksUrl()
		}
		for _, a := range ip.GetAlgorithms() {
			iss.Algorithms = append(iss.Algorithms, jose.SignatureAlgorithm(a))
		}
		if d := ip.GetClockSkew(); d != nil {
			iss.Skew = d.AsDuration()
		}
		if iss.SubjectClaim == "" {
			iss.SubjectClaim = "sub"
		}
		if iss.ScopeClaim == "" {
			iss.ScopeClaim = "scope"
		}
		iss.Types = []string{"at+jwt"}
		if types := ip.GetTokenTypes(); len(types) > 0 {
			iss.Types = iss.Types[:0]
			seen := map[string]bool{}
			for j, t := range types {
				n := accesstoken.NormalizeType(t)
				if seen[n] {
					c.addf(src, fmt.Sprintf("%s.token_types[%d]", at, j), "token type %q is listed twice (types compare without case and application/)", t)
				}
				seen[n] = true
				iss.Types = append(iss.Types, n)
			}
		}
		// A policy with problems never loads: the issuer is kept all the same, so that hosts
		// naming it are checked for their own problems.
		c.oauthSubjects(src, at, ip, iss)
		c.issuers[name] = iss
		c.snap.oauthIssuers = append(c.snap.oauthIssuers, iss)
	}
}

// oauthSubjects compiles the issuer's subject-to-agent table.
func (c *compiler) oauthSubjects(src *source, at string, ip *policyv1.OAuthIssuer, iss *accesstoken.Issuer) {
	seen := map[string]string{}
	for j, m := range ip.GetAgents() {
		mat := fmt.Sprintf("%s.agents[%d]", at, j)
		if first, dup := seen[m.GetSubject()]; dup {
			c.addf(src, mat+".subject", "subject %q is already mapped at %s", m.GetSubject(), first)
			continue
		}
		seen[m.GetSubject()] = mat
		id, err := spiffeid.FromString(m.GetAgent())
		if err != nil {
			c.addf(src, mat+".agent", "not a SPIFFE ID: %v", err)
			continue
		}
		if ag := c.snap.agents[id]; ag == nil || !ag.live {
			c.addf(src, mat+".agent", "agent %s is not defined in an ordinary policy file", id)
			continue
		}
		c.snap.oauthAgents[oauthSubject{iss, m.GetSubject()}] = id
	}
}

// hostOAuth compiles what tokens a live host accepts, and removes the token before the upstream.
func (c *compiler) hostOAuth(src *source, at string, h *policyv1.Host, hs *host) {
	o := h.GetOauth()
	if h.GetJwtSvid() != nil {
		c.addf(src, at+".oauth", "a host accepts JWT-SVIDs or OAuth access tokens, not both")
		return
	}
	var issuers []*accesstoken.Issuer
	for j, name := range o.GetIssuers() {
		iss := c.issuers[name]
		if iss == nil {
			c.addf(src, fmt.Sprintf("%s.oauth.issuers[%d]", at, j), "no OAuth issuer is named %q (oauth_issuers)", name)
			continue
		}
		issuers = append(issuers, iss)
	}
	for j, aud := range o.GetAudiences() {
		if first, dup := c.audienceAt[aud]; dup {
			c.addf(src, fmt.Sprintf("%s.oauth.audiences[%d]", at, j), "audience %q is already the audience of %s: a token for one resource must not be accepted by another", aud, first)
			continue
		}
		c.audienceAt[aud] = src.file.Name + " " + at
	}
	hs.oauth = c.oauthResources(hs.name, issuers, o.GetAudiences())
	// The token is the agent's credential: the upstream never sees it. A header the host
	// injects replaces it already (see JWT-SVIDs).
	removeAgentCredential(hs.grant, "authorization")
}

// removeAgentCredential makes the host's grant remove header, unless the host injects it
// (Envoy removes headers after setting them, so removing it too would drop the injected one).
func removeAgentCredential(g *decision.Grant, header string) {
	for _, h := range g.Set {
		if h.Name == header {
			return
		}
	}
	if !contains(g.Remove, header) {
		g.Remove = append(g.Remove, header)
	}
}

// routeOAuth compiles the OAuth scopes a route needs, the challenge that names them, and the
// resource whose tokens it takes: on a host with oauth, a route whose path is a resource's (see
// OAuthConfig) takes only tokens for that resource, and an MCP server's route must be one.
func (c *compiler) routeOAuth(src *source, at string, hs *host, r *policyv1.Route, cr *route) bool {
	scopes := r.GetOauthScopes()
	if hs.oauth == nil {
		ok := true
		if len(scopes) > 0 {
			c.addf(src, at+".oauth_scopes", "host %s accepts no OAuth access tokens (oauth)", hs.name)
			ok = false
		}
		if cr.mcp != nil {
			for _, name := range slices.Sorted(maps.Keys(cr.mcp.tools)) {
				if len(cr.mcp.tools[name].oauthScopes) > 0 {
					c.addf(src, at+".mcp", "tool %s of MCP server %s needs OAuth scopes (oauth_scopes), and host %s accepts no OAuth access tokens (oauth)", name, cr.mcp.name, hs.name)
					ok = false
				}
			}
		}
		return ok
	}
	view := hs.oauth.For(cr.template)
	if cr.mcp != nil {
		// Each tool's challenge names the route's scopes and the tool's: what a token must grant
		// to call it here.
		for _, name := range slices.Sorted(maps.Keys(cr.mcp.tools)) {
			tool := cr.mcp.tools[name]
			if len(tool.oauthScopes) == 0 {
				continue
			}
			hs.oauth.addScopes(view, tool.oauthScopes)
			if cr.toolChallenges == nil {
				cr.toolChallenges = map[string]string{}
			}
			all := slices.Clip(scopes)
			for _, s := range tool.oauthScopes {
				if !slices.Contains(all, s) {
					all = append(all, s)
				}
			}
			cr.toolChallenges[name] = bearerChallenge(view.params, "insufficient_scope", "", all)
		}
	}
	if cr.template == "/" && hs.oauth.resource != "" {
		// The host's root is the host as a resource: https://host names both.
		cr.oauthResource = hs.oauth.resource
		cr.audienceChallenge = hs.oauth.Challenge("invalid_token", audienceDescription)
	} else if view != hs.oauth {
		cr.oauthResource = view.resource
		cr.audienceChallenge = view.Challenge("invalid_token", audienceDescription)
	} else if r.GetMcp() != "" {
		c.addf(src, at+".mcp", "host %s accepts OAuth access tokens: list the MCP server's resource identifier https://%s%s among its oauth.audiences, which MCP clients ask tokens for", hs.name, hs.name, cr.template)
		return false
	}
	hs.oauth.addScopes(view, scopes)
	if len(scopes) == 0 {
		return true
	}
	cr.oauthScopes = scopes
	cr.scopeChallenge = bearerChallenge(view.params, "insufficient_scope", "", scopes)
	return true
}

// audienceDescription is what a token for another resource of the same host is told.
const audienceDescription = "The access token is for another resource"

// checkFetchURL refuses URLs agentauthz must not fetch keys or metadata from: anything but https,
// or http to a loopback address; with a query or fragment; and, for an issuer identifier, with
// user information.
func checkFetchURL(raw string, issuer bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil {
		return fmt.Errorf("%q must have no query, fragment or user information", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); strings.EqualFold(h, "localhost") || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	what := "a JWKS URL"
	if issuer {
		what = "an issuer"
	}
	return fmt.Errorf("%q: %s must be https (or http to a loopback address)", raw, what)
}
