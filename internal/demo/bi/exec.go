package bi

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vektah/gqlparser/v2/ast"
)

// A minimal GraphQL executor for the demo schema: gqlparser parses and validates the document
// against the schema; this file walks the chosen operation's selections (fields, aliases,
// fragments, @skip and @include) and resolves each field from the in-memory data.

// object is a response object whose keys keep the order of the selection, as GraphQL requires.
type object []entry

type entry struct {
	key   string
	value any
}

// MarshalJSON writes the object with its keys in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// gqlError is one entry of a response's errors.
type gqlError struct {
	Message string `json:"message"`
	Path    []any  `json:"path,omitempty"`
}

// executor runs one operation.
type executor struct {
	api    *API
	doc    *ast.QueryDocument
	vars   map[string]any
	errors []gqlError
}

// run executes op from the root value and returns its data.
func (e *executor) run(op *ast.OperationDefinition) object {
	root := map[ast.Operation]string{ast.Query: "Query", ast.Mutation: "Mutation", ast.Subscription: "Subscription"}[op.Operation]
	return e.selectionSet(root, nil, op.SelectionSet, nil)
}

// collect gathers the fields of set that apply to an object of type typ, grouped by response key
// in order of first appearance.
func (e *executor) collect(typ string, set ast.SelectionSet, keys *[]string, groups map[string][]*ast.Field) {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if !e.included(s.Directives) {
				continue
			}
			if _, seen := groups[s.Alias]; !seen {
				*keys = append(*keys, s.Alias)
			}
			groups[s.Alias] = append(groups[s.Alias], s)
		case *ast.InlineFragment:
			if e.included(s.Directives) && (s.TypeCondition == "" || s.TypeCondition == typ) {
				e.collect(typ, s.SelectionSet, keys, groups)
			}
		case *ast.FragmentSpread:
			def := s.Definition
			if def == nil {
				def = e.doc.Fragments.ForName(s.Name)
			}
			if def != nil && e.included(s.Directives) && def.TypeCondition == typ {
				e.collect(typ, def.SelectionSet, keys, groups)
			}
		}
	}
}

// included applies @skip and @include.
func (e *executor) included(ds ast.DirectiveList) bool {
	if d := ds.ForName("skip"); d != nil && d.ArgumentMap(e.vars)["if"] == true {
		return false
	}
	if d := ds.ForName("include"); d != nil && d.ArgumentMap(e.vars)["if"] != true {
		return false
	}
	return true
}

func (e *executor) selectionSet(typ string, parent any, set ast.SelectionSet, path []any) object {
	var keys []string
	groups := map[string][]*ast.Field{}
	e.collect(typ, set, &keys, groups)
	out := make(object, 0, len(keys))
	for _, key := range keys {
		fields := groups[key]
		f := fields[0]
		fieldPath := append(append([]any(nil), path...), key)
		if f.Name == "__typename" {
			out = append(out, entry{key, typ})
			continue
		}
		v, err := e.api.resolve(typ, f.Name, parent, f.ArgumentMap(e.vars))
		if err != nil {
			e.errors = append(e.errors, gqlError{Message: err.Error(), Path: fieldPath})
			out = append(out, entry{key, nil})
			continue
		}
		var sub ast.SelectionSet
		for _, g := range fields {
			sub = append(sub, g.SelectionSet...)
		}
		out = append(out, entry{key, e.complete(f.Definition.Type, v, sub, fieldPath)})
	}
	return out
}

// complete turns a resolved value into its response form for type t.
func (e *executor) complete(t *ast.Type, v any, sub ast.SelectionSet, path []any) any {
	if isNil(v) {
		return nil
	}
	if t.Elem != nil {
		var items []any
		switch list := v.(type) {
		case []*Customer:
			for _, c := range list {
				items = append(items, c)
			}
		case []*Order:
			for _, o := range list {
				items = append(items, o)
			}
		default:
			e.errors = append(e.errors, gqlError{Message: fmt.Sprintf("internal: %T is not a list", v), Path: path})
			return nil
		}
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = e.complete(t.Elem, item, sub, append(append([]any(nil), path...), i))
		}
		return out
	}
	if len(sub) == 0 {
		return v // a scalar
	}
	return e.selectionSet(t.NamedType, v, sub, path)
}

func isNil(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case *Revenue:
		return x == nil
	case *Customer:
		return x == nil
	case *Order:
		return x == nil
	case []*Customer:
		return x == nil
	case []*Order:
		return x == nil
	}
	return false
}
