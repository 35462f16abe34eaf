package response

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// FuzzFilter checks that any body either is refused or becomes strict JSON the rule allows,
// and never panics.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{ticket, `{"id":1,"id":2}`, `[1,2]`, `{"requester":null}`, `{"a\/b":{"c":[{"d":1}]}}`,
		"{\"id\":\"\xff\"}", `{"comments":[{"body":"x","author":{"email":"y"}}]}`, `{} {}`, `{"x":[[[[[]]]]]}`} {
		f.Add([]byte(s))
	}
	allow := mustCompile(f, Spec{Allow: []string{"/id", "/requester/name", "/comments/*/body", "/a~1b/c/*/d"}, Reduce: true,
		Redact: []Redaction{{Pointer: "/comments/*/body"}}})
	strict := mustCompile(f, Spec{Allow: []string{"/id", "/requester"}, Redact: []Redaction{{Pointer: "/requester/email", Remove: true}}})
	schema := mustCompile(f, Spec{Reduce: true, Schema: compileSchema(f, `{"$defs":{"p":{"type":"object","properties":{"name":{"type":"string"},"boss":{"$ref":"#/$defs/p"}}}},`+
		`"type":"object","properties":{"id":{},"requester":{"$ref":"#/$defs/p"},"comments":{"type":"array","items":{"properties":{"body":true}}}}}`)})
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		for _, r := range []*Rule{allow, strict, schema} {
			res := r.Filter(Input{Status: 200, ContentType: "application/json", Body: body})
			if !bytes.Equal(body, orig) {
				t.Fatal("the body was modified")
			}
			switch res.Outcome {
			case Refused:
				if res.Body != nil {
					t.Fatal("a refused body is sent")
				}
			case Passed:
				if !bytes.Equal(res.Body, body) {
					t.Fatal("a passed body changed")
				}
				if len(body) == 0 {
					break
				}
				fallthrough
			case Reduced:
				if err := strictjson.Check(res.Body, MaxDepth); err != nil {
					t.Fatalf("output is not strict JSON: %v\n%s", err, res.Body)
				}
				// Filtering what the rule let through removes nothing more.
				again := r.Filter(Input{Status: 200, ContentType: "application/json", Body: res.Body})
				if again.Outcome == Refused || len(again.Removed) > 0 {
					t.Fatalf("second pass: %s %q on %s", again.Outcome, again.Removed, res.Body)
				}
			default:
				t.Fatalf("outcome %s", res.Outcome)
			}
		}
	})
}

// FuzzFilterMCP checks the same of tools/call results, as JSON and as event streams.
func FuzzFilterMCP(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"id\":1,\"x\":2}"}],"structuredContent":{"id":1,"x":2}}}`), false)
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"structuredContent\":{\"id\":1,\"x\":2}}}\n\n"), true)
	f.Add([]byte("event: x\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\r\n\r\n"), true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":2}}`), false)
	r := mcpRule(f, true)
	f.Fuzz(func(t *testing.T, body []byte, sse bool) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		res := r.Filter(Input{Status: 200, ContentType: ct, Body: body})
		if res.Outcome == Refused {
			if res.Body != nil {
				t.Fatal("a refused body is sent")
			}
			return
		}
		if !sse && len(body) > 0 && !json.Valid(res.Body) {
			t.Fatalf("output is not JSON: %s", res.Body)
		}
		again := r.Filter(Input{Status: 200, ContentType: ct, Body: res.Body})
		if again.Outcome == Refused || len(again.Removed) > 0 {
			t.Fatalf("second pass: %s %s %q on %q", again.Outcome, again.Reason, again.Removed, res.Body)
		}
	})
}

// FuzzStrictAgrees checks that the package's one-call strict reading, with the walk's depth
// bound, accepts exactly what policy/strictjson accepts.
func FuzzStrictAgrees(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `[1] x`, "\"\xff\"", `"\ud800"`, `"\ud83d\ude00"`, ` 1 `, ``, `{"a":[{"b":null}]}`,
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		`{"x":` + strings.Repeat("{\"y\":", 64) + "1" + strings.Repeat("}", 64) + `}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := strictjson.Check(data, MaxDepth) == nil
		got := checkStrict(data) == nil
		if got {
			_, _, got = view(data, everything, nil, &report{})
		}
		if got != want {
			t.Fatalf("strictjson accepts: %v, this package: %v, for %q", want, got, data)
		}
	})
}
