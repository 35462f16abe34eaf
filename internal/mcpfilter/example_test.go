package mcpfilter_test

import (
	"fmt"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
)

// onlyListTickets shows one tool, with the server's schema.
type onlyListTickets struct{}

func (onlyListTickets) Tool(name string) (bool, []byte) { return name == "list_tickets", nil }
func (onlyListTickets) Resource(string) bool            { return false }
func (onlyListTickets) ResourceTemplate(string) bool    { return false }
func (onlyListTickets) Prompt(string) bool              { return false }

func ExampleFilter() {
	res := mcpfilter.Filter(mcpfilter.Response{
		Method:      mcpfilter.ToolsList,
		ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}},` +
			`{"name":"reset_password","inputSchema":{"type":"object"}}],"nextCursor":"2"}}`),
	}, onlyListTickets{})
	fmt.Println(res.Outcome, res.Removed)
	fmt.Println(string(res.Body))

	// What cannot be read is never passed.
	res = mcpfilter.Filter(mcpfilter.Response{Method: mcpfilter.ToolsList, ContentType: "application/json",
		Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"reset_password"}]}} {}`)}, onlyListTickets{})
	fmt.Println(res.Outcome, string(res.Body))
	// Output:
	// filtered [reset_password]
	// {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_tickets","inputSchema":{"type":"object"}}],"nextCursor":"2"}}
	// emptied {"jsonrpc":"2.0","id":null,"result":{"tools":[]}}
}
