package policy

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// MetadataPath is where a protected resource's metadata is served (RFC 9728 §3.1): at this path
// for the host as a resource, and with the resource's path appended for a resource with one
// (https://host/.well-known/oauth-protected-resource/mcp describes https://host/mcp).
const MetadataPath = "/.well-known/oauth-protected-resource"

// oauthMetadata is one protected resource's metadata document, served by agentauthz itself.
type oauthMetadata struct {
	view *OAuthConfig
	// scopes are the OAuth scopes the routes of the resource need (for the host as a whole,
	// every route of the host), for scopes_supported.
	scopes []string
	// doc is the JSON document, written once every route is compiled (finishOAuth).
	doc []byte
}

// resourcePath returns the path of the resource identified by aud on host, and whether aud is
// one: an https URL naming the host exactly (lower case, no port, no user information), with no
// query or fragment, and a path that is empty (the host) or a plain absolute path without a
// trailing slash, empty or dot segments, or percent-encoding: the one spelling of the resource
// an MCP client derives from the URL it calls (its canonical URI), so that what the metadata
// says, what the client asks tokens for and what the token's audience names are the same string.
func resourcePath(host, aud string) (string, bool) {
	rest, ok := strings.CutPrefix(aud, "https://"+host)
	if !ok || strings.ContainsAny(aud, "?#%\\ ") {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	u, err := url.Parse(aud)
	if err != nil || u.Host != host || u.Path != rest || u.RawPath != "" || !strings.HasPrefix(rest, "/") || strings.HasSuffix(rest, "/") {
		return "", false
	}
	for _, seg := range strings.Split(rest[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return rest, true
}

// oauthResources compiles the host's OAuth configuration: one validator for the host's issuers
// and audiences, and a view with its metadata for each audience that is a resource of the host.
func (c *compiler) oauthResources(host string, issuers []*accesstoken.Issuer, audiences []string) *OAuthConfig {
	hc := &OAuthConfig{Validator: accesstoken.NewValidator(issuers, audiences)}
	for _, aud := range audiences {
		path, ok := resourcePath(host, aud)
		if !ok {
			continue
		}
		view := hc
		if path != "" {
			view = &OAuthConfig{Validator: hc.Validator}
			if hc.paths == nil {
				hc.paths = map[string]*OAuthConfig{}
			}
			hc.paths[path] = view
		}
		view.resource = aud
		view.params = []string{`resource_metadata=https://` + host + MetadataPath + path}
		if hc.metadata == nil {
			hc.metadata = map[string]*oauthMetadata{}
		}
		hc.metadata[MetadataPath+path] = &oauthMetadata{view: view}
	}
	return hc
}

// addScopes records that a route of the resource view needs scopes: the resource's and the
// host's scopes_supported list them.
func (c *OAuthConfig) addScopes(view *OAuthConfig, scopes []string) {
	for _, m := range c.metadata {
		if m.view == view || m.view == c {
			for _, s := range scopes {
				if !slices.Contains(m.scopes, s) {
					m.scopes = append(m.scopes, s)
				}
			}
		}
	}
}

// protectedResource is the metadata document (RFC 9728 §2).
type protectedResource struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	BearerMethods        []string `json:"bearer_methods_supported"`
	// ResourceSigningAlgs is absent: agentauthz signs no responses.
}

// finishOAuth writes the metadata documents of every host that accepts OAuth access tokens,
// once all of its routes are compiled.
func (c *compiler) finishOAuth() {
	for _, hs := range c.snap.hosts {
		if hs.oauth == nil {
			continue
		}
		var servers []string
		for _, iss := range hs.oauth.Validator.Issuers() {
			servers = append(servers, iss.URL)
		}
		for _, m := range hs.oauth.metadata {
			slices.Sort(m.scopes)
			if m.view != hs.oauth {
				m.view.scopes = m.scopes
			}
			// Strings and lists of strings always marshal.
			m.doc, _ = json.Marshal(protectedResource{
				Resource: m.view.resource, AuthorizationServers: servers,
				ScopesSupported: m.scopes, BearerMethods: []string{"header"},
			})
		}
	}
}

// Metadata answers a request for one of the host's protected-resource metadata documents: a GET
// of its exact path, without a query, or the CORS preflight (OPTIONS) a browser sends before that
// GET. The answer is a decision that the front door serves itself (decision.Decision.Answer,
// status 200), whoever asks: metadata is public, and a client reads it before it has any
// credential. A browser-based MCP client reads it from another origin, so the answer allows any
// (extauthz adds the CORS headers); nothing else agentauthz answers does.
func (c *OAuthConfig) Metadata(method, target string) (decision.Decision, bool) {
	if (method != "GET" && method != "OPTIONS") || len(c.metadata) == 0 || !strings.HasPrefix(target, MetadataPath) {
		return decision.Decision{}, false
	}
	m := c.metadata[target]
	if m == nil {
		return decision.Decision{}, false
	}
	if method == "OPTIONS" {
		d := decision.Denied(decision.CodeOAuthResourceMetadata, "The CORS preflight of the protected-resource metadata of "+m.view.resource+".")
		d.Answer, d.Preflight = []byte{}, true
		return d, true
	}
	d := decision.Denied(decision.CodeOAuthResourceMetadata, "The protected-resource metadata of "+m.view.resource+".")
	d.Answer = m.doc
	return d, true
}
