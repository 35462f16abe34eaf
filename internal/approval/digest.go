package approval

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Digest binds an approval to one request: the agent, method, host (lower case), path with its
// raw query, the rule that held it and the body, canonicalised for JSON (RFC 8785: member order
// and number spelling do not matter) and as sent otherwise. Each part is length-prefixed, so no
// two requests share a digest by shifting bytes between parts.
//
// Headers are not part of it: the policy refuses every header that could make the upstream act
// on another path, host or method, and removes the forwarded-context headers, on the held
// request and on its retry alike (Host.refuse_headers, Host.trust_forwarded_headers), so no
// header a retry adds can change what was approved.
//
// RFC 8785 rounds every number to a float64. A JSON body with a number that rounding would
// change (9007199254740993, 0.10000000000000001) is therefore digested as sent: otherwise two
// bodies an upstream reads as different values (two account ids) would share one approval. So
// is a JSON body nested deeper than strictjson.DefaultMaxDepth, or one that is not strict JSON.
//
// On a gRPC route whose schema decoded the message (the Gate's digest; Digest itself has only
// the bytes), the message is bound in a canonical form (canonicalMessage), not as sent: gRPC
// libraries write map entries, and dynamic messages' fields, in any order, so the identical
// retry of an approved call need not repeat the held call's bytes.
func Digest(agent, method, host, path, rule, contentType string, body []byte) string {
	var v any
	parsed := false
	if len(body) > 0 && isJSON(contentType) {
		var err error
		v, err = strictjson.ParseShared(body, strictjson.DefaultMaxDepth)
		parsed = err == nil
	}
	return digest(agent, method, host, path, rule, body, v, parsed)
}

// digest is Digest of a body read already: when parsed, v is the body as strictjson reads it
// (at any depth limit), and the body's content type is JSON.
func digest(agent, method, host, path, rule string, body []byte, v any, parsed bool) string {
	return digestMessage(agent, method, host, path, rule, body, v, parsed, nil)
}

// digestMessage is digest with msg, when not nil, the protobuf message a gRPC route decoded from
// the body: it is bound in its canonical form, labelled apart from the JSON and bytes forms, in
// place of the body's bytes. A message with no canonical form is bound by the bytes as sent.
func digestMessage(agent, method, host, path, rule string, body []byte, v any, parsed bool, msg protoreflect.Message) string {
	h, part := digestStart(agent, method, host, path, rule)
	if msg != nil {
		if label, canon, ok := canonicalMessage(msg); ok {
			part([]byte(label))
			part(canon)
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	if parsed {
		buf := canonBufs.Get().(*[]byte)
		canon, err := appendCanonical((*buf)[:0], v, 0)
		if err == nil {
			part([]byte("json"))
			part(canon)
		}
		if cap(canon) <= 1<<20 {
			*buf = canon[:0]
			canonBufs.Put(buf)
		}
		if err == nil {
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	part([]byte("bytes"))
	part(body)
	return hex.EncodeToString(h.Sum(nil))
}

// digestStart begins a digest with its version and the request line and rule every form binds,
// each part length-prefixed; part adds the next one.
func digestStart(agent, method, host, path, rule string) (h hash.Hash, part func([]byte)) {
	h = sha256.New()
	part = func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	part([]byte("agentauthz-approval-v1"))
	part([]byte(agent))
	part([]byte(method))
	part([]byte(strings.ToLower(host)))
	part([]byte(path))
	part([]byte(rule))
	return h, part
}

// digestTool binds an approval to one MCP tool call: the agent, the request line, the rule (the
// server and tool), the tool's name and its arguments canonicalised by RFC 8785, labelled apart
// from the other forms. Arguments that RFC 8785 would change (a number a float64 cannot hold
// exactly) bind the body as sent, which no retry repeats: such a call can be held but not
// retried, rather than share an approval with another call.
func digestTool(agent, method, host, path, rule, tool string, args map[string]any, body []byte) string {
	h, part := digestStart(agent, method, host, path, rule)
	buf := canonBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 1<<20 {
			canonBufs.Put(buf)
		}
	}()
	canon, err := appendCanonical((*buf)[:0], map[string]any{"name": tool, "arguments": args}, 0)
	*buf = canon[:0]
	if err == nil {
		part([]byte("mcp-tool"))
		part(canon)
	} else {
		part([]byte("bytes"))
		part(body)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalMessage is the form of a decoded protobuf message that an approval binds, the same
// for every encoding of the same message (fields and map entries in any order, a repeated
// scalar packed or not, a field sent twice): its protojson form canonicalised by RFC 8785
// (label "proto"), which does not depend on protobuf-go's binary encoding and so holds across
// versions of agentauthz. protojson writes 64-bit integers as strings, and a float or double in
// its shortest form, so RFC 8785's float64 numbers lose nothing. A message protojson cannot
// write (an Any of a type no registry knows) is bound by its deterministic binary form (label
// "proto-wire": stable within one build). The gRPC route refused unknown fields, which neither
// form would keep.
func canonicalMessage(m protoreflect.Message) (label string, canon []byte, ok bool) {
	if b, err := protojson.Marshal(m.Interface()); err == nil {
		v := jsontext.Value(b)
		if err := v.Canonicalize(); err == nil {
			return "proto", v, true
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	if err != nil {
		return "", nil, false
	}
	return "proto-wire", b, true
}

// isGRPC reports whether a content type is gRPC's: application/grpc or application/grpc+....
func isGRPC(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+"))
}

// canonBufs hold canonical forms while they are hashed.
var canonBufs = sync.Pool{New: func() any { return new([]byte) }}

// isJSON reports whether a content type is JSON: application/json or a +json type.
func isJSON(contentType string) bool {
	if contentType == "application/json" { // the common case, without parsing
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// errInexact means a body holds a number that RFC 8785's float64 form would change.
var errInexact = errors.New("approval: a JSON number is not exact as a float64")

// errDeep means a body nests deeper than strictjson.DefaultMaxDepth.
var errDeep = errors.New("approval: a JSON body nests too deeply")

// appendCanonical appends the RFC 8785 form of v, a value as strictjson reads it, whose numbers
// must all be exact float64s and which must nest at most strictjson.DefaultMaxDepth deep (depth
// is the nesting around v). It writes what jsontext's Value.Canonicalize writes for the body v
// was read from: strings in their shortest form, numbers as ECMAScript writes a float64 (and
// -0 as 0), object members ordered by the UTF-16 code units of their names, no whitespace.
func appendCanonical(dst []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case map[string]any:
		if depth++; depth > strictjson.DefaultMaxDepth {
			return dst, errDeep
		}
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		slices.SortFunc(names, compareUTF16)
		dst = append(dst, '{')
		for i, k := range names {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendQuoted(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendCanonical(dst, x[k], depth); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if depth++; depth > strictjson.DefaultMaxDepth {
			return dst, errDeep
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, e, depth); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case string:
		return appendQuoted(dst, x), nil
	case json.Number:
		f, ok := exactFloat(string(x))
		if !ok {
			return dst, errInexact
		}
		return appendES6(dst, f), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case nil:
		return append(dst, "null"...), nil
	}
	return dst, fmt.Errorf("approval: %T is not a JSON value", v)
}

// appendQuoted appends s as a JSON string in its shortest form (RFC 8785, section 3.2.2.2): only
// '"', '\\' and control characters escaped, those with a short escape by it.
func appendQuoted(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendES6 appends f as ECMAScript writes a number (RFC 8785, section 3.2.2.3), with -0 as 0.
func appendES6(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-07 is written e-7.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// compareUTF16 orders member names as RFC 8785 does: by their UTF-16 code units. That is byte
// order for UTF-8, except where a character above U+FFFF (a surrogate pair in UTF-16) meets one
// from U+E000 to U+FFFF.
func compareUTF16(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) || i == len(b) {
		return cmp.Compare(len(a), len(b))
	}
	if a[i] < utf8.RuneSelf || b[i] < utf8.RuneSelf {
		return cmp.Compare(a[i], b[i])
	}
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	ra, _ := utf8.DecodeRuneInString(a[i:])
	rb, _ := utf8.DecodeRuneInString(b[i:])
	if (ra > 0xffff) != (rb > 0xffff) {
		if ra > 0xffff {
			ra, _ = utf16.EncodeRune(ra)
		} else {
			rb, _ = utf16.EncodeRune(rb)
		}
	}
	return cmp.Compare(ra, rb)
}

// exactFloat returns the float64 of the JSON number s, and whether it has exactly the value of
// s: whether s and the shortest form of the float64, the form RFC 8785 writes, are the same
// number.
func exactFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	var buf [32]byte
	a, ok1 := decimal(s)
	b, ok2 := decimal(string(strconv.AppendFloat(buf[:0], f, 'g', -1, 64)))
	return f, ok1 && ok2 && a == b
}

// decimalValue is the value of a decimal number: sign, significant digits (no leading or
// trailing zeros) and the position of the decimal point. "-12.50e1" and "-125" are both
// {true, "125", 3}.
type decimalValue struct {
	neg    bool
	digits string
	point  int
}

// decimal reads a JSON number's value. ok is false for an exponent too large to matter (the
// number is then not an exact float64 anyway).
func decimal(s string) (d decimalValue, ok bool) {
	s, d.neg = strings.CutPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e := strings.TrimPrefix(s[i+1:], "+")
		if len(e) > 8 {
			return d, false
		}
		var err error
		if exp, err = strconv.Atoi(e); err != nil {
			return d, false
		}
		mant = s[:i]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + exp
	for len(digits) > 0 && digits[0] == '0' {
		digits, point = digits[1:], point-1
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return decimalValue{neg: d.neg}, true
	}
	d.digits, d.point = digits, point
	return d, true
}

// DisplayBody is what approvers see of a body: JSON pretty-printed with the fields at the
// given JSON pointers replaced by "[redacted]"; anything else described, never shown raw.
// Malformed pointers are ignored.
func DisplayBody(contentType string, body []byte, redact []string) string {
	var ptrs []strictjson.Pointer
	for _, s := range redact {
		if p, err := strictjson.ParsePointer(s); err == nil {
			ptrs = append(ptrs, p)
		}
	}
	var v any
	parsed := false
	if len(body) > 0 && isJSON(contentType) {
		var err error
		v, err = strictjson.ParseShared(body, strictjson.DefaultMaxDepth)
		parsed = err == nil
	}
	return display(contentType, body, v, parsed, ptrs)
}

// display is DisplayBody of a body read already: when parsed, v is a JSON value of the kinds
// strictjson reads, the body or the message the policy decoded from it (policy.Request.Message).
// v is not modified: redaction copies what it changes.
func display(contentType string, body []byte, v any, parsed bool, redact []strictjson.Pointer) string {
	if len(body) == 0 {
		return ""
	}
	if parsed {
		for _, p := range redact {
			v = p.Replace(v, "[redacted]")
		}
		if out, err := json.MarshalIndent(v, "", "  "); err == nil {
			return string(out)
		}
	}
	return fmt.Sprintf("(%d bytes of %s, not shown)", len(body), contentType)
}
