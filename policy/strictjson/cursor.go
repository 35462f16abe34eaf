package strictjson

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// Cursor moves through a JSON text that Check has accepted, finding where values begin and end.
// It relies on that check and makes none of its own: what it reads is valid JSON, without
// duplicate names or invalid UTF-8, nested no deeper than the limit checked. Should it ever run
// out of text or meet an unexpected byte (which valid JSON never makes it do), it sets Broken,
// and its reader must refuse what it was reading. It costs a fraction of a decoder's walk,
// which would check everything again.
type Cursor struct {
	Data   []byte
	Pos    int
	Broken bool
	// Limit, when not zero, bounds nesting: Depth is the nesting at the cursor (its walker
	// keeps it), and Skip sets TooDeep (and Broken) for a value that nests past Limit.
	Limit, Depth int
	TooDeep      bool
}

// Next skips whitespace and returns the byte at the cursor, or 0 at the end.
func (c *Cursor) Next() byte {
	for c.Pos < len(c.Data) {
		switch b := c.Data[c.Pos]; b {
		case ' ', '\t', '\r', '\n':
			c.Pos++
		default:
			return b
		}
	}
	c.Broken = true
	return 0
}

// Expect consumes b, after whitespace.
func (c *Cursor) Expect(b byte) {
	if c.Next() != b {
		c.Broken = true
		return
	}
	c.Pos++
}

// Str consumes the string at the cursor and returns it as written, quotes included.
func (c *Cursor) Str() []byte {
	if c.Next() != '"' {
		c.Broken = true
		return nil
	}
	start := c.Pos
	i := start + 1
	for {
		j := bytes.IndexByte(c.Data[i:], '"')
		if j < 0 {
			c.Pos, c.Broken = len(c.Data), true
			return nil
		}
		i += j
		// The quote ends the string unless an odd number of backslashes escapes it.
		n := 0
		for k := i - 1; k > start && c.Data[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			c.Pos = i
			return c.Data[start:i]
		}
	}
}

// Skip consumes the value at the cursor.
func (c *Cursor) Skip() {
	switch c.Next() {
	case 0:
	case '"':
		c.Str()
	case '{', '[':
		depth := 0
		for c.Pos < len(c.Data) {
			switch c.Data[c.Pos] {
			case '"':
				c.Str()
				continue
			case '{', '[':
				depth++
				if c.Limit > 0 && c.Depth+depth > c.Limit {
					c.TooDeep, c.Broken = true, true
					return
				}
			case '}', ']':
				depth--
				if depth == 0 {
					c.Pos++
					return
				}
			}
			c.Pos++
		}
		c.Broken = true
	default: // a number, true, false or null: up to the next delimiter
		for c.Pos < len(c.Data) {
			switch c.Data[c.Pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			c.Pos++
		}
	}
}

// Object calls member for each member of the object at the cursor, with the member's name
// (unescaped, and as written) and the cursor at its value, which member must consume.
func (c *Cursor) Object(member func(name, raw []byte)) {
	c.Expect('{')
	if c.Next() == '}' {
		c.Pos++
		return
	}
	for !c.Broken {
		raw := c.Str()
		c.Expect(':')
		c.Next()
		member(Unquote(raw), raw)
		switch c.Next() {
		case ',':
			c.Pos++
		case '}':
			c.Pos++
			return
		default:
			c.Broken = true
		}
	}
}

// Array calls elem for each element of the array at the cursor, with the cursor at it; elem
// must consume it.
func (c *Cursor) Array(elem func()) {
	c.Expect('[')
	if c.Next() == ']' {
		c.Pos++
		return
	}
	for !c.Broken {
		c.Next()
		elem()
		switch c.Next() {
		case ',':
			c.Pos++
		case ']':
			c.Pos++
			return
		default:
			c.Broken = true
		}
	}
}

// Unquote returns the string a JSON string as written holds: a view of raw when it has no
// escapes, a copy otherwise.
func Unquote(raw []byte) []byte {
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
