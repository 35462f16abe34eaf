package policy

import (
	"encoding/json"
	"fmt"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// ConditionInputs decides r, which must pass every check of its route (allowed or held), and
// returns what the route's approval condition sees of it, as the condition reads it: JSON numbers
// as the int64 or float64 (or string) jsonAdapter makes of them.
func ConditionInputs(s *Snapshot, r *Request) (map[string]any, error) {
	if d := s.Decide(r); d.Code != decision.CodeAllowed && d.Code != decision.CodeApprovalRequired {
		return nil, fmt.Errorf("%s %+v (%s)", d.Code, d.Violations, d.Detail)
	}
	t, err := target.Parse(r.Target)
	if err != nil {
		return nil, err
	}
	var vals [maxPathParams]string
	rt := s.hosts[hostKey(r.Host)].root.match(r.Method, t.Path, &vals, 0)
	if rt == nil || rt == ambiguousRoute {
		return nil, fmt.Errorf("no route")
	}
	in := rt.conditionInputs(r, t, &vals)
	in["body"] = celNative(in["body"])
	return in, nil
}

// celNative is a JSON value with its numbers as the condition reads them.
func celNative(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = celNative(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = celNative(e)
		}
		return out
	case json.Number:
		return jsonAdapter{}.NativeToValue(x).Value()
	}
	return v
}
