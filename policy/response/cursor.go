package response

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// cursor moves through a JSON text that strictjson has accepted, finding where values begin and
// end. It relies on that check and makes none of its own: what it reads is valid JSON, without
// duplicate names or invalid UTF-8, nested no deeper than the rule's limit. Should it ever run
// out of text or meet an unexpected byte (which valid JSON never makes it do), it sets broken,
// and the response is refused. It costs a fraction of a decoder's walk, which would check
// everything again.
type cursor struct {
	data   []byte
	pos    int
	broken bool
	// limit, when not zero, bounds nesting: depth is the nesting at the cursor (its walker
	// keeps it), and skip sets tooDeep (and broken) for a value that nests past limit.
	limit, depth int
	tooDeep      bool
}

// next skips whitespace and returns the byte at the cursor, or 0 at the end.
func (c *cursor) next() byte {
	for c.pos < len(c.data) {
		switch b := c.data[c.pos]; b {
		case ' ', '\t', '\r', '\n':
			c.pos++
		default:
			return b
		}
	}
	c.broken = true
	return 0
}

// expect consumes b, after whitespace.
func (c *cursor) expect(b byte) {
	if c.next() != b {
		c.broken = true
		return
	}
	c.pos++
}

// str consumes the string at the cursor and returns it as written, quotes included.
func (c *cursor) str() []byte {
	if c.next() != '"' {
		c.broken = true
		return nil
	}
	start := c.pos
	i := start + 1
	for {
		j := bytes.IndexByte(c.data[i:], '"')
		if j < 0 {
			c.pos, c.broken = len(c.data), true
			return nil
		}
		i += j
		// The quote ends the string unless an odd number of backslashes escapes it.
		n := 0
		for k := i - 1; k > start && c.data[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			c.pos = i
			return c.data[start:i]
		}
	}
}

// skip consumes the value at the cursor.
func (c *cursor) skip() {
	switch c.next() {
	case 0:
	case '"':
		c.str()
	case '{', '[':
		depth := 0
		for c.pos < len(c.data) {
			switch c.data[c.pos] {
			case '"':
				c.str()
				continue
			case '{', '[':
				depth++
				if c.limit > 0 && c.depth+depth > c.limit {
					c.tooDeep, c.broken = true, true
					return
				}
			case '}', ']':
				depth--
				if depth == 0 {
					c.pos++
					return
				}
			}
			c.pos++
		}
		c.broken = true
	default: // a number, true, false or null: up to the next delimiter
		for c.pos < len(c.data) {
			switch c.data[c.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			c.pos++
		}
	}
}

// object calls member for each member of the object at the cursor, with the member's name
// (unescaped, and as written) and the cursor at its value, which member must consume.
func (c *cursor) object(member func(name, raw []byte)) {
	c.expect('{')
	if c.next() == '}' {
		c.pos++
		return
	}
	for !c.broken {
		raw := c.str()
		c.expect(':')
		c.next()
		member(unquote(raw), raw)
		switch c.next() {
		case ',':
			c.pos++
		case '}':
			c.pos++
			return
		default:
			c.broken = true
		}
	}
}

// array calls elem for each element of the array at the cursor, with the cursor at it; elem
// must consume it.
func (c *cursor) array(elem func()) {
	c.expect('[')
	if c.next() == ']' {
		c.pos++
		return
	}
	for !c.broken {
		c.next()
		elem()
		switch c.next() {
		case ',':
			c.pos++
		case ']':
			c.pos++
			return
		default:
			c.broken = true
		}
	}
}

// unquote returns the string a JSON string as written holds: a view of raw when it has no
// escapes, a copy otherwise.
func unquote(raw []byte) []byte {
	if len(raw) < 2 {
		return nil
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	s, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return nil
	}
	return s
}
