package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// position is where a YAML node starts.
type position struct{ line, col int }

// scan checks what the protobuf decoder does not: one document per file, no duplicate keys
// (YAML parsers disagree on which one wins), no anchors, aliases or merge keys (a reviewer must
// see every value where it applies). It also records where each node is, by field path
// ("hosts[0].routes[2].path"), so that problems found later can point at a line. It returns no
// positions for a file the decoder must not read: not one document, or aliases it would misread.
func scan(f File) (map[string]position, Problems) {
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{f.Name + ": the file is empty"}
		}
		return nil, Problems{yamlProblem(f.Name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{fmt.Sprintf("%s:%d:%d: a policy file holds one YAML document; split the others into their own files", f.Name, extra.Line, extra.Column)}
	} else if !errors.Is(err, io.EOF) {
		return nil, Problems{yamlProblem(f.Name, err)}
	}
	s := scanner{file: f.Name, positions: map[string]position{}}
	s.walk(&doc, "", (&policyv1.Policy{}).ProtoReflect().Descriptor(), nil)
	if s.aliased {
		return nil, s.problems // decoding would misread it: report only what scan found
	}
	return s.positions, s.problems
}

// yamlProblem formats a YAML syntax error ("yaml: line 3: ...") as "file:3: ...".
func yamlProblem(file string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, text, ok := strings.Cut(rest, ": "); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return file + ":" + n + ": " + text
			}
		}
	}
	return file + ": " + msg
}

type scanner struct {
	file      string
	positions map[string]position
	problems  Problems
	aliased   bool // an alias or merge key was seen
}

func (s *scanner) addf(n *yaml.Node, format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf("%s:%d:%d: %s", s.file, n.Line, n.Column, fmt.Sprintf(format, args...)))
}

// walk checks n and records where it and its children are. msg is the message n decodes into,
// or mapField the map field whose entries n holds; both are nil for scalars.
func (s *scanner) walk(n *yaml.Node, at string, msg protoreflect.MessageDescriptor, mapField protoreflect.FieldDescriptor) {
	s.positions[at] = position{n.Line, n.Column}
	if n.Anchor != "" {
		s.addf(n, "anchors (&%s) are not allowed in policy files: write each value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			s.walk(c, at, msg, mapField)
		}
	case yaml.AliasNode:
		s.aliased = true
		s.addf(n, "aliases (*%s) are not allowed in policy files: write each value out", n.Value)
	case yaml.SequenceNode:
		for i, c := range n.Content {
			s.walk(c, at+"["+strconv.Itoa(i)+"]", msg, nil)
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				s.addf(k, "keys must be plain strings")
				continue
			}
			if k.Tag == "!!merge" || k.Value == "<<" {
				s.aliased = true
				s.addf(k, "merge keys (<<) are not allowed in policy files: write each value out")
				continue
			}
			// name is the key as field paths spell it: the proto field name for a field (so that
			// trust_domains and trustDomains are one key), the key itself in a map.
			name := k.Value
			var childMsg protoreflect.MessageDescriptor
			var childMap protoreflect.FieldDescriptor
			switch {
			case mapField != nil:
				childMsg = mapField.MapValue().Message()
			case msg != nil:
				fd := msg.Fields().ByJSONName(k.Value)
				if fd == nil {
					fd = msg.Fields().ByTextName(k.Value)
				}
				if fd == nil {
					// The decoder also reads a field number as a key: "4: read" would set a
					// route's scope where no reviewer looks for it.
					if num, err := strconv.ParseInt(k.Value, 10, 32); err == nil && num > 0 {
						if byNum := msg.Fields().ByNumber(protoreflect.FieldNumber(num)); byNum != nil {
							s.addf(k, "key %q: write the field name %s, not its number", k.Value, byNum.Name())
							continue
						}
					}
					break // unknown: the decoder reports it
				}
				name = string(fd.Name())
				if fd.IsMap() {
					childMap = fd
				} else {
					childMsg = fd.Message()
				}
			}
			if first, dup := seen[name]; dup {
				s.addf(k, "duplicate key %q (first at line %d)", k.Value, first)
				continue
			}
			seen[name] = k.Line
			child := name
			if at != "" {
				child = at + "." + name
			}
			s.walk(v, child, childMsg, childMap)
		}
	}
}

// at formats a problem found at a field path, with the line of the closest recorded node.
func (src *source) at(fieldPath, format string, args ...any) string {
	return src.where(fieldPath) + ": " + fmt.Sprintf(format, args...)
}

// where is the start of a problem about fieldPath: "file:line:col: fieldPath", at the nearest
// node of the path that has a position.
func (src *source) where(fieldPath string) string {
	for p := fieldPath; ; {
		if pos, ok := src.positions[p]; ok {
			return fmt.Sprintf("%s:%d:%d: %s", src.file.Name, pos.line, pos.col, fieldPath)
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return fmt.Sprintf("%s: %s", src.file.Name, fieldPath)
		}
		p = p[:i]
	}
}
