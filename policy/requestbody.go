package policy

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// parsedBody is a request body read as strict JSON, once, and shared by every stage after: the
// route's schema, the approval condition, the approval digest and what approvers see. It is
// never modified once made (copies of a Request may share it); a request without a body to
// read costs nothing but the pointer to it.
type parsedBody struct {
	value any    // as strictjson.ParseShared returns it
	of    []byte // the body it was read from: a Body replaced since is read again
	depth int    // the nesting limit it was read with; 0 when the body is not strict JSON
	// message is the view (messageView) of the protobuf message the route's schema decoded from
	// the body, when decoded is set.
	message any
	decoded bool
	// msg is that message itself, for the approval digest's canonical form (DecodedMessage).
	msg protoreflect.Message
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
		nb := &parsedBody{value: v, of: r.Body, depth: maxDepth}
		if p != nil {
			nb.message, nb.decoded, nb.msg = p.message, p.decoded, p.msg
		}
		r.body = nb
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

// Message returns the body as the route's protobuf schema decoded it, on a message or
// grpc_message route that holds requests for approval: the message the upstream acts on, in
// the one form approval conditions and approvers read, a JSON value of the kinds JSON returns
// with fields by their proto names (see the policy reference, Approval.when). ok is false when
// no stage decoded a message from this body.
//
// The value is shared by every stage: never modify it.
func (r *Request) Message() (v any, ok bool) {
	if p := r.parsed(); p != nil && p.decoded {
		return p.message, true
	}
	return nil, false
}

// keepMessage records the view of the message the route decoded from the body, beside what
// was read of it as JSON. The parsedBody is replaced, never modified: copies of the Request may
// share the old one.
func (r *Request) keepMessage(m protoreflect.Message) {
	p := parsedBody{of: r.Body}
	if old := r.parsed(); old != nil {
		p = *old
	}
	p.message, p.decoded, p.msg = messageView(m), true, m
	r.body = &p
}

// DecodedMessage returns the protobuf message the route's schema decoded from the body, when
// Message has its view: what the approval digest binds on a gRPC route, in a canonical form, in
// place of the message's bytes (which a gRPC library may write in another order each time). ok
// is false when no stage decoded a message from this body.
//
// The message is shared by every stage: never modify it.
func (r *Request) DecodedMessage() (m protoreflect.Message, ok bool) {
	if p := r.parsed(); p != nil && p.decoded && p.msg != nil {
		return p.msg, true
	}
	return nil, false
}
