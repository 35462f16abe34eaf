package openapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/url"
	"path"
	"reflect"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaKeywords are the keywords whose values are schemas, or maps or lists of schemas: what
// prepare walks to rewrite every schema object a schema reaches.
var (
	schemaValued = []string{"additionalProperties", "items", "not", "contains", "if", "then", "else",
		"propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
	schemaMaps  = []string{"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"}
	schemaLists = []string{"allOf", "anyOf", "oneOf", "prefixItems", "items"}
)

// prepare makes the schema at l, and every schema it reaches, ready to compile: each file a
// $ref names is read, and a 3.0 document's schema objects are rewritten in JSON Schema 2020-12
// terms, each once.
func (d *Document) prepare(l Location) error {
	d.entries[l] = true
	return d.prepareAt(l, 0)
}

func (d *Document) prepareAt(l Location, depth int) error {
	if d.converted[l] {
		return nil
	}
	d.converted[l] = true
	if depth > maxDepth {
		return fmt.Errorf("%s: the schema nests more than %d deep", d.at(l), maxDepth)
	}
	v, ok := d.value(l)
	if !ok {
		return fmt.Errorf("%s: no schema here", d.at(l))
	}
	m, ok := v.(map[string]any)
	if !ok {
		if _, isBool := v.(bool); isBool && !d.v30 {
			return nil
		}
		return fmt.Errorf("%s: a schema is an object", d.at(l))
	}
	for _, k := range []string{"$id", "id", "$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveRef", "$recursiveAnchor"} {
		if _, ok := m[k]; ok {
			d.noBundle = true // a schema with a base URI of its own is compiled where it is
		}
	}
	if ref, ok := m["$ref"].(string); ok {
		if d.v30 {
			// OpenAPI 3.0: a Reference Object's other members are ignored.
			for k := range m {
				if k != "$ref" {
					delete(m, k)
				}
			}
		}
		target, err := d.resolve(l, ref)
		if err != nil {
			return fmt.Errorf("%s: %v", d.at(l), err)
		}
		d.entries[target] = true
		if err := d.prepareAt(target, depth+1); err != nil {
			return err
		}
		if d.v30 {
			return nil
		}
	}
	if id := reflect.ValueOf(m).UnsafePointer(); d.v30 && !d.rewritten[id] {
		// Once per object, however many pointers reach it.
		d.rewritten[id] = true
		if err := d.convert30(l, m); err != nil {
			return err
		}
	}
	for _, k := range schemaValued {
		if _, ok := m[k].(map[string]any); ok || (!d.v30 && isBool(m[k])) {
			if err := d.prepareAt(l.child(k), depth+1); err != nil {
				return err
			}
		}
	}
	for _, k := range schemaMaps {
		if mm, ok := m[k].(map[string]any); ok {
			for name := range mm {
				if err := d.prepareAt(l.child(k, name), depth+1); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range schemaLists {
		if list, ok := m[k].([]any); ok {
			for i := range list {
				if err := d.prepareAt(l.child(k, fmt.Sprint(i)), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func isBool(v any) bool { _, ok := v.(bool); return ok }

// convert30 rewrites one OpenAPI 3.0 schema object in JSON Schema 2020-12 terms:
//   - nullable: true adds "null" to type (and has no effect without type); an enum must list
//     null for null to pass, as the OpenAPI Initiative's clarification of nullable says;
//   - exclusiveMinimum and exclusiveMaximum are booleans qualifying minimum and maximum;
//     2020-12 makes them the bounds themselves.
func (d *Document) convert30(l Location, m map[string]any) error {
	if n, ok := m["nullable"]; ok {
		b, isBool := n.(bool)
		if !isBool {
			return fmt.Errorf("%s: nullable is true or false", d.at(l.child("nullable")))
		}
		delete(m, "nullable")
		if t, ok := m["type"].(string); ok && b {
			m["type"] = []any{t, "null"}
		}
	}
	for _, bound := range [][2]string{{"exclusiveMinimum", "minimum"}, {"exclusiveMaximum", "maximum"}} {
		ex, ok := m[bound[0]]
		if !ok {
			continue
		}
		b, isBool := ex.(bool)
		if !isBool {
			return fmt.Errorf("%s: in OpenAPI 3.0, %s is true or false", d.at(l.child(bound[0])), bound[0])
		}
		delete(m, bound[0])
		if v, ok := m[bound[1]]; ok && b {
			m[bound[0]] = v
			delete(m, bound[1])
		}
	}
	return nil
}

// schemaURL is the URL a file of the document has for the schema compiler.
func schemaURL(name string) string { return "file:///openapi/" + name }

// Schema compiles the JSON Schema at a location (an operation's Body.JSON, or a parameter's
// Value.At) once.
func (d *Document) Schema(l Location) (*jsonschema.Schema, error) {
	if s := d.compiled[l]; s != nil {
		return s, nil
	}
	at := l
	if err := d.prepare(l); err != nil {
		return nil, err
	}
	// A schema that only names another is compiled as the one it names: violations then read as
	// that schema's own, not as "validation failed" at the $ref.
	if target, err := d.schemaObject(l); err == nil {
		l = target
	}
	if d.comp == nil {
		d.comp = jsonschema.NewCompiler()
		d.comp.DefaultDraft(jsonschema.Draft2020)
		d.comp.AssertFormat()
		d.comp.UseLoader(loader{d})
		for _, f := range openAPIFormats {
			d.comp.RegisterFormat(f)
		}
		if !d.noBundle {
			if err := d.comp.AddResource(bundleURL, d.bundle()); err != nil {
				return nil, fmt.Errorf("%s: %v", d.show(d.Name), err)
			}
		}
	}
	u := schemaURL(l.File) + "#" + (&url.URL{Fragment: l.Pointer}).EscapedFragment()
	if d.entries[l] && !d.noBundle {
		u = bundleURL + "#/$defs/" + d.keys[l]
	}
	s, err := d.comp.Compile(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", d.at(l), strings.Join(strings.Fields(err.Error()), " "))
	}
	d.compiled[at] = s
	return s, nil
}

// loader gives the schema compiler the document's files, as read (and rewritten) here; it
// refuses every other URL.
type loader struct{ d *Document }

func (l loader) Load(u string) (any, error) {
	name, ok := strings.CutPrefix(u, "file:///openapi/")
	if !ok {
		return nil, fmt.Errorf("$ref to %s: a document may refer only to files beside it, not to URLs", u)
	}
	if clean := path.Clean(name); clean != name || strings.HasPrefix(name, "../") {
		return nil, fmt.Errorf("$ref to %s: outside the policy directory", name)
	}
	f, err := l.d.file(name)
	if err != nil {
		return nil, err
	}
	return f.value, nil
}

// openAPIFormats are the formats OpenAPI defines beyond JSON Schema's, asserted like JSON
// Schema's own (float and double name a number's precision, not a set of values; password and
// binary are hints).
var openAPIFormats = []*jsonschema.Format{
	{Name: "int32", Validate: intFormat(math.MinInt32, math.MaxInt32)},
	{Name: "int64", Validate: intFormat(math.MinInt64, math.MaxInt64)},
	{Name: "byte", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		if _, err := base64.StdEncoding.Strict().DecodeString(s); err != nil {
			return fmt.Errorf("not base64")
		}
		return nil
	}},
}

func intFormat(lo, hi int64) func(any) error {
	return func(v any) error {
		n, ok := v.(json.Number)
		if !ok {
			return nil
		}
		r, ok := new(big.Rat).SetString(string(n))
		if !ok || !r.IsInt() {
			return nil // not an integer: format says nothing of it
		}
		if r.Num().Cmp(big.NewInt(lo)) < 0 || r.Num().Cmp(big.NewInt(hi)) > 0 {
			return fmt.Errorf("out of range")
		}
		return nil
	}
}

// bundleURL is the URL of the bundle of a document's schemas.
const bundleURL = "file:///openapi-bundle/schemas.json"

// bundle gathers every schema the document's operations use, and every schema those refer to,
// into one JSON Schema, {"$defs": {LOCATION: SCHEMA, ...}}, each $ref rewritten to the $defs
// entry of what it names. The schema compiler reads subschemas it finds through keywords in one
// pass; a document's schemas sit under "paths" and "components", which are no keywords, and
// compiling each one there would cost it a pass over all the others.
func (d *Document) bundle() map[string]any {
	d.keys = make(map[Location]string, len(d.entries))
	for l := range d.entries {
		d.keys[l] = "s" + strconv.Itoa(len(d.keys))
	}
	defs := make(map[string]any, len(d.entries))
	for l := range d.entries {
		v, _ := d.value(l)
		defs[d.keys[l]] = d.rewrite(l, v)
	}
	return map[string]any{"$defs": defs}
}

// rewrite copies the schema v found at l, its $refs rewritten to the bundle's entries.
func (d *Document) rewrite(l Location, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, c := range m {
		out[k] = c
	}
	if ref, ok := m["$ref"].(string); ok {
		if target, err := d.resolve(l, ref); err == nil && d.entries[target] {
			out["$ref"] = "#/$defs/" + d.keys[target]
		}
	}
	for _, k := range schemaValued {
		if c, ok := m[k].(map[string]any); ok {
			out[k] = d.rewrite(l.child(k), c)
		}
	}
	for _, k := range schemaMaps {
		if mm, ok := m[k].(map[string]any); ok {
			cp := make(map[string]any, len(mm))
			for name, c := range mm {
				cp[name] = d.rewrite(l.child(k, name), c)
			}
			out[k] = cp
		}
	}
	for _, k := range schemaLists {
		if list, ok := m[k].([]any); ok {
			cp := make([]any, len(list))
			for i, c := range list {
				cp[i] = d.rewrite(l.child(k, fmt.Sprint(i)), c)
			}
			out[k] = cp
		}
	}
	return out
}
