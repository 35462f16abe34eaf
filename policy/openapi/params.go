package openapi

import (
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// annotations are schema keywords that say nothing about which values are valid.
var annotations = map[string]bool{
	"title": true, "description": true, "default": true, "example": true, "examples": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$comment": true,
	"discriminator": true, "xml": true, "externalDocs": true,
}

// param reads one parameter; problem says why it cannot be checked exactly.
func (d *Document) param(p *openapi3.Parameter, loc Location) (*Param, string) {
	pr := &Param{Name: p.Name, In: p.In, Required: p.Required, At: d.at(loc)}
	if p.In == "header" || p.In == "cookie" {
		return pr, "" // not checked: routes do not type headers
	}
	if p.Content != nil {
		return pr, "its value is described by content (a media type), which agentauthz cannot check: describe it by schema"
	}
	if p.Schema == nil {
		return pr, "it has no schema"
	}
	return pr, d.paramValue(pr, loc.child("schema"), p.Style, p.Explode)
}

// paramValue reads the schema of a path or query parameter (or of a form body's field, read as a
// query parameter) written in a style.
func (d *Document) paramValue(pr *Param, schemaAt Location, style string, explodeAs *bool) string {
	schema, err := d.schemaObject(schemaAt)
	if err != nil {
		return err.Error()
	}
	if err := d.prepare(schema); err != nil {
		return err.Error()
	}
	pr.Schema = schema
	m, _ := d.mapAt(schema)
	kind := valueKind(m)

	// The style and explode the document declares, or their defaults: form for the query,
	// simple for the path, explode for form (and deepObject, which has no other form).
	pr.Style = style
	if pr.Style == "" {
		pr.Style = map[string]string{"path": "simple", "query": "form"}[pr.In]
	}
	pr.Explode = pr.Style == "form" || pr.Style == "deepObject"
	if explodeAs != nil {
		pr.Explode = *explodeAs
	}
	switch pr.In {
	case "path":
		pr.Required = true
		switch pr.Style {
		case "simple":
		case "label":
			pr.Prefix = "."
		case "matrix":
			return "style matrix: a matrix parameter starts with ;, which agentauthz refuses in paths as ambiguous: use simple or label"
		default:
			return fmt.Sprintf("style %s is not a path parameter style", pr.Style)
		}
		switch kind {
		case "object":
			return "an object path parameter (name,value pairs in a segment) cannot be checked: give it one value or an array"
		case "array":
			if pr.Style == "label" && pr.Explode {
				return "a label array with explode: true separates its items by ., which values may hold: use explode: false (.a,b)"
			}
			pr.Delimiter = ','
		}
	case "query":
		switch pr.Style {
		case "form":
			switch {
			case kind == "array" && !pr.Explode:
				pr.Delimiter = ','
			case kind == "array":
				pr.Repeatable = true
			case kind == "object" && !pr.Explode:
				return "an object in form style with explode: false (name=k,v,k,v) cannot be read unambiguously: use explode: true or style deepObject"
			}
		case "spaceDelimited", "pipeDelimited":
			if kind != "array" {
				return fmt.Sprintf("style %s is for arrays", pr.Style)
			}
			if pr.Explode {
				return fmt.Sprintf("style %s with explode: true is not defined: use explode: false, or form style with explode", pr.Style)
			}
			pr.Delimiter = map[string]byte{"spaceDelimited": ' ', "pipeDelimited": '|'}[pr.Style]
		case "deepObject":
			if kind != "object" {
				return "style deepObject is for objects"
			}
			if !pr.Explode {
				return "style deepObject is defined with explode: true only"
			}
		default:
			return fmt.Sprintf("style %s is not a query parameter style", pr.Style)
		}
	}
	switch kind {
	case "array":
		items, problem := d.array(pr, schema, m)
		if problem != "" {
			return problem
		}
		schema = items
	case "object":
		return d.object(pr, schema, m)
	}
	v, problem := d.scalar(schema)
	if problem != "" {
		return problem
	}
	pr.Value = v
	return ""
}

// valueKind is "array" or "object" for a schema of that type, "" for any other.
func valueKind(m map[string]any) string {
	switch t := m["type"].(type) {
	case string:
		if t == "array" || t == "object" {
			return t
		}
	case []any:
		for _, x := range t {
			if x == "array" || x == "object" {
				return x.(string)
			}
		}
	}
	return ""
}

// array reads an array parameter's bounds into pr.Array and returns where its items' schema is.
func (d *Document) array(pr *Param, schema Location, m map[string]any) (Location, string) {
	if t, ok := m["type"].(string); !ok || t != "array" {
		return Location{}, "an array parameter of several types cannot be read one way: give it type array"
	}
	a := &Array{}
	for k, v := range m {
		switch {
		case k == "type" || k == "items" || annotations[k] || strings.HasPrefix(k, "x-"):
		case k == "minItems" || k == "maxItems":
			n, err := count(v)
			if err != nil {
				return Location{}, fmt.Sprintf("%s: %v", k, err)
			}
			if k == "minItems" {
				a.MinItems = n
			} else {
				a.MaxItems = &n
			}
		case k == "uniqueItems":
			b, ok := v.(bool)
			if !ok {
				return Location{}, "uniqueItems is true or false"
			}
			a.Unique = b
		default:
			return Location{}, fmt.Sprintf("array keyword %s cannot be checked on a parameter", k)
		}
	}
	if a.MaxItems != nil && *a.MaxItems < a.MinItems {
		return Location{}, "no array is within its minItems and maxItems"
	}
	if _, ok := m["items"].(map[string]any); !ok {
		return Location{}, "an array parameter needs an items schema"
	}
	items, err := d.schemaObject(schema.child("items"))
	if err != nil {
		return Location{}, err.Error()
	}
	if err := d.prepare(items); err != nil {
		return Location{}, err.Error()
	}
	if im, _ := d.mapAt(items); valueKind(im) != "" {
		return Location{}, "an array of arrays or objects cannot be a parameter"
	}
	pr.Array = a
	return items, ""
}

// object reads an object query parameter's properties: each is a query parameter of its own,
// named by the property (form style with explode) or param[property] (deepObject).
func (d *Document) object(pr *Param, schema Location, m map[string]any) string {
	if t, ok := m["type"].(string); !ok || t != "object" {
		return "an object parameter of several types cannot be read one way: give it type object"
	}
	for k, v := range m {
		switch {
		case k == "type" || k == "properties" || k == "required" || annotations[k] || strings.HasPrefix(k, "x-"):
		case k == "additionalProperties":
			if b, ok := v.(bool); !ok || b {
				// Properties not listed would be query parameters of any name.
				return "an object parameter with additionalProperties cannot be checked: list its properties and set additionalProperties: false"
			}
		default:
			return fmt.Sprintf("object keyword %s cannot be checked on a parameter", k)
		}
	}
	props, _ := m["properties"].(map[string]any)
	if len(props) == 0 {
		return "an object parameter needs properties"
	}
	required := map[string]bool{}
	if r, ok := m["required"].([]any); ok {
		for _, x := range r {
			name, _ := x.(string)
			if _, ok := props[name]; !ok {
				return fmt.Sprintf("required property %q is not among the properties", name)
			}
			required[name] = true
		}
	}
	if len(required) > 0 && !pr.Required {
		return "an optional object parameter with required properties (all of them or none) cannot be checked: make the parameter required, or its properties optional"
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l, err := d.schemaObject(schema.child("properties", name))
		if err != nil {
			return err.Error()
		}
		if err := d.prepare(l); err != nil {
			return err.Error()
		}
		q := name
		if pr.Style == "deepObject" {
			q = pr.Name + "[" + name + "]"
		}
		v, problem := d.scalar(l)
		if problem != "" {
			return fmt.Sprintf("property %s: %s", name, problem)
		}
		pr.Properties = append(pr.Properties, &Property{Name: q, Property: name, Required: required[name], Value: v})
	}
	return ""
}

// mapAt returns the object at a location.
func (d *Document) mapAt(l Location) (map[string]any, bool) {
	v, _ := d.value(l)
	m, ok := v.(map[string]any)
	return m, ok
}

// schemaObject follows a schema written as a bare $ref (with annotations at most beside it)
// to the schema it names.
func (d *Document) schemaObject(l Location) (Location, error) {
	for range 32 {
		m, ok := d.mapAt(l)
		if !ok {
			return Location{}, fmt.Errorf("%s: the schema is not an object", d.at(l))
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return l, nil
		}
		for k := range m {
			if k != "$ref" && !annotations[k] && !strings.HasPrefix(k, "x-") && !d.v30 {
				return Location{}, fmt.Errorf("%s: a parameter schema with keywords beside $ref cannot be read: move them into the schema it names", d.at(l))
			}
		}
		next, err := d.resolve(l, ref)
		if err != nil {
			return Location{}, fmt.Errorf("%s: %v", d.at(l), err)
		}
		l = next
	}
	return Location{}, fmt.Errorf("%s: $ref chain too long or circular", d.at(l))
}
