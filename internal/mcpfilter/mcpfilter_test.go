package mcpfilter_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
)

// view is a fixed View: the names it shows, and for tools the schema shown instead of the
// server's (nil for the server's own).
type view struct {
	tools                         map[string][]byte
	resources, templates, prompts map[string]bool
}

func (v *view) Tool(name string) (bool, []byte) {
	s, ok := v.tools[name]
	return ok, s
}
func (v *view) Resource(uri string) bool                 { return v.resources[uri] }
func (v *view) ResourceTemplate(uriTemplate string) bool { return v.templates[uriTemplate] }
func (v *view) Prompt(name string) bool                  { return v.prompts[name] }

var _ mcpfilter.View = (*view)(nil)

// helpdeskView shows the helpdesk agent two tools (one with a tightened schema), one resource,
// one template and one prompt.
func helpdeskView() *view {
	return &view{
		tools: map[string][]byte{
			"list_tickets":   nil,
			"comment_ticket": []byte(`{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":false}`),
		},
		resources: map[string]bool{"helpdesk://tickets/open": true},
		templates: map[string]bool{"helpdesk://tickets/{id}": true},
		prompts:   map[string]bool{"triage": true},
	}
}

type filterCase struct {
	name            string
	method, ct, enc string
	body            string
	want            string // the body sent
	wantCT          string // "" for ct
	outcome         mcpfilter.Outcome
	removed         []string
	reason          string // a part of the reason, for Emptied
	unchanged       bool   // the received body is sent as it is
}

func TestFilterJSON(t *testing.T) {
	const ct = "application/json"
	for _, c := range []filterCase{
		{
			name:   "tools: a hidden tool removed, the rest kept byte for byte",
			method: "tools/list",
			body: `{"jsonrpc":"2.0", "id":7,"result":{"tools":[` +
				`{"name":"list_tickets","description":"Lists tickets.","inputSchema":{"type":"object"}} ,` +
				"\n" + `{"name":"reset_password","inputSchema":{"type":"object"}},` +
				`{"description":"only \u00e9", "name":"list_tickets_v2","inputSchema":{}}` +
				`], "nextCursor":"abc","_meta":{"k":1}} }`,
			want: `{"jsonrpc":"2.0", "id":7,"result":{"tools":[` +
				`{"name":"list_tickets","description":"Lists tickets.","inputSchema":{"type":"object"}}` +
				`], "nextCursor":"abc","_meta":{"k":1}} }`,
			outcome: mcpfilter.Filtered,
			removed: []string{"reset_password", "list_tickets_v2"},
		},
		{
			name:      "tools: all visible, the body itself is sent",
			method:    "tools/list",
			body:      `{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}}]}}`,
			want:      `{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}}]}}`,
			outcome:   mcpfilter.Filtered,
			unchanged: true,
		},
		{
			name:   "tools: the policy's schema replaces the server's, or is added",
			method: "tools/list",
			body: `{"jsonrpc":"2.0","id":1,"result":{"tools":[` +
				`{"name":"comment_ticket","inputSchema":{"type":"object","properties":{"id":{},"body":{}}},"annotations":{"readOnlyHint":false}},` +
				`{"name":"comment_ticket2"}]}}`,
			want: `{"jsonrpc":"2.0","id":1,"result":{"tools":[` +
				`{"name":"comment_ticket","inputSchema":{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":false},"annotations":{"readOnlyHint":false}}` +
				`]}}`,
			outcome: mcpfilter.Filtered,
			removed: []string{"comment_ticket2"},
		},
		{
			name:    "tools: an empty list stays empty",
			method:  "tools/list",
			body:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[ ]}}`,
			want:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[ ]}}`,
			outcome: mcpfilter.Filtered, unchanged: true,
		},
		{
			name:    "tools: none visible",
			method:  "tools/list",
			body:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}`,
			want:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
			outcome: mcpfilter.Filtered, removed: []string{"a", "b"},
		},
		{
			name:   "resources by uri",
			method: "resources/list",
			body: `{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"helpdesk://tickets/open","name":"open"},` +
				`{"uri":"helpdesk://users","name":"helpdesk://tickets/open"}]}}`,
			want:    `{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"helpdesk://tickets/open","name":"open"}]}}`,
			outcome: mcpfilter.Filtered, removed: []string{"helpdesk://users"},
		},
		{
			name:   "resource templates by uriTemplate",
			method: "resources/templates/list",
			body: `{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"helpdesk://users/{id}","name":"u"},` +
				`{"uriTemplate":"helpdesk://tickets/{id}","name":"t"}]}}`,
			want:    `{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"helpdesk://tickets/{id}","name":"t"}]}}`,
			outcome: mcpfilter.Filtered, removed: []string{"helpdesk://users/{id}"},
		},
		{
			name:    "prompts by name, escapes decoded",
			method:  "prompts/list",
			body:    `{"jsonrpc":"2.0","id":4,"result":{"prompts":[{"name":"tri\u0061ge"},{"name":"exfiltrate"}]}}`,
			want:    `{"jsonrpc":"2.0","id":4,"result":{"prompts":[{"name":"tri\u0061ge"}]}}`,
			outcome: mcpfilter.Filtered, removed: []string{"exfiltrate"},
		},
		{
			name:    "a JSON-RPC error passes unchanged",
			method:  "tools/list",
			body:    `{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no tools"}}`,
			want:    `{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no tools"}}`,
			outcome: mcpfilter.Passed, unchanged: true,
		},
		{
			name: "a content type with a UTF-8 charset", method: "tools/list", ct: "Application/JSON; charset=UTF-8",
			body:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}}`,
			want:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
			wantCT:  "Application/JSON; charset=UTF-8",
			outcome: mcpfilter.Filtered, removed: []string{"x"},
		},
		{
			name: "identity encoding", method: "tools/list", enc: "identity",
			body:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
			want:    `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`,
			outcome: mcpfilter.Filtered, unchanged: true,
		},
	} {
		c.ct = cmpOr(c.ct, ct)
		t.Run(c.name, func(t *testing.T) { runCase(t, c) })
	}
}

// TestFilterJSONFailsClosed: what cannot be read is replaced by an empty list, with the id when
// it could be read.
func TestFilterJSONFailsClosed(t *testing.T) {
	const secret = `{"name":"reset_password"}`
	empty := func(id string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[]}}` }
	for _, c := range []struct {
		name, ct, enc, body, want, reason string
	}{
		{"trailing data", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + secret + `]}} {}`, empty("null"), "data follows"},
		{"duplicate member", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[` + secret + `]}}`, empty("null"), "duplicate"},
		{"duplicate name in an entry", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets","name":"reset_password"}]}}`, empty("null"), "duplicate"},
		{"invalid UTF-8", "", "", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}", empty("null"), "UTF-8"},
		{"not JSON", "", "", `<html>tools</html>`, empty("null"), "strict JSON"},
		{"empty body", "", "", ``, empty("null"), "strict JSON"},
		{"too deep", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets","inputSchema":` +
			strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}]}}`, empty("null"), "deeper"},
		{"a batch", "", "", `[{"jsonrpc":"2.0","id":1,"result":{"tools":[` + secret + `]}}]`, empty("null"), "batch"},
		{"not an object", "", "", `"tools"`, empty("null"), "not a JSON object"},
		{"result not an object", "", "", `{"jsonrpc":"2.0","id":1,"result":[` + secret + `]}`, empty("1"), "result is not an object"},
		{"tools not an array", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":{"a":` + secret + `}}}`, empty("1"), "not an array"},
		{"no tools", "", "", `{"jsonrpc":"2.0","id":1,"result":{"prompts":[]}}`, empty("1"), "no tools member"},
		{"an entry not an object", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":["list_tickets"]}}`, empty("1"), "not an object"},
		{"a tool without a name", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"list_tickets"}]}}`, empty("1"), "has no name"},
		{"a name not a string", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":["list_tickets"]}]}}`, empty("1"), "not a string"},
		{"duplicate names", "", "", `{"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"list_tickets"},{"name":"list_tickets","inputSchema":{}}]}}`, empty(`"x"`), "two entries"},
		{"a name in another case", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets","Name":"reset_password"}]}}`, empty("1"), "spelt like"},
		{"the list in another case", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[` + secret + `]}}`, empty("1"), "spelt like"},
		{"the list folded by the long s", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"toolſ":[` + secret + `]}}`, empty("1"), "spelt like"},
		{"result in another case", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[` + secret + `]}}`, empty("1"), "spelt like"},
		{"inputSchema in another case", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"comment_ticket","inputschema":{}}]}}`, empty("1"), "spelt like"},
		{"both result and error", "", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"error":{"code":1,"message":"x"}}`, empty("1"), "both"},
		{"neither result nor error", "", "", `{"jsonrpc":"2.0","id":1}`, empty("1"), "neither"},
		{"an error not an object", "", "", `{"jsonrpc":"2.0","id":1,"error":"no"}`, empty("1"), "error is not an object"},
		{"a request", "", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list","result":{"tools":[]}}`, empty("1"), "request"},
		{"wrong version", "", "", `{"jsonrpc":"1.0","id":1,"result":{"tools":[` + secret + `]}}`, empty("1"), "jsonrpc"},
		{"null id", "", "", `{"jsonrpc":"2.0","id":null,"result":{"tools":[` + secret + `]}}`, empty("null"), "id"},
		{"no id", "", "", `{"jsonrpc":"2.0","result":{"tools":[` + secret + `]}}`, empty("null"), "id"},
		{"the id after the problem", "", "", `{"jsonrpc":"2.0","result":{"tools":7},"id":42}`, empty("42"), "not an array"},
		{"compressed", "", "gzip", `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + secret + `]}}`, empty("null"), "encoded"},
		{"two encodings", "", "identity,identity", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, empty("null"), "encoded"},
		{"an unknown content type", "text/html", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + secret + `]}}`, empty("null"), "content type"},
		{"no content type", "-", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + secret + `]}}`, empty("null"), "content type"},
		{"two content types", "application/json,text/html", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, empty("null"), "content type"},
		{"another charset", "application/json; charset=latin1", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, empty("null"), "content type"},
		{"another parameter", "application/json; profile=x", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, empty("null"), "content type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := cmpOr(c.ct, "application/json")
			if ct == "-" {
				ct = ""
			}
			runCase(t, filterCase{method: "tools/list", ct: ct, enc: c.enc, body: c.body, want: c.want,
				wantCT: "application/json", outcome: mcpfilter.Emptied, reason: c.reason})
		})
	}
}

func TestFilterPolicySchemaNotJSON(t *testing.T) {
	v := &view{tools: map[string][]byte{"t": []byte(`{"type":`)}}
	res := mcpfilter.Filter(mcpfilter.Response{Method: "tools/list", ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t"}]}}`)}, v)
	if res.Outcome != mcpfilter.Emptied || string(res.Body) != `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}` {
		t.Errorf("got %s %s", res.Outcome, res.Body)
	}
	v.tools["t"] = []byte(`[]`)
	res = mcpfilter.Filter(mcpfilter.Response{Method: "tools/list", ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t"}]}}`)}, v)
	if res.Outcome != mcpfilter.Emptied {
		t.Errorf("a schema that is not an object: got %s %s", res.Outcome, res.Body)
	}
}

func TestFilterNotAListMethod(t *testing.T) {
	res := mcpfilter.Filter(mcpfilter.Response{Method: "tools/call", ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)}, helpdeskView())
	if res.Outcome != mcpfilter.Emptied || !bytes.Contains(res.Body, []byte(`"error"`)) || !res.Changed {
		t.Errorf("got %+v", res)
	}
	if mcpfilter.IsList("tools/call") || !mcpfilter.IsList("resources/templates/list") {
		t.Error("IsList")
	}
}

func TestEmpty(t *testing.T) {
	for _, c := range []struct{ method, id, want string }{
		{"tools/list", "", `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}`},
		{"resources/list", `"r1"`, `{"jsonrpc":"2.0","id":"r1","result":{"resources":[]}}`},
		{"resources/templates/list", `3`, `{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[]}}`},
		{"prompts/list", `4`, `{"jsonrpc":"2.0","id":4,"result":{"prompts":[]}}`},
	} {
		var id []byte
		if c.id != "" {
			id = []byte(c.id)
		}
		if got := string(mcpfilter.Empty(c.method, id)); got != c.want {
			t.Errorf("Empty(%s, %s) = %s, want %s", c.method, c.id, got, c.want)
		}
	}
}

func runCase(t *testing.T, c filterCase) {
	t.Helper()
	body := []byte(c.body)
	orig := slices.Clone(body)
	res := mcpfilter.Filter(mcpfilter.Response{Method: c.method, ContentType: c.ct, ContentEncoding: c.enc, Body: body}, helpdeskView())
	if !bytes.Equal(body, orig) {
		t.Fatal("Filter modified the body it was given")
	}
	if string(res.Body) != c.want {
		t.Errorf("body\n\t%s\nwant\n\t%s", res.Body, c.want)
	}
	if want := cmpOr(c.wantCT, c.ct); res.ContentType != want {
		t.Errorf("content type %q, want %q", res.ContentType, want)
	}
	if res.Outcome != c.outcome {
		t.Errorf("outcome %s, want %s (reason %q)", res.Outcome, c.outcome, res.Reason)
	}
	if !slices.Equal(res.Removed, c.removed) {
		t.Errorf("removed %q, want %q", res.Removed, c.removed)
	}
	if c.reason != "" && !strings.Contains(res.Reason, c.reason) {
		t.Errorf("reason %q, want it to contain %q", res.Reason, c.reason)
	}
	if c.outcome != mcpfilter.Emptied && res.Reason != "" {
		t.Errorf("a reason %q without emptying", res.Reason)
	}
	if res.Changed == c.unchanged {
		t.Errorf("Changed = %v", res.Changed)
	}
	if c.unchanged && (len(body) == 0 || &res.Body[0] != &body[0]) {
		t.Error("an unchanged body was copied")
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
