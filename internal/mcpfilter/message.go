package mcpfilter

import (
	"bytes"
	"sync"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// message is what filtering one JSON-RPC message gave.
type message struct {
	out     []byte // the message to send (when not Emptied)
	outcome Outcome
	removed []string
	id      []byte // the raw id, when it is a string or a number
	reason  string // why Emptied
}

// entry is one list entry as found: its bytes and name, and for a tool where its inputSchema
// value is; then whether it is kept, and the schema it is shown with.
type entry struct {
	start, end             int
	name                   string
	schemaStart, schemaEnd int // -1 when the tool has no inputSchema member
	keep                   bool
	schema                 []byte
}

// walker reads one JSON-RPC message that strictjson has accepted, noting where its parts are.
// Walkers are reused, with the room they have grown for entries.
type walker struct {
	c       strictjson.Cursor
	entries []entry
	seen    map[string]struct{}
	bad     string // the first shape problem found

	// Where the list array is: data[listStart] is '[' and data[listEnd-1] is ']'.
	listStart, listEnd int
	hasList            bool
}

var walkers = sync.Pool{New: func() any { return &walker{seen: map[string]struct{}{}} }}

func getWalker(data []byte) *walker {
	w := walkers.Get().(*walker)
	w.c = strictjson.Cursor{Data: data}
	return w
}

// release returns the walker to the pool, holding no reference to the message or its names.
func (w *walker) release() {
	w.c, w.bad = strictjson.Cursor{}, ""
	clear(w.entries)
	w.entries = w.entries[:0]
	clear(w.seen)
	w.listStart, w.listEnd, w.hasList = 0, 0, false
	walkers.Put(w)
}

// fail notes a shape problem; the first one is the reason given.
func (w *walker) fail(reason string) {
	if w.bad == "" {
		w.bad = reason
	}
}

// filterMessage filters one JSON-RPC message answering k's method. In an event stream
// (inStream) a request or notification from the server passes; a response body must be a
// response.
func filterMessage(k *kind, data []byte, v View, inStream bool) message {
	if err := strictjson.Check(data, MaxDepth); err != nil {
		return message{outcome: Emptied, reason: "the message is not strict JSON (" + err.Error() + ")"}
	}
	w := getWalker(data)
	defer w.release()
	top := w.message(k)
	if w.c.Broken {
		// strictjson accepted the message, so this cannot happen; if it does, the message is
		// not passed.
		return message{outcome: Emptied, reason: "the message could not be walked"}
	}
	if w.bad != "" {
		return message{outcome: Emptied, id: top.id, reason: w.bad}
	}
	switch {
	case top.hasMethod && !top.hasResult && !top.hasError && inStream:
		return message{out: data, outcome: Passed} // a request or notification from the server
	case top.hasMethod:
		return message{outcome: Emptied, id: top.id, reason: "the message is a request, not a response"}
	case top.hasResult && top.hasError:
		return message{outcome: Emptied, id: top.id, reason: "the response has both a result and an error"}
	case top.hasError:
		return message{out: data, outcome: Passed}
	case !top.hasResult:
		return message{outcome: Emptied, id: top.id, reason: "the message is neither a result nor an error"}
	case !top.version:
		return message{outcome: Emptied, id: top.id, reason: `the response's jsonrpc is not "2.0"`}
	case top.id == nil:
		return message{outcome: Emptied, reason: "the response's id is not a string or a number"}
	case !w.hasList:
		return message{outcome: Emptied, id: top.id, reason: "the result has no " + k.list + " member"}
	}
	return w.apply(k, v, top.id)
}

// topLevel is what the walk found at the top of the message.
type topLevel struct {
	hasMethod, hasResult, hasError bool
	version                        bool   // jsonrpc is "2.0"
	id                             []byte // a string or number id
}

// topNames are the members of a JSON-RPC message whose spelling in another case is refused.
var topNames = []string{"jsonrpc", "id", "result", "error", "method"}

// message walks the message's top level.
func (w *walker) message(k *kind) topLevel {
	var t topLevel
	c := &w.c
	switch c.Next() {
	case '{':
	case '[':
		w.fail("the message is a JSON-RPC batch")
		return t
	default:
		w.fail("the message is not a JSON object")
		return t
	}
	c.Object(func(name, _ []byte) {
		switch string(name) {
		case "jsonrpc":
			if c.Next() == '"' {
				t.version = string(strictjson.Unquote(c.Str())) == "2.0"
			} else {
				c.Skip()
			}
		case "id":
			start, b := c.Pos, c.Next()
			c.Skip()
			if b == '"' || b == '-' || '0' <= b && b <= '9' {
				t.id = c.Data[start:c.Pos]
			}
		case "result":
			t.hasResult = true
			w.result(k)
		case "error":
			t.hasError = true
			if c.Next() != '{' {
				w.fail("the error is not an object")
			}
			c.Skip()
		case "method":
			t.hasMethod = true
			c.Skip()
		default:
			w.foldsTo(name, topNames...)
			c.Skip()
		}
	})
	return t
}

// result walks the result object and its list.
func (w *walker) result(k *kind) {
	c := &w.c
	if c.Next() != '{' {
		w.fail("the result is not an object")
		c.Skip()
		return
	}
	c.Object(func(name, _ []byte) {
		if string(name) != k.list {
			w.foldsTo(name, k.list)
			c.Skip()
			return
		}
		if c.Next() != '[' {
			w.fail("the result's " + k.list + " is not an array")
			c.Skip()
			return
		}
		w.hasList, w.listStart = true, c.Pos
		c.Array(func() { w.entry(k) })
		w.listEnd = c.Pos
		if c.Data[w.listStart] != '[' || c.Data[w.listEnd-1] != ']' {
			c.Broken = true // never, for a cursor that read the array
		}
	})
}

// entry walks one list entry.
func (w *walker) entry(k *kind) {
	c := &w.c
	if c.Next() != '{' {
		w.fail("an entry of " + k.list + " is not an object")
		c.Skip()
		return
	}
	e := entry{start: c.Pos, schemaStart: -1, schemaEnd: -1}
	named := false
	tool := k.method == ToolsList
	c.Object(func(name, _ []byte) {
		switch {
		case string(name) == k.key:
			if c.Next() != '"' {
				w.fail("an entry of " + k.list + " has a " + k.key + " that is not a string")
				c.Skip()
				return
			}
			e.name, named = string(strictjson.Unquote(c.Str())), true
		case tool && string(name) == "inputSchema":
			e.schemaStart = c.Pos
			c.Skip()
			e.schemaEnd = c.Pos
		case tool:
			w.foldsTo(name, k.key, "inputSchema")
			c.Skip()
		default:
			w.foldsTo(name, k.key)
			c.Skip()
		}
	})
	e.end = c.Pos
	if !named {
		w.fail("an entry of " + k.list + " has no " + k.key)
	} else {
		if _, dup := w.seen[e.name]; dup {
			w.fail("two entries of " + k.list + " have the " + k.key + " " + quote(e.name))
		}
		w.seen[e.name] = struct{}{}
	}
	w.entries = append(w.entries, e)
}

// foldsTo refuses a member name that is one of names in another spelling: a reader matching
// names case-insensitively (by Unicode simple folding, as Go's encoding/json does) would read it
// as that member. (The reason names the member it imitates, so that name stays on the stack.)
func (w *walker) foldsTo(name []byte, names ...string) {
	for _, n := range names {
		if bytes.EqualFold(name, []byte(n)) {
			w.fail("a member is spelt like " + quote(n) + " in another case")
			return
		}
	}
}

// apply asks v about every entry and writes the message to send.
func (w *walker) apply(k *kind, v View, id []byte) message {
	m := message{outcome: Filtered}
	data := w.c.Data
	changed := false
	size := w.listStart + 2 + len(data) - w.listEnd // all but the entries
	for i := range w.entries {
		e := &w.entries[i]
		visible, schema := k.visible(v, e.name)
		if !visible {
			m.removed = append(m.removed, e.name)
			changed = true
			continue
		}
		e.keep = true
		size += e.end - e.start + 1
		if schema != nil {
			if err := strictjson.Check(schema, MaxDepth); err != nil || firstByte(schema) != '{' {
				return message{outcome: Emptied, id: id, reason: "the input schema shown for the tool " + quote(e.name) + " is not a JSON object"}
			}
			e.schema, changed = schema, true
			size += len(schema) + len(`,"inputSchema":`)
		}
	}
	if !changed {
		m.out = data
		return m
	}
	out := make([]byte, 0, size)
	out = append(out, data[:w.listStart]...)
	out = append(out, '[')
	first := true
	for _, e := range w.entries {
		if !e.keep {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendEntry(out, data, e)
	}
	out = append(out, ']')
	m.out = append(out, data[w.listEnd:]...)
	return m
}

// appendEntry appends entry e of data, with its inputSchema value replaced by e.schema when
// that is not nil (added as the last member when the tool has none).
func appendEntry(out, data []byte, e entry) []byte {
	schema := e.schema
	switch {
	case schema == nil:
		return append(out, data[e.start:e.end]...)
	case e.schemaStart >= 0:
		out = append(out, data[e.start:e.schemaStart]...)
		out = append(out, schema...)
		return append(out, data[e.schemaEnd:e.end]...)
	default:
		out = append(out, data[e.start:e.end-1]...) // all but the closing brace
		out = append(out, `,"inputSchema":`...)
		out = append(out, schema...)
		return append(out, '}')
	}
}

// firstByte is the first byte of b after JSON whitespace, or 0.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}
