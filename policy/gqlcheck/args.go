package gqlcheck

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// FieldArguments are the rules of one field's arguments (Config.Arguments): the field takes
// only the arguments named here, each within its rule.
type FieldArguments struct {
	// Field is Type.field, e.g. "Query.customers". On an interface, the rules apply to the field
	// of every type implementing it too.
	Field string
	Args  map[string]ArgumentRule
}

// ArgumentRule is what one argument may be. Nil bounds do not apply. In a list argument every
// item is checked; MaxItems bounds the list.
type ArgumentRule struct {
	Required         bool     // given, and not null (after variables and defaults)
	Minimum, Maximum *int64   // Int and Float
	Pattern          string   // String and ID: RE2, anchored at both ends
	Enum             []string // String, ID and enum types
	MinLength        *int     // String and ID, in bytes
	MaxLength        *int     // String and ID, in bytes
	MaxItems         *int     // list arguments
	minimum, maximum float64  // compiled
	re               *regexp.Regexp
	scalar           string // the argument's named type: "Int", "Float", "String", "ID", or "" for others
	list, enumType   bool
}

// ArgumentError is a problem with Config.Arguments[Entry]; Arg names the argument, or is empty
// when the problem is the entry's.
type ArgumentError struct {
	Entry int
	Arg   string
	Msg   string
}

func (e *ArgumentError) Error() string {
	if e.Arg == "" {
		return fmt.Sprintf("arguments[%d]: %s", e.Entry, e.Msg)
	}
	return fmt.Sprintf("arguments[%d].args.%s: %s", e.Entry, e.Arg, e.Msg)
}

// fieldRules are the compiled rules of one FieldArguments entry.
type fieldRules struct {
	field string // as the entry names it
	args  map[string]*ArgumentRule
}

// compileArguments compiles cfg.Arguments against the schema into c.arguments: the rules that
// apply to a field selected on a type, by the type's and field's names. Rules on an interface's
// field are also the rules of the field on each type implementing it.
func (c *Checker) compileArguments(list []FieldArguments) []error {
	var errs []error
	bad := func(i int, arg, format string, args ...any) {
		errs = append(errs, &ArgumentError{Entry: i, Arg: arg, Msg: fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for i, fa := range list {
		typ, name, ok := strings.Cut(fa.Field, ".")
		def := c.schema.Types[typ]
		switch {
		case !ok || typ == "" || name == "" || strings.Contains(name, "."):
			bad(i, "", "field %q must be Type.field", clip(fa.Field, 128))
			continue
		case def == nil || strings.HasPrefix(typ, "__"):
			bad(i, "", "no type %s in %s", clip(typ, 64), c.name)
			continue
		case def.Kind != ast.Object && def.Kind != ast.Interface:
			bad(i, "", "%s is %s, not an object or interface type", typ, strings.ToLower(string(def.Kind)))
			continue
		case seen[fa.Field]:
			bad(i, "", "field %s has rules already; list its arguments in one entry", fa.Field)
			continue
		}
		seen[fa.Field] = true
		fd := def.Fields.ForName(name)
		if fd == nil || strings.HasPrefix(name, "__") {
			bad(i, "", "type %s has no field %s", typ, clip(name, 64))
			continue
		}
		fr := &fieldRules{field: fa.Field, args: make(map[string]*ArgumentRule, len(fa.Args))}
		good := true
		for _, arg := range sortedNames(fa.Args) {
			rule := fa.Args[arg]
			ad := fd.Arguments.ForName(arg)
			if ad == nil {
				bad(i, arg, "%s has no argument %s", fa.Field, clip(arg, 64))
				good = false
				continue
			}
			if msg := c.compileRule(&rule, ad.Type); msg != "" {
				bad(i, arg, "%s", msg)
				good = false
				continue
			}
			fr.args[arg] = &rule
		}
		if !good {
			continue
		}
		if c.arguments == nil {
			c.arguments = map[fieldKey][]*fieldRules{}
		}
		add := func(t string) {
			k := fieldKey{t, name}
			c.arguments[k] = append(c.arguments[k], fr)
		}
		add(typ)
		if def.Kind == ast.Interface {
			for _, impl := range c.schema.GetPossibleTypes(def) {
				add(impl.Name)
			}
		}
	}
	return errs
}

// compileRule checks that rule fits an argument of type t and compiles it; it returns what is
// wrong, or "".
func (c *Checker) compileRule(rule *ArgumentRule, t *ast.Type) string {
	for t.Elem != nil {
		rule.list, t = true, t.Elem
	}
	named := t.NamedType
	td := c.schema.Types[named]
	switch named {
	case "Int", "Float", "String", "ID":
		rule.scalar = named
	}
	rule.enumType = td != nil && td.Kind == ast.Enum
	numeric := rule.scalar == "Int" || rule.scalar == "Float"
	text := rule.scalar == "String" || rule.scalar == "ID"
	switch {
	case (rule.Minimum != nil || rule.Maximum != nil) && !numeric:
		return "minimum and maximum apply to Int and Float arguments, not " + t.String()
	case (rule.Pattern != "" || rule.MinLength != nil || rule.MaxLength != nil) && !text:
		return "pattern, min_length and max_length apply to String and ID arguments, not " + t.String()
	case len(rule.Enum) > 0 && !text && !rule.enumType:
		return "enum applies to String, ID and enum arguments, not " + t.String()
	case rule.MaxItems != nil && !rule.list:
		return "max_items applies to list arguments, not " + t.String()
	case rule.Minimum != nil && rule.Maximum != nil && *rule.Minimum > *rule.Maximum:
		return "minimum must not exceed maximum"
	case rule.MinLength != nil && rule.MaxLength != nil && *rule.MinLength > *rule.MaxLength:
		return "min_length must not exceed max_length"
	}
	rule.minimum, rule.maximum = math.Inf(-1), math.Inf(1)
	if rule.Minimum != nil {
		rule.minimum = float64(*rule.Minimum)
	}
	if rule.Maximum != nil {
		rule.maximum = float64(*rule.Maximum)
	}
	if rule.Pattern != "" {
		re, err := regexp.Compile("^(?:" + rule.Pattern + ")$")
		if err != nil {
			return "pattern does not compile: " + err.Error()
		}
		rule.re = re
	}
	if rule.enumType {
		for _, v := range rule.Enum {
			if td.EnumValues.ForName(v) == nil {
				return fmt.Sprintf("enum value %s is not a value of %s", clip(v, 64), named)
			}
		}
	}
	return ""
}

func sortedNames(m map[string]ArgumentRule) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// argChecker applies the argument rules to a validated document.
type argChecker struct {
	c          *Checker
	doc        *ast.QueryDocument
	vars       map[string]any // the request's variables, numbers as int64 or float64
	done       map[string]bool
	seen       map[string]bool
	violations []decision.Violation
}

// checkArguments applies the argument rules to every field of every operation of a validated
// document, through aliases and fragments, with the variables' values: a variable that was
// not sent takes its default, and an argument that was not given the schema's default. Every
// operation is checked, not only the selected one, with the same variables: an upstream might
// run another operation than the one named.
func (c *Checker) checkArguments(doc *ast.QueryDocument, vars map[string]any) Result {
	if len(c.arguments) == 0 {
		return Result{}
	}
	converted := make(map[string]any, len(vars))
	for name, v := range vars {
		n, err := numbers(v)
		if err != nil {
			n = nil // checkVariables refused it already
		}
		converted[name] = n
	}
	a := &argChecker{c: c, doc: doc, vars: converted}
	for _, op := range doc.Operations {
		a.done = map[string]bool{}
		a.set(op, op.SelectionSet)
	}
	if len(a.violations) == 0 {
		return Result{}
	}
	v := a.violations[0]
	return deny(decision.CodeGraphQLArgument, "An argument breaks this API's rules ("+
		strings.TrimPrefix(v.Field, "graphql.")+": "+v.Message+"); fix it and retry.", a.violations...)
}

func (a *argChecker) set(op *ast.OperationDefinition, ss ast.SelectionSet) {
	for _, sel := range ss {
		switch x := sel.(type) {
		case *ast.Field:
			a.field(op, x)
			a.set(op, x.SelectionSet)
		case *ast.InlineFragment:
			a.set(op, x.SelectionSet)
		case *ast.FragmentSpread:
			if a.done[x.Name] {
				continue
			}
			a.done[x.Name] = true
			if def := a.doc.Fragments.ForName(x.Name); def != nil {
				a.set(op, def.SelectionSet)
			}
		}
	}
}

// rulesFor returns the rules of a field selected on parent: the parent's own, and, on an
// interface or union, those of every type the selection may resolve to.
func (a *argChecker) rulesFor(parent *ast.Definition, name string) []*fieldRules {
	rules := a.c.arguments[fieldKey{parent.Name, name}]
	if parent.IsAbstractType() {
		for _, t := range a.c.schema.GetPossibleTypes(parent) {
			for _, r := range a.c.arguments[fieldKey{t.Name, name}] {
				if !slices.Contains(rules, r) {
					rules = append(rules, r)
				}
			}
		}
	}
	return rules
}

func (a *argChecker) field(op *ast.OperationDefinition, f *ast.Field) {
	if f.Definition == nil || f.ObjectDefinition == nil {
		return
	}
	for _, fr := range a.rulesFor(f.ObjectDefinition, f.Name) {
		at := "graphql." + fr.field + "("
		for _, arg := range f.Arguments {
			if fr.args[arg.Name] == nil {
				a.violation(at+clip(arg.Name, 64)+")", "unknown", "is not an argument this API accepts here")
			}
		}
		for _, ad := range f.Definition.Arguments {
			rule := fr.args[ad.Name]
			if rule == nil {
				continue
			}
			v, present := a.value(f.Arguments.ForName(ad.Name), ad)
			a.check(at+ad.Name+")", rule, v, present)
		}
	}
}

// value is what the upstream takes for an argument: the literal given, with variables
// replaced by their values (or defaults); a variable not sent and without a default, or an
// argument not given, leaves the schema's default; present is false when there is none.
func (a *argChecker) value(arg *ast.Argument, def *ast.ArgumentDefinition) (v any, present bool) {
	if arg != nil {
		if arg.Value.Kind != ast.Variable {
			v, err := arg.Value.Value(a.vars)
			if err != nil { // a number out of range: validation lets some through
				return unreadable{}, true
			}
			return v, true
		}
		if v, ok := a.vars[arg.Value.Raw]; ok {
			return v, true
		}
		if vd := arg.Value.VariableDefinition; vd != nil && vd.DefaultValue != nil {
			v, _ := vd.DefaultValue.Value(nil)
			return v, true
		}
	}
	if def.DefaultValue != nil {
		v, _ := def.DefaultValue.Value(nil)
		return v, true
	}
	return nil, false
}

// unreadable is a literal that does not convert to a Go value, such as 1e400.
type unreadable struct{}

// check applies one rule to an argument's value.
func (a *argChecker) check(field string, rule *ArgumentRule, v any, present bool) {
	if !present || v == nil {
		if rule.Required {
			a.violation(field, "required", "is required")
		}
		return
	}
	items, isList := v.([]any)
	if !isList || !rule.list {
		items = []any{v} // GraphQL reads a single value as a list of one
	}
	if rule.MaxItems != nil && len(items) > *rule.MaxItems {
		a.violation(field, "max_items", "must have at most "+strconv.Itoa(*rule.MaxItems)+" items")
	}
	for _, item := range items {
		if item != nil {
			a.item(field, rule, item)
		}
	}
}

func (a *argChecker) item(field string, rule *ArgumentRule, v any) {
	if rule.Minimum != nil || rule.Maximum != nil {
		var n float64
		var i int64
		isInt := false
		switch x := v.(type) {
		case int64:
			n, i, isInt = float64(x), x, true
		case float64:
			n = x
		}
		if !isInt && (math.IsNaN(n) || v == nil || !isFloat(v)) {
			a.violation(field, "type", "must be a number")
			return
		}
		switch {
		case isInt && rule.Minimum != nil && i < *rule.Minimum, !isInt && (n < rule.minimum || math.IsNaN(n)):
			a.violation(field, "minimum", "must be at least "+strconv.FormatInt(*rule.Minimum, 10))
		case isInt && rule.Maximum != nil && i > *rule.Maximum, !isInt && n > rule.maximum:
			a.violation(field, "maximum", "must be at most "+strconv.FormatInt(*rule.Maximum, 10))
		}
	}
	if rule.re == nil && rule.MinLength == nil && rule.MaxLength == nil && len(rule.Enum) == 0 {
		return
	}
	var s string
	switch x := v.(type) {
	case unreadable:
		a.violation(field, "type", "must be a string")
		return
	case string:
		s = x
	case int64: // an ID given as an integer
		s = strconv.FormatInt(x, 10)
	default:
		a.violation(field, "type", "must be a string")
		return
	}
	switch {
	case rule.MinLength != nil && len(s) < *rule.MinLength:
		a.violation(field, "min_length", "must be at least "+strconv.Itoa(*rule.MinLength)+" bytes long")
	case rule.MaxLength != nil && len(s) > *rule.MaxLength:
		a.violation(field, "max_length", "must be at most "+strconv.Itoa(*rule.MaxLength)+" bytes long")
	}
	if rule.re != nil && !rule.re.MatchString(s) {
		a.violation(field, "pattern", "must match the API's pattern")
	}
	if len(rule.Enum) > 0 && !slices.Contains(rule.Enum, s) {
		a.violation(field, "enum", "must be one of "+clip(strings.Join(rule.Enum, ", "), 120))
	}
}

func isFloat(v any) bool {
	_, ok := v.(float64)
	return ok
}

func (a *argChecker) violation(field, rule, msg string) {
	key := field + " " + rule
	if a.seen[key] || len(a.violations) == maxViolations {
		return
	}
	if a.seen == nil {
		a.seen = map[string]bool{}
	}
	a.seen[key] = true
	a.violations = append(a.violations, decision.Violation{Field: field, Rule: rule, Message: msg})
}
