package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// defaultMaxLength bounds string parameters that declare no max_length.
const defaultMaxLength = 1024

type paramKind uint8

const (
	kindString paramKind = iota + 1
	kindInteger
	kindBoolean
	kindUUID
	kindNumber // a JSON number; only OpenAPI parameters have it, checked by their schema
)

// param is a compiled parameter type. Its messages are built at load so that a denial costs
// no formatting.
type param struct {
	name       string
	index      int    // position among the route's query parameters
	field      string // "path.id", "query.limit"
	kind       paramKind
	re         *regexp.Regexp
	enum       map[string]struct{}
	minLen     int
	maxLen     int
	min, max   int64
	hasMin     bool
	hasMax     bool
	required   bool
	repeatable bool
	// chars: minLen and maxLen count characters (an OpenAPI document's minLength and
	// maxLength), not bytes.
	chars bool
	// schema is the whole schema of an OpenAPI parameter that has keywords the fields above
	// cannot say (formats, multipleOf, ...): the decoded value must satisfy it too.
	schema *jsonschema.Schema
	// also is the policy's tightening of an OpenAPI parameter: the value must satisfy it too.
	also *param
	// prefix is what an OpenAPI path parameter's raw segment starts with before its value
	// ("." in label style); delim, when not 0, separates the items of an array written in one
	// value; list bounds an array's items (in one value, or one per occurrence when repeatable).
	prefix    string
	delim     byte
	list      *listRule
	msgPrefix string

	msgEnum, msgPattern, msgMinLen, msgMaxLen, msgMin, msgMax string
}

func compileParam(field, name string, p *policyv1.Param, patterns *patternCache) (*param, error) {
	c := &param{
		name:       name,
		field:      field,
		required:   p.GetRequired(),
		repeatable: p.GetRepeatable(),
		maxLen:     defaultMaxLength,
	}
	switch p.GetType() {
	case "string":
		c.kind = kindString
	case "integer":
		c.kind = kindInteger
	case "boolean":
		c.kind = kindBoolean
	case "uuid":
		c.kind = kindUUID
	default:
		return nil, fmt.Errorf("unknown type %q", p.GetType())
	}
	if p.GetPattern() != "" {
		re, err := patterns.compile(p.GetPattern())
		if err != nil {
			return nil, err
		}
		c.re = re
		c.msgPattern = "must match " + p.GetPattern()
	}
	if len(p.GetEnum()) > 0 {
		c.enum = make(map[string]struct{}, len(p.GetEnum()))
		for _, v := range p.GetEnum() {
			c.enum[v] = struct{}{}
		}
		c.msgEnum = "must be one of " + strings.Join(p.GetEnum(), ", ")
	}
	if p.MinLength != nil {
		c.minLen = int(p.GetMinLength())
		c.msgMinLen = fmt.Sprintf("must be at least %d bytes long", c.minLen)
	}
	if p.MaxLength != nil {
		c.maxLen = int(p.GetMaxLength())
	}
	c.msgMaxLen = fmt.Sprintf("must be at most %d bytes long", c.maxLen)
	if p.Minimum != nil {
		c.min, c.hasMin = p.GetMinimum(), true
		c.msgMin = fmt.Sprintf("must be at least %d", c.min)
	}
	if p.Maximum != nil {
		c.max, c.hasMax = p.GetMaximum(), true
		c.msgMax = fmt.Sprintf("must be at most %d", c.max)
	}
	return c, nil
}

// listRule bounds the items of an OpenAPI array parameter.
type listRule struct {
	min, max                 int
	unique                   bool
	msgMin, msgMax, msgDelim string
}

// checkPath checks a path parameter's raw segment.
func (p *param) checkPath(raw string) (decision.Violation, bool) {
	if p.prefix == "" && p.delim == 0 {
		return p.check(target.UnescapePath(raw))
	}
	if p.prefix != "" {
		if !strings.HasPrefix(raw, p.prefix) {
			return decision.Violation{Field: p.field, Rule: "style", Message: p.msgPrefix}, false
		}
		raw = raw[len(p.prefix):]
	}
	if p.delim != 0 {
		return p.checkItems(raw, target.UnescapePath)
	}
	return p.check(target.UnescapePath(raw))
}

// checkQueryValue checks one raw query value of the parameter.
func (p *param) checkQueryValue(raw string) (decision.Violation, bool) {
	if p.delim != 0 {
		return p.checkItems(raw, target.Unescape)
	}
	return p.check(target.Unescape(raw))
}

// checkItems checks an array written in one raw value, its items separated by p.delim. An
// upstream may split the value before decoding it or after: the two readings agree only when no
// item holds the delimiter encoded, and no item is empty, so anything else is refused. (A space
// or | cannot be sent unencoded, so for those the delimiter is always the decoded one.)
func (p *param) checkItems(raw string, unescape func(string) string) (decision.Violation, bool) {
	bad := func(rule, msg string) (decision.Violation, bool) {
		return decision.Violation{Field: p.field, Rule: rule, Message: msg}, false
	}
	if raw == "" {
		// No items, or one empty item: refused as ambiguous.
		return bad("ambiguous", p.list.msgDelim+"; leave the parameter out rather than send it empty")
	}
	if p.delim == ',' && (strings.Contains(raw, "%2C") || strings.Contains(raw, "%2c")) {
		return bad("ambiguous", p.list.msgDelim+"; an item must not hold an encoded , (%2C)")
	}
	v := unescape(raw)
	n := strings.Count(v, string(p.delim)) + 1
	if n > p.list.max {
		return bad("max_items", p.list.msgMax)
	}
	if n < p.list.min {
		return bad("min_items", p.list.msgMin)
	}
	var items []string
	if p.list.unique {
		items = make([]string, 0, n)
	}
	for rest := v; ; {
		item, after, more := strings.Cut(rest, string(p.delim))
		if item == "" {
			return bad("ambiguous", p.list.msgDelim+"; an item is empty")
		}
		if viol, ok := p.check(item); !ok {
			return viol, false
		}
		if p.list.unique {
			k := p.itemKey(item)
			for _, seen := range items {
				if seen == k {
					return bad("unique_items", "must not repeat an item")
				}
			}
			items = append(items, k)
		}
		if !more {
			break
		}
		rest = after
	}
	return decision.Violation{}, true
}

// itemKey is an item in a form that equal JSON values share: numbers as exact fractions.
func (p *param) itemKey(v string) string {
	if p.kind == kindNumber {
		if r, ok := new(big.Rat).SetString(v); ok {
			return r.RatString()
		}
	}
	return v
}

// check returns the violation of a decoded value, if any.
func (p *param) check(v string) (decision.Violation, bool) {
	bad := func(rule, msg string) (decision.Violation, bool) {
		return decision.Violation{Field: p.field, Rule: rule, Message: msg}, false
	}
	switch p.kind {
	case kindInteger:
		n, ok := parseInteger(v)
		if !ok {
			return bad("type", "must be a base-10 integer")
		}
		if p.hasMin && n < p.min {
			return bad("minimum", p.msgMin)
		}
		if p.hasMax && n > p.max {
			return bad("maximum", p.msgMax)
		}
		if p.enum != nil {
			if _, ok := p.enum[v]; !ok {
				return bad("enum", p.msgEnum)
			}
		}
	case kindNumber:
		if !isJSONNumber(v) {
			return bad("type", "must be a decimal number")
		}
	case kindBoolean:
		if v != "true" && v != "false" {
			return bad("type", "must be true or false")
		}
	case kindUUID:
		if !isUUID(v) {
			return bad("type", "must be a lower-case UUID")
		}
	case kindString:
		if !utf8.ValidString(v) {
			return bad("type", "must be valid UTF-8")
		}
		n := len(v)
		if p.chars {
			n = utf8.RuneCountInString(v)
		}
		if n < p.minLen {
			return bad("min_length", p.msgMinLen)
		}
		if n > p.maxLen {
			return bad("max_length", p.msgMaxLen)
		}
		if p.enum != nil {
			if _, ok := p.enum[v]; !ok {
				return bad("enum", p.msgEnum)
			}
		}
		if p.re != nil && !p.re.MatchString(v) {
			return bad("pattern", p.msgPattern)
		}
	default:
		return bad("type", "has no type")
	}
	if p.schema != nil {
		if v, ok := p.checkSchema(v); !ok {
			return v, false
		}
	}
	if p.also != nil {
		return p.also.check(v)
	}
	return decision.Violation{}, true
}

// checkSchema checks a value that passed the checks of its kind against the parameter's
// schema, read as the JSON value its kind decodes it to.
func (p *param) checkSchema(v string) (decision.Violation, bool) {
	var value any = v
	switch p.kind {
	case kindInteger, kindNumber:
		value = json.Number(v)
	case kindBoolean:
		value = v == "true"
	}
	err := p.schema.Validate(value)
	if err == nil {
		return decision.Violation{}, true
	}
	out := decision.Violation{Field: p.field, Rule: "schema", Message: "does not match the schema"}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		if vs := schemaViolations(ve); len(vs) > 0 {
			out.Rule, out.Message = vs[0].Rule, vs[0].Message
		}
	}
	return out, false
}

// isJSONNumber reports whether s is a number as JSON writes it.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch n := digits(); {
	case n == 0:
		return false
	case n > 1 && s[i-n] == '0':
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s) && len(s) <= 64
}

// parseInteger accepts what every integer parser reads the same way: an optional "-", then
// digits without leading zeros, within int64.
func parseInteger(s string) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 19 || (len(digits) > 1 && digits[0] == '0') || s == "-0" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// isUUID accepts the canonical lower-case 8-4-4-4-12 form only.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// patternCache compiles each distinct parameter pattern once per policy load: a compiled
// regexp is safe for concurrent use, and a policy of many routes repeats a few patterns (an
// id's digits), each of which would otherwise hold its own compiled program, several kilobytes
// (most of the heap of a 10,000-route policy).
type patternCache map[string]*regexp.Regexp

// compile returns the anchored regexp of a parameter pattern.
func (pc *patternCache) compile(pattern string) (*regexp.Regexp, error) {
	if re, ok := (*pc)[pattern]; ok {
		return re, nil
	}
	// Compile the pattern alone first: "[0-9]+)|(.*" is not RE2, but wrapped as below it
	// would compile to an unanchored alternation that matches anything.
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, fmt.Errorf("pattern: %v", err)
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("pattern: %v", err)
	}
	if *pc == nil {
		*pc = patternCache{}
	}
	(*pc)[pattern] = re
	return re, nil
}
