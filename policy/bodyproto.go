package policy

import (
	"encoding/binary"
	"errors"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// protoJSONBody decodes an application/json body into a protobuf message (unknown fields
// refused) and checks it with the message's protovalidate rules.
type protoJSONBody struct {
	msg       protoreflect.MessageType
	validator protovalidate.Validator
	maxDepth  int
}

var _ bodySchema = (*protoJSONBody)(nil)

func (*protoJSONBody) mediaTypes() []string { return []string{"application/json"} }

func (p *protoJSONBody) check(body []byte, _ *agent) decision.Decision {
	if err := strictjson.Check(body, p.maxDepth); err != nil {
		return malformedJSON(err)
	}
	m := p.msg.New().Interface()
	opts := protojson.UnmarshalOptions{RecursionLimit: p.maxDepth + 1}
	if err := opts.Unmarshal(body, m); err != nil {
		return decision.Denied(decision.CodeBodySchema,
			"The body does not match this route's message; fix it and retry.",
			decision.Violation{Field: "body", Rule: "decode", Message: protoErrorMessage(err)})
	}
	return validateMessage(p.validator, m)
}

// grpcBody reads one uncompressed gRPC frame holding the route's request message.
type grpcBody struct {
	msg       protoreflect.MessageType
	validator protovalidate.Validator
	maxDepth  int
}

var _ bodySchema = (*grpcBody)(nil)

func (*grpcBody) mediaTypes() []string { return []string{"application/grpc", "application/grpc+proto"} }

func (g *grpcBody) check(body []byte, _ *agent) decision.Decision {
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
	return validateMessage(g.validator, m)
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
