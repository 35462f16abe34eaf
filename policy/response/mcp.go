package response

import (
	"bytes"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// message filters one JSON-RPC message answering a tools/call: the rule applies to the result's
// structuredContent and to the JSON of each text content item; the envelope is kept. An error
// response keeps its code and message and loses its data, which the rule does not describe. In
// an event stream (inStream) a request or notification from the server passes.
func (r *Rule) message(data []byte, rep *report, inStream bool) (out []byte, changed bool, reason string) {
	if err := strictjson.Check(data, MaxDepth); err != nil {
		return nil, false, "the message is not strict JSON (" + err.Error() + ")"
	}
	c := &strictjson.Cursor{Data: data}
	if c.Next() != '{' {
		return nil, false, "the message is not a JSON-RPC object"
	}
	var hasMethod, hasResult, hasError bool
	out = make([]byte, 0, len(data))
	out = append(out, '{')
	first := true
	c.Object(func(name, raw []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(append(out, raw...), ':')
		start := c.Pos
		switch string(name) {
		case "result":
			hasResult = true
			if c.Next() != '{' {
				reason = "the result is not an object"
				c.Skip()
				return
			}
			res, ch, why := r.result(c, rep)
			if why != "" && reason == "" {
				reason = why
			}
			changed = changed || ch
			out = append(out, res...)
			return
		case "error":
			hasError = true
			if c.Next() == '{' {
				// What the error's data loses is no mismatch of the rule's.
				mismatch := rep.mismatch
				v, ch, ok := view(rawValue(c), errorView, nil, rep)
				rep.mismatch = mismatch
				if !ok {
					reason = "the error could not be walked"
				}
				changed = changed || ch
				out = append(out, v...)
				return
			}
		case "method":
			hasMethod = true
		}
		c.Skip()
		out = append(out, data[start:c.Pos]...)
	})
	out = append(out, '}')
	switch {
	case c.Broken:
		return nil, false, "the message could not be walked"
	case reason != "":
		return nil, false, reason
	case hasMethod && !hasResult && !hasError && inStream:
		return data, false, "" // a request or notification from the server
	case hasMethod || !hasResult && !hasError || hasResult && hasError:
		return nil, false, "the message is not a JSON-RPC response"
	case !changed:
		return data, false, ""
	}
	return out, true, ""
}

// errorView keeps a JSON-RPC error's code and message.
var errorView = &node{objects: true, members: map[string]*node{"code": everything, "message": everything}}

// rawValue consumes the value at the cursor and returns it.
func rawValue(c *strictjson.Cursor) []byte {
	start := c.Pos
	c.Skip()
	return c.Data[start:c.Pos]
}

// result filters a tools/call result object at the cursor.
func (r *Rule) result(c *strictjson.Cursor, rep *report) (out []byte, changed bool, reason string) {
	out = append(out, '{')
	first := true
	c.Object(func(name, raw []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(append(out, raw...), ':')
		v := rawValue(c)
		switch string(name) {
		case "structuredContent":
			f, ch, why := r.value(v, rep)
			if why != "" {
				reason = "structuredContent: " + why
				return
			}
			changed = changed || ch
			out = append(out, f...)
		case "content":
			f, ch, why := r.content(v, rep)
			if why != "" {
				reason = why
				return
			}
			changed = changed || ch
			out = append(out, f...)
		default:
			out = append(out, v...)
		}
	})
	return append(out, '}'), changed, reason
}

// content filters the content array: each item must be text, and its text JSON.
func (r *Rule) content(data []byte, rep *report) (out []byte, changed bool, reason string) {
	c := &strictjson.Cursor{Data: data}
	if c.Next() != '[' {
		return nil, false, "the result's content is not an array"
	}
	out = append(out, '[')
	first := true
	c.Array(func() {
		if !first {
			out = append(out, ',')
		}
		first = false
		item := rawValue(c)
		f, ch, why := r.item(item, rep)
		if why != "" && reason == "" {
			reason = why
		}
		changed = changed || ch
		out = append(out, f...)
	})
	return append(out, ']'), changed, reason
}

// item filters one content item, which must be {"type":"text","text":"<JSON>"}, with other
// members (annotations, _meta) kept.
func (r *Rule) item(data []byte, rep *report) (out []byte, changed bool, reason string) {
	c := &strictjson.Cursor{Data: data}
	if c.Next() != '{' {
		return nil, false, "a content item is not an object"
	}
	isText := false
	var text []byte
	textAt := -1
	out = append(out, '{')
	first := true
	c.Object(func(name, raw []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(append(out, raw...), ':')
		v := rawValue(c)
		switch string(name) {
		case "type":
			isText = string(v) == `"text"`
		case "text":
			if len(v) > 0 && v[0] == '"' {
				text, textAt = strictjson.Unquote(v), len(out)
				return // written below, filtered
			}
		}
		out = append(out, v...)
	})
	switch {
	case c.Broken:
		return nil, false, "a content item could not be walked"
	case !isText:
		return nil, false, "a content item is not text: the rule cannot read it"
	case textAt < 0:
		return nil, false, "a text content item has no text"
	}
	if !utf8.Valid(text) || len(bytes.Trim(text, " \t\r\n")) == 0 {
		return nil, false, "a text content item is not JSON"
	}
	f, ch, why := r.value(text, rep)
	if why != "" {
		return nil, false, "a text content item: " + why
	}
	if !ch {
		return data, false, ""
	}
	quoted, err := jsontext.AppendQuote(nil, f)
	if err != nil {
		return nil, false, "a text content item could not be written"
	}
	rest := append([]byte(nil), out[textAt:]...)
	out = append(append(out[:textAt], quoted...), rest...)
	return append(out, '}'), true, ""
}
