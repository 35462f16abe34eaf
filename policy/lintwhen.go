package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// lintConditions checks what each route's approval condition names against what the route can
// have: its path parameters, the query parameters it takes, and its body's JSON Schema or
// protobuf message. A name the route cannot have makes the condition fail on every request (and
// a failing condition holds the request), or has() of it always false: a quiet mistake that
// compiles. Only names a condition spells out are checked (body.a.b, body["a"], body.list[0]);
// a computed name is not, and a part of a schema that says nothing certain (anyOf, a $dynamicRef)
// is given the benefit of the doubt.
func (c *compiler) lintConditions() {
	for _, name := range sortedKeys(c.snap.hosts) {
		for _, rt := range c.snap.hosts[name].routes {
			if rt.hold == nil || rt.hold.whenAST == nil {
				continue
			}
			v := whenVisitor{rt: rt}
			v.expr(rt.hold.whenAST.NativeRep().Expr(), nil)
			for _, msg := range v.problems {
				c.lint.when = append(c.lint.when, rt.hold.whenAt+": "+msg)
			}
		}
	}
	// A tool's condition sees its arguments as body: they satisfy every schema of the tool.
	// Its parameters and query are those of whichever route the call came through, not checked.
	for _, name := range sortedKeys(c.mcp) {
		srv := c.mcp[name]
		for _, tn := range sortedKeys(srv.tools) {
			tool := srv.tools[tn]
			if tool.hold == nil || tool.hold.whenAST == nil || len(tool.schemas) == 0 {
				continue
			}
			v := whenVisitor{tool: tool}
			v.expr(tool.hold.whenAST.NativeRep().Expr(), nil)
			for _, msg := range v.problems {
				c.lint.when = append(c.lint.when, tool.hold.whenAt+": "+msg)
			}
		}
	}
}

// step is one step of a path a condition names: a field or key, or a list index.
type step struct {
	name  string
	index int64
	isNum bool
}

func (s step) String() string {
	if s.isNum {
		return "[" + strconv.FormatInt(s.index, 10) + "]"
	}
	return "." + s.name
}

func showPath(root string, steps []step) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range steps {
		b.WriteString(s.String())
	}
	return b.String()
}

// whenVisitor checks one condition: a route's, or an MCP tool's (tool set, rt nil).
type whenVisitor struct {
	rt       *route
	tool     *mcpTool
	problems []string
}

// pathOf reads e as a variable followed by literal selections and indexes.
func pathOf(e celast.Expr) (root string, steps []step, ok bool) {
	switch e.Kind() {
	case celast.IdentKind:
		return e.AsIdent(), nil, true
	case celast.SelectKind:
		s := e.AsSelect()
		root, steps, ok = pathOf(s.Operand())
		return root, append(steps, step{name: s.FieldName()}), ok
	case celast.CallKind:
		call := e.AsCall()
		args := call.Args()
		if call.FunctionName() != "_[_]" || len(args) != 2 || args[1].Kind() != celast.LiteralKind {
			return "", nil, false
		}
		var st step
		switch v := args[1].AsLiteral().(type) {
		case types.String:
			st = step{name: string(v)}
		case types.Int:
			st = step{index: int64(v), isNum: true}
		case types.Uint:
			st = step{index: int64(v), isNum: true}
		default:
			return "", nil, false
		}
		root, steps, ok = pathOf(args[0])
		return root, append(steps, st), ok
	}
	return "", nil, false
}

// expr visits e; shadowed are the variables a comprehension rebinds.
func (v *whenVisitor) expr(e celast.Expr, shadowed []string) {
	if root, steps, ok := pathOf(e); ok && len(steps) > 0 {
		if !slices.Contains(shadowed, root) {
			if p := v.check(root, steps); p != "" {
				v.problems = append(v.problems, p)
			}
		}
		return
	}
	switch e.Kind() {
	case celast.CallKind:
		call := e.AsCall()
		if call.IsMemberFunction() {
			v.expr(call.Target(), shadowed)
		}
		for _, a := range call.Args() {
			v.expr(a, shadowed)
		}
	case celast.SelectKind:
		v.expr(e.AsSelect().Operand(), shadowed)
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			v.expr(el, shadowed)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			v.expr(en.AsMapEntry().Key(), shadowed)
			v.expr(en.AsMapEntry().Value(), shadowed)
		}
	case celast.ComprehensionKind:
		comp := e.AsComprehension()
		v.expr(comp.IterRange(), shadowed)
		v.expr(comp.AccuInit(), shadowed)
		inner := append(slices.Clip(shadowed), comp.IterVar(), comp.AccuVar())
		if comp.HasIterVar2() {
			inner = append(inner, comp.IterVar2())
		}
		v.expr(comp.LoopCondition(), inner)
		v.expr(comp.LoopStep(), inner)
		v.expr(comp.Result(), inner)
	}
}

// check returns what is wrong with a path the condition names, or "".
func (v *whenVisitor) check(root string, steps []step) string {
	if v.tool != nil {
		if root == "body" {
			return jsonPathProblem(v.tool.schemas, steps)
		}
		return ""
	}
	rt, first := v.rt, steps[0]
	switch root {
	case "params":
		for _, p := range rt.params {
			if !first.isNum && p.name == first.name {
				return ""
			}
		}
		return fmt.Sprintf("%s: route %s has no path parameter %s (its path is %s)", showPath(root, steps[:1]), rt.name, strings.TrimPrefix(first.String(), "."), rt.template)
	case "query":
		if rt.graphqlGET != nil || (!first.isNum && rt.query.get(first.name) != nil) {
			return ""
		}
		return fmt.Sprintf("%s: route %s takes no query parameter %s, so the upstream never receives one (declare it under query)", showPath(root, steps[:1]), rt.name, strings.TrimPrefix(first.String(), "."))
	case "body":
		if rt.body == nil {
			return fmt.Sprintf("%s: route %s takes no body: body is null on every request", showPath(root, steps), rt.name)
		}
		jsonSchemas, msg := bodyShape(rt.body.schema)
		if msg != nil {
			return messagePathProblem(msg, steps)
		}
		return jsonPathProblem(jsonSchemas, steps)
	}
	return ""
}

// bodyShape is what a condition's body is on a route with that body schema: a decoded message,
// or a JSON value that every one of the schemas accepts. Neither: not known.
func bodyShape(b bodySchema) ([]*jsonschema.Schema, protoreflect.MessageDescriptor) {
	switch s := b.(type) {
	case *jsonSchemaBody:
		return []*jsonschema.Schema{s.schema}, nil
	case *protoJSONBody:
		return nil, s.msg.Descriptor()
	case *grpcBody:
		return nil, s.msg.Descriptor()
	case *bothSchemas:
		// The condition sees the decoded message when either schema is one.
		j1, m1 := bodyShape(s.first)
		j2, m2 := bodyShape(s.second)
		switch {
		case m1 != nil:
			return nil, m1
		case m2 != nil:
			return nil, m2
		}
		return append(j1, j2...), nil
	}
	return nil, nil
}

// maxSchemaDepth bounds how far $ref and allOf chains are followed.
const maxSchemaDepth = 32

// jsonPathProblem says why a JSON value accepted by every one of schemas cannot have the path.
func jsonPathProblem(schemas []*jsonschema.Schema, steps []step) string {
	cur := schemas
	for i, st := range steps {
		shown := showPath("body", steps[:i+1])
		var next []*jsonschema.Schema
		for _, s := range cur {
			if why := forbids(s, showPath("body", steps[:i]), st, 0); why != "" {
				return fmt.Sprintf("%s: %s", shown, why)
			}
			next = appendChildren(next, s, st, 0)
		}
		if len(next) == 0 {
			return ""
		}
		cur = next
	}
	return ""
}

// forbids says why no value the schema accepts (at parent) has st, or "" when one may.
func forbids(s *jsonschema.Schema, parent string, st step, depth int) string {
	if s == nil || depth > maxSchemaDepth {
		return ""
	}
	if s.Bool != nil {
		if !*s.Bool {
			return "the schema accepts no value here"
		}
		return ""
	}
	want := "object"
	if st.isNum {
		want = "array"
	}
	if s.Types != nil && !s.Types.IsEmpty() && !slices.Contains(s.Types.ToStrings(), want) {
		return fmt.Sprintf("the schema makes %s %s, not an %s", parent, strings.Join(s.Types.ToStrings(), " or "), want)
	}
	if why := forbids(s.Ref, parent, st, depth+1); why != "" {
		return why
	}
	for _, sub := range s.AllOf {
		if why := forbids(sub, parent, st, depth+1); why != "" {
			return why
		}
	}
	for _, alts := range [][]*jsonschema.Schema{s.AnyOf, s.OneOf} {
		if len(alts) == 0 {
			continue
		}
		why := ""
		for _, sub := range alts {
			if why = forbids(sub, parent, st, depth+1); why == "" {
				break
			}
		}
		if why != "" {
			return why
		}
	}
	if st.isNum {
		if s.MaxItems != nil && int64(*s.MaxItems) <= st.index {
			return fmt.Sprintf("the schema allows at most %d items", *s.MaxItems)
		}
		return ""
	}
	if p, ok := s.Properties[st.name]; ok {
		if p != nil && p.Bool != nil && !*p.Bool {
			return fmt.Sprintf("the schema forbids property %q", st.name)
		}
		return ""
	}
	for re := range s.PatternProperties {
		if re.MatchString(st.name) {
			return ""
		}
	}
	closed := false
	switch ap := s.AdditionalProperties.(type) {
	case bool:
		closed = !ap
	case *jsonschema.Schema:
		closed = ap != nil && ap.Bool != nil && !*ap.Bool
	}
	if closed {
		return fmt.Sprintf("the schema allows no property %q (it has %s)", st.name, propertyList(s))
	}
	return ""
}

func propertyList(s *jsonschema.Schema) string {
	names := sortedKeys(s.Properties)
	if len(names) == 0 {
		return "no properties"
	}
	return strings.Join(names, ", ")
}

// appendChildren adds the schemas that all apply to the value at st of a value s accepts.
func appendChildren(out []*jsonschema.Schema, s *jsonschema.Schema, st step, depth int) []*jsonschema.Schema {
	if s == nil || depth > maxSchemaDepth {
		return out
	}
	out = appendChildren(out, s.Ref, st, depth+1)
	for _, sub := range s.AllOf {
		out = appendChildren(out, sub, st, depth+1)
	}
	if st.isNum {
		switch {
		case st.index < int64(len(s.PrefixItems)):
			out = append(out, s.PrefixItems[st.index])
		case s.Items2020 != nil:
			out = append(out, s.Items2020)
		}
		if it, ok := s.Items.(*jsonschema.Schema); ok && it != nil {
			out = append(out, it)
		}
		return out
	}
	if p, ok := s.Properties[st.name]; ok && p != nil {
		return append(out, p)
	}
	matched := false
	for re, p := range s.PatternProperties {
		if re.MatchString(st.name) && p != nil {
			out, matched = append(out, p), true
		}
	}
	if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok && ap != nil && !matched {
		out = append(out, ap)
	}
	return out
}

// messagePathProblem says why the view of a message (messageView) cannot have the path.
func messagePathProblem(md protoreflect.MessageDescriptor, steps []step) string {
	var fd protoreflect.FieldDescriptor // the field whose value the path is at; nil: the message
	element := false                    // at an element of a repeated field, or a map's value
	for i, st := range steps {
		shown := showPath("body", steps[:i+1])
		switch {
		case fd != nil && fd.IsList() && !element:
			if !st.isNum {
				return fmt.Sprintf("%s: %s is a repeated field: index it by number", shown, fd.Name())
			}
			element = true
			continue
		case fd != nil && fd.IsMap() && !element:
			element, fd = true, fd.MapValue()
			continue
		case fd != nil && fd.Message() == nil:
			return fmt.Sprintf("%s: %s is a scalar (%s), which has no fields", shown, fd.Name(), fd.Kind())
		case fd != nil:
			md = fd.Message()
		}
		if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
			return "" // a well-known type, read in its JSON form: a Struct has any key
		}
		if st.isNum {
			return fmt.Sprintf("%s: message %s is not a list", shown, md.FullName())
		}
		next := md.Fields().ByName(protoreflect.Name(st.name))
		if next == nil {
			if byJSON := md.Fields().ByJSONName(st.name); byJSON != nil {
				return fmt.Sprintf("%s: conditions read message fields by their proto names: write %s", shown, byJSON.Name())
			}
			return fmt.Sprintf("%s: message %s has no field %s", shown, md.FullName(), st.name)
		}
		fd, element = next, false
	}
	return ""
}
