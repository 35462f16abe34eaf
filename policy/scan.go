package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// position is where a YAML node starts.
type position struct{ line, col int }

// scan checks what the protobuf decoder does not: one document per file, no duplicate keys
// (YAML parsers disagree on which one wins), no anchors, aliases or merge keys (a reviewer must
// see every value where it applies). It also records where each node is, by field path
// ("hosts[0].routes[2].path"), so that problems found later can point at a line.
func scan(f File) (map[string]position, Problems) {
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{f.Name + ": the file is empty"}
		}
		return nil, Problems{f.Name + ": " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{fmt.Sprintf("%s:%d:%d: a policy file holds one YAML document; split the others into their own files", f.Name, extra.Line, extra.Column)}
	} else if !errors.Is(err, io.EOF) {
		return nil, Problems{f.Name + ": " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	s := scanner{file: f.Name, positions: map[string]position{}}
	s.walk(&doc, "")
	return s.positions, s.problems
}

type scanner struct {
	file      string
	positions map[string]position
	problems  Problems
}

func (s *scanner) addf(n *yaml.Node, format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf("%s:%d:%d: %s", s.file, n.Line, n.Column, fmt.Sprintf(format, args...)))
}

func (s *scanner) walk(n *yaml.Node, at string) {
	s.positions[at] = position{n.Line, n.Column}
	if n.Anchor != "" {
		s.addf(n, "anchors (&%s) are not allowed in policy files: write each value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			s.walk(c, at)
		}
	case yaml.AliasNode:
		s.addf(n, "aliases (*%s) are not allowed in policy files: write each value out", n.Value)
	case yaml.SequenceNode:
		for i, c := range n.Content {
			s.walk(c, at+"["+strconv.Itoa(i)+"]")
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
				s.addf(k, "merge keys (<<) are not allowed in policy files: write each value out")
				continue
			}
			// trust_domains and trustDomains name the same field: treat them as one key.
			norm := strings.ToLower(strings.ReplaceAll(k.Value, "_", ""))
			if first, dup := seen[norm]; dup {
				s.addf(k, "duplicate key %q (first at line %d)", k.Value, first)
				continue
			}
			seen[norm] = k.Line
			child := k.Value
			if at != "" {
				child = at + "." + k.Value
			}
			s.walk(v, child)
		}
	}
}

// at formats a problem found at a field path, with the line of the closest recorded node.
func (src *source) at(fieldPath, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	for p := fieldPath; ; {
		if pos, ok := src.positions[p]; ok {
			return fmt.Sprintf("%s:%d:%d: %s: %s", src.file.Name, pos.line, pos.col, fieldPath, msg)
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return fmt.Sprintf("%s: %s: %s", src.file.Name, fieldPath, msg)
		}
		p = p[:i]
	}
}
