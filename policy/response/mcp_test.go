package response

import (
	"reflect"
	"strings"
	"testing"
)

func mcpRule(t testing.TB, reduce bool) *Rule {
	return mustCompile(t, Spec{MCP: true, Reduce: reduce, Allow: []string{"/id", "/subject", "/requester/name"}})
}

func TestMCPResult(t *testing.T) {
	r := mcpRule(t, true)
	body := `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{\"id\":\"T-1\",\"subject\":\"VPN\",\"requester\":{\"name\":\"Ada\",\"email\":\"a@x\"}}"}],` +
		`"structuredContent":{"id":"T-1","subject":"VPN","requester":{"name":"Ada","phone":"555"}},"isError":false}}`
	res := r.Filter(Input{Status: 200, ContentType: "application/json", Body: []byte(body)})
	want := `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{\"id\":\"T-1\",\"subject\":\"VPN\",\"requester\":{\"name\":\"Ada\"}}"}],` +
		`"structuredContent":{"id":"T-1","subject":"VPN","requester":{"name":"Ada"}},"isError":false}}`
	if res.Outcome != Reduced || string(res.Body) != want {
		t.Fatalf("got %s %s (%s)", res.Outcome, res.Body, res.Reason)
	}
	if !reflect.DeepEqual(res.Removed, []string{"/requester/email", "/requester/phone"}) {
		t.Errorf("removed %q", res.Removed)
	}
}

func TestMCPFailsClosed(t *testing.T) {
	r := mcpRule(t, true)
	for name, body := range map[string]string{
		"text not JSON":   `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Ada, a@x"}]}}`,
		"image":           `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"image","data":"AA==","mimeType":"image/png"}]}}`,
		"resource":        `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"resource","resource":{"uri":"x","text":"a@x"}}]}}`,
		"request":         `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`,
		"batch":           `[{"jsonrpc":"2.0","id":1,"result":{}}]`,
		"both":            `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`,
		"structured JSON": `{"jsonrpc":"2.0","id":1,"result":{"structuredContent":[1]}}`,
	} {
		res := r.Filter(Input{Status: 200, ContentType: "application/json", Body: []byte(body)})
		if res.Outcome != Refused || res.Body != nil {
			t.Errorf("%s: got %s %s", name, res.Outcome, res.Body)
		}
	}
	// A JSON-RPC error keeps its code and message.
	res := r.Filter(Input{Status: 200, ContentType: "application/json", Body: []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no","data":{"email":"a@x"}}}`)})
	if string(res.Body) != `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}` {
		t.Errorf("error: %s %s", res.Outcome, res.Body)
	}
}

func TestMCPStream(t *testing.T) {
	r := mcpRule(t, true)
	body := "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
		": keep-alive\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\n" +
		"data: \"result\":{\"structuredContent\":{\"id\":\"T\",\"secret\":1}}}\n\n"
	res := r.Filter(Input{Status: 200, ContentType: "text/event-stream", Body: []byte(body)})
	want := "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"structuredContent\":{\"id\":\"T\"}}}\n\n"
	if res.Outcome != Reduced || string(res.Body) != want {
		t.Fatalf("got %s %q (%s)", res.Outcome, res.Body, res.Reason)
	}
	// Unchanged streams are sent as they came.
	same := "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"structuredContent\":{\"id\":\"T\"}}}\r\n\r\n"
	if res := r.Filter(Input{Status: 200, ContentType: "text/event-stream", Body: []byte(same)}); res.Outcome != Passed || string(res.Body) != same {
		t.Fatalf("got %s %q", res.Outcome, res.Body)
	}
	// One unreadable event refuses the stream; an event not ended is not sent.
	bad := "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a@x\"}]}}\n\n"
	if res := r.Filter(Input{Status: 200, ContentType: "text/event-stream", Body: []byte(bad)}); res.Outcome != Refused {
		t.Fatalf("got %s", res.Outcome)
	}
	open := "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"structuredContent\":{\"id\":\"T\",\"x\":1}}}"
	if res := r.Filter(Input{Status: 200, ContentType: "text/event-stream", Body: []byte(open)}); strings.Contains(string(res.Body), "x") {
		t.Fatalf("got %s %q", res.Outcome, res.Body)
	}
	// A plain JSON body on an MCP rule is read as JSON-RPC, not as the tool's value.
	if res := r.Filter(Input{Status: 200, ContentType: "application/json", Body: []byte(`{"id":"T"}`)}); res.Outcome != Refused {
		t.Fatalf("got %s", res.Outcome)
	}
}
