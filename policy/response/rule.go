// Package response enforces what an agent may read back: a response rule, compiled once when
// the policy loads, turns an upstream's JSON answer into the view the agent may see. It keeps
// the members an allowlist of JSON pointers names (or a JSON Schema declares), redacts named
// members, bounds the size, and fails closed: an answer it cannot read strictly, an encoded
// one, one of another content type or too large is refused, never passed unseen.
//
// Rule.Filter takes the response's status, headers and whole body and returns the body to send
// with the paths it removed or masked (JSON pointers with "*" for every array element, never
// values). An MCP tool's rule applies to a tools/call result: its structuredContent and each
// text content item whose text is JSON, in a JSON body or in each event of an event stream.
// docs/responses.md is the operator's guide.
package response

import (
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// DefaultMaxBytes bounds a response body when a rule sets no max_bytes: 1 MiB, Envoy's default
// per-connection buffer limit, which bounds what Envoy can buffer first.
const DefaultMaxBytes = 1 << 20

// MaxDepth bounds the nesting of a response body (and of JSON in an MCP text item).
const MaxDepth = 64

// Marker replaces the value of a masked member.
const Marker = "[redacted]"

// Spec is a response rule as the policy writes it, for Compile.
type Spec struct {
	// MaxBytes bounds the whole body; zero means DefaultMaxBytes.
	MaxBytes int
	// Allow are the JSON pointers (RFC 6901) of what the agent may read; a "*" token stands for
	// every element of an array. Everything else is removed. Exactly one of Allow and Schema.
	Allow []string
	// Schema, instead of Allow: the body must satisfy it, and members it does not declare are
	// removed.
	Schema *jsonschema.Schema
	// Redact are applied after Allow or Schema.
	Redact []Redaction
	// Reduce passes the reduced body when something had to be removed; otherwise such a body
	// is refused.
	Reduce bool
	// Shadow reports what would be removed and changes nothing.
	Shadow bool
	// MCP applies the rule to an MCP tools/call result rather than to the whole body.
	MCP bool
}

// Redaction is one member to hide: masked (its value replaced by Marker) or removed.
type Redaction struct {
	Pointer string
	Remove  bool
}

// Problem is one reason a Spec does not compile, at the field it concerns ("allow[2]",
// "redact[0].pointer", "schema").
type Problem struct {
	Field, Message string
}

// Problems is every problem of a Spec.
type Problems []Problem

func (p Problems) Error() string {
	var b strings.Builder
	for i, x := range p {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("response: " + x.Field + ": " + x.Message)
	}
	return b.String()
}

// Rule is a compiled response rule. It is immutable and safe for concurrent use.
type Rule struct {
	name     string
	maxBytes int
	keep     *node // what may be read: the allowlist's tree or the schema's graph
	schema   *jsonschema.Schema
	redact   *rnode // nil: nothing redacted
	reduce   bool
	shadow   bool
	mcp      bool
}

// Name is the name the rule was compiled with.
func (r *Rule) Name() string { return r.name }

// Shadow reports whether the rule only reports.
func (r *Rule) Shadow() bool { return r.shadow }

// MaxBytes is the largest body the rule reads.
func (r *Rule) MaxBytes() int { return r.maxBytes }

// node says what of a value may be read, for one place in the body.
type node struct {
	all     bool             // the whole value
	scalars bool             // strings, numbers and booleans here (null is always kept)
	objects bool             // an object here, reduced to members and other
	members map[string]*node // members by name
	other   *node            // any member members does not name
	elems   *node            // every element of an array here; nil: no array
	// names and kids are members in a list, searched faster than the map when short.
	names []string
	kids  []*node
}

// maxListed is the most members a node searches as a list rather than its map.
const maxListed = 8

// member returns the node of the member name, nil when members does not name it.
func (n *node) member(name []byte) *node {
	if n.members == nil {
		return nil
	}
	if n.names != nil {
		for i, s := range n.names {
			if s == string(name) {
				return n.kids[i]
			}
		}
		return nil
	}
	return n.members[string(name)]
}

// index lists the members of every node reachable from n, where they are few.
func (n *node) index(seen map[*node]bool) {
	if n == nil || n.all || seen[n] {
		return
	}
	seen[n] = true
	n.names, n.kids = nil, nil
	if len(n.members) > 0 && len(n.members) <= maxListed {
		for name, k := range n.members {
			n.names = append(n.names, name)
			n.kids = append(n.kids, k)
		}
	}
	for _, k := range n.members {
		k.index(seen)
	}
	n.other.index(seen)
	n.elems.index(seen)
}

// everything keeps a value whole.
var everything = &node{all: true}

// action is what a redaction does.
type action uint8

const (
	keepValue action = iota
	maskValue
	removeValue
)

// rnode is where the redactions are, for one place in the body.
type rnode struct {
	act     action
	members map[string]*rnode
	elems   *rnode
	// names and kids are members in a list, as for node.
	names []string
	kids  []*rnode
}

// member returns the redactions under the member name, nil when there are none. Redactions
// are few: a scan of the map's keys costs no hashing.
func (r *rnode) member(name []byte) *rnode {
	if r.names == nil {
		return r.members[string(name)]
	}
	for i, s := range r.names {
		if s == string(name) {
			return r.kids[i]
		}
	}
	return nil
}

// index lists the members of every rnode under r, where they are few.
func (r *rnode) index() {
	if r == nil {
		return
	}
	if len(r.members) > 0 && len(r.members) <= maxListed {
		r.names, r.kids = nil, nil
		for name, k := range r.members {
			r.names = append(r.names, name)
			r.kids = append(r.kids, k)
		}
	}
	for _, k := range r.members {
		k.index()
	}
	r.elems.index()
}

// Compile compiles spec into a Rule named name. Every problem is returned at once.
func Compile(name string, spec Spec) (*Rule, error) {
	var problems Problems
	r := &Rule{name: name, maxBytes: spec.MaxBytes, schema: spec.Schema, reduce: spec.Reduce,
		shadow: spec.Shadow, mcp: spec.MCP}
	if r.maxBytes <= 0 {
		r.maxBytes = DefaultMaxBytes
	}
	switch {
	case len(spec.Allow) > 0 && spec.Schema != nil:
		problems = append(problems, Problem{"allow", "set allow or a JSON Schema, not both: which one decides would be unclear"})
	case len(spec.Allow) == 0 && spec.Schema == nil:
		problems = append(problems, Problem{"allow", "a response rule needs allow (JSON pointers) or a JSON Schema"})
	case spec.Schema != nil:
		n, err := schemaGraph(spec.Schema)
		if err != nil {
			problems = append(problems, Problem{"schema", err.Error()})
		}
		r.keep = n
	default:
		r.keep = &node{objects: true, members: map[string]*node{}}
		allowed := map[string]int{}
		for i, text := range spec.Allow {
			field := fmt.Sprintf("allow[%d]", i)
			toks, err := parsePointer(text)
			if err != nil {
				problems = append(problems, Problem{field, err.Error()})
				continue
			}
			if first, dup := allowed[text]; dup {
				problems = append(problems, Problem{field, fmt.Sprintf("%s is already allowed by allow[%d]", text, first)})
				continue
			}
			allowed[text] = i
			if err := r.keep.allow(toks); err != nil {
				problems = append(problems, Problem{field, text + ": " + err.Error()})
			}
		}
	}
	redacted := map[string]int{}
	for i, rd := range spec.Redact {
		field := fmt.Sprintf("redact[%d].pointer", i)
		toks, err := parsePointer(rd.Pointer)
		if err != nil {
			problems = append(problems, Problem{field, err.Error()})
			continue
		}
		if first, dup := redacted[rd.Pointer]; dup {
			problems = append(problems, Problem{field, fmt.Sprintf("%s is already redacted by redact[%d]", rd.Pointer, first)})
			continue
		}
		redacted[rd.Pointer] = i
		if spec.Schema == nil && r.keep != nil {
			if _, exact := allowedExactly(spec.Allow, rd.Pointer); exact && rd.Remove {
				problems = append(problems, Problem{field, rd.Pointer + " is both allowed and removed: drop it from allow"})
				continue
			}
			if !r.keep.reaches(toks) {
				problems = append(problems, Problem{field, rd.Pointer + " is not allowed, so it never reaches the agent: remove this redaction or allow it"})
				continue
			}
		}
		act := maskValue
		if rd.Remove {
			act = removeValue
		}
		if r.redact == nil {
			r.redact = &rnode{}
		}
		if err := r.redact.add(toks, act); err != nil {
			problems = append(problems, Problem{field, rd.Pointer + ": " + err.Error()})
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	r.keep.index(map[*node]bool{})
	r.redact.index()
	return r, nil
}

func allowedExactly(allow []string, p string) (int, bool) {
	for i, a := range allow {
		if a == p {
			return i, true
		}
	}
	return -1, false
}

// wildcard is the pointer token that stands for every element of an array.
const wildcard = "*"

// parsePointer reads a JSON pointer of a response rule: RFC 6901, "~0" and "~1" escapes only,
// and not the whole body ("" or "/" alone would keep or hide everything).
func parsePointer(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New(`"" names the whole body: a rule that keeps it all is no rule`)
	}
	if _, err := strictjson.ParsePointer(s); err != nil {
		return nil, err
	}
	raw := strings.Split(s[1:], "/")
	toks := make([]string, len(raw))
	for i, t := range raw {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		if toks[i] == "" {
			return nil, fmt.Errorf("%s: an empty member name is not allowed", s)
		}
		if toks[i] == wildcard && raw[i] != wildcard {
			return nil, fmt.Errorf("%s: unreachable", s) // cannot happen: "*" has no escape
		}
	}
	return toks, nil
}

// allow adds the value toks points at, whole, to the tree.
func (n *node) allow(toks []string) error {
	for i, t := range toks {
		if n.all {
			return errors.New("a shorter pointer already allows all of it")
		}
		last := i == len(toks)-1
		var next *node
		if t == wildcard {
			if n.elems == nil {
				n.elems = &node{}
			}
			next = n.elems
		} else {
			n.objects = true
			if n.members == nil {
				n.members = map[string]*node{}
			}
			if n.members[t] == nil {
				n.members[t] = &node{}
			}
			next = n.members[t]
		}
		if last {
			if next.objects || next.elems != nil {
				return errors.New("a longer pointer already allows a part of it: keep one of them")
			}
			next.all = true
			return nil
		}
		n = next
	}
	return nil
}

// reaches reports whether what toks points at can survive the tree.
func (n *node) reaches(toks []string) bool {
	for _, t := range toks {
		switch {
		case n.all:
			return true
		case t == wildcard:
			n = n.elems
		default:
			n = n.members[t]
		}
		if n == nil {
			return false
		}
	}
	return true
}

// add places a redaction at toks.
func (r *rnode) add(toks []string, act action) error {
	for _, t := range toks {
		if r.act != keepValue {
			return errors.New("a shorter pointer already redacts all of it")
		}
		if t == wildcard {
			if r.elems == nil {
				r.elems = &rnode{}
			}
			r = r.elems
			continue
		}
		if r.members == nil {
			r.members = map[string]*rnode{}
		}
		if r.members[t] == nil {
			r.members[t] = &rnode{}
		}
		r = r.members[t]
	}
	if r.members != nil || r.elems != nil {
		return errors.New("a longer pointer already redacts a part of it")
	}
	r.act = act
	return nil
}
