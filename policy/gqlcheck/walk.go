package gqlcheck

import (
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// MaxRepeatedFields bounds how often, across the document, a field is selected again under a
// response key its selection set already has (through fragments, expanded). GraphQL merges such
// fields, but validating them costs the square of their number: {a{x x x ...}} with 2000
// tokens takes gqlparser a second. Legitimate documents repeat a few fields (id, __typename)
// across fragments.
const MaxRepeatedFields = 50

// shaper measures a parsed document before it is validated, so that its cost is bounded before
// gqlparser's validator (quadratic in repeated fields) sees it. Each fragment is measured once
// and its shape remembered, so fragments spread many times (a "fragment bomb") cost no more
// than their text, and a fragment cycle (a validation error) ends.
type shaper struct {
	doc     *ast.QueryDocument
	frags   map[string]*fragShape
	scratch []map[string]int // response-key counts, one map per nesting level in use
	level   int
}

// shape is what selections amount to once fragments are expanded. Counts saturate.
type shape struct {
	depth   int // deepest field nesting: 1 for leaf fields only, 0 for nothing
	fields  int // fields at the set's own level
	aliases int // aliased fields anywhere inside
	repeats int // fields selected again under a response key of their set, anywhere inside
}

type fragShape struct {
	shape
	keys map[string]int // response keys at the fragment's own level, with their counts
}

// saturate keeps expanded counts from overflowing: far above any limit, far below overflow.
const saturate = 1 << 30

func (s *shape) add(o shape) {
	s.depth = max(s.depth, o.depth)
	s.fields = min(s.fields+o.fields, saturate)
	s.aliases = min(s.aliases+o.aliases, saturate)
	s.repeats = min(s.repeats+o.repeats, saturate)
}

// limits checks depth and root fields of every operation (not only the selected one), and
// aliases and repeated fields of all of them together.
func (c *Checker) limits(doc *ast.QueryDocument) Result {
	w := shaper{doc: doc}
	var total shape
	roots := 0
	for _, op := range doc.Operations {
		s := w.set(op.SelectionSet)
		roots = max(roots, s.fields)
		total.add(s)
	}
	var vs []decision.Violation
	var summary string
	check := func(field, rule, what string, n, limit int) {
		if n <= limit {
			return
		}
		vs = append(vs, decision.Violation{Field: "graphql." + field, Rule: rule,
			Message: "must be at most " + strconv.Itoa(limit)})
		if summary != "" {
			summary += ", "
		}
		v := strconv.Itoa(n)
		if n >= saturate {
			v = "over " + strconv.Itoa(saturate)
		}
		summary += what + " " + v + " (limit " + strconv.Itoa(limit) + ")"
	}
	check("depth", "max_depth", "depth", total.depth, c.maxDepth)
	check("aliases", "max_aliases", "aliases", total.aliases, c.maxAliases)
	check("root_fields", "max_root_fields", "root fields", roots, c.maxRoots)
	check("repeated_fields", "max_repeated_fields", "repeated fields", total.repeats, MaxRepeatedFields)
	if len(vs) == 0 {
		return Result{}
	}
	return deny(decision.CodeGraphQLLimit, "The query is too large: "+summary+
		"; select each field once and split the work into smaller queries.", vs...)
}

// set measures a selection set: its own fields merged with those of its fragments.
func (w *shaper) set(ss ast.SelectionSet) shape {
	if w.level == len(w.scratch) {
		w.scratch = append(w.scratch, map[string]int{})
	}
	counts := w.scratch[w.level]
	w.level++
	s := w.merge(ss, counts)
	w.level--
	for _, n := range counts {
		s.repeats = min(s.repeats+n-1, saturate)
	}
	clear(counts)
	return s
}

// merge adds the response keys of ss's own level to counts and measures ss; its repeats are
// those of the nested sets only.
func (w *shaper) merge(ss ast.SelectionSet, counts map[string]int) shape {
	var s shape
	for _, sel := range ss {
		switch x := sel.(type) {
		case *ast.Field:
			key := x.Alias
			if key == "" {
				key = x.Name
			}
			counts[key]++
			f := shape{depth: 1, fields: 1}
			if key != x.Name {
				f.aliases = 1
			}
			sub := w.set(x.SelectionSet)
			f.depth += sub.depth
			f.aliases = min(f.aliases+sub.aliases, saturate)
			f.repeats = sub.repeats
			s.add(f)
		case *ast.InlineFragment:
			s.add(w.merge(x.SelectionSet, counts))
		case *ast.FragmentSpread:
			fr := w.fragment(x.Name)
			for k, n := range fr.keys {
				counts[k] = min(counts[k]+n, saturate)
			}
			s.add(fr.shape)
		}
	}
	return s
}

// fragment measures a named fragment the first time it is spread.
func (w *shaper) fragment(name string) *fragShape {
	if f, ok := w.frags[name]; ok {
		return f // a fragment still being measured is a cycle: it adds nothing more
	}
	if w.frags == nil {
		w.frags = map[string]*fragShape{}
	}
	f := &fragShape{}
	w.frags[name] = f
	if def := w.doc.Fragments.ForName(name); def != nil {
		keys := map[string]int{}
		f.shape = w.merge(def.SelectionSet, keys)
		f.keys = keys
	}
	return f
}

// walker checks every field of a validated document against the allowlist, each fragment once.
type walker struct {
	c          *Checker
	fields     *FieldSet
	doc        *ast.QueryDocument
	done       map[string]bool
	seen       map[string]struct{}
	violations []decision.Violation
}

// document checks the fields of every operation, not only the selected one.
func (w *walker) document(doc *ast.QueryDocument) Result {
	w.doc = doc
	for _, op := range doc.Operations {
		w.set(op.SelectionSet)
	}
	if len(w.violations) == 0 {
		return Result{}
	}
	names := ""
	for i, v := range w.violations {
		if i == 3 {
			names += ", …"
			break
		}
		if i > 0 {
			names += ", "
		}
		names += v.Field[len("graphql."):]
	}
	return deny(decision.CodeGraphQLField, "The query selects fields this agent may not read ("+names+
		"); remove them and retry.", w.violations...)
}

func (w *walker) set(ss ast.SelectionSet) {
	for _, sel := range ss {
		switch x := sel.(type) {
		case *ast.Field:
			if w.allow(x) {
				w.set(x.SelectionSet)
			}
		case *ast.InlineFragment:
			w.set(x.SelectionSet)
		case *ast.FragmentSpread:
			if w.done[x.Name] {
				continue
			}
			if w.done == nil {
				w.done = map[string]bool{}
			}
			w.done[x.Name] = true
			if def := w.doc.Fragments.ForName(x.Name); def != nil {
				w.set(def.SelectionSet)
			}
		}
	}
}
