package response

import (
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaGraph compiles what a JSON Schema declares into the graph of nodes Filter walks: the
// members its properties name (and additionalProperties, when it is a schema or true), the
// elements of arrays (items, prefixItems). $ref and allOf add what each part declares. Keywords
// under which whether a member is declared depends on the value (anyOf, oneOf, if,
// patternProperties, dependentSchemas, unevaluated*, $dynamicRef) are refused: which members
// pass would be a guess.
func schemaGraph(s *jsonschema.Schema) (*node, error) {
	g := &graph{memo: map[string]*node{}}
	n := g.node([]*jsonschema.Schema{s})
	if len(g.problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(g.problems, "; "))
	}
	return n, nil
}

type graph struct {
	memo     map[string]*node // by the set of schemas a place is under
	problems []string
	seen     map[string]bool
}

// node returns the node of a place in the body that the schemas ss all describe.
func (g *graph) node(ss []*jsonschema.Schema) *node {
	var parts []*jsonschema.Schema
	for _, s := range ss {
		parts = g.flatten(s, parts, 0)
	}
	key := setKey(parts)
	if n, ok := g.memo[key]; ok {
		return n
	}
	n := &node{scalars: true, objects: true}
	g.memo[key] = n // before the children, for recursive schemas
	members := map[string][]*jsonschema.Schema{}
	var other, elems []*jsonschema.Schema
	otherAll, elemsAll := false, false
	for _, p := range parts {
		if p.Bool != nil {
			if *p.Bool {
				n.all = true
			}
			continue
		}
		for name, ps := range p.Properties {
			members[name] = append(members[name], ps)
		}
		switch a := p.AdditionalProperties.(type) {
		case bool:
			otherAll = otherAll || a
		case *jsonschema.Schema:
			other = append(other, a)
		}
		if p.Items2020 != nil {
			elems = append(elems, p.Items2020)
		}
		elems = append(elems, p.PrefixItems...)
		switch it := p.Items.(type) {
		case *jsonschema.Schema:
			elems = append(elems, it)
		case []*jsonschema.Schema:
			elems = append(elems, it...)
		}
		switch a := p.AdditionalItems.(type) {
		case bool:
			elemsAll = elemsAll || a
		case *jsonschema.Schema:
			elems = append(elems, a)
		}
	}
	if n.all {
		return n
	}
	if len(members) > 0 {
		n.members = make(map[string]*node, len(members))
		names := make([]string, 0, len(members))
		for name := range members {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			n.members[name] = g.node(members[name])
		}
	}
	switch {
	case otherAll:
		n.other = everything
	case len(other) > 0:
		n.other = g.node(other)
	}
	switch {
	case elemsAll:
		n.elems = everything
	case len(elems) > 0:
		n.elems = g.node(elems)
	default:
		// An array the schema says nothing of the elements of: its scalars pass, its objects'
		// members are undeclared.
		n.elems = g.node([]*jsonschema.Schema{})
	}
	return n
}

// flatten adds s and the schemas it applies at the same place ($ref, allOf) to parts.
func (g *graph) flatten(s *jsonschema.Schema, parts []*jsonschema.Schema, depth int) []*jsonschema.Schema {
	if s == nil || depth > 64 {
		return parts
	}
	for _, p := range parts {
		if p == s {
			return parts
		}
	}
	parts = append(parts, s)
	refuse := func(kw string) {
		msg := fmt.Sprintf("%s at %s: which members it declares depends on the value; write the response schema without it, or use allow",
			kw, strings.TrimPrefix(s.Location, "file:///policy/"))
		if g.seen == nil {
			g.seen = map[string]bool{}
		}
		if !g.seen[msg] {
			g.seen[msg] = true
			g.problems = append(g.problems, msg)
		}
	}
	switch {
	case len(s.AnyOf) > 0:
		refuse("anyOf")
	case len(s.OneOf) > 0:
		refuse("oneOf")
	case s.If != nil || s.Then != nil || s.Else != nil:
		refuse("if/then/else")
	case len(s.PatternProperties) > 0:
		refuse("patternProperties")
	case len(s.DependentSchemas) > 0 || len(s.Dependencies) > 0:
		refuse("dependentSchemas")
	case s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil:
		refuse("unevaluatedProperties")
	case s.DynamicRef != nil || s.RecursiveRef != nil:
		refuse("$dynamicRef")
	}
	if s.Ref != nil {
		parts = g.flatten(s.Ref, parts, depth+1)
	}
	for _, a := range s.AllOf {
		parts = g.flatten(a, parts, depth+1)
	}
	return parts
}

// setKey names a set of schemas whatever their order.
func setKey(ss []*jsonschema.Schema) string {
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = fmt.Sprintf("%p", s)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}
