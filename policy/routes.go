package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// maxPathParams bounds the parameters of one path template, so that matching captures them
// into a fixed array instead of allocating.
const maxPathParams = 16

// maxQueryParams bounds the query parameters of one route, so that counting them needs no map.
const maxQueryParams = 64

// queryParam is a declared query parameter under the name it is sent as.
type queryParam struct {
	name string
	p    *param
}

// queryParams are a route's declared query parameters, in the order they were declared. A route
// declares few (at most maxQueryParams), so a list searched in order takes a fraction of the
// memory of a map, which counts in policies of thousands of routes, and is as quick to search
// at these sizes.
type queryParams []queryParam

// get is the parameter declared as name, exactly; nil when there is none.
func (q queryParams) get(name string) *param {
	for i := range q {
		if q[i].name == name {
			return q[i].p
		}
	}
	return nil
}

// declaredFold reports whether a declared name equals name ignoring ASCII case: some frameworks
// read query names case-insensitively.
func (q queryParams) declaredFold(name string) bool {
	for i := range q {
		if target.EqualFoldASCII(q[i].name, name) {
			return true
		}
	}
	return false
}

// add declares p as name and gives it its position among the route's query parameters.
func (q *queryParams) add(name string, p *param) {
	p.index = len(*q)
	*q = append(*q, queryParam{name: name, p: p})
}

// sortedNames are the declared names in sorted order.
func (q queryParams) sortedNames() []string {
	names := make([]string, len(q))
	for i := range q {
		names[i] = q[i].name
	}
	sort.Strings(names)
	return names
}

// route is a compiled route.
type route struct {
	name     string
	method   string
	template string
	scope    int      // index into the snapshot's scope names
	params   []*param // the path template's, in order
	query    queryParams
	required []*param // query parameters that must be present
	// lists are the repeatable query parameters that bound their number of items.
	lists []*param
	strip bool
	body  *bodyRule // nil: the route takes no body
	// graphqlGET, on a GET GraphQL route, reads the GraphQL request from the query string.
	graphqlGET *graphqlAPI
	grant      *decision.Grant
	// shadow routes are evaluated for the record only; they never decide.
	shadow bool
	// segments of the template, for explanations.
	segments []string
	// hold, when set, holds allowed requests for human approval.
	hold *holdRule
	// mcp, on a route serving an MCP server's endpoint, is the server.
	mcp *mcpServer
	// oauthScopes are the OAuth scopes a request's access token must grant; scopeChallenge is the
	// WWW-Authenticate challenge naming them.
	oauthScopes    []string
	scopeChallenge string
	// toolChallenges, on an MCP route, are the insufficient_scope challenges of the tools with
	// OAuth scopes, by tool name.
	toolChallenges map[string]string
	// oauthResource, on a route serving one of its host's OAuth resources (an MCP server's
	// endpoint), is that resource's identifier: an access token must name it in its audience.
	// audienceChallenge is the challenge refusing a token that does not.
	oauthResource     string
	audienceChallenge string
	// response, when set, says what agents may read back of the route's responses.
	response *responseRules
}

// node is one segment position of a host's path tree. A request path walks it segment by
// segment: a literal child first, then the parameter child, backtracking if the literal branch
// leads nowhere. Matching costs the depth of the path, not the number of routes.
type node struct {
	literal map[string]*node
	param   *node
	// routes by method, at the node where a template ends.
	routes map[string]*route
}

// insert adds r under its template; it refuses a second route for the same method and shape.
func (n *node) insert(r *route, segments []string) error {
	for _, seg := range segments {
		if isParamSegment(seg) {
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
			continue
		}
		if n.literal == nil {
			n.literal = map[string]*node{}
		}
		child := n.literal[seg]
		if child == nil {
			child = &node{}
			n.literal[seg] = child
		}
		n = child
	}
	if n.routes == nil {
		n.routes = map[string]*route{}
	}
	if other, dup := n.routes[r.method]; dup {
		return fmt.Errorf("%s %s has the same method and path shape as route %q (%s)", r.method, r.template, other.name, other.template)
	}
	n.routes[r.method] = r
	return nil
}

// ambiguousRoute is what match returns for a path that names a literal route in encoded form.
var ambiguousRoute = &route{}

// match finds the route for method and a path that target.Parse accepted, capturing the raw
// parameter segments into vals.
func (n *node) match(method, path string, vals *[maxPathParams]string, depth int) *route {
	seg, rest, ok := target.NextSegment(path)
	if !ok {
		return n.routes[method]
	}
	if child := n.literal[seg]; child != nil {
		if r := child.match(method, rest, vals, depth); r != nil {
			return r
		}
	}
	if n.param != nil && depth < maxPathParams {
		// A percent-encoded segment that decodes to a literal sibling ("%40me" next to "@me")
		// is that literal to an upstream that decodes before routing: it must not pass as the
		// parameter.
		if len(n.literal) > 0 && strings.IndexByte(seg, '%') >= 0 {
			if _, clash := n.literal[target.UnescapePath(seg)]; clash {
				return ambiguousRoute
			}
		}
		vals[depth] = seg
		return n.param.match(method, rest, vals, depth+1)
	}
	return nil
}

func isParamSegment(seg string) bool {
	return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}'
}

// splitTemplate splits "/v1/tickets/{id}" into its segments and parameter names, refusing
// templates target.Parse would refuse as request paths.
func splitTemplate(tmpl string) (segments, params []string, err error) {
	if tmpl == "/" {
		return nil, nil, nil
	}
	segments = strings.Split(tmpl[1:], "/")
	for _, seg := range segments {
		switch {
		case isParamSegment(seg):
			name := seg[1 : len(seg)-1]
			if !validParamName(name) {
				return nil, nil, fmt.Errorf("parameter %q: a name is letters, digits and _", seg)
			}
			for _, p := range params {
				if p == name {
					return nil, nil, fmt.Errorf("parameter {%s} appears twice", name)
				}
			}
			params = append(params, name)
		case strings.ContainsAny(seg, "{}"):
			return nil, nil, fmt.Errorf("segment %q: a parameter takes a whole segment, like {id}", seg)
		case seg == "." || seg == "..":
			return nil, nil, fmt.Errorf("dot segments are not allowed")
		case strings.Contains(seg, "%"):
			return nil, nil, fmt.Errorf("segment %q: write literal segments unencoded", seg)
		}
	}
	if len(params) > maxPathParams {
		return nil, nil, fmt.Errorf("at most %d parameters per path", maxPathParams)
	}
	if _, err := target.Parse(tmplAsPath(segments)); err != nil {
		return nil, nil, fmt.Errorf("a request could never match it: %v", err)
	}
	return segments, params, nil
}

// tmplAsPath replaces each parameter by a placeholder, to check literals as a request would.
func tmplAsPath(segments []string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		if isParamSegment(s) {
			s = "x"
		}
		b.WriteString(s)
	}
	return b.String()
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
