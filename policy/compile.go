package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/openapi"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// SecretRef says where one injected credential comes from.
type SecretRef struct {
	Env  string // environment variable, or
	File string // file path, already resolved against the policy file's directory
}

func (r SecretRef) String() string {
	if r.Env != "" {
		return "environment variable " + r.Env
	}
	return "file " + r.File
}

// SecretSource reads a credential. Load calls it once per injected header.
type SecretSource func(SecretRef) (string, error)

// EnvAndFiles reads credentials from the process environment and the file system. An unset or
// empty variable or file is an error: a host must not be called without its credential.
func EnvAndFiles(ref SecretRef) (string, error) {
	if ref.Env != "" {
		v, ok := os.LookupEnv(ref.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", ref.Env)
		}
		return v, nil
	}
	b, err := os.ReadFile(ref.File)
	if err != nil {
		return "", fmt.Errorf("cannot read credential file: %v", err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("credential file %s is empty", ref.File)
	}
	return v, nil
}

// Placeholders stands in for credentials where none must be read (lint, offline checks).
func Placeholders(ref SecretRef) (string, error) { return "<" + ref.String() + ">", nil }

// Options tune Load.
type Options struct {
	// Secrets reads injected credentials; nil means EnvAndFiles.
	Secrets SecretSource
}

// Load decodes, validates and compiles policy files into a Snapshot. Every problem in every
// file is reported at once, as Problems.
func Load(files []File, opts Options) (*Snapshot, error) {
	if len(files) == 0 {
		return nil, Problems{"policy: no policy files"}
	}
	sources, problems := decode(files)
	if len(problems) > 0 {
		return nil, problems
	}
	if opts.Secrets == nil {
		opts.Secrets = EnvAndFiles
	}
	c := compiler{
		opts: opts,
		snap: &Snapshot{
			trustDomains:       map[spiffeid.TrustDomain]struct{}{},
			shadowTrustDomains: map[spiffeid.TrustDomain]struct{}{},
			agents:             map[spiffeid.ID]*agent{},
			oauthAgents:        map[oauthSubject]spiffeid.ID{},
			hosts:              map[string]*host{},
			scopeIndex:         map[string]int{},
		},
		agentAt:     map[spiffeid.ID]string{},
		shadowAt:    map[spiffeid.ID]string{},
		hostAt:      map[string]string{},
		routeAt:     map[string]string{},
		messages:    map[string]protoreflect.MessageType{},
		refs:        map[string][]byte{},
		graphql:     map[string]*graphqlAPI{},
		notifiers:   map[string]bool{},
		mcp:         map[string]*mcpServer{},
		issuers:     map[string]*accesstoken.Issuer{},
		issuerAt:    map[string]string{},
		issuerURLAt: map[string]string{},
		audienceAt:  map[string]string{},
		openapi:     map[string]*openapi.Document{},
		lint:        newLintFacts(),
	}
	c.protoFiles(sources)
	for i := range sources {
		c.trustDomains(&sources[i])
	}
	// Ordinary files first, so that shadow files extend what they define.
	ordered := make([]*source, 0, len(sources))
	for _, shadow := range []bool{false, true} {
		for i := range sources {
			if sources[i].policy.GetShadow() == shadow {
				ordered = append(ordered, &sources[i])
			}
		}
	}
	for _, src := range ordered {
		c.agents(src)
		c.notifierNames(src)
		c.lintExceptions(src)
	}
	for _, src := range ordered {
		c.oauthIssuers(src)
		c.graphqlAPIs(src)
		c.mcpServers(src)
	}
	c.snap.mcp = c.mcp
	for _, src := range ordered {
		c.hosts(src)
	}
	c.finishOAuth()
	c.buildValidator()
	c.lintConditions()
	if len(c.snap.trustDomains) == 0 && len(c.problems) == 0 {
		c.problems = append(c.problems, "policy: no trust_domains: name at least one SPIFFE trust domain")
	}
	if len(c.problems) > 0 {
		return nil, c.problems
	}
	c.snap.revision = revision(files, c.refs)
	c.snap.lint = c.lint
	c.snap.responseTags()
	return c.snap, nil
}

type compiler struct {
	opts     Options
	snap     *Snapshot
	problems Problems
	agentAt  map[spiffeid.ID]string // where each agent is defined
	shadowAt map[spiffeid.ID]string // where each agent is granted shadow scopes
	hostAt   map[string]string
	routeAt  map[string]string
	// messages are the body message types compiled from the policy's proto_files.
	messages map[string]protoreflect.MessageType
	// validated are the bodies checked with protovalidate rules, for buildValidator.
	validated []validatedBody
	// refs are the files the policy refers to, by path, for the revision.
	refs    map[string][]byte
	refsMu  sync.Mutex
	graphql map[string]*graphqlAPI
	// notifiers are the names of the policy's notifiers.
	notifiers map[string]bool
	// mcp are the policy's MCP servers, by name.
	mcp map[string]*mcpServer
	// issuers are the OAuth issuers by name; issuerAt and issuerURLAt say where each name and
	// issuer URL is defined, audienceAt where each host's OAuth audience is.
	issuers                           map[string]*accesstoken.Issuer
	issuerAt, issuerURLAt, audienceAt map[string]string
	// patterns are the parameter patterns compiled so far.
	patterns patternCache
	// openapi are the OpenAPI documents read so far, by name.
	openapi map[string]*openapi.Document
	// lint is what lint reports and deciding never reads.
	lint *lintFacts
}

func (c *compiler) addf(src *source, at, format string, args ...any) {
	c.problems = append(c.problems, src.at(at, format, args...))
}

func (c *compiler) trustDomains(src *source) {
	// A shadow file's trust domains are trusted in shadow evaluation only: accepting them for
	// live decisions would turn trust_domain_unknown (401) into agent_unknown (403).
	set := c.snap.trustDomains
	if src.policy.GetShadow() {
		set = c.snap.shadowTrustDomains
	}
	for i, name := range src.policy.GetTrustDomains() {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			c.addf(src, fmt.Sprintf("trust_domains[%d]", i), "not a SPIFFE trust domain: %v", err)
			continue
		}
		set[td] = struct{}{}
	}
}

func (c *compiler) scope(name string) int {
	if i, ok := c.snap.scopeIndex[name]; ok {
		return i
	}
	i := len(c.snap.scopeNames)
	c.snap.scopeIndex[name] = i
	c.snap.scopeNames = append(c.snap.scopeNames, name)
	return i
}

func (c *compiler) agents(src *source) {
	shadow := src.policy.GetShadow()
	for i, a := range src.policy.GetAgents() {
		at := fmt.Sprintf("agents[%d]", i)
		id, err := spiffeid.FromString(a.GetId())
		if err != nil {
			c.addf(src, at+".id", "not a SPIFFE ID: %v", err)
			continue
		}
		if !c.snap.trusts(id.TrustDomain(), shadow) {
			c.addf(src, at+".id", "trust domain %q is not in trust_domains", id.TrustDomain().Name())
			continue
		}
		defined := c.agentAt
		if shadow {
			defined = c.shadowAt
		}
		if first, dup := defined[id]; dup {
			c.addf(src, at+".id", "agent %s is already defined at %s", id, first)
			continue
		}
		defined[id] = src.file.Name + " " + at
		ag := c.snap.agents[id]
		if ag == nil {
			ag = &agent{id: id, live: !shadow}
			c.snap.agents[id] = ag
		}
		for k, s := range a.GetScopes() {
			c.held(src, fmt.Sprintf("%s.scopes[%d]", at, k), s)
			if shadow {
				ag.grantShadow(c.scope(s))
			} else {
				ag.grant(c.scope(s))
			}
		}
	}
}

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
		nparams:  len(names),
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
	cr.query = make(map[string]*param, len(r.GetQuery()))
	cr.queryFolded = make(map[string]struct{}, len(r.GetQuery()))
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
		cp.index = len(cr.query)
		cr.query[name] = cp
		cr.queryFolded[asciiLower(name)] = struct{}{}
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// asciiLower lower-cases ASCII letters only. strings.ToLower would also fold non-ASCII
// look-alikes (the Kelvin sign becomes "k"), letting a forged host match a real one.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// notifierNames records the policy's notifiers, for routes to refer to.
func (c *compiler) notifierNames(src *source) {
	for i, n := range src.policy.GetNotifiers() {
		if c.notifiers[n.GetName()] {
			c.addf(src, fmt.Sprintf("notifiers[%d].name", i), "notifier %q is defined twice", n.GetName())
			continue
		}
		c.notifiers[n.GetName()] = true
		c.snap.notifiers = append(c.snap.notifiers, n)
	}
}
