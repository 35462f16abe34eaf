package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentauthz/agentauthz/policy/openapi"
)

// OpenAPIRoute is a route compiled from an operation of an OpenAPI document, for review.
type OpenAPIRoute struct {
	Host        string
	Document    string
	OperationID string
	// Route is the route's name; empty when the operation could not be compiled.
	Route  string
	Method string
	Path   string // the route's template, base path included
	Scope  string
	// Params describe each checked parameter ("path.id: string, pattern ^[0-9]+$"), then the
	// header and cookie parameters the route does not check.
	Params []string
	// Body describes the request body the route takes; empty when it takes none.
	Body     string
	Approval bool
	Shadow   bool
}

// OpenAPIRoutes lists the routes the policy compiled from OpenAPI documents, host by host, in
// the order each document lists its operations.
func (s *Snapshot) OpenAPIRoutes() []OpenAPIRoute {
	var out []OpenAPIRoute
	for _, oh := range s.openapi {
		for _, g := range oh.granted {
			r := OpenAPIRoute{Host: oh.host, Document: oh.doc.Name, OperationID: g.op.ID, Method: g.op.Method, Scope: g.scope}
			if rt := g.route; rt != nil {
				r.Route, r.Path, r.Approval, r.Shadow = rt.name, rt.template, rt.hold != nil, rt.shadow
				for _, p := range rt.params {
					r.Params = append(r.Params, p.describe())
				}
				for _, n := range rt.query.sortedNames() {
					r.Params = append(r.Params, rt.query.get(n).describe())
				}
				if rt.body != nil {
					r.Body = rt.body.describe()
					if f := rt.body.form(); f != nil {
						for _, n := range f.fields.query.sortedNames() {
							r.Params = append(r.Params, f.fields.query.get(n).describe())
						}
					}
				}
			}
			for _, p := range g.op.Params {
				if p.In == "header" || p.In == "cookie" {
					r.Params = append(r.Params, p.In+"."+p.Name+": not checked (routes do not type "+p.In+"s)")
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// describe says what a compiled parameter accepts.
func (p *param) describe() string {
	var parts []string
	kind := map[paramKind]string{kindString: "string", kindInteger: "integer", kindBoolean: "boolean", kindUUID: "uuid", kindNumber: "number"}[p.kind]
	parts = append(parts, kind)
	if p.required && !strings.HasPrefix(p.field, "path.") {
		parts = append(parts, "required")
	}
	if p.repeatable {
		parts = append(parts, "repeatable")
	}
	if p.prefix != "" {
		parts = append(parts, p.msgPrefix)
	}
	if l := p.list; l != nil {
		if p.delim != 0 {
			parts = append(parts, l.msgDelim)
		}
		if l.min > 0 {
			parts = append(parts, l.msgMin)
		}
		if l.msgMax != "" {
			parts = append(parts, l.msgMax)
		}
		if l.unique {
			parts = append(parts, "items unique")
		}
	}
	if p.re != nil {
		parts = append(parts, p.msgPattern)
	}
	if p.enum != nil {
		parts = append(parts, p.msgEnum)
	}
	if p.kind == kindString || p.kind == kindUUID {
		if p.minLen > 0 {
			parts = append(parts, p.msgMinLen)
		}
		parts = append(parts, p.msgMaxLen)
	}
	if p.hasMin {
		parts = append(parts, p.msgMin)
	}
	if p.hasMax {
		parts = append(parts, p.msgMax)
	}
	if p.schema != nil {
		parts = append(parts, "and its schema")
	}
	out := p.field + ": " + strings.Join(parts, ", ")
	if p.also != nil {
		_, tight, _ := strings.Cut(p.also.describe(), ": ")
		out += "; tightened: " + tight
	}
	return out
}

// form returns the form a body rule checks, if any.
func (b *bodyRule) form() *formBody {
	switch x := b.schema.(type) {
	case *formBody:
		return x
	case *jsonOrForm:
		return x.form
	}
	return nil
}

// describe says what a compiled body rule accepts.
func (b *bodyRule) describe() string {
	var s string
	switch x := b.schema.(type) {
	case *jsonSchemaBody:
		s = "application/json, the document's schema"
	case *bothSchemas:
		tight := "a JSON Schema"
		if pj, ok := x.first.(*protoJSONBody); ok {
			tight = "message " + string(pj.msg.Descriptor().FullName())
		}
		s = "application/json, " + tight + " and the document's schema"
	case *formBody:
		s = formMediaType + ", the document's form"
	case *jsonOrForm:
		s = "application/json or " + formMediaType + ", the document's schema and form"
	default:
		s = strings.Join(b.schema.mediaTypes(), ", ")
	}
	s += fmt.Sprintf(", at most %d bytes", b.maxBytes)
	if b.optional {
		s += ", optional"
	}
	return s
}

// OpenAPIDrift reports what changed, under the policy's grants, between older copies of its
// OpenAPI documents and the documents it loaded: every granted operation whose route, parameters,
// request body or approval mark differs, and every operation a tag grants that the older copy
// lacks. baselines maps a document's name, as the policy names it, to the older copy's path;
// files the older copy refers to are read beside it. Each problem points at the operation in
// the current document.
func (s *Snapshot) OpenAPIDrift(baselines map[string]string) (Problems, error) {
	names := map[string]bool{}
	for _, oh := range s.openapi {
		names[oh.doc.Name] = true
	}
	for name := range baselines {
		if !names[name] {
			return nil, fmt.Errorf("policy: no host of the policy has OpenAPI document %s", name)
		}
	}
	var problems Problems
	olds := map[string]*openapi.Document{}
	for _, oh := range s.openapi {
		oldPath, ok := baselines[oh.doc.Name]
		if !ok {
			continue
		}
		old := olds[oh.doc.Name]
		if old == nil {
			dir := filepath.Dir(oldPath)
			var err error
			old, err = openapi.Read(filepath.ToSlash(filepath.Base(oldPath)), filepath.ToSlash(dir), func(n string) ([]byte, error) {
				if err := insideDir(dir, n); err != nil {
					return nil, fmt.Errorf("cannot read %s: %v", n, err)
				}
				return os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
			})
			if err != nil {
				return nil, fmt.Errorf("policy: the older copy of %s: %v", oh.doc.Name, err)
			}
			olds[oh.doc.Name] = old
		}
		for _, g := range oh.granted {
			prev := old.Operation(g.op.ID)
			if prev == nil {
				if g.tag != "" {
					problems = append(problems, fmt.Sprintf("%s: operation %s is new since %s, and tag %s grants it scope %s (%s)",
						g.op.At, g.op.ID, oldPath, g.tag, g.scope, g.by))
				}
				continue
			}
			if changed := oh.doc.Contract(g.op).Changed(old.Contract(prev)); len(changed) > 0 {
				problems = append(problems, fmt.Sprintf("%s: operation %s changed since %s under the grant of scope %s (%s): %s",
					g.op.At, g.op.ID, oldPath, g.scope, g.by, strings.Join(changed, ", ")))
			}
		}
	}
	sort.Strings(problems)
	return problems, nil
}
