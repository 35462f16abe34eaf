package gqlcheck

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// checkVariables checks the variables against the operation's declarations. Variables the
// operation does not declare are refused; values never appear in messages.
func (c *Checker) checkVariables(op *ast.OperationDefinition, vars map[string]any) Result {
	var undeclared []string
	for name := range vars {
		if op.VariableDefinitions.ForName(name) == nil {
			undeclared = append(undeclared, name)
		}
	}
	if len(undeclared) > 0 {
		slices.Sort(undeclared)
		vs := make([]decision.Violation, len(undeclared))
		for i, name := range undeclared {
			vs[i] = decision.Violation{Field: "graphql.variables." + clip(name, 64), Rule: "unknown",
				Message: "is not declared by the operation"}
		}
		return deny(decision.CodeGraphQLInvalid,
			"The variables hold names the operation does not declare; send only declared variables.", vs...)
	}
	if len(op.VariableDefinitions) == 0 {
		return Result{}
	}
	coerced := make(map[string]any, len(vars))
	for name, v := range vars {
		n, err := numbers(v)
		if err != nil {
			return badVariable(op, name, "graphql.variables."+clip(name, 64), "is a number out of range")
		}
		coerced[name] = n
	}
	if _, err := validator.VariableValues(c.schema, op, coerced); err != nil {
		var ge *gqlerror.Error
		if !errors.As(err, &ge) || len(ge.Path) < 2 {
			return badVariable(op, "", "graphql.variables", "do not match the declared types")
		}
		name, _ := ge.Path[1].(ast.PathName)
		field := "graphql.variables" + strings.TrimPrefix(ge.Path.String(), "variable")
		return badVariable(op, string(name), clip(field, 128), safeMessage(ge.Message))
	}
	return Result{}
}

func badVariable(op *ast.OperationDefinition, name, field, msg string) Result {
	detail := "The variables do not match the operation's declared types"
	if vd := op.VariableDefinitions.ForName(name); vd != nil {
		detail = "Variable $" + name + " (" + vd.Type.String() + ") " + msg
	}
	return deny(decision.CodeGraphQLInvalid, detail+"; fix it and retry.",
		decision.Violation{Field: field, Rule: "variable", Message: msg})
}

// kinds names gqlparser's reflect kinds of JSON values in JSON terms.
var kinds = map[string]string{"int64": "a number", "float64": "a number", "string": "a string",
	"bool": "a boolean", "map": "an object", "slice": "a list"}

// safeMessage keeps gqlparser's variable messages that carry no value, and replaces the rest.
func safeMessage(msg string) string {
	switch msg {
	case "must be defined", "cannot be null", "unknown field", "enums must be ints or strings":
		return msg
	}
	// "cannot use <Go kind> as <Type>", "must be a <Type>, not a <Go kind>": said in JSON terms.
	var typ, kind string
	if rest, ok := strings.CutPrefix(msg, "cannot use "); ok {
		kind, typ, ok = strings.Cut(rest, " as ")
		if !ok {
			return "does not match the declared type"
		}
	} else if rest, ok := strings.CutPrefix(msg, "must be a "); ok {
		typ, kind, ok = strings.Cut(rest, ", not a ")
		if !ok {
			return "does not match the declared type"
		}
	}
	if kinds[kind] == "" || typ == "" || len(typ) > 64 || strings.ContainsAny(typ, " :\"'") {
		return "does not match the declared type"
	}
	return "must be " + typ + ", not " + kinds[kind]
}

// numbers turns the json.Number values of strictjson into int64 (integers that fit) or float64,
// so that gqlparser tells numbers from strings: it takes a json.Number for a String.
func numbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return i, nil
			}
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, errors.New("number out of range")
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	return v, nil
}
