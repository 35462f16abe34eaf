// Package mcpfilter filters an MCP server's answers to the list methods (tools/list,
// resources/list, resources/templates/list, prompts/list) down to what one agent may use, as a
// View of the policy says.
//
// It reads a response body as the MCP Streamable HTTP transport carries it: one JSON-RPC
// response (application/json), or a server-sent event stream (text/event-stream) whose events
// carry JSON-RPC messages. Every JSON text is read by policy/strictjson first (duplicate member
// names, invalid UTF-8, data after the value and nesting deeper than MaxDepth are refused), then
// walked once to find the list and its entries.
//
// What the agent receives:
//
//   - a list result keeps everything but the entries the View refuses: the response's other
//     members (id, jsonrpc, anything else), the result's other members (nextCursor, _meta) and
//     every kept entry are copied byte for byte; only the list array itself is rewritten, its
//     entries separated by "," without the whitespace between them. A tool the View shows with
//     a schema of its own has its inputSchema value replaced by that schema's bytes, and the
//     rest of the tool copied;
//   - a JSON-RPC error response passes unchanged: it carries no list;
//   - anything else is replaced, never passed: a body that is not strict JSON, a JSON-RPC batch,
//     a result that is not an object, a list that is not an array, an entry that is not an
//     object or lacks a string name (uri for resources, uriTemplate for templates), two entries
//     with the same name, a member spelt like one of those names in another case (which a
//     case-insensitive reader, such as Go's encoding/json, would read as that member), an
//     unknown content type, a compressed body. The replacement is a JSON-RPC response with an
//     empty list (Empty), carrying the response's id when it could be read, null otherwise, as
//     application/json.
//
// An event stream is read as the SSE specification says (UTF-8, any line ending, fields split at
// the first colon, one leading space dropped, data lines joined by newlines, an event ends at an
// empty line) and written back in one form: "\n" line endings; per event its event, id and retry
// fields (the last of each, retry only when valid), then its data, one data line per line;
// comments, unknown fields and an unterminated last event dropped, since no client acts on them.
// Each event's data is filtered as above: a list result is filtered, an error response and a
// request or notification from the server pass, and data that is anything else is replaced by
// an empty list. A stream that is not valid UTF-8, or holds a NUL byte, is replaced whole.
//
// Filter never fails and never panics on any input; the fuzz targets check that its output
// always parses and never names an entry the View refuses.
package mcpfilter

import (
	"bytes"
	"mime"
	"strings"
)

// The list methods Filter handles.
const (
	ToolsList             = "tools/list"
	ResourcesList         = "resources/list"
	ResourceTemplatesList = "resources/templates/list"
	PromptsList           = "prompts/list"
)

// The content types of MCP's Streamable HTTP responses.
const (
	ContentTypeJSON = "application/json"
	ContentTypeSSE  = "text/event-stream"
)

// MaxDepth bounds the nesting of a JSON-RPC message. Tools' input schemas nest; agents' requests
// are held to strictjson.DefaultMaxDepth, a server's answers to twice that.
const MaxDepth = 64

// View is what one agent may see of one MCP server, as the policy says.
type View interface {
	// Tool reports whether the agent may call the tool named name; when schema is not nil it
	// is the input schema the agent is shown instead of the server's (a tightened one).
	Tool(name string) (visible bool, schema []byte)
	Resource(uri string) bool // resources/list entries by uri
	ResourceTemplate(uriTemplate string) bool
	Prompt(name string) bool
}

// kind is one list method: where its list is and what names its entries.
type kind struct {
	method string
	list   string // the result's member holding the list
	key    string // the entry's member naming it
}

var kinds = [...]kind{
	{ToolsList, "tools", "name"},
	{ResourcesList, "resources", "uri"},
	{ResourceTemplatesList, "resourceTemplates", "uriTemplate"},
	{PromptsList, "prompts", "name"},
}

func kindOf(method string) *kind {
	for i := range kinds {
		if kinds[i].method == method {
			return &kinds[i]
		}
	}
	return nil
}

// IsList reports whether method is one of the list methods Filter handles.
func IsList(method string) bool { return kindOf(method) != nil }

// visible asks v about one entry.
func (k *kind) visible(v View, name string) (bool, []byte) {
	switch k.method {
	case ToolsList:
		return v.Tool(name)
	case ResourcesList:
		return v.Resource(name), nil
	case ResourceTemplatesList:
		return v.ResourceTemplate(name), nil
	default:
		return v.Prompt(name), nil
	}
}

// Response is an MCP server's answer to a list method, as it arrives.
type Response struct {
	// Method is the JSON-RPC method of the request answered: one of the list methods.
	Method string
	// ContentType and ContentEncoding are the response's headers; a header sent more than once
	// is its values joined by ",", which no check accepts.
	ContentType, ContentEncoding string
	Body                         []byte
}

// Outcome says what Filter did.
type Outcome string

const (
	// Filtered: every list was read, and the entries the View refuses removed (perhaps none).
	Filtered Outcome = "filtered"
	// Passed: the body held no list (a JSON-RPC error, or in an event stream only other
	// messages) and passes unchanged.
	Passed Outcome = "passed"
	// Emptied: a list, or the whole body, could not be read and was replaced by an empty list.
	Emptied Outcome = "emptied"
)

// Result is what to send the agent.
type Result struct {
	// Body and ContentType are the body to send and its content type.
	Body        []byte
	ContentType string
	// Changed reports whether Body differs from the body received; when it does not, Body is
	// the received body itself, and need not be sent again.
	Changed bool
	Outcome Outcome
	// Removed names the entries removed (names, uris or uri templates), in the order met.
	Removed []string
	// Reason says, when Outcome is Emptied, why the list could not be read.
	Reason string
}

// Filter returns the body to send the agent for r, keeping only the entries v shows.
func Filter(r Response, v View) Result {
	res := filter(r, v)
	if bytes.Equal(res.Body, r.Body) {
		res.Body, res.Changed = r.Body, false
	} else {
		res.Changed = true
	}
	return res
}

func filter(r Response, v View) Result {
	k := kindOf(r.Method)
	if k == nil {
		return Result{Body: notAList(), ContentType: ContentTypeJSON, Outcome: Emptied,
			Reason: "the method " + quote(r.Method) + " is not a list method"}
	}
	if enc := strings.TrimSpace(r.ContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		return emptied(k, nil, "the body is encoded ("+quote(r.ContentEncoding)+")")
	}
	switch mediaType(r.ContentType) {
	case ContentTypeJSON:
		m := filterMessage(k, r.Body, v, false)
		if m.outcome == Emptied {
			return emptied(k, m.id, m.reason)
		}
		return Result{Body: m.out, ContentType: r.ContentType, Outcome: m.outcome, Removed: m.removed}
	case ContentTypeSSE:
		return filterStream(k, r, v)
	default:
		return emptied(k, nil, "the content type "+quote(r.ContentType)+" is not JSON or an event stream")
	}
}

// mediaType returns ContentTypeJSON or ContentTypeSSE for a content type naming one of them
// with at most a charset of UTF-8, or "".
func mediaType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	for name, value := range params {
		if name != "charset" || !strings.EqualFold(value, "utf-8") {
			return ""
		}
	}
	switch mt {
	case ContentTypeJSON, ContentTypeSSE:
		return mt
	}
	return ""
}

// emptied is the fail-closed Result: an empty list answering id (null when nil).
func emptied(k *kind, id []byte, reason string) Result {
	return Result{Body: Empty(k.method, id), ContentType: ContentTypeJSON, Outcome: Emptied, Reason: reason}
}

// Empty returns a JSON-RPC response to method with an empty list: {"jsonrpc":"2.0","id":ID,
// "result":{"tools":[]}} for tools/list. id is the raw JSON id (a string or a number), or nil
// for null. For a method that is not a list method it returns a JSON-RPC error instead (code
// -32603), since there is no list to empty.
func Empty(method string, id []byte) []byte {
	k := kindOf(method)
	if k == nil {
		return notAList()
	}
	return appendEmpty(nil, k, id)
}

func appendEmpty(b []byte, k *kind, id []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"result":{"`...)
	b = append(b, k.list...)
	return append(b, `":[]}}`...)
}

func notAList() []byte {
	return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the response could not be checked"}}`)
}

// quote quotes s for a Reason, cut to a readable length.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "\uFFFD") + `"`
}
