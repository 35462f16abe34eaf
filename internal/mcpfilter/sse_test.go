package mcpfilter_test

import (
	"testing"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
)

func TestFilterStream(t *testing.T) {
	const ct = "text/event-stream"
	const list = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets"},{"name":"reset_password"}]}}`
	const filtered = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets"}]}}`
	for _, c := range []filterCase{
		{
			name:    "a priming event, then the response: ids kept, the list filtered",
			body:    "id: p0\ndata:\n\nid: e1\nevent: message\ndata: " + list + "\n\n",
			want:    "id: p0\ndata:\n\nevent: message\nid: e1\ndata: " + filtered + "\n\n",
			outcome: mcpfilter.Filtered, removed: []string{"reset_password"},
		},
		{
			name:    "CRLF and CR line endings, a comment, a byte order mark",
			body:    "\uFEFF: keep-alive\r\nretry: 1500\r\rdata: " + list + "\r\n\r\n",
			want:    "retry: 1500\n\ndata: " + filtered + "\n\n",
			outcome: mcpfilter.Filtered, removed: []string{"reset_password"},
		},
		{
			name: "data over several lines, joined by newlines",
			body: "data: {\"jsonrpc\":\"2.0\",\ndata:  \"id\":1,\ndata: \"result\":{\"tools\":[\ndata: {\"name\":\"reset_password\"},\n" +
				"data: {\"name\":\"list_tickets\"}\ndata: ]}}\n\n",
			want:    "data: {\"jsonrpc\":\"2.0\",\ndata:  \"id\":1,\ndata: \"result\":{\"tools\":[{\"name\":\"list_tickets\"}]}}\n\n",
			outcome: mcpfilter.Filtered, removed: []string{"reset_password"},
		},
		{
			name: "notifications and requests from the server pass; an error passes",
			body: "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"x\"}}\n\n",
			want: "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"x\"}}\n\n",
			outcome: mcpfilter.Passed, unchanged: true,
		},
		{
			name:    "an unreadable event is replaced by an empty list; the others are kept",
			body:    "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\nid: 2\ndata: " + list + " trailing\n\n",
			want:    "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"tools\":[]}}\n\n",
			outcome: mcpfilter.Emptied, reason: "data follows",
		},
		{
			name:    "a batch in an event",
			body:    "data: [" + list + "]\n\n",
			want:    "data: {\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"tools\":[]}}\n\n",
			outcome: mcpfilter.Emptied, reason: "batch",
		},
		{
			name:    "an unterminated last event is not sent: no reader dispatches it",
			body:    "data: " + filtered + "\n\ndata: " + list + "\n",
			want:    "data: " + filtered + "\n\n",
			outcome: mcpfilter.Filtered,
		},
		{
			name:    "unknown fields, an invalid retry and an event type without data are dropped",
			body:    "foo: bar\nretry: 10s\nevent: x\n\nevent: x\nbaz\ndata:" + list + "\n\n",
			want:    "event: x\ndata: " + filtered + "\n\n",
			outcome: mcpfilter.Filtered, removed: []string{"reset_password"},
		},
		{
			// The data is "\n" and " " + list: one JSON text, whitespace around it.
			name:    "a field without a colon; values keep all but one leading space",
			body:    "data\ndata:  " + list + "\nid\n\n",
			want:    "id:\ndata:\ndata:  " + filtered + "\n\n",
			outcome: mcpfilter.Filtered, removed: []string{"reset_password"},
		},
	} {
		c.method, c.ct = "tools/list", ct
		t.Run(c.name, func(t *testing.T) { runCase(t, c) })
	}
}

func TestFilterStreamFailsClosed(t *testing.T) {
	for _, c := range []struct{ name, body, reason string }{
		{"invalid UTF-8", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n: \xff\n\n", "UTF-8"},
		{"a NUL byte", "id: a\x00b\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n", "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			runCase(t, filterCase{method: "tools/list", ct: "text/event-stream", body: c.body,
				want: `{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}`, wantCT: "application/json",
				outcome: mcpfilter.Emptied, reason: c.reason})
		})
	}
}
