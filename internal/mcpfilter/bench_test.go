package mcpfilter_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// toolsList is a tools/list response of n tools, each with a description, an input schema of
// two properties and annotations, as MCP servers write them; and a View showing every other
// one.
func toolsList(n int) ([]byte, *view) {
	var b strings.Builder
	v := &view{tools: map[string][]byte{}}
	b.WriteString(`{"jsonrpc":"2.0","id":17,"result":{"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		name := fmt.Sprintf("helpdesk_tool_%03d", i)
		fmt.Fprintf(&b, `{"name":%q,"title":"Helpdesk tool %d","description":"Reads or changes helpdesk records of kind %d; `+
			`returns the records as JSON, newest first, at most limit of them.","inputSchema":{"type":"object","properties":`+
			`{"id":{"type":"string","pattern":"^[A-Z]{2}-[0-9]+$"},"limit":{"type":"integer","minimum":1,"maximum":100}},`+
			`"required":["id"],"additionalProperties":false},"annotations":{"readOnlyHint":true,"openWorldHint":false}}`, name, i, i)
		if i%2 == 0 {
			v.tools[name] = nil
		}
	}
	b.WriteString(`],"nextCursor":"eyJwYWdlIjoyfQ=="}}`)
	return []byte(b.String()), v
}

// BenchmarkFilterToolsList filters a tools/list response of 100 tools, half of them visible:
// as application/json, as one event of an event stream, and with the policy's own schema for
// every visible tool. strictjson-check is the floor: only checking the same body with
// policy/strictjson, which every filtering does first.
func BenchmarkFilterToolsList(b *testing.B) {
	body, v := toolsList(100)
	schemas := &view{tools: map[string][]byte{}}
	for name := range v.tools {
		schemas.tools[name] = []byte(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"],"additionalProperties":false}`)
	}
	sse := []byte("id: 1\nevent: message\ndata: " + string(body) + "\n\n")
	for _, bc := range []struct {
		name string
		r    mcpfilter.Response
		v    mcpfilter.View
	}{
		{"json", mcpfilter.Response{Method: "tools/list", ContentType: "application/json", Body: body}, v},
		{"sse", mcpfilter.Response{Method: "tools/list", ContentType: "text/event-stream", Body: sse}, v},
		{"json-schemas", mcpfilter.Response{Method: "tools/list", ContentType: "application/json", Body: body}, schemas},
		{"strictjson-check", mcpfilter.Response{Body: body}, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.v == nil {
				b.SetBytes(int64(len(bc.r.Body)))
				b.ReportAllocs()
				for b.Loop() {
					if err := strictjson.Check(bc.r.Body, mcpfilter.MaxDepth); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			res := mcpfilter.Filter(bc.r, bc.v)
			if res.Outcome != mcpfilter.Filtered || len(res.Removed) != 50 {
				b.Fatalf("outcome %s, %d removed (%s)", res.Outcome, len(res.Removed), res.Reason)
			}
			b.SetBytes(int64(len(bc.r.Body)))
			b.ReportAllocs()
			for b.Loop() {
				mcpfilter.Filter(bc.r, bc.v)
			}
		})
	}
}
