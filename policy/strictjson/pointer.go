package strictjson

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Pointer is a JSON pointer (RFC 6901), parsed once: its reference tokens, unescaped. The zero
// Pointer ("") refers to the whole value.
type Pointer struct {
	text   string
	tokens []pointerToken
}

type pointerToken struct {
	name  string // the member name, unescaped
	index int    // the array index the token names, or -1 ("01", "-", "x" name none)
}

// ParsePointer parses a JSON pointer: "" or "/"-prefixed reference tokens, in which "~" appears
// only as "~0" (for "~") or "~1" (for "/").
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, nil
	}
	if s[0] != '/' {
		return Pointer{}, errors.New(`a JSON pointer is "" or starts with "/"`)
	}
	p := Pointer{text: s}
	for _, t := range strings.Split(s[1:], "/") {
		for i := 0; i < len(t); i++ {
			if t[i] == '~' && (i+1 == len(t) || t[i+1] != '0' && t[i+1] != '1') {
				return Pointer{}, errors.New(`"~" in a JSON pointer must be followed by 0 or 1`)
			}
		}
		name := strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		p.tokens = append(p.tokens, pointerToken{name: name, index: arrayIndex(name)})
	}
	return p, nil
}

// arrayIndex reads an array index as RFC 6901 writes it ("0", or digits without a leading
// zero), or returns -1.
func arrayIndex(t string) int {
	if t == "" || len(t) > 1 && t[0] == '0' {
		return -1
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return -1
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return -1
	}
	return n
}

// String returns the pointer as written.
func (p Pointer) String() string { return p.text }

// Replace returns v, a value as Parse returns it, with the value p refers to replaced by with.
// v itself is never modified: the objects and arrays on the way to the value are copied. When p
// refers to nothing in v, v is returned as it is.
func (p Pointer) Replace(v, with any) any {
	out, _ := replace(v, p.tokens, with)
	return out
}

func replace(v any, tokens []pointerToken, with any) (any, bool) {
	if len(tokens) == 0 {
		return with, true
	}
	t := tokens[0]
	switch x := v.(type) {
	case map[string]any:
		child, ok := x[t.name]
		if !ok {
			return v, false
		}
		nc, changed := replace(child, tokens[1:], with)
		if !changed {
			return v, false
		}
		m := maps.Clone(x)
		m[t.name] = nc
		return m, true
	case []any:
		if t.index < 0 || t.index >= len(x) {
			return v, false
		}
		nc, changed := replace(x[t.index], tokens[1:], with)
		if !changed {
			return v, false
		}
		a := slices.Clone(x)
		a[t.index] = nc
		return a, true
	}
	return v, false
}
