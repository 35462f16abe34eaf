package policy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The policies, schemas and .proto files of these tests are in testdata/body.
const (
	bodyDir   = "testdata/body"
	bodyAgent = "spiffe://example.org/agent/a"
	bodyHost  = "api.example.org"
)

// hdrs is a policy.Headers where a header may repeat: lower-case name to its values.
type hdrs map[string][]string

func (h hdrs) Get(name string) (string, int) {
	v := h[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

// loadBodyPolicy loads one policy file of testdata/body, which must load.
func loadBodyPolicy(t testing.TB, name string) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join(bodyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return snap
}

// bodyProblems loads one policy file of testdata/body, which must fail, and returns its problems.
func bodyProblems(t *testing.T, name string) policy.Problems {
	t.Helper()
	files, err := policy.ReadPath(filepath.Join(bodyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err == nil {
		t.Fatalf("%s loaded (%+v); want problems", name, snap.Stats())
	}
	var problems policy.Problems
	if !errors.As(err, &problems) {
		t.Fatalf("%s: error is %T, not Problems: %v", name, err, err)
	}
	return problems
}

// ticketFiles compiles testdata/body/tickets.proto the way a policy does (protovalidate's file
// from the compiled-in registry), so that tests build messages from the same source.
var ticketFiles = sync.OnceValues(func() (protoreflect.FileDescriptor, error) {
	comp := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			protocompile.ResolverFunc(func(p string) (protocompile.SearchResult, error) {
				fd, err := protoregistry.GlobalFiles.FindFileByPath(p)
				if err != nil {
					return protocompile.SearchResult{}, err
				}
				return protocompile.SearchResult{Desc: fd}, nil
			}),
			&protocompile.SourceResolver{ImportPaths: []string{bodyDir}},
		}),
	}
	files, err := comp.Compile(context.Background(), "tickets.proto")
	if err != nil {
		return nil, err
	}
	return files[0], nil
})

// ticketMessage returns a new, empty message of tickets.proto, e.g. "GetRequest".
func ticketMessage(t testing.TB, name string) *dynamicpb.Message {
	t.Helper()
	fd, err := ticketFiles()
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().ByName(protoreflect.Name(name))
	if md == nil {
		t.Fatalf("tickets.proto has no message %s", name)
	}
	return dynamicpb.NewMessage(md)
}

// set sets the fields of m named by the keys of fields: int64, string, []string or, for a
// message field, a map of its own fields; a []map[string]any fills a repeated message field
// and a map[string]map[string]any a map field of messages.
func set(t testing.TB, m protoreflect.Message, fields map[string]any) {
	t.Helper()
	for name, v := range fields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			t.Fatalf("%s has no field %s", m.Descriptor().FullName(), name)
		}
		switch v := v.(type) {
		case int64:
			m.Set(fd, protoreflect.ValueOfInt64(v))
		case string:
			m.Set(fd, protoreflect.ValueOfString(v))
		case []string:
			l := m.Mutable(fd).List()
			for _, s := range v {
				l.Append(protoreflect.ValueOfString(s))
			}
		case map[string]any:
			set(t, m.Mutable(fd).Message(), v)
		case []map[string]any:
			l := m.Mutable(fd).List()
			for _, e := range v {
				el := l.NewElement()
				set(t, el.Message(), e)
				l.Append(el)
			}
		case map[string]map[string]any:
			mp := m.Mutable(fd).Map()
			for k, e := range v {
				el := mp.NewValue()
				set(t, el.Message(), e)
				mp.Set(protoreflect.ValueOfString(k).MapKey(), el)
			}
		default:
			t.Fatalf("set %s: unsupported %T", name, v)
		}
	}
}

// marshal encodes a message of tickets.proto with the given fields.
func marshal(t testing.TB, name string, fields map[string]any) []byte {
	t.Helper()
	m := ticketMessage(t, name)
	set(t, m, fields)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frame wraps a message in a gRPC length-prefixed frame with the given compressed-flag byte.
func frame(flag byte, msg []byte) []byte {
	out := []byte{flag, 0, 0, 0, 0}
	n := len(msg)
	out[1], out[2], out[3], out[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return append(out, msg...)
}

// unknownField is field number 99, a varint no message of tickets.proto defines.
func unknownField() []byte {
	b := protowire.AppendTag(nil, 99, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// lengthDelimited encodes field num as a length-delimited field holding b.
func lengthDelimited(num protowire.Number, b []byte) []byte {
	out := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(out, b)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

type bodyCase struct {
	name    string
	path    string // POST target
	hdr     hdrs   // nil: content-type as ct says
	ct      string // content type when hdr is nil; "-" for none
	body    []byte
	partial bool
	code    decision.Code
	viol    []string // "field rule" of each violation, in order; nil: not checked
}

func runBodyCases(t *testing.T, snap *policy.Snapshot, cases []bodyCase) {
	t.Helper()
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			d := snap.Decide(bodyRequest(tc))
			if d.Code != tc.code {
				t.Fatalf("POST %s: got %s (%s) %+v, want %s", tc.path, d.Code, d.Detail, d.Violations, tc.code)
			}
			if d.Status() != tc.code.Status() {
				t.Errorf("status %d, want %d", d.Status(), tc.code.Status())
			}
			if tc.code == decision.CodeAllowed {
				if d.Outcome != decision.Allow || d.Grant == nil {
					t.Errorf("allowed without outcome allow and a grant: %+v", d)
				}
				return
			}
			if d.Outcome != decision.Deny || d.Detail == "" || d.Grant != nil {
				t.Errorf("a deny must carry a detail and no grant: %+v", d)
			}
			if tc.viol == nil {
				return
			}
			var got []string
			for _, v := range d.Violations {
				got = append(got, v.Field+" "+v.Rule)
				if v.Message == "" {
					t.Errorf("violation %s %s has no message", v.Field, v.Rule)
				}
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.viol) {
				t.Errorf("violations = %q, want %q (%+v)", got, tc.viol, d.Violations)
			}
		})
	}
}

func bodyRequest(tc bodyCase) *policy.Request {
	h := tc.hdr
	if h == nil {
		h = hdrs{}
		if tc.ct != "-" {
			h["content-type"] = []string{tc.ct}
		}
	}
	return &policy.Request{
		Agent:       spiffeid.RequireFromString(bodyAgent),
		Method:      "POST",
		Host:        bodyHost,
		Target:      tc.path,
		Headers:     h,
		Body:        tc.body,
		BodyPartial: tc.partial,
	}
}

// TestBodyGRPC: a gRPC route takes exactly one uncompressed, length-prefixed frame holding a
// message of exactly the route's type that meets its protovalidate rules.
func TestBodyGRPC(t *testing.T) {
	snap := loadBodyPolicy(t, "body.yaml")
	const get = "/acme.tickets.v1.Tickets/Get"
	const grpc = "application/grpc"
	valid := marshal(t, "GetRequest", map[string]any{"id": int64(42), "name": "printer",
		"filter": map[string]any{"status": "open"}, "more": []map[string]any{{"status": "closed"}},
		"by_name": map[string]map[string]any{"x": {"status": "open"}}})
	// A Filter carrying an unknown field, to nest in each place a Filter can be.
	filterUnknown := cat(lengthDelimited(1, []byte("open")), unknownField())
	mapEntry := cat(lengthDelimited(1, []byte("k")), lengthDelimited(2, filterUnknown))
	ok := decision.CodeAllowed
	cases := []bodyCase{
		{name: "valid frame", path: get, ct: grpc, body: frame(0, valid), code: ok},
		{name: "grpc+proto", path: get, ct: "application/grpc+proto", body: frame(0, valid), code: ok},
		{name: "content type is case-insensitive", path: get, ct: "Application/GRPC", body: frame(0, valid), code: ok},
		{name: "empty message", path: get, ct: grpc, body: frame(0, nil), code: decision.CodeBodySchema,
			viol: []string{"id int64.gt"}},
		{name: "application/json", path: get, ct: "application/json", body: frame(0, valid), code: decision.CodeBodyContentType,
			viol: []string{"header.content-type media_type"}},
		{name: "grpc+json", path: get, ct: "application/grpc+json", body: frame(0, valid), code: decision.CodeBodyContentType},
		{name: "grpc-web", path: get, ct: "application/grpc-web", body: frame(0, valid), code: decision.CodeBodyContentType},
		{name: "no content type", path: get, ct: "-", body: frame(0, valid), code: decision.CodeBodyContentType},

		// The frame.
		{name: "compressed flag", path: get, ct: grpc, body: frame(1, valid), code: decision.CodeBodyEncoding,
			viol: []string{"body compressed"}},
		{name: "unknown flag 2", path: get, ct: grpc, body: frame(2, valid), code: decision.CodeBodyMalformed,
			viol: []string{"body frame"}},
		{name: "unknown flag 0x80", path: get, ct: grpc, body: frame(0x80, valid), code: decision.CodeBodyMalformed,
			viol: []string{"body frame"}},
		{name: "truncated header", path: get, ct: grpc, body: []byte{0, 0, 0, 0}, code: decision.CodeBodyMalformed,
			viol: []string{"body frame"}},
		{name: "header only, length 0", path: get, ct: grpc, body: []byte{0, 0, 0, 0, 0}, code: decision.CodeBodySchema,
			viol: []string{"id int64.gt"}},
		{name: "truncated message", path: get, ct: grpc, body: frame(0, valid)[:5+len(valid)-1], code: decision.CodeBodyMalformed,
			viol: []string{"body truncated"}},
		{name: "length beyond any body", path: get, ct: grpc, body: []byte{0, 0xff, 0xff, 0xff, 0xff, 8, 1}, code: decision.CodeBodyMalformed,
			viol: []string{"body truncated"}},
		{name: "two frames", path: get, ct: grpc, body: cat(frame(0, valid), frame(0, valid)), code: decision.CodeBodyMalformed,
			viol: []string{"body several_messages"}},
		{name: "trailing byte", path: get, ct: grpc, body: append(frame(0, valid), 0), code: decision.CodeBodyMalformed,
			viol: []string{"body several_messages"}},
		{name: "message not protobuf", path: get, ct: grpc, body: frame(0, []byte{0xff, 0xff, 0xff}), code: decision.CodeBodyMalformed,
			viol: []string{"body decode"}},
		{name: "invalid UTF-8 in a proto3 string", path: get, ct: grpc,
			body: frame(0, cat(marshal(t, "GetRequest", map[string]any{"id": int64(1)}), lengthDelimited(2, []byte{0xff}))),
			code: decision.CodeBodyMalformed, viol: []string{"body decode"}},

		// Unknown fields, at the top and nested, are refused: the upstream might read them.
		{name: "unknown field", path: get, ct: grpc, body: frame(0, cat(valid, unknownField())), code: decision.CodeBodySchema,
			viol: []string{"GetRequest unknown_field"}},
		{name: "unknown field first", path: get, ct: grpc, body: frame(0, cat(unknownField(), valid)), code: decision.CodeBodySchema,
			viol: []string{"GetRequest unknown_field"}},
		{name: "unknown field in a nested message", path: get, ct: grpc,
			body: frame(0, cat(marshal(t, "GetRequest", map[string]any{"id": int64(1)}), lengthDelimited(3, filterUnknown))),
			code: decision.CodeBodySchema, viol: []string{"filter unknown_field"}},
		{name: "unknown field in a repeated message", path: get, ct: grpc,
			body: frame(0, cat(marshal(t, "GetRequest", map[string]any{"id": int64(1)}), lengthDelimited(4, []byte{}), lengthDelimited(4, filterUnknown))),
			code: decision.CodeBodySchema, viol: []string{"more unknown_field"}},
		{name: "unknown field in a map value", path: get, ct: grpc,
			body: frame(0, cat(marshal(t, "GetRequest", map[string]any{"id": int64(1)}), lengthDelimited(5, mapEntry))),
			code: decision.CodeBodySchema, viol: []string{"by_name unknown_field"}},
		// A known field number with the wrong wire type is kept as unknown, and so refused.
		{name: "known field, wrong wire type", path: get, ct: grpc,
			body: frame(0, cat(marshal(t, "GetRequest", map[string]any{"name": "x"}), lengthDelimited(1, []byte("42")))),
			code: decision.CodeBodySchema, viol: []string{"GetRequest unknown_field"}},

		// protovalidate rules, with the path of the field.
		{name: "id not positive", path: get, ct: grpc, body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(-5)})),
			code: decision.CodeBodySchema, viol: []string{"id int64.gt"}},
		{name: "name too long", path: get, ct: grpc,
			body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(1), "name": strings.Repeat("n", 17)})),
			code: decision.CodeBodySchema, viol: []string{"name string.max_len"}},
		{name: "name at max_len", path: get, ct: grpc,
			body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(1), "name": strings.Repeat("é", 16)})), code: ok},
		{name: "nested rule", path: get, ct: grpc,
			body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(1), "filter": map[string]any{"status": "gone"}})),
			code: decision.CodeBodySchema, viol: []string{"filter.status string.in"}},
		{name: "repeated nested rule", path: get, ct: grpc,
			body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(1), "more": []map[string]any{{"status": "open"}, {"status": "gone"}}})),
			code: decision.CodeBodySchema, viol: []string{"more[1].status string.in"}},
		{name: "several violations", path: get, ct: grpc,
			body: frame(0, marshal(t, "GetRequest", map[string]any{"id": int64(-1), "name": strings.Repeat("n", 17)})),
			code: decision.CodeBodySchema, viol: []string{"id int64.gt", "name string.max_len"}},

		// The body is read strictly before the frame is.
		{name: "content-encoding gzip", path: get, hdr: hdrs{"content-type": {grpc}, "content-encoding": {"gzip"}},
			body: frame(0, valid), code: decision.CodeBodyEncoding, viol: []string{"header.content-encoding forbidden"}},
		{name: "frame larger than max_bytes", path: get, ct: grpc, body: frame(0, make([]byte, 4096)), code: decision.CodeBodyTooLarge},
		{name: "no body", path: get, ct: grpc, code: decision.CodeBodyMissing, viol: []string{"body required"}},
	}
	// grpc-encoding names how compressed messages are compressed: a route that reads messages
	// uncompressed refuses any other than identity, whatever the frame's flag says.
	for _, enc := range []string{"gzip", "deflate", "snappy", "Identity, gzip", ""} {
		cases = append(cases, bodyCase{name: "grpc-encoding " + enc, path: get,
			hdr:  hdrs{"content-type": {grpc}, "grpc-encoding": {enc}},
			body: frame(0, valid), code: decision.CodeBodyEncoding, viol: []string{"header.grpc-encoding forbidden"}})
	}
	cases = append(cases,
		bodyCase{name: "grpc-encoding identity", path: get, hdr: hdrs{"content-type": {grpc}, "grpc-encoding": {"identity"}},
			body: frame(0, valid), code: ok},
		bodyCase{name: "grpc-encoding IDENTITY", path: get, hdr: hdrs{"content-type": {grpc}, "grpc-encoding": {"IDENTITY"}},
			body: frame(0, valid), code: ok},
		bodyCase{name: "grpc-encoding twice", path: get, hdr: hdrs{"content-type": {grpc}, "grpc-encoding": {"identity", "identity"}},
			body: frame(0, valid), code: decision.CodeBodyEncoding},
		// grpc-accept-encoding is about the response: it does not matter here.
		bodyCase{name: "grpc-accept-encoding gzip", path: get, hdr: hdrs{"content-type": {grpc}, "grpc-accept-encoding": {"gzip"}},
			body: frame(0, valid), code: ok},
	)
	runBodyCases(t, snap, cases)
}

// TestBodyGRPCHandEncoded pins the frame layout without protobuf-go: flag, big-endian length,
// message.
func TestBodyGRPCHandEncoded(t *testing.T) {
	snap := loadBodyPolicy(t, "body.yaml")
	// GetRequest{id: 7, name: "ab"}: field 1 varint 7, field 2 bytes "ab".
	body := []byte{0, 0, 0, 0, 6, 0x08, 0x07, 0x12, 0x02, 'a', 'b'}
	runBodyCases(t, snap, []bodyCase{
		{name: "hand-encoded", path: "/acme.tickets.v1.Tickets/Get", ct: "application/grpc", body: body, code: decision.CodeAllowed},
		{name: "little-endian length", path: "/acme.tickets.v1.Tickets/Get", ct: "application/grpc",
			body: append([]byte{0, 6, 0, 0, 0}, body[5:]...), code: decision.CodeBodyMalformed, viol: []string{"body truncated"}},
	})
	if got := marshal(t, "GetRequest", map[string]any{"id": int64(7), "name": "ab"}); string(frame(0, got)) != string(body) {
		t.Errorf("frame(marshal) = %x, want %x", frame(0, got), body)
	}
}

// TestBodyJSON: JSON Schema and protobuf-JSON routes read the body as strict JSON first.
func TestBodyJSON(t *testing.T) {
	snap := loadBodyPolicy(t, "body.yaml")
	const js = "application/json"
	ok := decision.CodeAllowed
	b := func(s string) []byte { return []byte(s) }
	runBodyCases(t, snap, []bodyCase{
		{name: "comment", path: "/v1/comments", ct: js, body: b(`{"body":"hello"}`), code: ok},
		{name: "comment charset utf-8", path: "/v1/comments", ct: "application/json; charset=UTF-8", body: b(`{"body":"hello"}`), code: ok},
		{name: "comment extra member", path: "/v1/comments", ct: js, body: b(`{"body":"hello","x":1}`), code: decision.CodeBodySchema,
			viol: []string{"body additionalProperties"}},
		{name: "comment too long", path: "/v1/comments", ct: js, body: b(`{"body":"` + strings.Repeat("é", 4001) + `"}`),
			code: decision.CodeBodySchema, viol: []string{"/body maxLength"}},
		{name: "comment duplicate key", path: "/v1/comments", ct: js, body: b(`{"body":"hello","body":"evil"}`),
			code: decision.CodeBodyMalformed, viol: []string{"/body duplicate_key"}},
		{name: "comment escaped duplicate key", path: "/v1/comments", ct: js, body: b(`{"body":"hello","\u0062ody":"evil"}`),
			code: decision.CodeBodyMalformed, viol: []string{"/body duplicate_key"}},
		{name: "comment trailing data", path: "/v1/comments", ct: js, body: b(`{"body":"hello"} {}`),
			code: decision.CodeBodyMalformed, viol: []string{"body trailing_data"}},
		{name: "comment lone surrogate", path: "/v1/comments", ct: js, body: b(`{"body":"\ud800"}`),
			code: decision.CodeBodyMalformed, viol: []string{"/body invalid_utf8"}},
		{name: "comment invalid UTF-8", path: "/v1/comments", ct: js, body: b("{\"body\":\"\xff\"}"),
			code: decision.CodeBodyMalformed, viol: []string{"/body invalid_utf8"}},
		{name: "comment BOM", path: "/v1/comments", ct: js, body: b("\ufeff{\"body\":\"hello\"}"),
			code: decision.CodeBodyMalformed, viol: []string{"body syntax"}},

		// Formats are assertions, and $ref inside the file resolves.
		{name: "email", path: "/v1/contacts", ct: js, body: b(`{"email":"ada@example.org","count":3}`), code: ok},
		{name: "bad email", path: "/v1/contacts", ct: js, body: b(`{"email":"not an email"}`), code: decision.CodeBodySchema,
			viol: []string{"/email format"}},
		{name: "email without domain", path: "/v1/contacts", ct: js, body: b(`{"email":"ada@"}`), code: decision.CodeBodySchema,
			viol: []string{"/email format"}},
		{name: "local ref", path: "/v1/contacts", ct: js, body: b(`{"email":"ada@example.org","count":11}`), code: decision.CodeBodySchema,
			viol: []string{"/count maximum"}},
		{name: "integer written as 1.0", path: "/v1/contacts", ct: js, body: b(`{"email":"ada@example.org","count":1.0}`), code: ok},
		{name: "huge number not rounded", path: "/v1/contacts", ct: js, body: b(`{"email":"ada@example.org","count":1e400}`),
			code: decision.CodeBodySchema, viol: []string{"/count maximum"}},

		// A protobuf message read from JSON.
		{name: "note", path: "/v1/notes", ct: js, body: b(`{"title":"t","tags":["a","b"]}`), code: ok},
		{name: "note unknown field", path: "/v1/notes", ct: js, body: b(`{"title":"t","nope":1}`), code: decision.CodeBodySchema,
			viol: []string{"body decode"}},
		{name: "note duplicate key", path: "/v1/notes", ct: js, body: b(`{"title":"t","title":"u"}`), code: decision.CodeBodyMalformed,
			viol: []string{"/title duplicate_key"}},
		// protojson reads a field by its JSON name and by its proto name: strictjson sees two
		// members, protojson one field twice, and refuses it.
		{name: "note field by both names", path: "/v1/notes", ct: js, body: b(`{"title":"t","short_text":"a","shortText":"b"}`),
			code: decision.CodeBodySchema, viol: []string{"body decode"}},
		{name: "note field by proto name", path: "/v1/notes", ct: js, body: b(`{"title":"t","short_text":"a"}`), code: ok},
		{name: "note field by JSON name", path: "/v1/notes", ct: js, body: b(`{"title":"t","shortText":"a"}`), code: ok},
		{name: "note null", path: "/v1/notes", ct: js, body: b(`{"title":"t","shortText":null}`), code: ok},
		{name: "note rule", path: "/v1/notes", ct: js, body: b(`{"title":""}`), code: decision.CodeBodySchema,
			viol: []string{"title string.min_len"}},
		{name: "note repeated rule", path: "/v1/notes", ct: js, body: b(`{"title":"t","tags":["ok","` + strings.Repeat("x", 65) + `"]}`),
			code: decision.CodeBodySchema, viol: []string{"tags[1] string.max_len"}},
		{name: "note trailing data", path: "/v1/notes", ct: js, body: b(`{"title":"t"}x`), code: decision.CodeBodyMalformed,
			viol: []string{"body trailing_data"}},
	})
}

// TestBodyReading: before any schema sees a body, it must be whole, unencoded, within the
// limit, of one declared length and of one content type the route reads.
func TestBodyReading(t *testing.T) {
	snap := loadBodyPolicy(t, "body.yaml")
	const js = "application/json"
	comment := []byte(`{"body":"hello"}`)
	n := fmt.Sprint(len(comment))
	ok := decision.CodeAllowed
	runBodyCases(t, snap, []bodyCase{
		{name: "partial", path: "/v1/comments", ct: js, body: comment, partial: true, code: decision.CodeBodyTruncated},
		{name: "partial without body", path: "/v1/comments", ct: js, partial: true, code: decision.CodeBodyTruncated},
		{name: "partial on an optional route", path: "/v1/ping", ct: js, partial: true, code: decision.CodeBodyTruncated},
		{name: "content-length over max_bytes, no body", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"16385"}},
			code: decision.CodeBodyTooLarge, viol: []string{"body max_bytes"}},
		{name: "content-length at max_bytes, no body", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"16384"}},
			code: decision.CodeBodyUnavailable},
		{name: "content-length, no body", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {n}},
			code: decision.CodeBodyUnavailable},
		{name: "chunked, no body", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "transfer-encoding": {"chunked"}},
			code: decision.CodeBodyUnavailable},
		{name: "content-length, no body, optional route", path: "/v1/ping", hdr: hdrs{"content-type": {js}, "content-length": {"10"}},
			code: decision.CodeBodyUnavailable},
		{name: "optional body absent", path: "/v1/ping", ct: "-", code: ok},
		{name: "optional body absent, content-length 0", path: "/v1/ping", hdr: hdrs{"content-length": {"0"}}, code: ok},
		{name: "optional body present", path: "/v1/ping", ct: js, body: comment, code: ok},
		{name: "optional body present but wrong", path: "/v1/ping", ct: js, body: []byte(`{}`), code: decision.CodeBodySchema},
		{name: "required body absent", path: "/v1/comments", ct: js, code: decision.CodeBodyMissing, viol: []string{"body required"}},
		{name: "content-length 0, no body", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"0"}},
			code: decision.CodeBodyMissing},
		{name: "content-length matches", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {n}}, body: comment, code: ok},
		{name: "content-length too small", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"3"}}, body: comment,
			code: decision.CodeRequestMalformed},
		{name: "content-length too large", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"100"}}, body: comment,
			code: decision.CodeRequestMalformed},
		{name: "content-length twice", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {n, n}}, body: comment,
			code: decision.CodeRequestMalformed},
		{name: "content-length signed", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {"+" + n}}, body: comment,
			code: decision.CodeRequestMalformed},
		{name: "content-length not a number", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-length": {n + ", " + n}}, body: comment,
			code: decision.CodeRequestMalformed},
		{name: "body over max_bytes", path: "/v1/ping", ct: js, body: []byte(`{"body":"` + strings.Repeat("x", 60) + `"}`),
			code: decision.CodeBodyTooLarge, viol: []string{"body max_bytes"}},
		{name: "body at max_bytes", path: "/v1/ping", ct: js, body: []byte(`{"body":"` + strings.Repeat("x", 53) + `"}`), code: ok},
		{name: "content-encoding gzip", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-encoding": {"gzip"}}, body: comment,
			code: decision.CodeBodyEncoding, viol: []string{"header.content-encoding forbidden"}},
		{name: "content-encoding identity", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-encoding": {"identity"}}, body: comment,
			code: ok},
		{name: "content-encoding identity twice", path: "/v1/comments", hdr: hdrs{"content-type": {js}, "content-encoding": {"identity", "identity"}},
			body: comment, code: decision.CodeBodyEncoding},
		{name: "two content-type headers", path: "/v1/comments", hdr: hdrs{"content-type": {js, js}}, body: comment,
			code: decision.CodeBodyContentType, viol: []string{"header.content-type media_type"}},
		{name: "no content-type", path: "/v1/comments", ct: "-", body: comment, code: decision.CodeBodyContentType},
		{name: "charset utf-16", path: "/v1/comments", ct: "application/json; charset=utf-16", body: comment, code: decision.CodeBodyContentType},
		{name: "charset quoted utf-8", path: "/v1/comments", ct: `application/json; charset="utf-8"`, body: comment, code: ok},
		{name: "other parameter", path: "/v1/comments", ct: "application/json; boundary=x", body: comment, code: decision.CodeBodyContentType},
		{name: "charset twice", path: "/v1/comments", ct: "application/json; charset=utf-8; charset=utf-16", body: comment,
			code: decision.CodeBodyContentType},
		{name: "text/plain", path: "/v1/comments", ct: "text/plain", body: comment, code: decision.CodeBodyContentType},
		{name: "json suffix type", path: "/v1/comments", ct: "application/merge-patch+json", body: comment, code: decision.CodeBodyContentType},
		{name: "malformed content-type", path: "/v1/comments", ct: "application/json; charset", body: comment, code: decision.CodeBodyContentType},
		{name: "content-type list", path: "/v1/comments", ct: "application/json, text/plain", body: comment, code: decision.CodeBodyContentType},
	})
}

// TestBodySchemaProblems: a JSON Schema that is not strict JSON, or refers to anything outside
// its own file, or lies outside the policy directory, is a load problem at the policy line that
// names it.
func TestBodySchemaProblems(t *testing.T) {
	problems := bodyProblems(t, "bad-schemas.yaml")
	const f = "testdata/body/bad-schemas.yaml:"
	want := []string{
		f + `16:24: hosts[0].routes[0].body.json_schema: ref-file.schema.json: ` +
			`failing loading "file:///policy/comment.schema.json": $ref to file:///policy/comment.schema.json: a schema may only refer inside its own file`,
		f + `22:24: hosts[0].routes[1].body.json_schema: ref-http.schema.json: ` +
			`failing loading "https://schemas.example.com/a.json": $ref to https://schemas.example.com/a.json: a schema may only refer inside its own file`,
		f + `28:24: hosts[0].routes[2].body.json_schema: ref-id.schema.json: ` +
			`failing loading "https://schemas.example.com/other.json": $ref to https://schemas.example.com/other.json: a schema may only refer inside its own file`,
		f + `34:24: hosts[0].routes[3].body.json_schema: meta-remote.schema.json: ` +
			`failing loading "https://schemas.example.com/meta.json": $ref to https://schemas.example.com/meta.json: a schema may only refer inside its own file`,
		f + `40:24: hosts[0].routes[4].body.json_schema: not-json.schema.json: not strict JSON: `,
		f + `46:24: hosts[0].routes[5].body.json_schema: duplicate-key.schema.json: not strict JSON: strictjson: /additionalProperties: duplicate member name`,
		f + `52:24: hosts[0].routes[6].body.json_schema: trailing.schema.json: not strict JSON: strictjson: data follows the JSON value`,
		f + `58:24: hosts[0].routes[7].body.json_schema: "../decide.yaml": refer to files by a clean relative path inside the policy directory`,
		f + `64:24: hosts[0].routes[8].body.json_schema: "/etc/passwd": refer to files by a clean relative path inside the policy directory`,
		f + `70:24: hosts[0].routes[9].body.json_schema: "./comment.schema.json": refer to files by a clean relative path inside the policy directory`,
		f + `76:24: hosts[0].routes[10].body.json_schema: cannot read missing.schema.json: no such file or directory`,
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
	}
	for i := 0; i < len(problems) && i < len(want); i++ {
		if !strings.HasPrefix(problems[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, problems[i], want[i])
		}
	}
}

// TestBodyProtoProblems: a .proto syntax error is reported with the .proto file and line; a
// message no file defines is a problem at the route that names it.
func TestBodyProtoProblems(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"bad-proto-syntax.yaml", []string{
			`testdata/body/bad-proto-syntax.yaml:5:3: proto_files: syntax-error.proto:7:3: syntax error: expecting ';'`,
			// The route's message is missing too: no file of a policy that does not compile is used.
			`testdata/body/bad-proto-syntax.yaml:21:25: hosts[0].routes[0].body.grpc_message: message acme.tickets.v1.GetRequest is not defined`,
		}},
		{"bad-messages.yaml", []string{
			`testdata/body/bad-messages.yaml:20:20: hosts[0].routes[0].body.message: message acme.tickets.v1.Missing is not defined in proto_files or compiled into agentauthz`,
			`testdata/body/bad-messages.yaml:26:25: hosts[0].routes[1].body.grpc_message: message acme.tickets.v1.GetRequest.Missing is not defined`,
			`testdata/body/bad-messages.yaml:32:25: hosts[0].routes[2].body.grpc_message: gRPC routes use method POST`,
		}},
		// Each says why the file could not be read, not protoregistry's "not found".
		{"bad-proto-missing.yaml", []string{
			`testdata/body/bad-proto-missing.yaml:5:3: proto_files: cannot read missing.proto: no such file or directory`,
		}},
		{"bad-proto-outside.yaml", []string{
			`testdata/body/bad-proto-outside.yaml:5:3: proto_files: "../decide.proto": refer to files by a clean relative path inside the policy directory`,
		}},
		{"bad-proto-import-outside.yaml", []string{
			`testdata/body/bad-proto-import-outside.yaml:5:3: proto_files: imports-outside.proto:5:8: "../decide.proto": refer to files by a clean relative path inside the policy directory`,
		}},
		// Rules that do not compile are refused when the policy loads, once per message, at the
		// first route naming it: the validator is built then, never on a request.
		{"bad-rules.yaml", []string{
			`testdata/body/bad-rules.yaml:20:20: hosts[0].routes[0].body.message: the protovalidate rules of acme.badrules.v1.BadExpression do not compile:`,
			`testdata/body/bad-rules.yaml:26:25: hosts[0].routes[1].body.grpc_message: the protovalidate rules of acme.badrules.v1.WrongRuleType do not compile:`,
		}},
		// The directory's own buf/validate/validate.proto and google/protobuf/any.proto are never
		// compiled: their messages do not exist.
		{"bad-shadow-messages.yaml", []string{
			`testdata/body/bad-shadow-messages.yaml:20:20: hosts[0].routes[0].body.message: message buf.validate.Fake is not defined`,
			`testdata/body/bad-shadow-messages.yaml:26:25: hosts[0].routes[1].body.grpc_message: message google.protobuf.Evil is not defined`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			problems := bodyProblems(t, tc.file)
			if len(problems) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(problems), len(tc.want), strings.Join(problems, "\n"))
			}
			for i := 0; i < len(problems) && i < len(tc.want); i++ {
				if !strings.HasPrefix(problems[i], tc.want[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s…", i, problems[i], tc.want[i])
				}
			}
		})
	}
}

// TestBodyProtoShadowing: proto_files naming buf/validate/validate.proto and
// google/protobuf/any.proto get agentauthz's own files, not the policy directory's, so the
// route's rules still hold.
func TestBodyProtoShadowing(t *testing.T) {
	snap := loadBodyPolicy(t, "shadow.yaml")
	const js = "application/json"
	runBodyCases(t, snap, []bodyCase{
		{name: "valid", path: "/v1/shadowed", ct: js, body: []byte(`{"id":"1"}`), code: decision.CodeAllowed},
		{name: "rule enforced", path: "/v1/shadowed", ct: js, body: []byte(`{"id":"-1"}`), code: decision.CodeBodySchema,
			viol: []string{"id int64.gt"}},
		// The real Any: its @type must resolve to a type agentauthz knows.
		{name: "real Any", path: "/v1/shadowed", ct: js,
			body: []byte(`{"id":"1","extra":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}}`), code: decision.CodeAllowed},
		{name: "Any of an unknown type", path: "/v1/shadowed", ct: js,
			body: []byte(`{"id":"1","extra":{"@type":"type.googleapis.com/google.protobuf.Evil","anything":"x"}}`), code: decision.CodeBodySchema},
	})
}

// TestBodyProtoImportsConcurrent: two proto_files, one importing the other, are read by
// protocompile from several goroutines; with -race this is the regression test for the
// unsynchronised write in readRef. Loads also run side by side.
func TestBodyProtoImportsConcurrent(t *testing.T) {
	files, err := policy.ReadPath(filepath.Join(bodyDir, "body.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	revisions := make([]string, 8)
	for i := range revisions {
		wg.Go(func() {
			for range 5 {
				snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
				if err != nil {
					t.Error(err)
					return
				}
				revisions[i] = snap.Revision()
			}
		})
	}
	wg.Wait()
	for _, r := range revisions[1:] {
		if r != revisions[0] {
			t.Errorf("revisions differ: %q", revisions)
			break
		}
	}
	// The imported file counts toward the revision: change it and the revision changes.
	dir := t.TempDir()
	for _, name := range []string{"body.yaml", "tickets.proto", "common.proto", "comment.schema.json", "contact.schema.json"} {
		data, err := os.ReadFile(filepath.Join(bodyDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "common.proto" {
			data = append(data, "\n// changed\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	changed, err := policy.ReadPath(filepath.Join(dir, "body.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(changed, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Revision() == revisions[0] {
		t.Errorf("revision %s did not change with common.proto", snap.Revision())
	}
}

// TestBodyRefSymlinks: a file the policy refers to may be a symbolic link inside the policy
// directory (a Kubernetes ConfigMap volume is made of them), never one out of it.
func TestBodyRefSymlinks(t *testing.T) {
	copyTo := func(t *testing.T, dir, name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(bodyDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(t *testing.T, target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Skipf("cannot make symbolic links here: %v", err)
		}
	}
	load := func(t *testing.T, dir string) error {
		t.Helper()
		files, err := policy.ReadPath(filepath.Join(dir, "body.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = policy.Load(files, policy.Options{Secrets: policy.Placeholders})
		return err
	}

	t.Run("configmap layout", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"body.yaml", "tickets.proto", "common.proto", "comment.schema.json", "contact.schema.json"} {
			copyTo(t, data, name)
		}
		symlink(t, filepath.Base(data), filepath.Join(dir, "..data"))
		for _, name := range []string{"body.yaml", "tickets.proto", "common.proto", "comment.schema.json", "contact.schema.json"} {
			symlink(t, filepath.Join("..data", name), filepath.Join(dir, name))
		}
		if err := load(t, dir); err != nil {
			t.Fatal(err)
		}
	})

	for _, name := range []string{"comment.schema.json", "common.proto"} {
		t.Run("link out: "+name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			for _, n := range []string{"body.yaml", "tickets.proto", "common.proto", "comment.schema.json", "contact.schema.json"} {
				if n == name {
					copyTo(t, outside, n)
					symlink(t, filepath.Join(outside, n), filepath.Join(dir, n))
					continue
				}
				copyTo(t, dir, n)
			}
			err := load(t, dir)
			if err == nil || !strings.Contains(err.Error(), "cannot read "+name+": it is a symbolic link out of the policy directory") {
				t.Fatalf("Load: %v; want a problem about the link %s", err, name)
			}
		})
	}
}

// TestBodyDepth: max_depth bounds how deeply a message nests, the same in a gRPC body as in
// JSON: the top-level message or object is level 1.
func TestBodyDepth(t *testing.T) {
	snap := loadBodyPolicy(t, "body.yaml") // max_depth: 4 on both Tree routes
	tree := func(levels int) (grpc, js []byte) {
		var msg []byte
		obj := `{"label":"leaf"}`
		for i := 1; i < levels; i++ {
			msg = lengthDelimited(1, msg)
			obj = `{"child":` + obj + `}`
		}
		return frame(0, msg), []byte(obj)
	}
	var cases []bodyCase
	for levels := 1; levels <= 6; levels++ {
		g, j := tree(levels)
		code := decision.CodeAllowed
		var gviol, jviol []string
		if levels > 4 {
			code, gviol, jviol = decision.CodeBodyMalformed, []string{"body decode"}, []string{strings.Repeat("/child", 4) + " depth"}
		}
		cases = append(cases,
			bodyCase{name: fmt.Sprintf("grpc %d levels", levels), path: "/acme.tickets.v1.Tickets/Plant", ct: "application/grpc", body: g, code: code, viol: gviol},
			bodyCase{name: fmt.Sprintf("json %d levels", levels), path: "/v1/trees", ct: "application/json", body: j, code: code, viol: jviol})
	}
	runBodyCases(t, snap, cases)
}
