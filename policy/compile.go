package policy

import (
	"fmt"
	"sort"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
	"github.com/agentauthz/agentauthz/policy/openapi"
)

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
