package openapi

import (
	"fmt"
	"sort"
	"strings"
)

// formBody reads an application/x-www-form-urlencoded body's schema: an object whose properties
// are its fields, each read as a query parameter in form style with explode (name=a&name=b),
// which is how the document describes such a body when it gives no encoding.
func (d *Document) formBody(b *Body, at Location) string {
	m, _ := d.mapAt(at)
	if _, ok := m["encoding"]; ok {
		return fmt.Sprintf("%s: a form body with an encoding object cannot be checked: its fields are read in form style with explode", d.at(at.child("encoding")))
	}
	if _, ok := m["schema"]; !ok {
		return fmt.Sprintf("%s: the application/x-www-form-urlencoded body has no schema", d.at(at))
	}
	schema, err := d.schemaObject(at.child("schema"))
	if err != nil {
		return err.Error()
	}
	if err := d.prepare(schema); err != nil {
		return err.Error()
	}
	b.FormSchema = schema
	fail := func(format string, args ...any) string {
		return d.at(schema) + ": the form body: " + fmt.Sprintf(format, args...)
	}
	sm, _ := d.mapAt(schema)
	if t, _ := sm["type"].(string); t != "object" {
		return fail("its schema must be of type object, its properties the form's fields")
	}
	for k, v := range sm {
		switch {
		case k == "type" || k == "properties" || k == "required" || annotations[k] || strings.HasPrefix(k, "x-"):
		case k == "additionalProperties":
			if x, ok := v.(bool); !ok || x {
				return fail("additionalProperties cannot be checked: list the fields and set additionalProperties: false")
			}
		default:
			return fail("keyword %s cannot be checked on a form", k)
		}
	}
	props, _ := sm["properties"].(map[string]any)
	required := map[string]bool{}
	if r, ok := sm["required"].([]any); ok {
		for _, x := range r {
			name, _ := x.(string)
			if _, ok := props[name]; !ok {
				return fail("required field %q is not among the properties", name)
			}
			required[name] = true
		}
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	b.Form = []*Param{}
	for _, name := range names {
		l := schema.child("properties", name)
		pr := &Param{Name: name, In: "query", Required: required[name], At: d.at(l)}
		if problem := d.paramValue(pr, l, "form", nil); problem != "" {
			return fmt.Sprintf("%s: form field %s: %s", pr.At, name, problem)
		}
		if pr.Properties != nil {
			return fmt.Sprintf("%s: form field %s: an object field cannot be checked in a form", pr.At, name)
		}
		b.Form = append(b.Form, pr)
	}
	return ""
}

// isForm reports whether a media type of the document is application/x-www-form-urlencoded.
func isForm(mt string) bool {
	base, params, _ := strings.Cut(mt, ";")
	return strings.EqualFold(strings.TrimSpace(base), "application/x-www-form-urlencoded") && strings.TrimSpace(params) == ""
}

// isJSON reports whether a media type of the document is application/json (with at most a
// charset=utf-8 parameter).
func isJSON(mt string) bool {
	base, params, _ := strings.Cut(mt, ";")
	if !strings.EqualFold(strings.TrimSpace(base), "application/json") {
		return false
	}
	if params == "" {
		return true
	}
	k, v, _ := strings.Cut(params, "=")
	return strings.EqualFold(strings.TrimSpace(k), "charset") && strings.EqualFold(strings.Trim(strings.TrimSpace(v), `"`), "utf-8")
}
