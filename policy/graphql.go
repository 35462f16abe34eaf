package policy

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/gqlcheck"
	"github.com/agentauthz/agentauthz/policy/target"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// graphqlAPI is a compiled GraphQL API: its checker and what each agent may select.
type graphqlAPI struct {
	name    string
	checker *gqlcheck.Checker
	fields  map[spiffeid.ID]*gqlcheck.FieldSet
}

// graphqlBody takes a GraphQL request as a POST body.
type graphqlBody struct{ api *graphqlAPI }

var _ bodySchema = graphqlBody{}

func (graphqlBody) mediaTypes() []string { return jsonMediaTypes }

func (g graphqlBody) check(r *Request, ag *agent) decision.Decision {
	v, err := r.readJSON(g.api.checker.MaxBodyDepth())
	return fromGraphQL(g.api.checker.CheckBodyValue(v, err, g.api.fields[ag.id]))
}

func fromGraphQL(res gqlcheck.Result) decision.Decision {
	if res.OK() {
		return allowed()
	}
	d := decision.Denied(res.Code, res.Detail, res.Violations...)
	d.Cause = res.Cause
	return d
}

// checkGraphQLQuery reads a GET GraphQL request from the query string: query, operationName
// and variables, each at most once, nothing else.
func (rt *route) checkGraphQLQuery(q string, ag *agent) decision.Decision {
	var vals [3]string
	var seen [3]bool
	for rest := q; rest != ""; {
		var rawName, rawValue string
		rawName, rawValue, rest, _ = target.NextParam(rest)
		name := target.Unescape(rawName)
		i := -1
		switch name {
		case "query":
			i = 0
		case "operationName":
			i = 1
		case "variables":
			i = 2
		}
		switch {
		case i < 0:
			return decision.Denied(decision.CodeQueryInvalid,
				"A GraphQL GET takes only query, operationName and variables.",
				decision.Violation{Field: "query." + name, Rule: "unknown", Message: "is not a parameter of this route"})
		case seen[i]:
			return decision.Denied(decision.CodeQueryInvalid, "Give each GraphQL parameter once.",
				decision.Violation{Field: "query." + name, Rule: "repeated", Message: "must be given at most once"})
		}
		seen[i], vals[i] = true, target.Unescape(rawValue)
	}
	if !seen[0] {
		return decision.Denied(decision.CodeQueryInvalid, "A GraphQL GET needs the query parameter.",
			decision.Violation{Field: "query.query", Rule: "required", Message: "is required"})
	}
	return fromGraphQL(rt.graphqlGET.checker.CheckParams(vals[0], vals[1], vals[2], rt.graphqlGET.fields[ag.id]))
}

// graphqlAPIs compiles every source's GraphQL APIs. Agents must be compiled first: a field
// grant must name a defined agent.
func (c *compiler) graphqlAPIs(src *source) {
	for i, g := range src.policy.GetGraphql() {
		at := fmt.Sprintf("graphql[%d]", i)
		if _, dup := c.graphql[g.GetName()]; dup {
			c.addf(src, at+".name", "GraphQL API %q is defined twice", g.GetName())
			continue
		}
		sdl, err := c.readRef(src, g.GetSchema())
		if err != nil {
			c.addf(src, at+".schema", "%v", err)
			continue
		}
		cfg := gqlcheck.Config{
			SchemaName:         g.GetSchema(),
			SchemaSDL:          string(sdl),
			Operations:         g.GetOperations(),
			AllowBatch:         g.GetAllowBatch(),
			MaxBatch:           int(g.GetMaxBatch()),
			MaxDepth:           int(g.GetMaxDepth()),
			MaxAliases:         int(g.GetMaxAliases()),
			MaxRootFields:      int(g.GetMaxRootFields()),
			MaxTokens:          int(g.GetMaxTokens()),
			AllowIntrospection: g.GetAllowIntrospection(),
			Persisted:          g.GetPersisted(),
			PersistedOnly:      g.GetPersistedOnly(),
			Arguments:          graphqlArguments(g.GetArguments()),
		}
		if g.MaxAliases != nil && g.GetMaxAliases() == 0 {
			cfg.MaxAliases = -1 // explicitly none
		}
		checker, err := gqlcheck.Compile(cfg)
		if err != nil {
			c.graphqlProblems(src, at, err)
			continue
		}
		api := &graphqlAPI{name: g.GetName(), checker: checker, fields: map[spiffeid.ID]*gqlcheck.FieldSet{}}
		c.graphqlFields(src, at, api, g.GetFields())
		c.graphql[g.GetName()] = api
	}
}

func (c *compiler) graphqlFields(src *source, at string, api *graphqlAPI, grants []*policyv1.GraphQLFields) {
	for j, grant := range grants {
		gat := fmt.Sprintf("%s.fields[%d]", at, j)
		set, err := api.checker.Fields(grant.GetAllow())
		if err != nil {
			c.addf(src, gat+".allow", "%v", err)
			continue
		}
		for k, a := range grant.GetAgents() {
			id, err := spiffeid.FromString(a)
			if err != nil {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", gat, k), "not a SPIFFE ID: %v", err)
				continue
			}
			if _, ok := c.snap.agents[id]; !ok {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", gat, k), "%s is not an agent of this policy", id)
				continue
			}
			if _, dup := api.fields[id]; dup {
				c.addf(src, fmt.Sprintf("%s.agents[%d]", gat, k), "%s is granted fields twice; list them in one entry", id)
				continue
			}
			api.fields[id] = set
		}
	}
}

// routeGraphQL attaches a GraphQL API to a route: a POST reads it from the body, a GET from the
// query string.
func (c *compiler) routeGraphQL(src *source, at string, r *policyv1.Route, cr *route) bool {
	api := c.graphql[r.GetGraphql()]
	if api == nil {
		c.addf(src, at+".graphql", "no GraphQL API named %q in this policy", r.GetGraphql())
		return false
	}
	switch r.GetMethod() {
	case "POST":
		if cr.body == nil {
			cr.body = compileBodyLimits(&policyv1.Body{})
		}
		cr.body.schema = graphqlBody{api: api}
	case "GET":
		if len(r.GetQuery()) > 0 || r.GetStripUnknownQuery() || r.GetBody() != nil {
			c.addf(src, at, "a GraphQL GET route takes query, operationName and variables: declare no query parameters and no body")
			return false
		}
		cr.graphqlGET = api
	default:
		c.addf(src, at+".method", "GraphQL routes use GET or POST")
		return false
	}
	return true
}

// graphqlArguments is the policy's argument rules as gqlcheck takes them.
func graphqlArguments(list []*policyv1.GraphQLArguments) []gqlcheck.FieldArguments {
	out := make([]gqlcheck.FieldArguments, len(list))
	for i, fa := range list {
		out[i] = gqlcheck.FieldArguments{Field: fa.GetField(), Args: make(map[string]gqlcheck.ArgumentRule, len(fa.GetArgs()))}
		for name, a := range fa.GetArgs() {
			r := gqlcheck.ArgumentRule{Required: a.GetRequired(), Pattern: a.GetPattern(), Enum: a.GetEnum(),
				Minimum: a.Minimum, Maximum: a.Maximum}
			if a.MinLength != nil {
				n := int(a.GetMinLength())
				r.MinLength = &n
			}
			if a.MaxLength != nil {
				n := int(a.GetMaxLength())
				r.MaxLength = &n
			}
			if a.MaxItems != nil {
				n := int(a.GetMaxItems())
				r.MaxItems = &n
			}
			out[i].Args[name] = r
		}
	}
	return out
}

// graphqlProblems reports what gqlcheck.Compile found wrong with a GraphQL API, each argument
// rule's problem at its own line.
func (c *compiler) graphqlProblems(src *source, at string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ae *gqlcheck.ArgumentError
		if !errors.As(e, &ae) {
			c.addf(src, at, "%v", e)
			continue
		}
		where := fmt.Sprintf("%s.arguments[%d]", at, ae.Entry)
		if ae.Arg != "" {
			where += ".args." + ae.Arg
		}
		c.addf(src, where, "%s", ae.Msg)
	}
}
