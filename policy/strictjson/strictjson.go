// Package strictjson reads request bodies as JSON the one way every parser agrees on.
//
// A body is refused, even where a schema would accept its decoded value, when it holds a
// duplicate object member name (parsers disagree on which one wins: that is a bypass), invalid
// UTF-8, data after the value, or nesting deeper than a limit. Numbers are kept as written
// (json.Number), never rounded through float64.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxDepth bounds nesting when a route sets no limit.
const DefaultMaxDepth = 32

// Error says why a body is not strict JSON. Pointer locates the problem (RFC 6901).
type Error struct {
	Rule    string // "syntax", "duplicate_key", "invalid_utf8", "trailing_data", "depth", "empty"
	Pointer string
	Offset  int64
	Message string
}

func (e *Error) Error() string {
	if e.Pointer != "" {
		return "strictjson: " + e.Pointer + ": " + e.Message
	}
	return "strictjson: " + e.Message
}

// Parse reads data as exactly one strict JSON value and returns it as map[string]any, []any,
// string, json.Number, bool or nil. The result shares no memory with data.
func Parse(data []byte, maxDepth int) (any, error) {
	return parse(data, maxDepth, false)
}

// ParseShared is Parse for data that is never modified, such as a request body: strings without
// escapes in the result are views of data instead of copies.
func ParseShared(data []byte, maxDepth int) (any, error) {
	return parse(data, maxDepth, true)
}

func parse(data []byte, maxDepth int, share bool) (any, error) {
	p, err := newParser(data, maxDepth)
	if err != nil {
		return nil, err
	}
	p.share = share
	defer p.release()
	v, err := p.value(true)
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	return v, nil
}

// Check verifies data is exactly one strict JSON value without building it.
func Check(data []byte, maxDepth int) error {
	p, err := newParser(data, maxDepth)
	if err != nil {
		return err
	}
	defer p.release()
	if _, err := p.value(false); err != nil {
		return err
	}
	return p.end()
}

type parser struct {
	dec      *jsontext.Decoder
	buf      bytes.Buffer
	data     []byte
	share    bool
	maxDepth int
}

// parsers are reused: setting up a decoder costs more than reading a small body.
var parsers = sync.Pool{New: func() any { return &parser{dec: jsontext.NewDecoder(&bytes.Buffer{})} }}

// release returns the parser to the pool, holding no reference to the body.
func (p *parser) release() {
	p.dec.Reset(&bytes.Buffer{})
	p.buf, p.data, p.share = bytes.Buffer{}, nil, false
	parsers.Put(p)
}

func newParser(data []byte, maxDepth int) (*parser, error) {
	// JSON whitespace only: bytes.TrimSpace would also call "\f", "\v", U+0085 and U+00A0
	// whitespace, which JSON does not.
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		return nil, &Error{Rule: "empty", Message: "the body is empty"}
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	// Duplicate names and invalid UTF-8 are refused by default; say so anyway. A bytes.Buffer
	// lets the decoder read data in place instead of copying it; it never writes to it (the
	// fuzz test checks that).
	p := parsers.Get().(*parser)
	p.buf, p.data = *bytes.NewBuffer(data), data
	p.dec.Reset(&p.buf, jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	p.maxDepth = maxDepth
	return p, nil
}

// end refuses anything after the value but whitespace.
func (p *parser) end() error {
	off := p.dec.InputOffset()
	_, err := p.dec.ReadToken()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return &Error{Rule: "trailing_data", Offset: off, Message: "data follows the JSON value"}
}

func (p *parser) fail(err error) error {
	var se *jsontext.SyntacticError
	e := &Error{Rule: "syntax", Offset: p.dec.InputOffset(), Message: "is not valid JSON"}
	if errors.As(err, &se) {
		e.Offset = se.ByteOffset
		e.Pointer = string(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			e.Rule, e.Message = "duplicate_key", "duplicate member name"
		case se.Err != nil && bytes.Contains([]byte(se.Err.Error()), []byte("UTF-8")):
			e.Rule, e.Message = "invalid_utf8", "invalid UTF-8"
		case se.Err != nil && bytes.Contains([]byte(se.Err.Error()), []byte("surrogate")):
			// A \u escape of half a UTF-16 surrogate pair names no character: it cannot be
			// UTF-8, and I-JSON (RFC 7493) forbids it. Parsers that accept it disagree on what
			// it decodes to.
			e.Rule, e.Message = "invalid_utf8", "a \\u escape names a lone UTF-16 surrogate"
		case errors.Is(se.Err, io.ErrUnexpectedEOF):
			e.Message = "the JSON value is cut short"
		default:
			e.Message = "is not valid JSON at byte " + strconv.FormatInt(se.ByteOffset, 10)
		}
	} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		e.Message = "the JSON value is cut short"
	}
	return e
}

func (p *parser) value(build bool) (any, error) {
	if build && p.share && p.dec.PeekKind() == '"' {
		return p.stringValue()
	}
	tok, err := p.dec.ReadToken()
	if err != nil {
		return nil, p.fail(err)
	}
	switch tok.Kind() {
	case '{':
		if p.dec.StackDepth() > p.maxDepth {
			return nil, p.depthError()
		}
		var obj map[string]any
		if build {
			obj = map[string]any{}
		}
		for p.dec.PeekKind() != '}' {
			tok, err := p.dec.ReadToken()
			if err != nil {
				return nil, p.fail(err)
			}
			var name string
			if build {
				name = tok.String() // a token is only valid until the next read
			}
			v, err := p.value(build)
			if err != nil {
				return nil, err
			}
			if build {
				obj[name] = v
			}
		}
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, p.fail(err)
		}
		if build {
			return obj, nil
		}
		return nil, nil
	case '[':
		if p.dec.StackDepth() > p.maxDepth {
			return nil, p.depthError()
		}
		var arr []any
		if build {
			arr = []any{}
		}
		for p.dec.PeekKind() != ']' {
			v, err := p.value(build)
			if err != nil {
				return nil, err
			}
			if build {
				arr = append(arr, v)
			}
		}
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, p.fail(err)
		}
		if build {
			return arr, nil
		}
		return nil, nil
	case '"':
		if build {
			return tok.String(), nil
		}
	case '0':
		if build {
			return json.Number(tok.String()), nil
		}
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	default:
		return nil, p.fail(err)
	}
	return nil, nil
}

// stringValue reads a string value for ParseShared. One without escapes is returned as a view of
// the data, not a copy: the decoder has checked it is valid UTF-8.
func (p *parser) stringValue() (any, error) {
	raw, err := p.dec.ReadValue()
	if err != nil {
		return nil, p.fail(err)
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		end := int(p.dec.InputOffset()) - 1 // the closing quote
		start := end - (len(raw) - 2)
		if start >= 0 && end <= len(p.data) && start <= end {
			if start == end {
				return "", nil
			}
			return unsafe.String(&p.data[start], end-start), nil
		}
	}
	b, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return nil, p.fail(err)
	}
	return string(b), nil
}

func (p *parser) depthError() error {
	return &Error{Rule: "depth", Offset: p.dec.InputOffset(), Pointer: string(p.dec.StackPointer()),
		Message: "nesting is deeper than " + strconv.Itoa(p.maxDepth)}
}
