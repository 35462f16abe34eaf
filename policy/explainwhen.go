package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/parser"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// explainWhen says whether the approval condition held for the inputs, and why: the value of
// the whole condition, then of each part that && and || join, with the values of the request
// fields each part compares. Every part is evaluated, even one the condition's own evaluation
// skipped, so that the explanation shows all of them.
func (h *holdRule) explainWhen(inputs map[string]any, indent string, add func(string, ...any)) {
	out, _, err := h.when.Eval(inputs)
	switch {
	case err != nil:
		// As holds decides: a condition that cannot be evaluated holds.
		add("%sapproval when %s: cannot be evaluated (%s): held for approval", indent, h.whenExpr, clip(err.Error(), 120))
	default:
		if b, ok := out.Value().(bool); !ok || b {
			add("%sapproval when %s: true: held for approval", indent, h.whenExpr)
		} else {
			add("%sapproval when %s: false: not held", indent, h.whenExpr)
		}
	}
	// The parts: compiled again with the macros' calls kept, so that each part prints as written.
	env, err := holdEnv()
	if err == nil {
		env, err = env.Extend(cel.EnableMacroCallTracking())
	}
	if err != nil {
		return
	}
	checked, iss := env.Compile(h.whenExpr)
	if iss.Err() != nil {
		return
	}
	prg, err := env.Program(checked, cel.EvalOptions(cel.OptExhaustiveEval), cel.CostLimit(100000))
	if err != nil {
		return
	}
	_, det, _ := prg.Eval(inputs)
	if det == nil || det.State() == nil {
		return
	}
	state := det.State()
	info := checked.NativeRep().SourceInfo()
	root := checked.NativeRep().Expr()
	if !isLogical(root) {
		if operands := operandValues(root, info, state); operands != "" {
			add("%s  where %s", indent, operands)
		}
		return
	}
	var parts func(e ast.Expr)
	parts = func(e ast.Expr) {
		if isLogical(e) {
			for _, a := range e.AsCall().Args() {
				parts(a)
			}
			return
		}
		text, err := parser.Unparse(e, info)
		v, ok := state.Value(e.ID())
		if err != nil || !ok {
			return
		}
		line := fmt.Sprintf("%s  %s: %s", indent, text, celValue(v))
		if operands := operandValues(e, info, state); operands != "" {
			line += " (" + operands + ")"
		}
		add("%s", line)
	}
	parts(root)
}

// isLogical reports whether e joins parts with && or ||.
func isLogical(e ast.Expr) bool {
	if e.Kind() != ast.CallKind {
		return false
	}
	fn := e.AsCall().FunctionName()
	return fn == operators.LogicalAnd || fn == operators.LogicalOr
}

// operandValues lists the values of the request fields a comparison or function call reads:
// "body.amount = 1500", for each operand that is not a literal.
func operandValues(e ast.Expr, info *ast.SourceInfo, state interface {
	Value(int64) (ref.Val, bool)
}) string {
	var operands []ast.Expr
	switch e.Kind() {
	case ast.ComprehensionKind: // a macro: exists, all, map, filter
		operands = []ast.Expr{e.AsComprehension().IterRange()}
	case ast.CallKind:
		c := e.AsCall()
		operands = c.Args()
		if c.IsMemberFunction() {
			operands = append([]ast.Expr{c.Target()}, operands...)
		}
	default:
		return ""
	}
	var out []string
	for _, o := range operands {
		switch o.Kind() {
		case ast.SelectKind, ast.IdentKind:
		case ast.CallKind:
			if o.AsCall().FunctionName() != "_[_]" {
				continue
			}
		default:
			continue
		}
		text, err := parser.Unparse(o, info)
		if err != nil {
			continue
		}
		if v, ok := state.Value(o.ID()); ok {
			out = append(out, text+" = "+celValue(v))
		}
	}
	return strings.Join(out, ", ")
}

// celValue shows a value of a condition as a person reads it: strings quoted, lists and
// mappings as JSON, an error as what went wrong, clipped to a line.
func celValue(v ref.Val) string {
	if types.IsError(v) {
		return "error: " + clip(fmt.Sprint(v), 120)
	}
	if types.IsUnknown(v) {
		return "unknown"
	}
	switch x := v.(type) {
	case types.String:
		return clip(fmt.Sprintf("%q", string(x)), 120)
	case types.Bool, types.Int, types.Uint, types.Double:
		return fmt.Sprint(x.Value())
	}
	native := v.Value()
	if m, ok := native.(proto.Message); ok {
		b, err := protojson.Marshal(m)
		if err == nil {
			return clip(string(b), 120)
		}
	}
	b, err := json.Marshal(native)
	if err != nil {
		return clip(fmt.Sprint(native), 120)
	}
	return clip(string(b), 120)
}

// explainRouteWhen says what the route's approval condition made of r, when the route has one.
func (s *Snapshot) explainRouteWhen(h *host, rt *route, r *Request, t target.Target, d *decision.Decision, add func(string, ...any)) {
	if rt.hold == nil || rt.hold.when == nil {
		return
	}
	if !d.Allowed() && d.Code != decision.CodeApprovalRequired {
		add("    approval when %s: not evaluated: the request was refused first", rt.hold.whenExpr)
		return
	}
	var vals [maxPathParams]string
	if h.root.match(r.Method, t.Path, &vals, 0) != rt {
		return
	}
	rt.hold.explainWhen(rt.conditionInputs(r, t, &vals), "    ", add)
}

// explainToolWhen says what a tool's approval condition made of the call, when it has one:
// inputs is what the condition reads of the request, with the call's arguments as body.
func explainToolWhen(h *holdRule, r *Request, d *decision.Decision, inputs func(args map[string]any) map[string]any, add func(string, ...any)) {
	if h == nil || h.when == nil {
		return
	}
	if (!d.Allowed() && d.Code != decision.CodeApprovalRequired) || r.mcp == nil {
		add("      approval when %s: not evaluated: the call was refused first", h.whenExpr)
		return
	}
	h.explainWhen(inputs(r.mcp.args), "      ", add)
}
