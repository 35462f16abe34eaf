package policy

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// celValueV1 is how the approval condition saw a body before it shared the value the body's
// schema read: numbers converted up front, in a copy of the body.
func celValueV1(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = celValueV1(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = celValueV1(e)
		}
		return a
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	}
	return v
}

// TestJSONAdapterAsBefore: conditions decide on the shared body, adapted lazily, exactly as
// they did on a converted copy.
func TestJSONAdapterAsBefore(t *testing.T) {
	env, err := holdEnv()
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		`{"amount":1500,"to":"DE89","meta":{"a":[1,2.5,"x"],"b":null,"c":{"d":[{"e":7}]}},"ok":true}`,
		`{"amount":1e400,"to":"","meta":{"a":[],"b":false,"c":{}},"ok":false}`,
		`{"amount":"1500","meta":{"a":[9223372036854775807,9223372036854775808,-0.0,1e-7]}}`,
		`{"amount":1000.0,"meta":{"a":[1000,"1000"],"c":{"d":[]}}}`,
		`[1,2,3]`, `"text"`, `42`, `-1.5`, `null`, `true`, `{}`,
	}
	exprs := []string{
		`body.amount > 1000`, `body.amount == 1500`, `body.amount == 1500.0`, `body.amount == "1500"`,
		`body.to == "DE89"`, `size(body.meta.a) > 1`, `1 in body.meta.a`, `"x" in body.meta.a`,
		`body.meta.a.exists(v, type(v) == double)`, `body.meta.a.all(v, v != null)`, `body.meta.b == null`,
		`body.meta.c.d[0].e == 7`, `has(body.meta.c.d)`, `"amount" in body`, `body == {"amount": 1500}`,
		`body.meta == {"a": [1, 2.5, "x"], "b": null, "c": {"d": [{"e": 7}]}}`, `body.meta.a == [1000, "1000"]`,
		`type(body) == map`, `type(body) == list`, `body == 42`, `body == -1.5`, `body == "text"`, `body == null`,
		`size(body) == 3`, `body.ok`, `body.map(k, k).size() > 0`, `string(body.amount) == "1500"`,
		`body.meta.a.map(v, type(v)).size() >= 0`, `body.meta.a[1] == 9223372036854775808.0`,
	}
	for _, src := range bodies {
		v, err := strictjson.ParseShared([]byte(src), strictjson.DefaultMaxDepth)
		if err != nil {
			t.Fatal(err)
		}
		for _, expr := range exprs {
			ast, iss := env.Compile(expr)
			if iss.Err() != nil {
				t.Fatalf("%s: %v", expr, iss.Err())
			}
			prg, err := env.Program(ast)
			if err != nil {
				t.Fatal(err)
			}
			eval := func(body any) string {
				out, _, err := prg.Eval(map[string]any{"method": "POST", "host": "h", "path": "/",
					"params": map[string]string{}, "query": map[string]string{}, "body": body})
				if err != nil {
					return "error"
				}
				return fmt.Sprintf("%v", out.Value())
			}
			if before, now := eval(celValueV1(v)), eval(v); before != now {
				t.Errorf("%s on %s: %s, before %s", expr, src, now, before)
			}
		}
	}
}
