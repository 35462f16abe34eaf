package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// maxDepth bounds the nesting of a document, as policy JSON Schema files are bounded.
const maxDepth = 256

// file is one file of a document (the document itself, or a file its $ref names) read as JSON
// values: map[string]any, []any, string, json.Number, bool and nil. Schemas are compiled from
// these values, never from the OpenAPI library's model of them, so that every keyword counts.
type file struct {
	name  string
	value any
	// node is the YAML node tree of a YAML file, for the line of a JSON pointer; nil for JSON.
	node *yaml.Node
	data []byte
	// offsets index a JSON file's members and elements by JSON pointer, lineStarts its lines,
	// once a position is asked for.
	offsets    map[string]int
	lineStarts []int
}

// parseFile reads a YAML or JSON file strictly: one document, no duplicate keys (parsers
// disagree on which one wins), no anchors, aliases or merge keys (a reviewer must see every
// value where it applies), no tags, and numbers written as JSON writes them. JSON (a file whose
// first byte other than white space is "{") is read as strict JSON.
func parseFile(name string, data []byte) (*file, error) {
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		if err := strictjson.Check(data, maxDepth); err != nil {
			return nil, fmt.Errorf("%s: not strict JSON: %v", name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		return &file{name: name, value: v, data: data}, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the file is empty", name)
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d:%d: the file holds more than one YAML document", name, extra.Line, extra.Column)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	v, err := yamlValue(name, &doc, 0)
	if err != nil {
		return nil, err
	}
	return &file{name: name, value: v, node: &doc, data: data}, nil
}

// jsonNumber is a number as JSON writes it.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// yamlValue converts a YAML node into the JSON value it stands for, refusing what JSON cannot
// say or YAML readers may read differently.
func yamlValue(name string, n *yaml.Node, depth int) (any, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d:%d: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...))
	}
	if depth > maxDepth {
		return nil, bad("nested more than %d deep", maxDepth)
	}
	if n.Anchor != "" {
		return nil, bad("anchors (&%s) are not allowed: write each value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, bad("the file is empty")
		}
		return yamlValue(name, n.Content[0], depth)
	case yaml.AliasNode:
		return nil, bad("aliases (*%s) are not allowed: write each value out", n.Value)
	case yaml.SequenceNode:
		if n.Tag != "!!seq" {
			return nil, bad("tag %s is not allowed", n.Tag)
		}
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(name, c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		if n.Tag != "!!map" {
			return nil, bad("tag %s is not allowed", n.Tag)
		}
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" || k.Value == "<<" && k.Style == 0 {
				return nil, fmt.Errorf("%s:%d:%d: keys must be plain strings (no merge keys)", name, k.Line, k.Column)
			}
			if k.Anchor != "" {
				return nil, fmt.Errorf("%s:%d:%d: anchors (&%s) are not allowed: write each value out", name, k.Line, k.Column, k.Anchor)
			}
			if _, dup := out[k.Value]; dup {
				return nil, fmt.Errorf("%s:%d:%d: duplicate key %q", name, k.Line, k.Column, k.Value)
			}
			val, err := yamlValue(name, v, depth+1)
			if err != nil {
				return nil, err
			}
			out[k.Value] = val
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!timestamp":
			// An unquoted date is a string to JSON, as the OpenAPI library also reads it.
			return n.Value, nil
		case "!!int", "!!float":
			if !jsonNumber.MatchString(n.Value) {
				return nil, bad("number %q: write numbers as JSON does (decimal, no _ or leading +)", n.Value)
			}
			return json.Number(n.Value), nil
		case "!!bool":
			if n.Value != "true" && n.Value != "false" {
				return nil, bad("boolean %q: write true or false", n.Value)
			}
			return n.Value == "true", nil
		case "!!null":
			if n.Value != "null" && n.Value != "~" && n.Value != "" {
				return nil, bad("null %q: write null", n.Value)
			}
			return nil, nil
		}
		return nil, bad("tag %s is not allowed", n.Tag)
	}
	return nil, bad("unexpected YAML node")
}

// lookup returns the value at a JSON pointer ("" or "/a/b") in v.
func lookup(v any, pointer string) (any, bool) {
	if pointer == "" {
		return v, true
	}
	if pointer[0] != '/' {
		return nil, false
	}
	for _, tok := range strings.Split(pointer[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			c, ok := x[tok]
			if !ok {
				return nil, false
			}
			v = c
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) || strconv.Itoa(i) != tok {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// line returns the line and column of the node at a JSON pointer of a YAML file, or of the
// closest node above it; 0, 0 for a JSON file.
func (f *file) line(pointer string) (int, int) {
	n := f.node
	if n == nil {
		return f.jsonLine(pointer)
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if pointer == "" || pointer[0] != '/' {
		return n.Line, n.Column
	}
	line, col := n.Line, n.Column
	for _, tok := range strings.Split(pointer[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					// A member is where its key is.
					next, line, col = n.Content[i+1], n.Content[i].Line, n.Content[i].Column
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line, col = next.Line, next.Column
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line, col
}

// jsonLine finds the line of a JSON pointer in a JSON file; 0, 0 if it is not there. The first
// call indexes where every member and element of the file starts, in one pass over its tokens.
func (f *file) jsonLine(pointer string) (int, int) {
	if pointer == "" || f.data == nil {
		return 1, 1
	}
	if f.offsets == nil {
		f.index()
	}
	off, ok := f.offsets[pointer]
	if !ok {
		return 0, 0
	}
	return f.position(off)
}

// index records the offset of every member and element of a JSON file by its JSON pointer.
func (f *file) index() {
	f.offsets = map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(f.data))
	type frame struct {
		obj   bool
		path  string // the container's pointer
		key   string
		index int
		isKey bool // the next token of an object is a key
	}
	var stack []*frame
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	for {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.isKey {
			if s, ok := tok.(string); ok {
				top.key, top.isKey = s, false
				f.offsets[top.path+"/"+escape.Replace(s)] = off
				continue
			}
		}
		closing := tok == json.Delim('}') || tok == json.Delim(']')
		here := ""
		if top != nil {
			here = top.path + "/" + escape.Replace(top.key)
			if !top.obj {
				here = top.path + "/" + strconv.Itoa(top.index)
				if !closing {
					f.offsets[here] = off
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, isKey: true, path: here})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{path: here})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: its container moves on.
		if len(stack) > 0 {
			if top := stack[len(stack)-1]; top.obj {
				top.isKey = true
			} else {
				top.index++
			}
		}
	}
}

// position turns a byte offset before a token (and the separators before it) into the line and
// column of the token.
func (f *file) position(off int) (int, int) {
	data := f.data
	for off < len(data) && strings.IndexByte(" \t\r\n,:", data[off]) >= 0 {
		off++
	}
	if f.lineStarts == nil {
		f.lineStarts = []int{0}
		for i, c := range data {
			if c == '\n' {
				f.lineStarts = append(f.lineStarts, i+1)
			}
		}
	}
	line := sort.SearchInts(f.lineStarts, off+1) // lines starting at or before off
	return line, off - f.lineStarts[line-1] + 1
}
