package response

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func mustCompile(t testing.TB, spec Spec) *Rule {
	t.Helper()
	r, err := Compile("test", spec)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return r
}

func jsonIn(body string) Input {
	return Input{Status: 200, ContentType: "application/json", Body: []byte(body)}
}

const ticket = `{"id":"T-1","subject":"VPN","status":"open",
 "requester":{"name":"Ada","email":"ada@example.com","phone":"+1 555"},
 "comments":[{"body":"hi","author":{"email":"x@y"}},{"body":"ok","internal":true}],
 "tags":["a","b"]}`

func TestAllowReduces(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id", "/subject", "/status", "/requester/name", "/comments/*/body"}, Reduce: true})
	res := r.Filter(jsonIn(ticket))
	if res.Outcome != Reduced || !res.Changed {
		t.Fatalf("outcome %s changed %v (%s)", res.Outcome, res.Changed, res.Reason)
	}
	want := `{"id":"T-1","subject":"VPN","status":"open","requester":{"name":"Ada"},"comments":[{"body":"hi"},{"body":"ok"}]}`
	if string(res.Body) != want {
		t.Errorf("body\n got %s\nwant %s", res.Body, want)
	}
	wantRemoved := []string{"/requester/email", "/requester/phone", "/comments/*/author", "/comments/*/internal", "/tags"}
	if !reflect.DeepEqual(res.Removed, wantRemoved) {
		t.Errorf("removed %q, want %q", res.Removed, wantRemoved)
	}
	if !json.Valid(res.Body) {
		t.Error("output is not JSON")
	}
}

func TestUnchangedBodyIsReturnedAsIs(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id", "/n"}})
	in := jsonIn(`{ "id" : "x",  "n": 1.50 }`)
	res := r.Filter(in)
	if res.Outcome != Passed || res.Changed || &res.Body[0] != &in.Body[0] {
		t.Fatalf("got %s changed %v %q", res.Outcome, res.Changed, res.Body)
	}
}

func TestRedact(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id", "/requester", "/comments"}, Reduce: true, Redact: []Redaction{
		{Pointer: "/requester/email"}, {Pointer: "/requester/phone", Remove: true}, {Pointer: "/comments/*/author"},
	}})
	res := r.Filter(jsonIn(ticket))
	want := `{"id":"T-1","requester":{"name":"Ada","email":"[redacted]"},"comments":[{"body":"hi","author":"[redacted]"},{"body":"ok","internal":true}]}`
	if string(res.Body) != want {
		t.Errorf("body\n got %s\nwant %s", res.Body, want)
	}
	if !reflect.DeepEqual(res.Masked, []string{"/requester/email", "/comments/*/author"}) {
		t.Errorf("masked %q", res.Masked)
	}
	if !reflect.DeepEqual(res.Removed, []string{"/subject", "/status", "/requester/phone", "/tags"}) {
		t.Errorf("removed %q", res.Removed)
	}
}

func TestOnMismatchRefuse(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id"}})
	if res := r.Filter(jsonIn(`{"id":1,"x":2}`)); res.Outcome != Refused || res.Body != nil {
		t.Fatalf("got %s %q", res.Outcome, res.Body)
	}
	if res := r.Filter(jsonIn(`{"id":1}`)); res.Outcome != Passed {
		t.Fatalf("got %s (%s)", res.Outcome, res.Reason)
	}
	// A redaction is no mismatch.
	r = mustCompile(t, Spec{Allow: []string{"/id", "/e"}, Redact: []Redaction{{Pointer: "/e"}}})
	if res := r.Filter(jsonIn(`{"id":1,"e":"a@b"}`)); res.Outcome != Reduced || string(res.Body) != `{"id":1,"e":"[redacted]"}` {
		t.Fatalf("got %s %s (%s)", res.Outcome, res.Body, res.Reason)
	}
}

func TestShadowChangesNothing(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id"}, Reduce: true, Shadow: true})
	in := jsonIn(`{"id":1,"secret":2}`)
	res := r.Filter(in)
	if !res.Shadow || res.Changed || string(res.Body) != string(in.Body) || res.Outcome != Reduced ||
		!reflect.DeepEqual(res.Removed, []string{"/secret"}) {
		t.Fatalf("got %+v", res)
	}
	res = r.Filter(Input{Status: 200, ContentType: "text/html", Body: []byte("<p>")})
	if !res.Shadow || res.Outcome != Refused || string(res.Body) != "<p>" {
		t.Fatalf("got %+v", res)
	}
}

func TestFailsClosed(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id"}, Reduce: true, MaxBytes: 64})
	for name, in := range map[string]Input{
		"not JSON":        jsonIn(`{"id":`),
		"duplicate key":   jsonIn(`{"id":1,"id":2}`),
		"trailing data":   jsonIn(`{"id":1} {}`),
		"invalid UTF-8":   jsonIn("{\"id\":\"\xff\"}"),
		"depth bomb":      jsonIn(`{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`),
		"too large":       jsonIn(`{"id":"` + strings.Repeat("a", 64) + `"}`),
		"encoded":         {Status: 200, ContentType: "application/json", ContentEncoding: "gzip", Body: []byte(`{}`)},
		"html":            {Status: 200, ContentType: "text/html", Body: []byte(`{"id":1}`)},
		"no content type": {Status: 200, Body: []byte(`{"id":1}`)},
		"odd charset":     {Status: 200, ContentType: "application/json; charset=latin1", Body: []byte(`{"id":1}`)},
		"no status":       {ContentType: "application/json", Body: []byte(`{"id":1}`)},
	} {
		if res := r.Filter(in); res.Outcome != Refused || res.Body != nil || res.Reason == "" {
			t.Errorf("%s: got %s %q", name, res.Outcome, res.Body)
		}
	}
}

func TestWhichResponses(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/id"}, Reduce: true})
	if res := r.Filter(Input{Status: 204}); res.Outcome != Passed {
		t.Errorf("204: %s", res.Outcome)
	}
	if res := r.Filter(Input{Status: 404, ContentType: "application/json", Body: []byte(`{"email":"a"}`)}); res.Outcome != Withheld || res.Body != nil {
		t.Errorf("404: %s", res.Outcome)
	}
	if res := r.Filter(Input{Status: 200, ContentType: "application/vnd.acme+json; charset=UTF-8", Body: []byte(`{"id":1,"x":2}`)}); res.Outcome != Reduced {
		t.Errorf("+json: %s %s", res.Outcome, res.Reason)
	}
}

func TestTypeMismatch(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/a/b", "/items/*/id"}, Reduce: true})
	res := r.Filter(jsonIn(`{"a":[1],"items":{"id":1},"n":null}`))
	if string(res.Body) != `{}` || !reflect.DeepEqual(res.Removed, []string{"/a", "/items", "/n"}) {
		t.Fatalf("got %s %q", res.Body, res.Removed)
	}
	res = r.Filter(jsonIn(`{"a":null,"items":[{"id":1,"x":2},3,null]}`))
	if string(res.Body) != `{"a":null,"items":[{"id":1},null]}` || !reflect.DeepEqual(res.Removed, []string{"/items/*/x", "/items/*"}) {
		t.Fatalf("got %s %q", res.Body, res.Removed)
	}
	for _, body := range []string{`[{"id":1}]`, `"x"`, `5`} {
		if res = r.Filter(jsonIn(body)); res.Outcome != Refused {
			t.Errorf("%s: got %s %s", body, res.Outcome, res.Body)
		}
	}
}

func TestPointerEscapes(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/a~1b", "/m~0n", "/*"}, Reduce: true})
	res := r.Filter(jsonIn(`{"a/b":1,"m~n":2,"*":3,"a~1b":4,"x\/y":5}`))
	if string(res.Body) != `{"a/b":1,"m~n":2}` {
		t.Fatalf("got %s", res.Body)
	}
	if !reflect.DeepEqual(res.Removed, []string{"/*", "/a~01b", "/x~1y"}) {
		t.Fatalf("removed %q", res.Removed)
	}
}

func TestCompileProblems(t *testing.T) {
	sch := compileSchema(t, `{"type":"object"}`)
	for name, c := range map[string]struct {
		spec Spec
		want []string
	}{
		"none":          {Spec{}, []string{"allow: a response rule needs"}},
		"both":          {Spec{Allow: []string{"/a"}, Schema: sch}, []string{"allow: set allow or a JSON Schema"}},
		"syntax":        {Spec{Allow: []string{"a", "/b~2", "", "/c//d"}}, []string{"allow[0]:", "allow[1]:", "allow[2]:", "allow[3]:"}},
		"duplicate":     {Spec{Allow: []string{"/a", "/a"}}, []string{"allow[1]: /a is already allowed"}},
		"overlap":       {Spec{Allow: []string{"/a", "/a/b"}}, []string{"allow[1]: /a/b: a shorter pointer"}},
		"overlap2":      {Spec{Allow: []string{"/a/b", "/a"}}, []string{"allow[1]: /a: a longer pointer"}},
		"allow+remove":  {Spec{Allow: []string{"/a"}, Redact: []Redaction{{Pointer: "/a", Remove: true}}}, []string{"redact[0].pointer: /a is both allowed and removed"}},
		"not reachable": {Spec{Allow: []string{"/a"}, Redact: []Redaction{{Pointer: "/b"}}}, []string{"redact[0].pointer: /b is not allowed"}},
		"redact twice":  {Spec{Allow: []string{"/a"}, Redact: []Redaction{{Pointer: "/a/b"}, {Pointer: "/a/b", Remove: true}}}, []string{"redact[1].pointer: /a/b is already redacted"}},
	} {
		_, err := Compile("x", c.spec)
		ps, ok := err.(Problems)
		if !ok || len(ps) != len(c.want) {
			t.Errorf("%s: got %v, want %d problems", name, err, len(c.want))
			continue
		}
		for i, w := range c.want {
			if got := ps[i].Field + ": " + ps[i].Message; !strings.HasPrefix(got, w) {
				t.Errorf("%s: problem %d is %q, want prefix %q", name, i, got, w)
			}
		}
	}
}

func compileSchema(t testing.TB, text string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("file:///s.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("file:///s.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchema(t *testing.T) {
	sch := compileSchema(t, `{"$defs":{"person":{"type":"object","properties":{"name":{"type":"string"},
	  "manager":{"$ref":"#/$defs/person"}},"required":["name"]}},
	  "type":"object","required":["id"],
	  "properties":{"id":{"type":"string"},"requester":{"$ref":"#/$defs/person"},
	    "tags":{"type":"array","items":{"type":"string"}},"meta":{"type":"object","additionalProperties":true}},
	  "allOf":[{"properties":{"status":{"enum":["open","closed"]}}}]}`)
	r := mustCompile(t, Spec{Schema: sch, Reduce: true, Redact: []Redaction{{Pointer: "/requester/name"}}})
	res := r.Filter(jsonIn(`{"id":"T","status":"open","requester":{"name":"A","email":"e","manager":{"name":"B","phone":"p"}},"tags":["x"],"meta":{"k":{"v":1}},"secret":1}`))
	want := `{"id":"T","status":"open","requester":{"name":"[redacted]","manager":{"name":"B"}},"tags":["x"],"meta":{"k":{"v":1}}}`
	if res.Outcome != Reduced || string(res.Body) != want {
		t.Fatalf("got %s %s (%s)", res.Outcome, res.Body, res.Reason)
	}
	if !reflect.DeepEqual(res.Removed, []string{"/requester/email", "/requester/manager/phone", "/secret"}) {
		t.Errorf("removed %q", res.Removed)
	}
	// What remains must satisfy the schema.
	res = r.Filter(jsonIn(`{"id":7}`))
	if res.Outcome != Refused || !strings.Contains(res.Reason, `"/id"`) {
		t.Errorf("got %s %s", res.Outcome, res.Reason)
	}
	for _, bad := range []string{`{"anyOf":[{"type":"object"}]}`, `{"patternProperties":{"^x":{}}}`, `{"properties":{"a":{"oneOf":[{}]}}}`} {
		if _, err := Compile("x", Spec{Schema: compileSchema(t, bad)}); err == nil {
			t.Errorf("%s compiled", bad)
		}
	}
}

func TestOutputIsValidJSON(t *testing.T) {
	r := mustCompile(t, Spec{Allow: []string{"/a", "/b/*/c"}, Reduce: true, Redact: []Redaction{{Pointer: "/b/*/c/d"}}})
	res := r.Filter(jsonIn(" {\n \"z\" : 1 ,\"a\" : [ 1 , 2 ] , \"b\" : [ { \"c\" : { \"d\" : 1, \"e\": \"\\\"\" } , \"x\" : 2 } ] } "))
	if !json.Valid(res.Body) {
		t.Fatalf("invalid: %s", res.Body)
	}
	if string(res.Body) != `{"a":[ 1 , 2 ],"b":[{"c":{"d":"[redacted]","e":"\""}}]}` {
		t.Fatalf("got %s", res.Body)
	}
}
