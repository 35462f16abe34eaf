package openapi

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// Scalar is the type of one parameter value, in the terms of the policy's route parameters.
type Scalar struct {
	// Type is "string", "integer", "number" or "boolean".
	Type string
	// Pattern is an RE2 regular expression a string must match somewhere (as JSON Schema's
	// pattern, it is not anchored).
	Pattern string
	// Enum, when HasEnum, lists every value allowed: strings, or integers in canonical form.
	Enum    []string
	HasEnum bool
	// MinLength and MaxLength bound a string's length in characters.
	MinLength, MaxLength *uint64
	// Minimum and Maximum bound an integer, inclusive.
	Minimum, Maximum *int64
	// Schema is where the value's schema is. Extra says it has keywords beyond the above
	// (formats, multipleOf, ...), which only the compiled schema (Document.Schema) checks.
	Schema Location
	Extra  bool
}

// native are the keywords Scalar says exactly.
var native = map[string]bool{
	"type": true, "pattern": true, "enum": true, "const": true, "minLength": true, "maxLength": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "format": true,
}

// scalar reads the schema of one parameter value.
func (d *Document) scalar(l Location) (Scalar, string) {
	m, _ := d.mapAt(l)
	s := Scalar{Schema: l}
	// The type: one of string, integer, number and boolean ("null" cannot be sent).
	switch t := m["type"].(type) {
	case string:
		s.Type = t
	case []any:
		for _, x := range t {
			if x == "null" {
				continue
			}
			name, _ := x.(string)
			if s.Type != "" {
				return s, "a parameter of several types cannot be read one way: give it one type"
			}
			s.Type = name
		}
	case nil:
		values := enumValues(m)
		if len(values) == 0 {
			return s, "the schema has no type: give the parameter a type"
		}
		for _, v := range values {
			if _, ok := v.(string); !ok {
				return s, "the schema has no type: give the parameter a type"
			}
		}
		s.Type = "string"
	}
	switch s.Type {
	case "string", "integer", "number", "boolean":
	case "array", "object":
		return s, fmt.Sprintf("a%s %s value cannot be checked here", map[bool]string{true: "n"}[s.Type == "object"], s.Type)
	default:
		return s, fmt.Sprintf("type %q is not a parameter type", s.Type)
	}
	for k := range m {
		if !native[k] && !annotations[k] && !strings.HasPrefix(k, "x-") {
			s.Extra = true
		}
	}
	if s.Type == "number" || s.Type == "boolean" {
		s.Extra = true // only the compiled schema checks their keywords
		return s, ""
	}
	if _, both := m["const"]; both {
		if _, also := m["enum"]; also {
			s.Extra = true
		}
	}
	if values := enumValues(m); values != nil {
		s.HasEnum = true
		for _, v := range values {
			switch x := v.(type) {
			case string:
				if s.Type == "string" {
					s.Enum = append(s.Enum, x)
				}
			case json.Number:
				if r, ok := new(big.Rat).SetString(string(x)); ok && r.IsInt() && s.Type == "integer" {
					s.Enum = append(s.Enum, r.Num().String())
				}
			}
		}
	}
	switch s.Type {
	case "string":
		if p, ok := m["pattern"]; ok {
			ps, isString := p.(string)
			if !isString {
				return s, "pattern is a string"
			}
			if _, err := regexp.Compile(ps); err != nil {
				return s, fmt.Sprintf("pattern %q is not an RE2 regular expression: %v", ps, err)
			}
			s.Pattern = ps
		}
		for _, k := range []string{"minLength", "maxLength"} {
			v, ok := m[k]
			if !ok {
				continue
			}
			n, err := count(v)
			if err != nil {
				return s, fmt.Sprintf("%s: %v", k, err)
			}
			if k == "minLength" {
				s.MinLength = &n
			} else {
				s.MaxLength = &n
			}
		}
		if _, ok := m["format"]; ok {
			s.Extra = true // formats are checked by the compiled schema
		}
	case "integer":
		lo, hi := new(big.Int).SetInt64(math.MinInt64), new(big.Int).SetInt64(math.MaxInt64)
		bounded := false
		tighten := func(k string, v any) string {
			n, ok := v.(json.Number)
			r, ok2 := new(big.Rat).SetString(string(n))
			if !ok || !ok2 {
				return k + " is a number"
			}
			bounded = true
			num, den := r.Num(), r.Denom()
			floor := new(big.Int).Div(num, den) // Euclidean: floor for a positive denominator
			ceil := new(big.Int).Neg(new(big.Int).Div(new(big.Int).Neg(num), den))
			switch k {
			case "minimum":
				maxInt(lo, ceil)
			case "exclusiveMinimum":
				maxInt(lo, floor.Add(floor, big.NewInt(1)))
			case "maximum":
				minInt(hi, floor)
			case "exclusiveMaximum":
				minInt(hi, ceil.Sub(ceil, big.NewInt(1)))
			}
			return ""
		}
		for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
			if v, ok := m[k]; ok {
				if p := tighten(k, v); p != "" {
					return s, p
				}
			}
		}
		switch f, _ := m["format"].(string); f {
		case "int32":
			bounded = true
			maxInt(lo, big.NewInt(math.MinInt32))
			minInt(hi, big.NewInt(math.MaxInt32))
		case "int64", "":
		default:
			s.Extra = true
		}
		if bounded {
			if lo.Cmp(hi) > 0 {
				return s, "no integer is within its bounds"
			}
			l, h := lo.Int64(), hi.Int64()
			if l != math.MinInt64 {
				s.Minimum = &l
			}
			if h != math.MaxInt64 {
				s.Maximum = &h
			}
		}
	}
	return s, ""
}

func maxInt(dst, x *big.Int) {
	if x.Cmp(dst) > 0 {
		dst.Set(x)
	}
}

func minInt(dst, x *big.Int) {
	if x.Cmp(dst) < 0 {
		dst.Set(x)
	}
}

// enumValues returns the values enum or const allow; nil when neither is there.
func enumValues(m map[string]any) []any {
	if c, ok := m["const"]; ok {
		if e, ok := m["enum"].([]any); ok {
			var both []any
			for _, v := range e {
				if jsonSame(v, c) {
					both = append(both, v)
				}
			}
			if both == nil {
				both = []any{}
			}
			return both
		}
		return []any{c}
	}
	if e, ok := m["enum"].([]any); ok {
		if e == nil {
			return []any{}
		}
		return e
	}
	return nil
}

func jsonSame(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// count reads a non-negative integer keyword (minLength, maxLength).
func count(v any) (uint64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("not a number")
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok || !r.IsInt() || r.Sign() < 0 || !r.Num().IsUint64() {
		return 0, fmt.Errorf("not a non-negative integer")
	}
	return r.Num().Uint64(), nil
}
