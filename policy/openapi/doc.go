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
