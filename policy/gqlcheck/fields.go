package gqlcheck

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
)

// FieldSet is a compiled field allowlist for one Checker's schema. A nil *FieldSet allows no
// field at all, not even __typename.
type FieldSet struct {
	schema *ast.Schema
	fields map[fieldKey]struct{}
}

type fieldKey struct{ typ, field string }

func (s *FieldSet) has(typ, field string) bool {
	_, ok := s.fields[fieldKey{typ, field}]
	return ok
}

// Fields compiles an allowlist of "Type.field" entries, and "Type.*" for every field of a type,
// against the schema. Types must be object or interface types of the schema; introspection
// fields (__typename, __schema, __type) cannot be listed: they follow Config. The error lists
// every unknown type or field.
func (c *Checker) Fields(list []string) (*FieldSet, error) {
	set := &FieldSet{schema: c.schema, fields: make(map[fieldKey]struct{}, len(list))}
	var errs []error
	bad := func(e string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: field %q: %s", c.name, clip(e, 128), fmt.Sprintf(format, args...)))
	}
	for _, e := range list {
		typ, field, ok := strings.Cut(e, ".")
		if !ok || typ == "" || field == "" || strings.Contains(field, ".") {
			bad(e, "must be Type.field or Type.*")
			continue
		}
		def := c.schema.Types[typ]
		if def == nil || strings.HasPrefix(typ, "__") {
			bad(e, "no type %s in the schema", clip(typ, 64))
			continue
		}
		if def.Kind != ast.Object && def.Kind != ast.Interface {
			bad(e, "%s is %s, not an object or interface type", typ, strings.ToLower(string(def.Kind)))
			continue
		}
		if field == "*" {
			for _, f := range def.Fields {
				if !strings.HasPrefix(f.Name, "__") {
					set.fields[fieldKey{typ, f.Name}] = struct{}{}
				}
			}
			continue
		}
		if strings.HasPrefix(field, "__") {
			bad(e, "introspection fields are not listed: __typename is always allowed, "+
				"__schema and __type follow allow_introspection")
			continue
		}
		if def.Fields.ForName(field) == nil {
			bad(e, "type %s has no field %s", typ, clip(field, 64))
			continue
		}
		set.fields[fieldKey{typ, field}] = struct{}{}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}
