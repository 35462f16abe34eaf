package policy

import (
	"mime"
	"strconv"
	"strings"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// defaultMaxBodyBytes bounds bodies of routes that set no max_bytes.
const defaultMaxBodyBytes = 64 << 10

// bodySchema checks a whole, size-checked body of the right content type.
type bodySchema interface {
	// mediaTypes lists the content types the schema reads, lower case, without parameters: one
	// of the shared lists below, which callers only read (a list built per call was an
	// allocation on every request with a body).
	mediaTypes() []string
	// check returns a deny, or a zero Decision (Code "") when the body is fine. A schema that
	// reads the body as JSON does so through r.readJSON, so that later stages reuse what it read.
	check(r *Request, ag *agent) decision.Decision
}

// The media type lists of bodySchema.mediaTypes. Read only.
var (
	jsonMediaTypes       = []string{"application/json"}
	grpcMediaTypes       = []string{"application/grpc", "application/grpc+proto"}
	formMediaTypes       = []string{formMediaType}
	jsonOrFormMediaTypes = []string{"application/json", formMediaType}
)

// bodyRule is a route's compiled body: limits, and the schema.
type bodyRule struct {
	maxBytes int
	maxDepth int
	optional bool
	schema   bodySchema
}

func compileBodyLimits(b *policyv1.Body) *bodyRule {
	r := &bodyRule{maxBytes: defaultMaxBodyBytes, maxDepth: strictjson.DefaultMaxDepth}
	if b.MaxBytes != nil {
		r.maxBytes = int(b.GetMaxBytes())
	}
	if b.MaxDepth != nil {
		r.maxDepth = int(b.GetMaxDepth())
	}
	r.optional = b.GetOptional()
	return r
}

// check reads the request's body strictly: it must be whole, unencoded, of the schema's content
// type and within the limit, before the schema sees it.
func (b *bodyRule) check(r *Request, ag *agent) decision.Decision {
	if r.BodyPartial {
		return decision.Denied(decision.CodeBodyTruncated,
			"The body was cut short before it could be checked; send a body of at most "+strconv.Itoa(b.maxBytes)+" bytes.")
	}
	if enc, n := r.Headers.Get("content-encoding"); n > 0 && !(n == 1 && strings.EqualFold(strings.TrimSpace(enc), "identity")) {
		return decision.Denied(decision.CodeBodyEncoding,
			"Compressed or encoded bodies are refused; send the body without content-encoding.",
			decision.Violation{Field: "header.content-encoding", Rule: "forbidden", Message: "must be absent"})
	}
	if _, ok := b.schema.(*grpcBody); ok {
		// grpc-encoding names the compression of compressed messages. The frame's flag says
		// whether this one is, but a proxy or upstream that trusts the header instead would
		// read other bytes than the ones checked: refuse anything but identity.
		if enc, n := r.Headers.Get("grpc-encoding"); n > 0 && !(n == 1 && strings.EqualFold(strings.TrimSpace(enc), "identity")) {
			return decision.Denied(decision.CodeBodyEncoding,
				"Compressed gRPC messages are refused; send the message without grpc-encoding, or with grpc-encoding: identity.",
				decision.Violation{Field: "header.grpc-encoding", Rule: "forbidden", Message: "must be absent or identity"})
		}
	}
	declared := -1
	if cl, n := r.Headers.Get("content-length"); n > 0 {
		v, err := strconv.ParseUint(cl, 10, 63)
		if n > 1 || err != nil {
			return decision.Denied(decision.CodeRequestMalformed, "The content-length header is malformed or repeated.")
		}
		if v > uint64(b.maxBytes) {
			return tooLarge(b.maxBytes)
		}
		declared = int(v)
	}
	if len(r.Body) > b.maxBytes {
		return tooLarge(b.maxBytes)
	}
	if len(r.Body) == 0 {
		_, chunked := r.Headers.Get("transfer-encoding")
		if declared > 0 || chunked > 0 {
			return decision.Denied(decision.CodeBodyUnavailable,
				"The gateway did not receive the body to check; retry later.")
		}
		if b.optional {
			return allowed()
		}
		return decision.Denied(decision.CodeBodyMissing, "This route needs a request body; send one.",
			decision.Violation{Field: "body", Rule: "required", Message: "is required"})
	}
	if declared >= 0 && declared != len(r.Body) {
		return decision.Denied(decision.CodeRequestMalformed, "The content-length header does not match the body.")
	}
	if d, ok := b.checkContentType(r); !ok {
		return d
	}
	if d := b.schema.check(r, ag); d.Code != "" {
		return d
	}
	return allowed()
}

func (b *bodyRule) checkContentType(r *Request) (decision.Decision, bool) {
	want := b.schema.mediaTypes()
	refuse := func() (decision.Decision, bool) {
		return decision.Denied(decision.CodeBodyContentType,
			"This route takes content-type "+want[0]+"; send the body as that.",
			decision.Violation{Field: "header.content-type", Rule: "media_type", Message: "must be " + want[0]}), false
	}
	ct, n := r.Headers.Get("content-type")
	if n != 1 {
		return refuse()
	}
	for _, w := range want {
		if ct == w { // the common case, without parsing
			return decision.Decision{}, true
		}
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return refuse()
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return refuse()
		}
	}
	for _, w := range want {
		if mt == w {
			return decision.Decision{}, true
		}
	}
	return refuse()
}

func tooLarge(limit int) decision.Decision {
	return decision.Denied(decision.CodeBodyTooLarge,
		"The body is larger than this route accepts; send at most "+strconv.Itoa(limit)+" bytes.",
		decision.Violation{Field: "body", Rule: "max_bytes", Message: "must be at most " + strconv.Itoa(limit) + " bytes"})
}

// allowed is the body check's "no objection": the route's allow decision follows.
func allowed() decision.Decision { return decision.Decision{} }

// malformedJSON turns a strictjson error into a deny.
func malformedJSON(err error) decision.Decision {
	v := decision.Violation{Field: "body", Rule: "syntax", Message: "is not valid JSON"}
	if e, ok := err.(*strictjson.Error); ok {
		v.Rule, v.Message = e.Rule, e.Message
		if e.Pointer != "" {
			v.Field = e.Pointer
		}
	}
	return decision.Denied(decision.CodeBodyMalformed,
		"The body is not strict JSON (one value, UTF-8, no duplicate keys); fix it and retry.", v)
}

// limitViolations caps what one denial lists.
func limitViolations(vs []decision.Violation) []decision.Violation {
	if len(vs) > maxViolations {
		return vs[:maxViolations]
	}
	return vs
}

// body compiles a route's body rule, or records why it cannot.
func (c *compiler) body(src *source, at string, r *policyv1.Route) *bodyRule {
	b := r.GetBody()
	rule := compileBodyLimits(b)
	switch s := b.GetSchema().(type) {
	case *policyv1.Body_JsonSchema:
		js, err := c.compileJSONSchema(src, s.JsonSchema, rule.maxDepth)
		if err != nil {
			c.addf(src, at+".json_schema", "%v", err)
			return nil
		}
		rule.schema = js
	case *policyv1.Body_Message:
		mt, err := c.messageType(s.Message)
		if err != nil {
			c.addf(src, at+".message", "%v", err)
			return nil
		}
		pj := &protoJSONBody{msg: mt, maxDepth: rule.maxDepth, keep: r.GetApproval() != nil}
		c.validates(src, at+".message", mt, &pj.validator)
		rule.schema = pj
	case *policyv1.Body_GrpcMessage:
		mt, err := c.messageType(s.GrpcMessage)
		if err != nil {
			c.addf(src, at+".grpc_message", "%v", err)
			return nil
		}
		if r.GetMethod() != "POST" {
			c.addf(src, at+".grpc_message", "gRPC routes use method POST")
			return nil
		}
		gb := &grpcBody{msg: mt, maxDepth: rule.maxDepth, keep: r.GetApproval() != nil}
		c.validates(src, at+".grpc_message", mt, &gb.validator)
		rule.schema = gb
	default:
		if r.GetGraphql() == "" {
			c.addf(src, at, "name the body's schema: json_schema, message or grpc_message")
			return nil
		}
	}
	if r.GetGraphql() != "" && b.GetSchema() != nil {
		c.addf(src, at, "a GraphQL route's schema is its GraphQL API: set only limits here")
		return nil
	}
	return rule
}
