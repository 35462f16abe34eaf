package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
	"github.com/agentauthz/agentauthz/policy/target"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// ApprovalHeader carries the approval id on an agent's retry of a held request.
const ApprovalHeader = "x-agentauthz-approval"

// defaultApprovalTTL is how long a held request waits, and an approval stays usable, when the
// policy does not say.
const defaultApprovalTTL = 15 * time.Minute

// The live approvals a route holds a new request beside, when the policy does not say
// (Approval.max_pending_per_agent, max_pending_per_rule).
const (
	defaultMaxPendingPerAgent = 20
	defaultMaxPendingPerRule  = 100
)

// holdRule is a route's compiled approval requirement.
type holdRule struct {
	hold *decision.Hold
	// when, if set, decides which requests are held; nil holds all.
	when cel.Program
	// whenAST is when's checked expression, and whenAt where it is written, for lint.
	whenAST *cel.Ast
	whenAt  string
	// whenExpr is the condition as written, for Explain.
	whenExpr string
}

// holdEnv declares what Approval.when sees.
func holdEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.CustomTypeAdapter(jsonAdapter{}),
		cel.Variable("method", cel.StringType),
		cel.Variable("host", cel.StringType),
		cel.Variable("path", cel.StringType),
		cel.Variable("params", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("query", cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		cel.Variable("body", cel.DynType),
	)
}

func (c *compiler) holdRule(src *source, at, rule string, a *policyv1.Approval, grant *decision.Grant) *holdRule {
	h := &decision.Hold{
		Rule:          rule,
		Reason:        a.GetReason(),
		Condition:     a.GetWhen(),
		Approvers:     a.GetApprovers(),
		ApproveWithin: defaultApprovalTTL,
		UseWithin:     defaultApprovalTTL,
		Notify:        a.GetNotify(),
		Retry:         retryGrant(grant),
		MaxPerAgent:   defaultMaxPendingPerAgent,
		MaxPerRule:    defaultMaxPendingPerRule,
	}
	if n := a.GetMaxPendingPerAgent(); n > 0 {
		h.MaxPerAgent = int(n)
	}
	if n := a.GetMaxPendingPerRule(); n > 0 {
		h.MaxPerRule = int(n)
	}
	if a.ApproveWithin != nil {
		h.ApproveWithin = a.GetApproveWithin().AsDuration()
	}
	if a.UseWithin != nil {
		h.UseWithin = a.GetUseWithin().AsDuration()
	}
	ok := true
	for i, n := range a.GetNotify() {
		if !c.notifiers[n] {
			c.addf(src, fmt.Sprintf("%s.notify[%d]", at, i), "no notifier named %q in this policy", n)
			ok = false
		}
	}
	for i, s := range a.GetRedact() {
		p, err := strictjson.ParsePointer(s)
		if err != nil {
			c.addf(src, fmt.Sprintf("%s.redact[%d]", at, i), "%v", err)
			ok = false
			continue
		}
		h.Redact = append(h.Redact, p)
	}
	hr := &holdRule{hold: h}
	lh := lintHold{where: src.where(at + ".approvers"), rule: rule, approvers: a.GetApprovers()}
	for i := range lh.approvers {
		lh.approverAt = append(lh.approverAt, src.where(fmt.Sprintf("%s.approvers[%d]", at, i)))
	}
	c.lint.holds = append(c.lint.holds, lh)
	if expr := a.GetWhen(); expr != "" {
		env, err := holdEnv()
		if err != nil {
			c.addf(src, at+".when", "cannot build the CEL environment: %v", err)
			return nil
		}
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			msg := strings.ReplaceAll(iss.Err().Error(), "\n", " ")
			if strings.Contains(msg, "list(string)") {
				msg += ` (query maps each parameter to the list of its values: write "x" in query.NAME, ` +
					`query.NAME.exists(v, ...) or, for a parameter given once, query.NAME[0])`
			}
			c.addf(src, at+".when", "%s", msg)
			return nil
		}
		if ast.OutputType() != cel.BoolType {
			c.addf(src, at+".when", "must be a boolean expression, not %s", ast.OutputType())
			return nil
		}
		prg, err := env.Program(ast, cel.CostLimit(100000))
		if err != nil {
			c.addf(src, at+".when", "%v", err)
			return nil
		}
		hr.when, hr.whenAST, hr.whenAt, hr.whenExpr = prg, ast, src.where(at+".when"), expr
	}
	if !ok {
		return nil
	}
	return hr
}

// holds reports whether the request must be held. A condition that cannot be evaluated holds
// the request: when in doubt, a human decides.
func (h *holdRule) holds(rt *route, r *Request, t target.Target, vals *[maxPathParams]string) bool {
	if h.when == nil {
		return true
	}
	out, _, err := h.when.Eval(rt.conditionInputs(r, t, vals))
	if err != nil {
		return true
	}
	b, ok := out.Value().(bool)
	return !ok || b
}

// conditionInputs is what an approval condition sees of a request that passed every check of
// the route: what the upstream will act on, decoded, in one form whatever spelling the agent
// chose. The path and its parameters are decoded; the query holds every value of every parameter the
// upstream receives, by decoded name (parameters strip_unknown_query removes are not there);
// the body is the decoded message on message and grpc_message routes, and the JSON body
// otherwise.
func (rt *route) conditionInputs(r *Request, t target.Target, vals *[maxPathParams]string) map[string]any {
	params := make(map[string]string, len(rt.params))
	for i, p := range rt.params {
		params[p.name] = target.UnescapePath(vals[i])
	}
	query := map[string][]string{}
	for rest := t.Query; rest != ""; {
		var name, value string
		name, value, rest, _ = target.NextParam(rest)
		n := target.Unescape(name)
		if rt.graphqlGET == nil && rt.query.get(n) == nil {
			continue // stripped: the upstream never sees it
		}
		query[n] = append(query[n], target.Unescape(value))
	}
	var body any
	if v, ok := r.Message(); ok {
		body = v
	} else if len(r.Body) > 0 {
		// The value the body's schema read, shared: jsonAdapter reads it without changing it.
		body, _ = r.JSON()
	}
	return map[string]any{
		// Decoded as the upstream decodes it: target.Parse refused every escape (an encoded "/",
		// ".", "%") whose decoding could change the segments.
		"method": r.Method, "host": hostKey(r.Host), "path": target.UnescapePath(t.Path),
		"params": params, "query": query, "body": body,
	}
}

// retryGrant is grant with the approval header removed too: what an approved retry carries.
func retryGrant(grant *decision.Grant) *decision.Grant {
	if grant == nil {
		return &decision.Grant{Remove: []string{ApprovalHeader}}
	}
	return &decision.Grant{Set: grant.Set, Remove: append(slices.Clip(grant.Remove), ApprovalHeader)}
}

// jsonAdapter shows the condition a body as strictjson reads it: a JSON number becomes an int
// when it is an integer an int64 holds, however it is spelt (1000, 1000.0, 1e3: one value, as
// RFC 8785 and the approval digest read it), a double otherwise, or a string when neither holds
// it. Objects and
// arrays are adapted lazily, element by element, as the expression reads them, so the shared
// value is never copied or modified.
type jsonAdapter struct{}

var _ types.Adapter = jsonAdapter{}

func (a jsonAdapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return types.Int(i)
		}
		if i, ok := integral(string(x)); ok {
			return types.Int(i)
		}
		if f, err := x.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(x)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// integral returns the int64 that a JSON number spelt with a fraction or an exponent is exactly
// (1000.0, 1e3, 12.50e1), and whether it is one.
func integral(s string) (int64, bool) {
	s, neg := strings.CutPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e := s[i+1:]
		if len(e) > 6 { // far beyond int64 either way
			return 0, false
		}
		n, err := strconv.Atoi(e)
		if err != nil {
			return 0, false
		}
		mant, exp = s[:i], n
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	all := intPart + frac
	digits := strings.TrimLeft(all, "0")
	point := len(intPart) + exp - (len(all) - len(digits)) // digits before the decimal point
	digits = strings.TrimRight(digits, "0")
	switch {
	case digits == "":
		return 0, true
	case point < len(digits) || point > 19:
		return 0, false
	}
	if neg {
		digits = "-" + digits
	}
	i, err := strconv.ParseInt(digits+strings.Repeat("0", point-len(strings.TrimPrefix(digits, "-"))), 10, 64)
	return i, err == nil
}
