package openapi

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Scalar is the type of one parameter value, in the terms of the policy's route parameters.
type Scalar struct {
	// Type is "string", "integer", "number" or "boolean".
	Type string
	// Pattern is an RE2 regular expression a string must match somewhere (as JSON Schema's
	// pattern, it is not anchored).
	Pattern string
	// Enum, when HasEnum, lists every value allowed: strings, or integers in canonical form.
	Enum    []string
	HasEnum bool
	// MinLength and MaxLength bound a string's length in characters.
	MinLength, MaxLength *uint64
	// Minimum and Maximum bound an integer, inclusive.
	Minimum, Maximum *int64
	// Schema is where the value's schema is. Extra says it has keywords beyond the above
	// (formats, multipleOf, ...), which only the compiled schema (Document.Schema) checks.
	Schema Location
	Extra  bool
}

// annotations are schema keywords that say nothing about which values are valid.
var annotations = map[string]bool{
	"title": true, "description": true, "default": true, "example": true, "examples": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$comment": true,
	"discriminator": true, "xml": true, "externalDocs": true,
}

// native are the keywords Scalar says exactly.
var native = map[string]bool{
	"type": true, "pattern": true, "enum": true, "const": true, "minLength": true, "maxLength": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "format": true,
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

// scalar reads the schema of one parameter value.
func (d *Document) scalar(l Location) (Scalar, string) {
	m, _ := d.mapAt(l)
	s := Scalar{Schema: l}
	// The type: one of string, integer, number and boolean ("null" cannot be sent).
	switch t := m["type"].(type) {
	case string:
		s.Type = t
	case []any:
		for _, x := range t {
			if x == "null" {
				continue
			}
			name, _ := x.(string)
			if s.Type != "" {
				return s, "a parameter of several types cannot be read one way: give it one type"
			}
			s.Type = name
		}
	case nil:
		values := enumValues(m)
		if len(values) == 0 {
			return s, "the schema has no type: give the parameter a type"
		}
		for _, v := range values {
			if _, ok := v.(string); !ok {
				return s, "the schema has no type: give the parameter a type"
			}
		}
		s.Type = "string"
	}
	switch s.Type {
	case "string", "integer", "number", "boolean":
	case "array", "object":
		return s, fmt.Sprintf("a%s %s value cannot be checked here", map[bool]string{true: "n"}[s.Type == "object"], s.Type)
	default:
		return s, fmt.Sprintf("type %q is not a parameter type", s.Type)
	}
	for k := range m {
		if !native[k] && !annotations[k] && !strings.HasPrefix(k, "x-") {
			s.Extra = true
		}
	}
	if s.Type == "number" || s.Type == "boolean" {
		s.Extra = true // only the compiled schema checks their keywords
		return s, ""
	}
	if _, both := m["const"]; both {
		if _, also := m["enum"]; also {
			s.Extra = true
		}
	}
	if values := enumValues(m); values != nil {
		s.HasEnum = true
		for _, v := range values {
			switch x := v.(type) {
			case string:
				if s.Type == "string" {
					s.Enum = append(s.Enum, x)
				}
			case json.Number:
				if r, ok := new(big.Rat).SetString(string(x)); ok && r.IsInt() && s.Type == "integer" {
					s.Enum = append(s.Enum, r.Num().String())
				}
			}
		}
	}
	switch s.Type {
	case "string":
		if p, ok := m["pattern"]; ok {
			ps, isString := p.(string)
			if !isString {
				return s, "pattern is a string"
			}
			if _, err := regexp.Compile(ps); err != nil {
				return s, fmt.Sprintf("pattern %q is not an RE2 regular expression: %v", ps, err)
			}
			s.Pattern = ps
		}
		for _, k := range []string{"minLength", "maxLength"} {
			v, ok := m[k]
			if !ok {
				continue
			}
			n, err := count(v)
			if err != nil {
				return s, fmt.Sprintf("%s: %v", k, err)
			}
			if k == "minLength" {
				s.MinLength = &n
			} else {
				s.MaxLength = &n
			}
		}
		if _, ok := m["format"]; ok {
			s.Extra = true // formats are checked by the compiled schema
		}
	case "integer":
		lo, hi := new(big.Int).SetInt64(math.MinInt64), new(big.Int).SetInt64(math.MaxInt64)
		bounded := false
		tighten := func(k string, v any) string {
			n, ok := v.(json.Number)
			r, ok2 := new(big.Rat).SetString(string(n))
			if !ok || !ok2 {
				return k + " is a number"
			}
			bounded = true
			num, den := r.Num(), r.Denom()
			floor := new(big.Int).Div(num, den) // Euclidean: floor for a positive denominator
			ceil := new(big.Int).Neg(new(big.Int).Div(new(big.Int).Neg(num), den))
			switch k {
			case "minimum":
				maxInt(lo, ceil)
			case "exclusiveMinimum":
				maxInt(lo, floor.Add(floor, big.NewInt(1)))
			case "maximum":
				minInt(hi, floor)
			case "exclusiveMaximum":
				minInt(hi, ceil.Sub(ceil, big.NewInt(1)))
			}
			return ""
		}
		for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
			if v, ok := m[k]; ok {
				if p := tighten(k, v); p != "" {
					return s, p
				}
			}
		}
		switch f, _ := m["format"].(string); f {
		case "int32":
			bounded = true
			maxInt(lo, big.NewInt(math.MinInt32))
			minInt(hi, big.NewInt(math.MaxInt32))
		case "int64", "":
		default:
			s.Extra = true
		}
		if bounded {
			if lo.Cmp(hi) > 0 {
				return s, "no integer is within its bounds"
			}
			l, h := lo.Int64(), hi.Int64()
			if l != math.MinInt64 {
				s.Minimum = &l
			}
			if h != math.MaxInt64 {
				s.Maximum = &h
			}
		}
	}
	return s, ""
}

func maxInt(dst, x *big.Int) {
	if x.Cmp(dst) > 0 {
		dst.Set(x)
	}
}

func minInt(dst, x *big.Int) {
	if x.Cmp(dst) < 0 {
		dst.Set(x)
	}
}

// enumValues returns the values enum or const allow; nil when neither is there.
func enumValues(m map[string]any) []any {
	if c, ok := m["const"]; ok {
		if e, ok := m["enum"].([]any); ok {
			var both []any
			for _, v := range e {
				if jsonSame(v, c) {
					both = append(both, v)
				}
			}
			if both == nil {
				both = []any{}
			}
			return both
		}
		return []any{c}
	}
	if e, ok := m["enum"].([]any); ok {
		if e == nil {
			return []any{}
		}
		return e
	}
	return nil
}

func jsonSame(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// count reads a non-negative integer keyword (minLength, maxLength).
func count(v any) (uint64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("not a number")
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok || !r.IsInt() || r.Sign() < 0 || !r.Num().IsUint64() {
		return 0, fmt.Errorf("not a non-negative integer")
	}
	return r.Num().Uint64(), nil
}
