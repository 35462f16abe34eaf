package policy

import "github.com/agentauthz/agentauthz/policy/strictjson"

// parsedBody is a request body read as strict JSON, once, and shared by every stage after: the
// route's schema, the approval condition, the approval digest and what approvers see. It is
// never modified once made (copies of a Request may share it); a request without a body to
// read costs nothing but the pointer to it.
type parsedBody struct {
	value any    // as strictjson.ParseShared returns it
	of    []byte // the body it was read from: a Body replaced since is read again
	depth int    // the nesting limit it was read with; 0 when the body is not strict JSON
}

// parsed returns what was read of r.Body, or nil.
func (r *Request) parsed() *parsedBody {
	p := r.body
	if p == nil || len(p.of) != len(r.Body) || len(r.Body) > 0 && &p.of[0] != &r.Body[0] {
		return nil
	}
	return p
}

// JSON returns the body as strict JSON: map[string]any, []any, string, json.Number, bool or
// nil, as strictjson reads it. The stage of the decision that read the body first (the route's
// body schema) left its value here; if none did, the body is read now, nested at most
// strictjson.DefaultMaxDepth deep, and kept for the stages after. ok is false when the body is
// empty or not strict JSON.
//
// The value is shared by every stage and its strings may share memory with Body: never modify
// it.
func (r *Request) JSON() (v any, ok bool) {
	if p := r.parsed(); p != nil {
		return p.value, p.depth > 0
	}
	v, err := r.readJSON(strictjson.DefaultMaxDepth)
	if err != nil {
		r.body = &parsedBody{of: r.Body} // not JSON: not read again
		return nil, false
	}
	return v, true
}

// readJSON reads the body as strict JSON nested at most maxDepth deep, or returns what an earlier
// stage read with the same limit or a stricter one.
func (r *Request) readJSON(maxDepth int) (any, error) {
	if maxDepth <= 0 {
		maxDepth = strictjson.DefaultMaxDepth
	}
	p := r.parsed()
	if p != nil && p.depth > 0 && p.depth <= maxDepth {
		return p.value, nil
	}
	v, err := strictjson.ParseShared(r.Body, maxDepth) // a request body is never written to
	if err != nil {
		return nil, err
	}
	if p == nil || p.depth == 0 || maxDepth < p.depth {
		r.body = &parsedBody{value: v, of: r.Body, depth: maxDepth}
	}
	return v, nil
}

// checkJSON checks that the body is strict JSON nested at most maxDepth deep, without building
// its value unless an earlier stage did.
func (r *Request) checkJSON(maxDepth int) error {
	if maxDepth <= 0 {
		maxDepth = strictjson.DefaultMaxDepth
	}
	if p := r.parsed(); p != nil && p.depth > 0 && p.depth <= maxDepth {
		return nil
	}
	return strictjson.Check(r.Body, maxDepth)
}
