package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/policy/openapi"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// openAPIHost is a host's OpenAPI document and what the policy grants of it, kept for lint's
// drift report.
type openAPIHost struct {
	host    string
	doc     *openapi.Document
	dir     string // the policy file's directory, as problems name it
	granted []*grantedOperation
}

// grantedOperation is an operation the policy grants.
type grantedOperation struct {
	op    *openapi.Operation
	scope string
	by    string // where the policy grants it: "policy.yaml:12:9"
	tag   string // the tag that grants it, if a tag does
	route *route // nil when it could not be compiled
}

// routeTemplate is what a route's path may be, as the policy schema says of Route.path.
var routeTemplate = regexp.MustCompile(`^(/[A-Za-z0-9._~!$&'()*+,=:@{}-]+)+$|^/$`)

// queryName is what a query parameter's name may be, as the policy schema says of Route.query.
var queryName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// hostOpenAPI compiles the operations of a host's OpenAPI document that the policy grants into
// routes of the host, in the same tree as the routes written by hand.
func (c *compiler) hostOpenAPI(src *source, at string, hs *host, o *policyv1.OpenAPI) {
	name := o.GetDocument()
	dir := filepath.ToSlash(filepath.Dir(src.file.Name))
	doc := c.openapi[name]
	if doc == nil {
		var err error
		doc, err = openapi.Read(name, dir, func(n string) ([]byte, error) { return c.readRef(src, n) })
		if err != nil {
			c.addf(src, at+".document", "%v", err)
			return
		}
		c.openapi[name] = doc
	}
	oh := &openAPIHost{host: hs.name, doc: doc, dir: dir}
	c.snap.openapi = append(c.snap.openapi, oh)

	base := doc.ServerPath
	if o.BasePath != nil {
		base = o.GetBasePath()
	} else if doc.ServerPathProblem != "" {
		c.addf(src, at+".document", "%s: %s", name, doc.ServerPathProblem)
		return
	}
	if o.GetApprovalExtension() != nil && o.GetIgnoreApprovalExtension() {
		c.addf(src, at+".ignore_approval_extension", "honour the document's x-agentauthz-approval (approval_extension) or ignore it, not both")
		return
	}

	// Every operation the document describes, granted or not, takes its method and path from
	// routes written by hand.
	if hs.documented == nil {
		hs.documented = &node{}
	}
	for _, op := range doc.Operations {
		if segments, _, err := opTemplate(base, op.Path); err == nil {
			_ = hs.documented.insert(&route{name: opName(op), method: op.Method, template: base + op.Path}, segments)
		}
	}

	// Who grants what: an operation takes its scope from its entry or from its tags, never both.
	type grant struct {
		entry    *policyv1.OpenAPIOperation
		entryAt  string
		scope    string
		scopeAt  string
		tag      string
		conflict string
	}
	grants := map[*openapi.Operation]*grant{}
	for j, e := range o.GetOperations() {
		eat := fmt.Sprintf("%s.operations[%d]", at, j)
		op := doc.Operation(e.GetId())
		if op == nil {
			c.addf(src, eat+".id", "the document %s has no operation %q", name, e.GetId())
			continue
		}
		if g := grants[op]; g != nil {
			c.addf(src, eat+".id", "operation %q is listed twice (first at %s)", e.GetId(), src.at(g.entryAt, "here"))
			continue
		}
		grants[op] = &grant{entry: e, entryAt: eat, scope: e.GetScope(), scopeAt: eat}
	}
	tagged := map[string]string{}
	for k, t := range o.GetTags() {
		tat := fmt.Sprintf("%s.tags[%d]", at, k)
		if !doc.Tags[t.GetTag()] {
			c.addf(src, tat+".tag", "no operation of the document %s has tag %q", name, t.GetTag())
			continue
		}
		if first, dup := tagged[t.GetTag()]; dup {
			c.addf(src, tat+".tag", "tag %q is granted twice (first at %s)", t.GetTag(), first)
			continue
		}
		tagged[t.GetTag()] = tat
		for _, op := range doc.Operations {
			if !contains(op.Tags, t.GetTag()) {
				continue
			}
			g := grants[op]
			if g == nil {
				g = &grant{entryAt: tat}
				grants[op] = g
			}
			switch {
			case g.entry != nil && g.entry.GetScope() != "":
				g.conflict = fmt.Sprintf("operation %s is granted scope %s here and, by tag %s, scope %s at %s: grant it in one place",
					opName(op), g.entry.GetScope(), t.GetTag(), t.GetScope(), src.at(tat, "tag"))
			case g.scope != "" && g.scope != t.GetScope():
				g.conflict = fmt.Sprintf("operation %s has tags %s and %s, granted different scopes (%s, %s): grant it by operationId",
					opName(op), g.tag, t.GetTag(), g.scope, t.GetScope())
			case g.scope == "":
				g.scope, g.scopeAt, g.tag = t.GetScope(), tat, t.GetTag()
			}
		}
	}

	for _, op := range doc.Operations {
		g := grants[op]
		if g == nil {
			continue // not granted: refused as route_unknown
		}
		gat := g.entryAt
		if g.conflict != "" {
			c.addf(src, gat, "%s", g.conflict)
			continue
		}
		if g.scope == "" {
			c.addf(src, gat+".scope", "operation %s has no scope: give it one, or grant one of its tags", opName(op))
			continue
		}
		if op.Problem != "" {
			c.problems = append(c.problems, fmt.Sprintf("%s: operation %s cannot be granted (%s): %s",
				op.At, opName(op), src.at(gat, "granted here"), op.Problem))
			continue
		}
		if op.ID == "" {
			c.problems = append(c.problems, fmt.Sprintf("%s: %s %s has no operationId, which its route is named by (%s)",
				op.At, op.Method, op.Path, src.at(gat, "granted here")))
			continue
		}
		c.requires(src, g.scopeAt+".scope", g.scope)
		oh.granted = append(oh.granted, &grantedOperation{op: op, scope: g.scope, by: src.at(g.scopeAt, "granted"), tag: g.tag,
			route: c.operationRoute(src, gat, hs, doc, base, op, g.entry, g.scope, o)})
	}
}

// opName names an operation in problems: its operationId, or its method and path.
func opName(op *openapi.Operation) string {
	if op.ID != "" {
		return op.ID
	}
	return op.Method + " " + op.Path
}

// RouteName is the route name an operationId gives by default: lower case, words split by "-"
// ("resetPassword", "ResetPassword" and "reset_password" are all "reset-password"). ok is false
// when that is not a route name.
func RouteName(operationID string) (name string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(operationID); i++ {
		ch := operationID[i]
		switch {
		case 'A' <= ch && ch <= 'Z':
			if i > 0 {
				prev := operationID[i-1]
				if 'a' <= prev && prev <= 'z' || '0' <= prev && prev <= '9' {
					b.WriteByte('-')
				}
			}
			b.WriteByte(ch + 'a' - 'A')
		case ch == '_' || ch == ' ':
			b.WriteByte('-')
		default:
			b.WriteByte(ch)
		}
	}
	name = b.String()
	return name, routeName.MatchString(name)
}

var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// opTemplate makes an operation's path a route template, refusing what a route's path cannot
// be: a parameter in part of a segment, a dot segment, an encoded literal.
func opTemplate(base, p string) (segments, names []string, err error) {
	tmpl := base + p
	if !routeTemplate.MatchString(tmpl) {
		return nil, nil, fmt.Errorf("path %s: a route's path is /-separated segments of letters, digits and -._~!$&'()*+,=:@, with parameters as whole {segments}", tmpl)
	}
	// The route tree reads parameters by position; the document's names need not be names a
	// policy could write.
	parts := strings.Split(tmpl[1:], "/")
	placeholder := make([]string, len(parts))
	for i, s := range parts {
		placeholder[i] = s
		if isParamSegment(s) {
			names = append(names, s[1:len(s)-1])
			placeholder[i] = fmt.Sprintf("{p%d}", len(names))
		}
	}
	if tmpl == "/" {
		return nil, nil, nil
	}
	segments, _, err = splitTemplate("/" + strings.Join(placeholder, "/"))
	if err != nil {
		return nil, nil, fmt.Errorf("path %s: %v", tmpl, err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return nil, nil, fmt.Errorf("path %s: parameter {%s} appears twice", tmpl, n)
		}
		seen[n] = true
	}
	return segments, names, nil
}

// operationRoute compiles one granted operation into a route.
func (c *compiler) operationRoute(src *source, at string, hs *host, doc *openapi.Document, base string, op *openapi.Operation,
	entry *policyv1.OpenAPIOperation, scope string, o *policyv1.OpenAPI) *route {
	fail := func(format string, args ...any) {
		c.problems = append(c.problems, fmt.Sprintf("%s: operation %s: %s (%s)", op.At, op.ID, fmt.Sprintf(format, args...), src.at(at, "granted here")))
	}
	name := entry.GetRoute()
	if name == "" {
		var ok bool
		if name, ok = RouteName(op.ID); !ok {
			c.addf(src, at, "operation %s makes no route name (%q): name its route with route", op.ID, name)
			return nil
		}
	}
	if first, dup := c.routeAt[name]; dup {
		c.addf(src, at, "route name %q (operation %s) is already used at %s", name, op.ID, first)
		return nil
	}
	c.routeAt[name] = src.file.Name + " " + at
	c.lint.rules[name] = true
	segments, names, err := opTemplate(base, op.Path)
	if err != nil {
		fail("%v", err)
		return nil
	}
	cr := &route{
		name:     name,
		method:   op.Method,
		template: base + op.Path,
		scope:    c.scope(scope),
		grant:    hs.grant,
		params:   make([]*param, len(names)),
	}
	byName := map[string]*openapi.Param{}
	for _, p := range op.Params {
		if p.In == "path" {
			byName[p.Name] = p
		}
	}
	ok := true
	for i, n := range names {
		p := byName[n]
		if p == nil {
			fail("path parameter {%s} is not described", n)
			return nil
		}
		cp, err := c.docParam(doc, "path."+n, p.Name, p.Required, p)
		if err != nil {
			fail("path parameter %s: %v", n, err)
			return nil
		}
		cr.params[i] = cp
	}
	addQuery := func(name, of string, cp *param) bool {
		if cr.query.declaredFold(name) {
			// Two parameters one upstream could read as the same (an object's property beside a
			// parameter of its name, or names differing only by case).
			fail("query parameter %s%s clashes with another parameter of that name", name, of)
			return false
		}
		cr.query.add(name, cp)
		return true
	}
	for _, p := range op.Params {
		if p.In != "query" {
			continue
		}
		names := []string{p.Name}
		for _, prop := range p.Properties {
			names = append(names, prop.Property)
		}
		for _, n := range names {
			switch {
			case !queryName.MatchString(n):
				fail("query parameter %q: a name is letters, digits, _, . and -", n)
				return nil
			case isMethodOverrideParam(n):
				fail("query parameter %s asks upstreams to change the method and cannot be allowed", n)
				return nil
			}
		}
		if len(p.Properties) > 0 {
			// An object: each property is a query parameter of its own, "prop" (form style) or
			// "param[prop]" (deepObject).
			for _, prop := range p.Properties {
				cp, err := c.docScalar(doc, "query."+prop.Name, prop.Name, prop.Required, prop.Value)
				if err != nil {
					fail("query parameter %s, property %s: %v", p.Name, prop.Property, err)
					return nil
				}
				if !addQuery(prop.Name, fmt.Sprintf(" (property %s of %s)", prop.Property, p.Name), cp) {
					return nil
				}
			}
			continue
		}
		cp, err := c.docParam(doc, "query."+p.Name, p.Name, p.Required, p)
		if err != nil {
			fail("query parameter %s: %v", p.Name, err)
			return nil
		}
		if !addQuery(p.Name, "", cp) {
			return nil
		}
	}
	if len(cr.query) > maxQueryParams {
		fail("at most %d query parameters per route", maxQueryParams)
		return nil
	}

	// The policy's tightenings: checked in addition to the document's rules.
	for _, n := range sortedKeys(entry.GetParams()) {
		pat := at + ".params." + n
		i := indexOf(names, n)
		if i < 0 {
			c.addf(src, pat, "operation %s has no path parameter %q", op.ID, n)
			ok = false
			continue
		}
		t := entry.GetParams()[n]
		if t.GetRequired() || t.GetRepeatable() {
			c.addf(src, pat, "path parameters are always required and single: remove required and repeatable")
			ok = false
			continue
		}
		tp, err := tightening("path."+n, n, t)
		if err != nil {
			c.addf(src, pat, "%v", err)
			ok = false
			continue
		}
		cr.params[i].also = tp
	}
	for _, n := range sortedKeys(entry.GetQuery()) {
		qat := at + ".query." + n
		p := cr.query.get(n)
		if p == nil {
			c.addf(src, qat, "operation %s has no query parameter %q", op.ID, n)
			ok = false
			continue
		}
		t := entry.GetQuery()[n]
		if t.GetRepeatable() && !p.repeatable {
			c.addf(src, qat+".repeatable", "the document allows %s once: a policy can only tighten it", n)
			ok = false
			continue
		}
		tp, err := tightening("query."+n, n, t)
		if err != nil {
			c.addf(src, qat, "%v", err)
			ok = false
			continue
		}
		p.also = tp
		p.required = p.required || t.GetRequired()
	}
	for _, n := range cr.query.sortedNames() {
		p := cr.query.get(n)
		if p.required {
			cr.required = append(cr.required, p)
		}
		if p.repeatable && p.list != nil {
			cr.lists = append(cr.lists, p)
		}
	}

	// Approval: the operation's own, or the document's mark as the policy honours it.
	approval := entry.GetApproval()
	if approval == nil && op.Approval != nil {
		switch {
		case o.GetApprovalExtension() != nil:
			approval = o.GetApprovalExtension()
			if approval.GetReason() == "" && op.Approval.Reason != "" {
				copied := proto.Clone(approval).(*policyv1.Approval)
				copied.Reason = op.Approval.Reason
				approval = copied
			}
		case !o.GetIgnoreApprovalExtension():
			fail("the document marks it x-agentauthz-approval: hold it (openapi.approval_extension or the operation's approval) or say ignore_approval_extension")
			return nil
		}
	}
	cr.strip = entry.GetStripUnknownQuery()
	ok = c.routeOAuth(src, at, hs, &policyv1.Route{OauthScopes: entry.GetOauthScopes()}, cr) && ok
	if approval != nil {
		cr.hold = c.holdRule(src, at+".approval", name, approval, cr.grant)
		ok = ok && cr.hold != nil
	}
	if op.Body != nil {
		cr.body = c.operationBody(src, at+".body", doc, op, entry.GetBody(), cr.hold != nil, fail)
		ok = ok && cr.body != nil
	} else if entry.GetBody() != nil {
		c.addf(src, at+".body", "operation %s takes no request body", op.ID)
		ok = false
	}
	if entry.GetResponse() != nil {
		cr.response = c.responseRule(src, at+".response", "route:"+name, entry.GetResponse(), false)
		ok = ok && cr.response != nil
	}
	if !ok {
		return nil
	}
	tree := hs.root
	if src.policy.GetShadow() || entry.GetShadow() {
		cr.shadow, tree = true, hs.shadowRoot
		c.snap.hasShadow = true
	}
	cr.segments = segments
	if err := tree.insert(cr, segments); err != nil {
		c.addf(src, at, "operation %s: %v", op.ID, err)
		return nil
	}
	hs.routes = append(hs.routes, cr)
	return cr
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// lookup finds the route of a method at a template's shape, or nil.
func (n *node) lookup(method string, segments []string) *route {
	if n == nil {
		return nil
	}
	for _, seg := range segments {
		if isParamSegment(seg) {
			n = n.param
		} else {
			n = n.literal[seg]
		}
		if n == nil {
			return nil
		}
	}
	return n.routes[method]
}
