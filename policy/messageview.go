package policy

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// messageView is a decoded protobuf message as approval conditions and approvers read it: the
// message the upstream acts on, whichever of the spellings protojson accepts the agent sent (a
// field's proto name or its json_name, an enum's name or number, a 64-bit integer quoted or not)
// and however a gRPC message was encoded. It is a JSON value of the kinds strictjson reads
// (map[string]any, []any, string, json.Number, bool, nil):
//
//   - fields by their proto names (max_amount, never maxAmount); a field without presence (a
//     proto3 scalar, a repeated or map field) at its default when unset, one with presence
//     (optional, message, oneof member) left out when unset;
//   - every number as a json.Number, 64-bit integers included; float and double as their
//     shortest form, NaN and infinities as protojson writes them ("NaN", "Infinity");
//   - enums by name, or by number when the number has no name; bytes in standard base64;
//   - map keys as protojson writes them; well-known types in their JSON form (a Timestamp as
//     RFC 3339 text, a wrapper as its value, a Struct as its object).
func messageView(m protoreflect.Message) any {
	if v, ok := wellKnownView(m); ok {
		return v
	}
	fields := m.Descriptor().Fields()
	out := make(map[string]any, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) && fd.HasPresence() {
			continue
		}
		out[string(fd.Name())] = fieldView(fd, m.Get(fd))
	}
	return out
}

func fieldView(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = singularView(fd, l.Get(i))
		}
		return out
	case fd.IsMap():
		out := make(map[string]any, v.Map().Len())
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.String()] = singularView(fd.MapValue(), mv)
			return true
		})
		return out
	}
	return singularView(fd, v)
}

func singularView(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.FloatKind:
		return floatView(v.Float(), 32)
	case protoreflect.DoubleKind:
		return floatView(v.Float(), 64)
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return nil
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return json.Number(strconv.FormatInt(int64(v.Enum()), 10))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageView(v.Message())
	}
	return nil
}

// floatView is a float or double as protojson writes it, in its shortest form for its size: a
// float field holding 0.1 reads 0.1, not 0.10000000149011612.
func floatView(f float64, bits int) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
}

// wellKnownView reads the well-known types in their JSON form; ok is false for other messages.
func wellKnownView(m protoreflect.Message) (any, bool) {
	d := m.Descriptor()
	if d.ParentFile().Package() != "google.protobuf" {
		return nil, false
	}
	switch d.Name() {
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value",
		"BoolValue", "StringValue", "BytesValue":
		fd := d.Fields().ByName("value")
		return singularView(fd, m.Get(fd)), true
	case "Timestamp", "Duration", "FieldMask", "Struct", "Value", "ListValue", "Empty", "Any":
		b, err := protojson.Marshal(m.Interface())
		if err != nil {
			return nil, false
		}
		v, err := strictjson.Parse(b, 1<<16)
		if err != nil {
			return nil, false
		}
		return v, true
	}
	return nil, false
}
