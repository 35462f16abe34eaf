package policy

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// identifier is a name CEL reads as a field selection.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// FuzzLintConditions checks arbitrary approval conditions against the routes of testdata/lint
// (a JSON Schema body, a protobuf message, path and query parameters). Whatever the expression:
// no panic, and every problem names a path of what conditions see. A selection of one field of
// the message is reported exactly when the message has no field of that name.
func FuzzLintConditions(f *testing.F) {
	files, err := ReadPath("testdata/lint/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	snap, err := Load(files, Options{Secrets: Placeholders})
	if err != nil {
		f.Fatal(err)
	}
	routes := map[string]*route{}
	for _, rt := range snap.hosts["orders.example.org"].routes {
		routes[rt.name] = rt
	}
	env, err := holdEnv()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct{ expr, field string }{
		{`body.amount > 1000 && body.lines.exists(l, l.qty > 1)`, "max_amount"},
		{`body["a b"].c[0][1u].d == 1 || has(body.x.y)`, "maxAmount"},
		{`[body.a, {"k": body.b}].size() > 0 && params.id != "" && "x" in query.dry_run`, "items"},
		{`body.lines.map(body, body.qty).size() > 0 && body.all(k, v, v != null)`, "labels"},
		{`body[params.id] == 1 || query.dry_run[0] == "1"`, "nope"},
	} {
		f.Add(seed.expr, seed.field)
	}
	msg := routes["cancel"].body.schema.(*grpcBody).msg.Descriptor()
	f.Fuzz(func(t *testing.T, expr, field string) {
		for _, name := range []string{"refund", "refund-typos", "cancel", "no-body", "list-orders"} {
			ast, iss := env.Compile(expr)
			if iss.Err() != nil {
				return
			}
			v := whenVisitor{rt: routes[name]}
			v.expr(ast.NativeRep().Expr(), nil)
			for _, p := range v.problems {
				if !strings.HasPrefix(p, "body") && !strings.HasPrefix(p, "params") && !strings.HasPrefix(p, "query") {
					t.Errorf("%s: %q: problem %q names no path", name, expr, p)
				}
			}
		}
		if !identifier.MatchString(field) {
			return
		}
		ast, iss := env.Compile("body." + field + " == 1")
		if iss.Err() != nil {
			return // a reserved word
		}
		v := whenVisitor{rt: routes["cancel"]}
		v.expr(ast.NativeRep().Expr(), nil)
		has := msg.Fields().ByName(protoreflect.Name(field)) != nil
		if reported := len(v.problems) > 0; reported == has {
			t.Errorf("body.%s on %s: problems %q, but the field exists: %v", field, msg.FullName(), v.problems, has)
		}
	})
}
