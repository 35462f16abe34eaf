package policy

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// jsonSchemaBody checks an application/json body against a JSON Schema.
type jsonSchemaBody struct {
	schema   *jsonschema.Schema
	maxDepth int
}

var _ bodySchema = (*jsonSchemaBody)(nil)

func (*jsonSchemaBody) mediaTypes() []string { return jsonMediaTypes }

func (j *jsonSchemaBody) check(r *Request, _ *agent) decision.Decision {
	v, err := r.readJSON(j.maxDepth)
	if err != nil {
		return malformedJSON(err)
	}
	err = j.schema.Validate(v)
	if err == nil {
		return allowed()
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return decision.Failed(decision.CodeInternal, "The body could not be checked; retry later.", err)
	}
	return decision.Denied(decision.CodeBodySchema,
		"The body does not match this route's schema; fix the listed fields and retry.",
		schemaViolations(ve)...)
}

// schemaViolations lists the leaf errors of a validation, each at its JSON pointer.
func schemaViolations(ve *jsonschema.ValidationError) []decision.Violation {
	var out []decision.Violation
	seen := map[string]bool{}
	var walk func(u *jsonschema.OutputUnit)
	walk = func(u *jsonschema.OutputUnit) {
		if u.Error != nil && len(u.Errors) == 0 {
			field := clip(u.InstanceLocation, 200) // a JSON pointer into the body
			if field == "" {
				field = "body" // the whole body
			}
			rule := u.KeywordLocation[strings.LastIndexByte(u.KeywordLocation, '/')+1:]
			msg := clip(u.Error.String(), 200) // messages may quote the agent's own text
			if key := field + "\x00" + msg; !seen[key] && len(out) < maxViolations {
				seen[key] = true
				out = append(out, decision.Violation{Field: field, Rule: rule, Message: msg})
			}
		}
		for i := range u.Errors {
			walk(&u.Errors[i])
		}
	}
	walk(ve.BasicOutput())
	// The schema library visits a schema's keywords in no fixed order: the same body must list
	// the same violations the same way every time.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Message < b.Message
	})
	if len(out) == 0 {
		out = append(out, decision.Violation{Field: "body", Rule: "schema", Message: "does not match the schema"})
	}
	return out
}

// noRemoteLoader refuses every $ref that leaves the schema file: only files the policy names
// are read.
type noRemoteLoader struct{}

func (noRemoteLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("$ref to %s: a schema may only refer inside its own file", url)
}

// schemaMaxDepth bounds the nesting of a JSON Schema file.
const schemaMaxDepth = 256

func (c *compiler) compileJSONSchema(src *source, ref string, maxDepth int) (*jsonSchemaBody, error) {
	data, err := c.readRef(src, ref)
	if err != nil {
		return nil, err
	}
	// Read the schema as strictly as the bodies it checks: encoding/json, under
	// jsonschema.UnmarshalJSON, lets the last of two duplicate keys win, so a reviewer could
	// read one rule where another is enforced.
	if err := strictjson.Check(data, schemaMaxDepth); err != nil {
		return nil, fmt.Errorf("%s: not strict JSON: %v", ref, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON: %v", ref, err)
	}
	url := "file:///policy/" + path.Clean(ref)
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	comp.UseLoader(noRemoteLoader{})
	if err := comp.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%s: %v", ref, err)
	}
	sch, err := comp.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", ref, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return &jsonSchemaBody{schema: sch, maxDepth: maxDepth}, nil
}

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
