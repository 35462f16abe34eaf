package policy

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/agentauthz/agentauthz/policy/decision"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

func (c *compiler) hosts(src *source) {
	shadow := src.policy.GetShadow()
	for i, h := range src.policy.GetHosts() {
		at := fmt.Sprintf("hosts[%d]", i)
		name := asciiLower(h.GetName())
		hs := c.snap.hosts[name]
		switch {
		case shadow && hs != nil:
			// A shadow file adds shadow routes to a host defined elsewhere; what the host refuses
			// and removes is the host's, from its own file.
			if len(h.GetRefuseHeaders()) > 0 || len(h.GetTrustForwardedHeaders()) > 0 {
				c.addf(src, at, "a shadow file cannot change the headers host %s refuses or trusts: set them in %s", name, c.hostAt[name])
			}
			if h.GetOauth() != nil {
				c.addf(src, at+".oauth", "a shadow file cannot change the tokens host %s accepts: set oauth in %s", name, c.hostAt[name])
			}
		case hs != nil:
			c.addf(src, at+".name", "host %s is already defined at %s", name, c.hostAt[name])
			continue
		case shadow:
			if h.GetOauth() != nil {
				c.addf(src, at+".oauth", "a shadow file cannot define the tokens a host accepts: set oauth in an ordinary file")
			}
			refused, _ := c.hostHeaders(src, at, h.GetRefuseHeaders(), h.GetTrustForwardedHeaders(), h.GetRemoveHeaders())
			hs = &host{name: name, root: &node{}, shadowRoot: &node{}, grant: &decision.Grant{}, refuse: refused}
			c.snap.hosts[name] = hs
		default:
			c.hostAt[name] = src.file.Name + " " + at
			refused, strip := c.hostHeaders(src, at, h.GetRefuseHeaders(), h.GetTrustForwardedHeaders(), h.GetRemoveHeaders())
			hs = &host{name: name, live: true, root: &node{}, shadowRoot: &node{}, grant: c.grant(src, at, h, strip), refuse: refused}
			if j := h.GetJwtSvid(); j != nil {
				hs.jwt = &JWTSVIDConfig{Audiences: j.GetAudiences(), Header: j.GetHeader()}
				if hs.jwt.Header == "" {
					hs.jwt.Header = "authorization"
				}
				// The token is the agent's credential: the upstream never sees it.
				removeAgentCredential(hs.grant, hs.jwt.Header)
			}
			if h.GetOauth() != nil {
				c.hostOAuth(src, at, h, hs)
			}
			c.snap.hosts[name] = hs
		}
		if o := h.GetOpenapi(); o != nil {
			c.hostOpenAPI(src, at+".openapi", hs, o)
		}
		for j, r := range h.GetRoutes() {
			c.route(src, fmt.Sprintf("%s.routes[%d]", at, j), hs, r)
		}
	}
}

// grant compiles what an allowed request to the host carries: credentials read now, once; the
// agent's headers the host removes, and the forwarded-context headers it does not trust (strip).
func (c *compiler) grant(src *source, at string, h *policyv1.Host, strip []string) *decision.Grant {
	g := &decision.Grant{Remove: append(append([]string(nil), h.GetRemoveHeaders()...), strip...)}
	set := map[string]bool{}
	for i, ih := range h.GetInjectHeaders() {
		hat := fmt.Sprintf("%s.inject_headers[%d]", at, i)
		name := ih.GetName()
		if set[name] {
			c.addf(src, hat+".name", "header %s is injected twice", name)
			continue
		}
		set[name] = true
		if isPseudoOrHopHeader(name) {
			c.addf(src, hat+".name", "header %s cannot be injected", name)
			continue
		}
		ref := SecretRef{Env: ih.GetEnv(), File: ih.GetFile()}
		if ref.File != "" {
			if src.file.Dir == "" && !filepath.IsAbs(ref.File) {
				c.addf(src, hat+".file", "an embedded policy cannot read credential files by relative path")
				continue
			}
			if !filepath.IsAbs(ref.File) {
				ref.File = filepath.Join(src.file.Dir, ref.File)
			}
		}
		v, err := c.opts.Secrets(ref)
		if err != nil {
			c.addf(src, hat, "credential for header %s: %v", name, err)
			continue
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			c.addf(src, hat, "credential for header %s contains a line break or NUL", name)
			continue
		}
		g.Set = append(g.Set, decision.Header{Name: name, Value: decision.Secret(ih.GetPrefix() + v)})
	}
	// A header both removed and injected is simply replaced; removing it after setting it
	// would drop the credential, so it is not in the remove list.
	kept := g.Remove[:0]
	for _, r := range g.Remove {
		if !set[r] {
			kept = append(kept, r)
		}
	}
	g.Remove = kept
	return g
}

func isPseudoOrHopHeader(name string) bool {
	switch name {
	case "host", "connection", "content-length", "transfer-encoding", "te", "upgrade", "keep-alive", "proxy-connection":
		return true
	}
	return strings.HasPrefix(name, ":")
}

func (c *compiler) route(src *source, at string, hs *host, r *policyv1.Route) {
	if first, dup := c.routeAt[r.GetName()]; dup {
		c.addf(src, at+".name", "route name %q is already used at %s", r.GetName(), first)
		return
	}
	c.routeAt[r.GetName()] = src.file.Name + " " + at
	c.lint.rules[r.GetName()] = true
	c.requires(src, at+".scope", r.GetScope())
	segments, names, err := splitTemplate(r.GetPath())
	if err != nil {
		c.addf(src, at+".path", "%v", err)
		return
	}
	cr := &route{
		name:     r.GetName(),
		method:   r.GetMethod(),
		template: r.GetPath(),
		scope:    c.scope(r.GetScope()),
		strip:    r.GetStripUnknownQuery(),
		grant:    hs.grant,
		params:   make([]*param, len(names)),
	}
	ok := true
	for i, name := range names {
		p, found := r.GetParams()[name]
		if !found {
			c.addf(src, at+".path", "path parameter {%s} has no type: add it under params", name)
			ok = false
			continue
		}
		if p.GetRequired() || p.GetRepeatable() {
			c.addf(src, at+".params."+name, "path parameters are always required and single: remove required and repeatable")
			ok = false
		}
		cp, err := compileParam("path."+name, name, p, &c.patterns)
		if err != nil {
			c.addf(src, at+".params."+name, "%v", err)
			ok = false
			continue
		}
		cr.params[i] = cp
	}
	for _, name := range sortedKeys(r.GetParams()) {
		if !contains(names, name) {
			c.addf(src, at+".params."+name, "parameter %q is not in the path %s", name, r.GetPath())
			ok = false
		}
	}
	if len(r.GetQuery()) > maxQueryParams {
		c.addf(src, at+".query", "at most %d query parameters per route", maxQueryParams)
		return
	}
	for _, name := range sortedKeys(r.GetQuery()) {
		if isMethodOverrideParam(name) {
			c.addf(src, at+".query."+name, "%s asks upstreams to change the method and cannot be allowed", name)
			ok = false
			continue
		}
		cp, err := compileParam("query."+name, name, r.GetQuery()[name], &c.patterns)
		if err != nil {
			c.addf(src, at+".query."+name, "%v", err)
			ok = false
			continue
		}
		cr.query.add(name, cp)
		if cp.required {
			cr.required = append(cr.required, cp)
		}
	}
	if r.Body != nil && r.GetMcp() == "" {
		cr.body = c.body(src, at+".body", r)
		ok = ok && cr.body != nil
	}
	if r.GetGraphql() != "" && ok {
		ok = c.routeGraphQL(src, at, r, cr)
	}
	if r.GetMcp() != "" && ok {
		ok = c.routeMCP(src, at, r, cr)
	}
	if r.GetApproval() != nil {
		cr.hold = c.holdRule(src, at+".approval", r.GetName(), r.GetApproval(), cr.grant)
		ok = ok && cr.hold != nil
	}
	if r.GetResponse() != nil {
		if r.GetMcp() != "" {
			c.addf(src, at+".response", "an MCP route's responses are its tools' results: set response on the tools (mcp_servers[].tools[].response)")
			ok = false
		} else {
			cr.response = c.responseRule(src, at+".response", "route:"+r.GetName(), r.GetResponse(), false)
			ok = ok && cr.response != nil
		}
	}
	ok = c.routeOAuth(src, at, hs, r, cr) && ok
	if !ok {
		return
	}
	tree := hs.root
	if src.policy.GetShadow() || r.GetShadow() {
		cr.shadow, tree = true, hs.shadowRoot
		c.snap.hasShadow = true
	}
	cr.segments = segments
	if op := hs.documented.lookup(cr.method, segments); op != nil {
		c.addf(src, at, "%s %s is operation %s of the host's OpenAPI document: grant it under openapi", cr.method, cr.template, op.name)
		return
	}
	if err := tree.insert(cr, segments); err != nil {
		c.addf(src, at, "%v", err)
		return
	}
	hs.routes = append(hs.routes, cr)
}
