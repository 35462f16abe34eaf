package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/openapi"
	"github.com/agentauthz/agentauthz/policy/target"
)

// formMediaType is the media type of a form body.
const formMediaType = "application/x-www-form-urlencoded"

// formBody checks an application/x-www-form-urlencoded body as a query is checked: the same
// strict reading (target.CheckForm), and its fields typed as the route's query parameters are,
// from the OpenAPI document's schema of the form.
type formBody struct {
	// fields holds the form's fields as a route holds its query parameters; only the
	// parameter tables of it are set.
	fields *route
}

var _ bodySchema = (*formBody)(nil)

func (*formBody) mediaTypes() []string { return formMediaTypes }

func (f *formBody) check(r *Request, _ *agent) decision.Decision {
	if err := target.CheckForm(string(r.Body)); err != nil {
		v := decision.Violation{Field: "body", Rule: "syntax", Message: "is not a form"}
		var te *target.Error
		if errors.As(err, &te) {
			v.Rule, v.Message = te.Rule, te.Message
		}
		return decision.Denied(decision.CodeBodyMalformed,
			"The form body is malformed or ambiguous; encode it plainly (name=value&...) and retry.", v)
	}
	violations, _ := f.fields.checkParams(string(r.Body), "body.")
	if len(violations) == 0 {
		return allowed()
	}
	for _, v := range violations {
		if v.Rule == "method_override" {
			return decision.Denied(decision.CodeMethodOverride,
				"Method override parameters are refused; send the request with the method you mean.", violations...)
		}
	}
	return decision.Denied(decision.CodeBodySchema,
		"The form does not match this route's schema; fix the listed fields and retry.", violations...)
}

// jsonOrForm is the body of an operation that takes JSON or a form: each is checked by its own
// schema, by the request's content type (which bodyRule has checked is one of the two).
type jsonOrForm struct {
	json bodySchema
	form *formBody
}

var _ bodySchema = (*jsonOrForm)(nil)

func (*jsonOrForm) mediaTypes() []string { return jsonOrFormMediaTypes }

func (b *jsonOrForm) check(r *Request, ag *agent) decision.Decision {
	ct, _ := r.Headers.Get("content-type")
	base, _, _ := strings.Cut(ct, ";")
	if strings.EqualFold(strings.TrimSpace(base), formMediaType) {
		return b.form.check(r, ag)
	}
	return b.json.check(r, ag)
}

// formFields compiles a form's fields as query parameters of their own table.
func (c *compiler) formFields(doc *openapi.Document, fields []*openapi.Param) (*formBody, error) {
	rt := &route{}
	for _, p := range fields {
		switch {
		case !queryName.MatchString(p.Name):
			return nil, fmt.Errorf("form field %q: a name is letters, digits, _, . and -", p.Name)
		case isMethodOverrideParam(p.Name):
			return nil, fmt.Errorf("form field %s asks upstreams to change the method and cannot be allowed", p.Name)
		}
		if rt.query.declaredFold(p.Name) {
			return nil, fmt.Errorf("form field %s clashes with another field of that name", p.Name)
		}
		cp, err := c.docParam(doc, "body."+p.Name, p.Name, p.Required, p)
		if err != nil {
			return nil, fmt.Errorf("form field %s: %v", p.Name, err)
		}
		rt.query.add(p.Name, cp)
	}
	if len(rt.query) > maxQueryParams {
		return nil, fmt.Errorf("at most %d form fields", maxQueryParams)
	}
	for _, n := range rt.query.sortedNames() {
		p := rt.query.get(n)
		if p.required {
			rt.required = append(rt.required, p)
		}
		if p.repeatable && p.list != nil {
			rt.lists = append(rt.lists, p)
		}
	}
	return &formBody{fields: rt}, nil
}
