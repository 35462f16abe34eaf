package response

import (
	"bytes"
	"hash/maphash"
	"sync"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// pathSeed seeds the digests of reported paths.
var pathSeed = maphash.MakeSeed()

// maxReported bounds the paths one response reports: an upstream choosing member names must not
// grow the decision record without bound.
const maxReported = 64

// report is what one filtering removed and masked, as generalised pointers ("*" for every array
// index), each once, in the order met.
type report struct {
	removed, masked []string
	// seen are digests of the paths reported, as written (see walker.digest): a path met again
	// is not written out again.
	seen     []uint64
	more     int  // paths past maxReported
	tooDeep  bool // the walk met nesting deeper than MaxDepth
	mismatch bool // allow or schema removed something
}

func (r *report) add(list *[]string, p []byte) {
	// At most maxReported paths are kept: a scan of them costs less than hashing each path.
	for _, l := range [2][]string{r.removed, r.masked} {
		for _, s := range l {
			if s == string(p) {
				return
			}
		}
	}
	if len(r.removed)+len(r.masked) >= maxReported {
		r.more++ // counted once per occurrence past the limit: an upper bound
		return
	}
	*list = append(*list, string(p))
}

// walker writes the view of one JSON value that strictjson has accepted.
type walker struct {
	c       strictjson.Cursor
	out     []byte
	path    []span // where the current place is: the member names on the way, or array elements
	scratch []byte // a path written out
	rep     *report
	changed bool
}

// span is one step of a path: a member name as written, data[start:end], or every element of
// an array (start < 0). Offsets, not slices: a step costs no pointer write.
type span struct{ start, end int }

var walkers = sync.Pool{New: func() any { return &walker{} }}

// view returns the view of data under keep and redact, and whether it differs from data. data
// must be strict JSON (strictjson.Check). ok is false when the walk went wrong, which strict
// JSON never makes it do.
func view(data []byte, keep *node, redact *rnode, rep *report) (out []byte, changed, ok bool) {
	w := walkers.Get().(*walker)
	defer func() {
		w.c, w.rep, w.changed = strictjson.Cursor{}, nil, false
		w.scratch = w.scratch[:0]
		w.out, w.path = w.out[:0], w.path[:0]
		walkers.Put(w)
	}()
	w.c = strictjson.Cursor{Data: data, Limit: MaxDepth}
	w.rep = rep
	if !fits(keep, w.c.Next()) {
		return nil, false, false
	}
	w.value(keep, redact)
	if w.c.Broken {
		if w.c.TooDeep {
			rep.tooDeep = true
		}
		return nil, false, false
	}
	if !w.changed {
		return data, false, true
	}
	return append([]byte(nil), w.out...), true, true
}

// fits reports whether the value starting with b can be kept at n (reduced, perhaps).
func fits(n *node, b byte) bool {
	switch {
	case n.all:
		return true
	case b == '{':
		return n.objects
	case b == '[':
		return n.elems != nil
	case b == 'n': // null: nothing to hide
		return true
	}
	return n.scalars
}

// value writes the value at the cursor, which fits n.
func (w *walker) value(n *node, r *rnode) {
	c := &w.c
	b := c.Next()
	if n.all && r == nil || b != '{' && b != '[' {
		start := c.Pos
		c.Skip()
		w.out = append(w.out, c.Data[start:c.Pos]...)
		return
	}
	if b == '[' {
		w.array(n, r)
		return
	}
	w.object(n, r)
}

// array writes the array at the cursor, each element under n's elements.
func (w *walker) array(n *node, r *rnode) {
	c := &w.c
	elems, re := n.elems, (*rnode)(nil)
	if n.all {
		elems = everything
	}
	if elems == nil {
		elems = &node{} // keeps nothing but null; fits never lets this happen
	}
	if r != nil {
		re = r.elems
	}
	if c.Depth++; c.Depth > c.Limit && c.Limit > 0 {
		c.TooDeep, c.Broken = true, true
		return
	}
	w.out = append(w.out, '[')
	c.Pos++ // '['
	if c.Next() == ']' {
		c.Pos++
		c.Depth--
		w.out = append(w.out, ']')
		return
	}
	first := true
	mark := len(w.path)
	w.path = append(w.path, span{-1, -1})
	for !c.Broken {
		eb := c.Next()
		switch {
		case re != nil && re.act != keepValue:
			w.redacted(re.act, &first, nil)
		case !fits(elems, eb):
			w.removed()
			c.Skip()
		default:
			if !first {
				w.out = append(w.out, ',')
			}
			first = false
			w.value(elems, re)
		}
		if !w.more(']') {
			break
		}
	}
	w.path = w.path[:mark]
	c.Depth--
	w.out = append(w.out, ']')
}

// object writes the object at the cursor, each member under its node in n.
func (w *walker) object(n *node, r *rnode) {
	c := &w.c
	if c.Depth++; c.Depth > c.Limit && c.Limit > 0 {
		c.TooDeep, c.Broken = true, true
		return
	}
	w.out = append(w.out, '{')
	c.Pos++ // '{'
	if c.Next() == '}' {
		c.Pos++
		c.Depth--
		w.out = append(w.out, '}')
		return
	}
	first := true
	for !c.Broken {
		raw := c.Str()
		end := c.Pos
		c.Expect(':')
		vb := c.Next()
		if c.Broken || len(raw) < 2 {
			return // the walk is over: broken
		}
		name := raw[1 : len(raw)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = strictjson.Unquote(raw)
		}
		child := everything
		if !n.all {
			if child = n.member(name); child == nil {
				child = n.other
			}
		}
		var rc *rnode
		if r != nil {
			rc = r.member(name)
		}
		w.path = append(w.path, span{end - len(raw), end})
		switch {
		case child == nil || !fits(child, vb):
			w.removed()
			c.Skip()
		case rc != nil && rc.act != keepValue:
			w.redacted(rc.act, &first, raw)
		default:
			if !first {
				w.out = append(w.out, ',')
			}
			first = false
			w.out = append(w.out, raw...)
			w.out = append(w.out, ':')
			w.value(child, rc)
		}
		w.path = w.path[:len(w.path)-1]
		if !w.more('}') {
			break
		}
	}
	c.Depth--
	w.out = append(w.out, '}')
}

// more consumes the comma after a member or element and reports whether another follows, or
// consumes the closing bracket.
func (w *walker) more(closing byte) bool {
	c := &w.c
	switch c.Next() {
	case ',':
		c.Pos++
		return true
	case closing:
		c.Pos++
		return false
	}
	c.Broken = true
	return false
}

// removed notes that the value at the current place was removed because the rule does not
// keep it.
func (w *walker) removed() {
	w.rep.mismatch, w.changed = true, true
	if w.seen(removeValue) {
		return
	}
	w.rep.add(&w.rep.removed, w.pointer())
}

// seen reports whether the current place was reported already for act, by a digest of its
// path as written: most removals repeat in every element of an array, and writing the path
// out costs more than the digest. A digest not seen has its path written and compared.
func (w *walker) seen(act action) bool {
	h := uint64(act) + 1
	for _, s := range w.path {
		x := uint64(0x9e3779b97f4a7c15) // every element
		if s.start >= 0 {
			x = maphash.Bytes(pathSeed, w.c.Data[s.start:s.end])
		}
		h = (h^x)*0xff51afd7ed558ccd + 1
	}
	for _, x := range w.rep.seen {
		if x == h {
			return true
		}
	}
	if len(w.rep.seen) < 4*maxReported {
		w.rep.seen = append(w.rep.seen, h)
	}
	return false
}

// redacted applies a redaction to the value at the cursor, the member named raw (nil in an
// array).
func (w *walker) redacted(act action, first *bool, raw []byte) {
	c := &w.c
	c.Skip()
	w.changed = true
	if w.seen(act) {
		// reported already
	} else if act == removeValue {
		w.rep.add(&w.rep.removed, w.pointer())
	} else {
		w.rep.add(&w.rep.masked, w.pointer())
	}
	if act == removeValue {
		return
	}
	if !*first {
		w.out = append(w.out, ',')
	}
	*first = false
	if raw != nil {
		w.out = append(w.out, raw...)
		w.out = append(w.out, ':')
	}
	w.out = append(w.out, `"`+Marker+`"`...)
}

// pointer writes the current place as a JSON pointer, "*" for array elements, in scratch.
func (w *walker) pointer() []byte {
	b := w.scratch[:0]
	for _, s := range w.path {
		b = append(b, '/')
		if s.start < 0 {
			b = append(b, wildcard...)
			continue
		}
		b = appendEscaped(b, strictjson.Unquote(w.c.Data[s.start:s.end]))
	}
	w.scratch = b
	return b
}

// appendEscaped writes a member name as a JSON pointer token.
func appendEscaped(b, name []byte) []byte {
	for _, c := range name {
		switch c {
		case '~':
			b = append(b, '~', '0')
		case '/':
			b = append(b, '~', '1')
		default:
			b = append(b, c)
		}
	}
	return b
}
