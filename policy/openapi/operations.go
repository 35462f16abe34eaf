package openapi

import (
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

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
