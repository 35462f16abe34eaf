package policy

import (
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/openapi"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// operationBody compiles an operation's request body: the document's application/json schema
// (after the policy's own schema, if it has one), its application/x-www-form-urlencoded form, or
// either, by the request's content type; within the policy's limits. Other media types the
// document lists are refused as content types the route does not take.
func (c *compiler) operationBody(src *source, at string, doc *openapi.Document, op *openapi.Operation, b *policyv1.Body, held bool,
	fail func(string, ...any)) *bodyRule {
	if b == nil {
		b = &policyv1.Body{}
	}
	rule := compileBodyLimits(b)
	if b.GetOptional() && op.Body.Required {
		c.addf(src, at+".optional", "the document requires a body: a policy can only tighten it")
		return nil
	}
	rule.optional = !op.Body.Required
	var form *formBody
	if op.Body.Form != nil {
		var err error
		if form, err = c.formFields(doc, op.Body.Form); err != nil {
			fail("request body: %v", err)
			return nil
		}
	}
	if op.Body.JSON == nil {
		if b.GetSchema() != nil {
			c.addf(src, at, "the document's body is a form (%s): a policy tightens it with max_bytes, not a schema", formMediaType)
			return nil
		}
		rule.schema = form
		return rule
	}
	sch, err := doc.Schema(*op.Body.JSON)
	if err != nil {
		fail("request body: %v", err)
		return nil
	}
	docBody := &jsonSchemaBody{schema: sch, maxDepth: rule.maxDepth}
	var tight bodySchema
	switch s := b.GetSchema().(type) {
	case nil:
	case *policyv1.Body_JsonSchema:
		js, err := c.compileJSONSchema(src, s.JsonSchema, rule.maxDepth)
		if err != nil {
			c.addf(src, at+".json_schema", "%v", err)
			return nil
		}
		tight = js
	case *policyv1.Body_Message:
		mt, err := c.messageType(s.Message)
		if err != nil {
			c.addf(src, at+".message", "%v", err)
			return nil
		}
		pj := &protoJSONBody{msg: mt, maxDepth: rule.maxDepth, keep: held}
		c.validates(src, at+".message", mt, &pj.validator)
		tight = pj
	default:
		c.addf(src, at, "the document's body is JSON: tighten it with json_schema or message")
		return nil
	}
	switch {
	case tight != nil:
		// The policy's schema is JSON's: the route then takes JSON only, even where the document
		// also takes a form.
		rule.schema = &bothSchemas{first: tight, second: docBody}
	case form != nil:
		rule.schema = &jsonOrForm{json: docBody, form: form}
	default:
		rule.schema = docBody
	}
	return rule
}

// bothSchemas checks a body against the policy's schema, then the document's: both must pass.
type bothSchemas struct{ first, second bodySchema }

var _ bodySchema = (*bothSchemas)(nil)

func (*bothSchemas) mediaTypes() []string { return jsonMediaTypes }

func (b *bothSchemas) check(r *Request, ag *agent) decision.Decision {
	if d := b.first.check(r, ag); d.Code != "" {
		return d
	}
	return b.second.check(r, ag)
}
