package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// protoJSONBody decodes an application/json body into a protobuf message (unknown fields
// refused) and checks it with the message's protovalidate rules.
type protoJSONBody struct {
	msg       protoreflect.MessageType
	validator protovalidate.Validator
	maxDepth  int
	// keep builds the body's JSON value and the decoded message's view for the stages after (the
	// route holds requests for approval: its condition and approvers read the message, the
	// digest the JSON); otherwise the body is only checked.
	keep bool
}

var _ bodySchema = (*protoJSONBody)(nil)

func (*protoJSONBody) mediaTypes() []string { return jsonMediaTypes }

func (p *protoJSONBody) check(r *Request, _ *agent) decision.Decision {
	var err error
	if p.keep {
		_, err = r.readJSON(p.maxDepth)
	} else {
		err = r.checkJSON(p.maxDepth)
	}
	if err != nil {
		return malformedJSON(err)
	}
	m := p.msg.New().Interface()
	opts := protojson.UnmarshalOptions{RecursionLimit: p.maxDepth + 1}
	if err := opts.Unmarshal(r.Body, m); err != nil {
		return decision.Denied(decision.CodeBodySchema,
			"The body does not match this route's message; fix it and retry.",
			decision.Violation{Field: "body", Rule: "decode", Message: protoErrorMessage(err)})
	}
	if d := validateMessage(p.validator, m); d.Code != "" || !p.keep {
		return d
	}
	r.keepMessage(m.ProtoReflect())
	return allowed()
}

// grpcBody reads one uncompressed gRPC frame holding the route's request message.
type grpcBody struct {
	msg       protoreflect.MessageType
	validator protovalidate.Validator
	maxDepth  int
	// keep builds the decoded message's view for the stages after (the route holds requests for
	// approval, whose condition and approvers read it).
	keep bool
}

var _ bodySchema = (*grpcBody)(nil)

func (*grpcBody) mediaTypes() []string { return grpcMediaTypes }

func (g *grpcBody) check(r *Request, _ *agent) decision.Decision {
	body := r.Body
	bad := func(rule, msg string) decision.Decision {
		return decision.Denied(decision.CodeBodyMalformed,
			"The body is not exactly one uncompressed gRPC message; send one.",
			decision.Violation{Field: "body", Rule: rule, Message: msg})
	}
	if len(body) < 5 {
		return bad("frame", "is shorter than a gRPC frame header")
	}
	switch body[0] {
	case 0:
	case 1:
		return decision.Denied(decision.CodeBodyEncoding,
			"Compressed gRPC messages are refused; send the message uncompressed.",
			decision.Violation{Field: "body", Rule: "compressed", Message: "must not be compressed"})
	default:
		return bad("frame", "has an unknown frame flag")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	switch rest := uint64(len(body) - 5); {
	case uint64(n) > rest:
		return bad("truncated", "is cut short")
	case uint64(n) < rest:
		return bad("several_messages", "holds more than one message")
	}
	m := g.msg.New().Interface()
	// protobuf-go counts the top-level message as one level, as strictjson counts the top-level
	// object: max_depth levels, the same message nests as deeply in a gRPC body as in JSON.
	opts := proto.UnmarshalOptions{RecursionLimit: g.maxDepth}
	if err := opts.Unmarshal(body[5:], m); err != nil {
		return bad("decode", protoErrorMessage(err))
	}
	if path, ok := findUnknown(m.ProtoReflect(), ""); ok {
		return decision.Denied(decision.CodeBodySchema,
			"The message carries fields this route does not know; remove them.",
			decision.Violation{Field: path, Rule: "unknown_field", Message: "is not a field of the message"})
	}
	if d := validateMessage(g.validator, m); d.Code != "" || !g.keep {
		return d
	}
	r.keepMessage(m.ProtoReflect())
	return allowed()
}

// findUnknown reports the first message in m's tree holding fields its schema does not define.
func findUnknown(m protoreflect.Message, at string) (string, bool) {
	if len(m.GetUnknown()) > 0 {
		if at == "" {
			at = string(m.Descriptor().Name())
		}
		return at, true
	}
	found, where := false, ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		name := string(fd.Name())
		if at != "" {
			name = at + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				where, found = findUnknown(l.Get(i).Message(), name)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					where, found = findUnknown(mv.Message(), name)
					return !found
				})
			}
		default:
			where, found = findUnknown(v.Message(), name)
		}
		return !found
	})
	return where, found
}

func validateMessage(v protovalidate.Validator, m proto.Message) decision.Decision {
	err := v.Validate(m)
	if err == nil {
		return allowed()
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return decision.Failed(decision.CodeInternal, "The body could not be checked; retry later.", err)
	}
	out := make([]decision.Violation, 0, len(ve.Violations))
	for _, viol := range ve.Violations {
		out = append(out, decision.Violation{
			Field:   protovalidate.FieldPathString(viol.Proto.GetField()),
			Rule:    viol.Proto.GetRuleId(),
			Message: viol.Proto.GetMessage(),
		})
	}
	return decision.Denied(decision.CodeBodySchema,
		"The body breaks this route's rules; fix the listed fields and retry.", limitViolations(out)...)
}

// protoErrorMessage shortens a protobuf decoding error for an agent.
func protoErrorMessage(err error) string {
	// protobuf-go separates "proto:" from the message with a space or, at random, a
	// non-breaking one, so that nobody matches on its text; trim either.
	s := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
	return clip(s, 200)
}

// validatedBody is a body whose message protovalidate checks: where the policy names it, and
// the validator field buildValidator fills in.
type validatedBody struct {
	src       *source
	at        string
	msg       protoreflect.MessageType
	validator *protovalidate.Validator
}

// validates records that a body checks msg with its protovalidate rules.
func (c *compiler) validates(src *source, at string, msg protoreflect.MessageType, v *protovalidate.Validator) {
	c.validated = append(c.validated, validatedBody{src: src, at: at, msg: msg, validator: v})
}

// buildValidator builds the protovalidate rules of every body message now, while the policy
// loads, and never on a request: the validator knows exactly these messages (and those they
// nest) and builds nothing later. Rules that do not compile are problems of the policy, at the
// first body naming their message (as far as protovalidate reports them before it meets a
// value: the message's own rules and those of its fields).
func (c *compiler) buildValidator() {
	if len(c.validated) == 0 {
		return
	}
	seen := map[protoreflect.FullName]bool{}
	var descs []protoreflect.MessageDescriptor
	for _, b := range c.validated {
		if d := b.msg.Descriptor(); !seen[d.FullName()] {
			seen[d.FullName()] = true
			descs = append(descs, d)
		}
	}
	v, err := protovalidate.New(protovalidate.WithMessageDescriptors(descs...), protovalidate.WithDisableLazy())
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("policy: cannot build the protovalidate validator: %v", err))
		return
	}
	clear(seen)
	for _, b := range c.validated {
		*b.validator = v
		if name := b.msg.Descriptor().FullName(); !seen[name] {
			seen[name] = true
			var ce *protovalidate.CompilationError
			if err := v.Validate(b.msg.New().Interface()); errors.As(err, &ce) {
				c.addf(b.src, b.at, "the protovalidate rules of %s do not compile: %v", name, err)
			}
		}
	}
}
