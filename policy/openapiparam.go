package policy

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/agentauthz/agentauthz/policy/openapi"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// tightening compiles a policy's rule for a parameter the document types: as a route's
// parameter, but without the default length limit, which the document's type already has.
func tightening(field, name string, t *policyv1.Param) (*param, error) {
	pc := patternCache{}
	tp, err := compileParam(field, name, t, &pc)
	if err != nil {
		return nil, err
	}
	if t.MaxLength == nil {
		tp.maxLen = math.MaxInt
	}
	return tp, nil
}

// docParam compiles a parameter as the document types and writes it: one value, or an array
// given once per item (repeatable) or in one value (delim), after a label's prefix.
func (c *compiler) docParam(doc *openapi.Document, field, name string, required bool, p *openapi.Param) (*param, error) {
	cp, err := c.docScalar(doc, field, name, required, p.Value)
	if err != nil {
		return nil, err
	}
	cp.repeatable = p.Repeatable
	cp.prefix, cp.delim = p.Prefix, p.Delimiter
	if cp.prefix != "" {
		cp.msgPrefix = "must be written " + cp.prefix + "value (" + p.Style + " style)"
	}
	if a := p.Array; a != nil {
		l := &listRule{min: int(min(a.MinItems, math.MaxInt32)), unique: a.Unique, max: math.MaxInt}
		if a.MaxItems != nil {
			l.max = int(min(*a.MaxItems, math.MaxInt32))
			l.msgMax = fmt.Sprintf("must have at most %d %s", l.max, items(l.max))
		}
		l.msgMin = fmt.Sprintf("must have at least %d %s", l.min, items(l.min))
		if p.Delimiter != 0 {
			l.msgDelim = fmt.Sprintf("must be items separated by %q (%s style)", string(p.Delimiter), p.Style)
		}
		cp.list = l
	}
	return cp, nil
}

func items(n int) string {
	if n == 1 {
		return "item"
	}
	return "items"
}

// docScalar compiles one value as the document types it.
func (c *compiler) docScalar(doc *openapi.Document, field, name string, required bool, v openapi.Scalar) (*param, error) {
	cp := &param{name: name, field: field, required: required, maxLen: defaultMaxLength}
	switch v.Type {
	case "string":
		cp.kind, cp.chars = kindString, true
	case "integer":
		cp.kind = kindInteger
	case "number":
		cp.kind = kindNumber
	case "boolean":
		cp.kind = kindBoolean
	default:
		return nil, fmt.Errorf("type %q cannot be checked", v.Type)
	}
	if v.Pattern != "" {
		re, err := regexp.Compile(v.Pattern) // JSON Schema's pattern is not anchored
		if err != nil {
			return nil, fmt.Errorf("pattern: %v", err)
		}
		cp.re, cp.msgPattern = re, "must match "+v.Pattern
	}
	if v.HasEnum {
		cp.enum = make(map[string]struct{}, len(v.Enum))
		for _, e := range v.Enum {
			cp.enum[e] = struct{}{}
		}
		cp.msgEnum = "must be one of " + strings.Join(v.Enum, ", ")
	}
	if v.MinLength != nil {
		cp.minLen = int(min(*v.MinLength, math.MaxInt32))
		cp.msgMinLen = fmt.Sprintf("must be at least %d characters long", cp.minLen)
	}
	if v.MaxLength != nil {
		cp.maxLen = int(min(*v.MaxLength, math.MaxInt32))
	}
	cp.msgMaxLen = fmt.Sprintf("must be at most %d characters long", cp.maxLen)
	if v.Minimum != nil {
		cp.min, cp.hasMin = *v.Minimum, true
		cp.msgMin = fmt.Sprintf("must be at least %d", cp.min)
	}
	if v.Maximum != nil {
		cp.max, cp.hasMax = *v.Maximum, true
		cp.msgMax = fmt.Sprintf("must be at most %d", cp.max)
	}
	if v.Extra {
		s, err := doc.Schema(v.Schema)
		if err != nil {
			return nil, err
		}
		cp.schema = s
	}
	return cp, nil
}
