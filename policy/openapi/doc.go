// Package openapi reads an OpenAPI document (3.0.x or 3.1.x, YAML or JSON) into the operations
// a policy can grant: for each, its method and path template, its parameters typed in the
// policy's terms (with the style they are written in: an array's delimiter and bounds, an
// object's properties as parameters of their own), where its request body's JSON Schema is, and
// a form body's fields. It refuses what it cannot read exactly rather than approximate it: a
// matrix path parameter, a label array with explode, an object in form style without explode or
// without its properties listed, a body only of other media types, a $ref to a URL.
//
// The document's structure (paths, operations, parameters, request bodies, references between
// them) is read and validated with github.com/getkin/kin-openapi. Schemas are compiled from the
// document's own JSON values with github.com/santhosh-tekuri/jsonschema/v6, the library every
// other JSON Schema of a policy goes through, so that every keyword of a schema counts, whatever
// the OpenAPI library models. A 3.0 schema is first rewritten in JSON Schema 2020-12 terms
// (nullable, boolean exclusiveMinimum and exclusiveMaximum, $ref siblings).
//
// Nothing here runs per request: package policy compiles what Read returns into its route
// tables when the policy loads.
package openapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"unsafe"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ReadFunc reads a file of the document by its slash-separated path relative to the policy
// directory (the document's own name, or a file beside it that a $ref names).
type ReadFunc func(name string) ([]byte, error)

// Document is an OpenAPI document read for a policy.
type Document struct {
	// Name is the document's path relative to the policy directory.
	Name string
	// Version is the document's openapi field, e.g. "3.1.0".
	Version string
	// ServerPath is the path of the document's servers ("/api"), "" without servers. It is
	// valid only when ServerPathProblem is empty.
	ServerPath        string
	ServerPathProblem string
	// ServerHost is the host name of the document's first server with one, for scaffolding.
	ServerHost string
	// Title is info.title.
	Title string
	// Operations are the document's operations, in the order the document lists them.
	Operations []*Operation
	// Tags are the tags the document's operations use, each once.
	Tags map[string]bool

	byID   map[string]*Operation
	files  map[string]*file
	read   ReadFunc
	v30    bool
	prefix string
	comp   *jsonschema.Compiler
	// compiled caches the schemas compiled so far, by location.
	compiled map[Location]*jsonschema.Schema
	// converted are the schema locations already prepared, rewritten the schema objects
	// rewritten from 3.0 terms.
	converted map[Location]bool
	rewritten map[unsafe.Pointer]bool
	// entries are the schema locations compiled, or named by a $ref: the bundle's entries.
	entries map[Location]bool
	keys    map[Location]string // each entry's name in the bundle
	// noBundle: a schema has a base URI of its own ($id), so schemas compile where they are.
	noBundle bool
}

// Location is where a JSON value is: a file of the document and a JSON pointer into it.
type Location struct {
	File    string
	Pointer string
}

func (l Location) String() string { return l.File + "#" + l.Pointer }

func (l Location) child(tokens ...string) Location {
	p := l.Pointer
	for _, t := range tokens {
		p += "/" + strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
	}
	return Location{l.File, p}
}

// Operation is one operation of the document.
type Operation struct {
	ID     string // operationId; may be empty
	Method string // upper case, e.g. "GET"
	// Path is the document's path template, e.g. "/v1/tickets/{id}", before any base path.
	Path string
	Tags []string
	// At is where the operation is, "file:line:col" (or "file#pointer" where no line is known).
	At string
	// Summary is the operation's summary, for scaffolding.
	Summary string
	// Params are the operation's parameters, the path item's included: path parameters, then
	// query parameters, then header and cookie parameters (which routes do not check).
	Params []*Param
	// Body is the request body; nil when the operation takes none.
	Body *Body
	// Approval is the operation's x-agentauthz-approval mark; nil when it has none.
	Approval *ApprovalMark
	// Problem says why the operation cannot be a route exactly; empty when it can.
	Problem string

	loc Location
}

// Param is one parameter of an operation.
type Param struct {
	Name string
	In   string // "path", "query", "header" or "cookie"
	// Required: a query parameter must be given. Path parameters always are.
	Required bool
	// Style is how the value is written, as the document declares it or by default: "simple" or
	// "label" for the path; "form", "spaceDelimited", "pipeDelimited" or "deepObject" for the
	// query. Explode is the document's explode, or its default (true for form only).
	Style   string
	Explode bool
	// Repeatable: an array query parameter in form style with explode, given once per item.
	Repeatable bool
	// Array, on an array parameter, bounds its items; Value types each item. A repeatable array
	// has one item per occurrence, any other all of them in one value, separated by Delimiter.
	Array *Array
	// Delimiter separates the items of an array written in one value: ',' (form without
	// explode, simple, label), ' ' (spaceDelimited) or '|' (pipeDelimited); 0 for other parameters.
	Delimiter byte
	// Prefix is what a path parameter's segment holds before its value: "." in label style.
	Prefix string
	// Properties, on an object query parameter (form style with explode, or deepObject), are
	// its properties, each checked as a query parameter of its own; Value is then unset.
	Properties []*Property
	// Value is the type of one value.
	Value Scalar
	// Schema is where the parameter's whole schema is.
	Schema Location
	// At is where the parameter is.
	At string
}

// Array bounds the items of an array parameter.
type Array struct {
	MinItems uint64
	MaxItems *uint64
	Unique   bool
}

// Property is one property of an object query parameter.
type Property struct {
	// Name is the query parameter that carries it: the property's name (form style), or
	// param[property] (deepObject).
	Name     string
	Property string
	// Required: the parameter is required and so is the property.
	Required bool
	Value    Scalar
}

// Body is an operation's request body.
type Body struct {
	Required bool
	// JSON is where the application/json schema is; nil when the body has no JSON media type.
	JSON *Location
	// Form, when the body may be application/x-www-form-urlencoded, are its fields, each read
	// as a query parameter in form style; FormSchema is where the form's schema is.
	Form       []*Param
	FormSchema Location
	// MediaTypes are every media type the document lists, as written, in order. Those other
	// than JSON and form bodies are refused when a request sends them.
	MediaTypes []string
}

// ApprovalMark is an operation's x-agentauthz-approval: true, or an object with a reason.
type ApprovalMark struct {
	Reason string
}

// Read reads the document name through read. prefix is put before file names in problems (the
// policy file's directory as the policy's problems show it). A document that cannot be read as
// a whole is an error; an operation that cannot be a route exactly has a Problem.
func Read(name, prefix string, read ReadFunc) (*Document, error) {
	d := &Document{
		Name: name, read: read, prefix: prefix, files: map[string]*file{},
		byID: map[string]*Operation{}, Tags: map[string]bool{},
		compiled: map[Location]*jsonschema.Schema{}, converted: map[Location]bool{}, rewritten: map[unsafe.Pointer]bool{}, entries: map[Location]bool{},
	}
	root, err := d.file(name)
	if err != nil {
		return nil, err
	}
	top, _ := root.value.(map[string]any)
	if top == nil {
		return nil, fmt.Errorf("%s: not an OpenAPI document: the top level is not an object", d.show(name))
	}
	version, _ := top["openapi"].(string)
	switch {
	case strings.HasPrefix(version, "3.0."):
		d.v30 = true
	case strings.HasPrefix(version, "3.1."):
	case version == "":
		if _, swagger := top["swagger"]; swagger {
			return nil, fmt.Errorf("%s: a Swagger 2.0 document: convert it to OpenAPI 3.0 or 3.1", d.show(name))
		}
		return nil, fmt.Errorf("%s: not an OpenAPI document: no openapi version", d.show(name))
	default:
		return nil, fmt.Errorf("%s: OpenAPI %s is not read: use 3.0.x or 3.1.x", d.show(name), version)
	}
	d.Version = version
	if dialect, ok := top["jsonSchemaDialect"].(string); ok && !d.v30 {
		switch dialect {
		case "https://spec.openapis.org/oas/3.1/dialect/base", "https://json-schema.org/draft/2020-12/schema":
		default:
			return nil, fmt.Errorf("%s: jsonSchemaDialect %s is not read: use JSON Schema 2020-12", d.show(name), dialect)
		}
	}

	loader := openapi3.NewLoader()
	loader.ReadFromURIFunc = func(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
		f, err := d.fileAt(u)
		if err != nil {
			return nil, err
		}
		return json.Marshal(f.value)
	}
	// The library reads the document as JSON, from the values read here: it sees exactly what
	// the schemas are compiled from, and its JSON reader is several times faster than its YAML one.
	asJSON, err := json.Marshal(root.value)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.show(name), err)
	}
	doc := &openapi3.T{}
	if err := doc.UnmarshalJSON(asJSON); err != nil {
		return nil, fmt.Errorf("%s: %v", d.show(name), d.clean(err))
	}
	if err := loader.ResolveRefsIn(doc, &url.URL{Path: name}); err != nil {
		return nil, fmt.Errorf("%s: %v", d.show(name), d.clean(err))
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("%s: not a valid OpenAPI document: %v", d.show(name), d.clean(err))
	}
	if doc.Info != nil {
		d.Title = doc.Info.Title
	}
	d.ServerPath, d.ServerHost, d.ServerPathProblem = serversPath(doc.Servers)
	if doc.Paths != nil {
		for p, pi := range doc.Paths.Map() {
			d.pathItem(p, pi, Location{name, ""}.child("paths", p))
		}
	}
	sort.SliceStable(d.Operations, func(i, j int) bool {
		a, b := d.Operations[i], d.Operations[j]
		if a.loc.File != b.loc.File {
			return a.loc.File < b.loc.File
		}
		la, _ := d.files[a.loc.File].line(a.loc.Pointer)
		lb, _ := d.files[b.loc.File].line(b.loc.Pointer)
		if la != lb {
			return la < lb
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Method < b.Method
	})
	for _, op := range d.Operations {
		if op.ID != "" {
			d.byID[op.ID] = op
		}
		for _, t := range op.Tags {
			d.Tags[t] = true
		}
	}
	return d, nil
}

// Operation returns the operation with an operationId, or nil.
func (d *Document) Operation(id string) *Operation { return d.byID[id] }

// show names a file of the document as problems do.
func (d *Document) show(name string) string {
	if d.prefix == "" || d.prefix == "." {
		return name
	}
	return path.Join(d.prefix, name)
}

// at formats where a location is: "file:line:col", or "file#pointer" where the line is unknown.
func (d *Document) at(l Location) string {
	if f := d.files[l.File]; f != nil {
		if line, col := f.line(l.Pointer); line > 0 {
			return fmt.Sprintf("%s:%d:%d", d.show(l.File), line, col)
		}
	}
	return d.show(l.File) + "#" + l.Pointer
}

// clean makes a library error one line.
func (d *Document) clean(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// file returns a file of the document, read and parsed once.
func (d *Document) file(name string) (*file, error) {
	if f := d.files[name]; f != nil {
		return f, nil
	}
	data, err := d.read(name)
	if err != nil {
		return nil, err
	}
	f, err := parseFile(d.show(name), data)
	if err != nil {
		return nil, err
	}
	f.name = name
	d.files[name] = f
	return f, nil
}

// fileAt returns the file a URL the OpenAPI library resolved names: a relative path inside the
// policy directory, never a URL.
func (d *Document) fileAt(u *url.URL) (*file, error) {
	if u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return nil, fmt.Errorf("$ref to %s: a document may refer only to files beside it, not to URLs", u.Redacted())
	}
	p := u.Path
	if path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." {
		return nil, fmt.Errorf("$ref to %s: refer to files by a clean relative path inside the policy directory", p)
	}
	return d.file(p)
}

// resolve returns where a $ref written at from points.
func (d *Document) resolve(from Location, ref string) (Location, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return Location{}, fmt.Errorf("$ref %q: %v", ref, err)
	}
	if u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return Location{}, fmt.Errorf("$ref %q: a document may refer only to files beside it, not to URLs", ref)
	}
	name := from.File
	if u.Path != "" {
		name = path.Join(path.Dir(from.File), u.Path)
		if path.IsAbs(u.Path) || strings.HasPrefix(name, "../") || name == ".." {
			return Location{}, fmt.Errorf("$ref %q: refer to files by a relative path inside the policy directory", ref)
		}
	}
	if u.Fragment != "" && u.Fragment[0] != '/' {
		return Location{}, fmt.Errorf("$ref %q: only JSON pointers (#/...) are read here", ref)
	}
	if _, err := d.file(name); err != nil {
		return Location{}, err
	}
	return Location{name, u.Fragment}, nil
}

// value returns the JSON value at a location.
func (d *Document) value(l Location) (any, bool) {
	f := d.files[l.File]
	if f == nil {
		return nil, false
	}
	return lookup(f.value, l.Pointer)
}

// deref follows the $ref of a reference object (a parameter, request body or path item written
// as {"$ref": ...}) to the object itself.
func (d *Document) deref(l Location) (Location, error) {
	for range 32 {
		v, _ := d.value(l)
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return l, nil
		}
		next, err := d.resolve(l, ref)
		if err != nil {
			return Location{}, err
		}
		l = next
	}
	return Location{}, fmt.Errorf("%s: $ref chain too long or circular", d.at(l))
}

var methods = []string{"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}

func (d *Document) pathItem(p string, pi *openapi3.PathItem, loc Location) {
	loc, err := d.deref(loc)
	if err != nil {
		d.brokenPath(p, pi, loc, err.Error())
		return
	}
	for _, m := range methods {
		op := pi.GetOperation(m)
		if op == nil {
			continue
		}
		o := &Operation{
			ID: op.OperationID, Method: m, Path: p, Tags: op.Tags, Summary: op.Summary,
			loc: loc.child(strings.ToLower(m)),
		}
		o.At = d.at(o.loc)
		d.Operations = append(d.Operations, o)
		d.operation(o, pi, op, loc)
	}
}

// brokenPath records every operation of a path item that cannot be read.
func (d *Document) brokenPath(p string, pi *openapi3.PathItem, loc Location, problem string) {
	for _, m := range methods {
		if op := pi.GetOperation(m); op != nil {
			d.Operations = append(d.Operations, &Operation{
				ID: op.OperationID, Method: m, Path: p, Tags: op.Tags, At: d.at(loc), loc: loc, Problem: problem,
			})
		}
	}
}

func (d *Document) operation(o *Operation, pi *openapi3.PathItem, op *openapi3.Operation, piLoc Location) {
	fail := func(format string, args ...any) {
		if o.Problem == "" {
			o.Problem = fmt.Sprintf(format, args...)
		}
	}
	if servers := op.Servers; servers != nil && len(*servers) > 0 {
		if p, _, problem := serversPath(*servers); problem != "" || p != d.ServerPath || d.ServerPathProblem != "" {
			fail("the operation has servers of its own: agentauthz reads only the document's servers")
		}
	}
	if len(pi.Servers) > 0 {
		if p, _, problem := serversPath(pi.Servers); problem != "" || p != d.ServerPath || d.ServerPathProblem != "" {
			fail("the path has servers of its own: agentauthz reads only the document's servers")
		}
	}
	if mark, ok := op.Extensions["x-agentauthz-approval"]; ok {
		switch m := mark.(type) {
		case bool:
			if m {
				o.Approval = &ApprovalMark{}
			}
		case map[string]any:
			o.Approval = &ApprovalMark{}
			for k, v := range m {
				s, ok := v.(string)
				if k != "reason" || !ok {
					fail("x-agentauthz-approval is true, false or {reason: TEXT}")
					continue
				}
				o.Approval.Reason = s
			}
		default:
			fail("x-agentauthz-approval is true, false or {reason: TEXT}")
		}
	}

	// Parameters: the operation's override the path item's of the same name and location.
	type key struct{ name, in string }
	seen := map[key]bool{}
	var params []*Param
	add := func(p *openapi3.Parameter, loc Location) {
		k := key{p.Name, p.In}
		if seen[k] {
			return
		}
		seen[k] = true
		pr, problem := d.param(p, loc)
		if problem != "" {
			fail("%s: %s parameter %s: %s", pr.At, p.In, p.Name, problem)
		}
		params = append(params, pr)
	}
	opLoc := o.loc
	for i, p := range op.Parameters {
		loc, err := d.deref(opLoc.child("parameters", fmt.Sprint(i)))
		if err != nil {
			fail("%v", err)
			continue
		}
		add(p.Value, loc)
	}
	for i, p := range pi.Parameters {
		loc, err := d.deref(piLoc.child("parameters", fmt.Sprint(i)))
		if err != nil {
			fail("%v", err)
			continue
		}
		add(p.Value, loc)
	}
	order := map[string]int{"path": 0, "query": 1, "header": 2, "cookie": 3}
	sort.SliceStable(params, func(i, j int) bool { return order[params[i].In] < order[params[j].In] })
	o.Params = params

	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		loc, err := d.deref(opLoc.child("requestBody"))
		if err != nil {
			fail("%v", err)
			return
		}
		b := &Body{Required: rb.Value.Required}
		for mt := range rb.Value.Content {
			b.MediaTypes = append(b.MediaTypes, mt)
		}
		sort.Strings(b.MediaTypes)
		for _, mt := range b.MediaTypes {
			switch {
			case isJSON(mt):
				if b.JSON != nil {
					fail("the request body lists application/json twice")
					continue
				}
				schema := loc.child("content", mt, "schema")
				if _, ok := d.value(schema); !ok {
					fail("%s: the application/json body has no schema", d.at(loc.child("content", mt)))
					continue
				}
				b.JSON = &schema
			case isForm(mt):
				if b.Form != nil {
					fail("the request body lists application/x-www-form-urlencoded twice")
					continue
				}
				if problem := d.formBody(b, loc.child("content", mt)); problem != "" {
					fail("%s", problem)
				}
			}
		}
		switch {
		case b.JSON == nil && b.Form == nil:
			fail("%s: the request body is %s, which agentauthz cannot check: it checks application/json and application/x-www-form-urlencoded bodies", d.at(loc), strings.Join(b.MediaTypes, ", "))
		case b.JSON != nil:
			if err := d.prepare(*b.JSON); err != nil {
				fail("%v", err)
			}
		}
		o.Body = b
	}
}

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

// serversPath returns the path the servers' URLs share, and the first server's host name.
func serversPath(servers openapi3.Servers) (p, host, problem string) {
	for i, s := range servers {
		if s == nil {
			continue
		}
		raw := s.URL
		// Substitute each variable's default: a variable in the path would make the path one of
		// several, which a route cannot be.
		for name, v := range s.Variables {
			if v == nil {
				continue
			}
			raw = strings.ReplaceAll(raw, "{"+name+"}", "\x00"+v.Default+"\x00")
		}
		u, err := url.Parse(strings.ReplaceAll(raw, "\x00", ""))
		if err != nil {
			return "", "", fmt.Sprintf("server URL %q: %v", s.URL, err)
		}
		pathPart := raw
		if i := strings.Index(pathPart, "://"); i >= 0 {
			pathPart = pathPart[i+3:]
			if j := strings.IndexByte(pathPart, '/'); j >= 0 {
				pathPart = pathPart[j:]
			} else {
				pathPart = ""
			}
		}
		if strings.ContainsAny(pathPart, "\x00{") {
			return "", "", fmt.Sprintf("server URL %q has a variable in its path: set the policy's base_path", s.URL)
		}
		sp := strings.TrimRight(u.Path, "/")
		if i == 0 {
			p = sp
		} else if sp != p {
			return "", "", fmt.Sprintf("the servers' paths differ (%q, %q): set the policy's base_path", p, sp)
		}
		if host == "" && !strings.ContainsAny(u.Hostname(), "\x00{") {
			host = u.Hostname()
		}
	}
	return p, host, ""
}
