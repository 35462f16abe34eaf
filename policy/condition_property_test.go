package policy_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/agentauthz/agentauthz/policy"
)

// The property of the condition inputs: for every kind of route, a request the readers and
// the schema accept, however it spells what it means, gives the approval condition the same
// inputs as the request written in one canonical form. A condition therefore cannot be escaped
// by respelling a request, nor tell two spellings apart. Each case writes one random request
// in its canonical form and in a random spelling:
//
//   - path parameters and query names and values: each byte raw where it may be, or
//     percent-encoded in upper or lower case hex, a space as "+" (canonical: only what must be
//     encoded, upper case);
//   - JSON bodies (JSON Schema, GraphQL): members in any order, any whitespace, characters
//     escaped or not, integers as 1000, 1000.0, 1e3 (canonical: sorted, compact, plain);
//   - protobuf messages as JSON: a field's proto name or json_name, 64-bit integers, floats and
//     doubles quoted or not, enums by name or number, bytes in standard or URL-safe base64, with
//     or without padding, unset fields left out, written at their default or as null (canonical:
//     proto names, unquoted numbers, enum names, standard base64, defaults left out);
//   - protobuf messages as gRPC: fields in any order, a singular field sent before with another
//     value (the last one counts), repeated integers packed or not, map entries in any order
//     (canonical: field order, packed, each field once).
//
// The JSON and gRPC spellings of one message also give the same body.

const propertyCases = 300

func TestConditionInputsCanonical(t *testing.T) {
	snap := conditionSnapshot(t)
	rnd := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < propertyCases && !t.Failed(); i++ {
		conditionRound(t, snap, rnd)
	}
}

// FuzzConditionInputs is the property with the random choices seeded by the fuzzer.
func FuzzConditionInputs(f *testing.F) {
	snap := conditionSnapshot(f)
	for i := uint64(0); i < 8; i++ {
		f.Add(i, i*7919)
	}
	f.Fuzz(func(t *testing.T, seed1, seed2 uint64) {
		conditionRound(t, snap, rand.New(rand.NewPCG(seed1, seed2)))
	})
}

// conditionRound checks the property on one random request of every route kind.
func conditionRound(t testing.TB, snap *policy.Snapshot, rnd *rand.Rand) {
	t.Helper()
	same := func(kind string, canonical, variant *policyRequest) {
		t.Helper()
		want, err := policy.ConditionInputs(snap, canonical.request())
		if err != nil {
			t.Fatalf("%s: the canonical form %s is refused: %v", kind, canonical, err)
		}
		got, err := policy.ConditionInputs(snap, variant.request())
		if err != nil {
			t.Errorf("%s: the spelling %s of %s is refused: %v", kind, variant, canonical, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the spelling\n  %s\ngives\n  %#v\nthe canonical form\n  %s\ngives\n  %#v", kind, variant, got, canonical, want)
		}
	}
	{
		// Path parameters and query parameters.
		owner := "u" + randText(rnd, "abcXYZ019@!$'()*,=:+&-._~ ", rnd.IntN(12)) // "u": never a dot segment
		var q []queryParam
		for n := rnd.IntN(4); n > 0; n-- {
			q = append(q, queryParam{"to", randText(rnd, "abz@.-_ +&=%/?é€\"<>", rnd.IntN(10))})
		}
		if rnd.IntN(2) == 0 {
			q = append(q, queryParam{"fmt", []string{"csv", "json"}[rnd.IntN(2)]})
		}
		rnd.Shuffle(len(q), func(i, j int) {
			if q[i].name != "to" || q[j].name != "to" { // the order of one name's values counts
				q[i], q[j] = q[j], q[i]
			}
		})
		same("query", &policyRequest{method: "GET", target: "/v1/exports/" + pathCanonical(owner) + queryString(q, nil)},
			&policyRequest{method: "GET", target: "/v1/exports/" + pathSpelling(rnd, owner) + queryString(q, rnd)})

		// A JSON Schema body.
		doc := map[string]any{"amount": jsonInt(int64(rnd.IntN(5000)) * []int64{1, 10, 100}[rnd.IntN(3)]),
			"to":   randText(rnd, "ab/\"\\é😀 \t", rnd.IntN(8)),
			"meta": map[string]any{"tags": []any{randText(rnd, "xyz", 2), true, nil}, "rate": jsonFloat(float64(rnd.IntN(100)) / 8)}}
		same("json_schema", &policyRequest{method: "POST", target: "/v1/transfers", ct: "application/json", body: jsonCanonical(doc)},
			&policyRequest{method: "POST", target: "/v1/transfers", ct: "application/json", body: jsonSpelling(rnd, doc)})

		// A protobuf message, as JSON and as gRPC.
		p := randPayout(rnd)
		canonical := &policyRequest{method: "POST", target: "/v1/payouts", ct: "application/json", body: p.jsonCanonical()}
		same("message", canonical, &policyRequest{method: "POST", target: "/v1/payouts", ct: "application/json", body: p.jsonSpelling(rnd)})
		grpc := &policyRequest{method: "POST", target: "/example.v1.Payouts/Create", ct: "application/grpc", body: grpcFrame(p.wire(nil))}
		same("grpc_message", grpc, &policyRequest{method: "POST", target: "/example.v1.Payouts/Create", ct: "application/grpc", body: grpcFrame(p.wire(rnd))})
		fromJSON, err1 := policy.ConditionInputs(snap, canonical.request())
		fromGRPC, err2 := policy.ConditionInputs(snap, grpc.request())
		if err1 != nil || err2 != nil || !reflect.DeepEqual(fromJSON["body"], fromGRPC["body"]) {
			t.Errorf("one message, as JSON %s and as gRPC: bodies %#v and %#v (%v, %v)", canonical, fromJSON["body"], fromGRPC["body"], err1, err2)
		}

		// GraphQL, by GET and by POST.
		document := []string{"{ revenue }", "query Q { payouts(first: 3) }", "{ payouts(first: 1) revenue }"}[rnd.IntN(3)]
		gq := []queryParam{{"query", document}}
		same("graphql GET", &policyRequest{method: "GET", target: "/graphql" + queryString(gq, nil)},
			&policyRequest{method: "GET", target: "/graphql" + queryString(gq, rnd)})
		env := map[string]any{"query": document}
		same("graphql POST", &policyRequest{method: "POST", target: "/graphql", ct: "application/json", body: jsonCanonical(env)},
			&policyRequest{method: "POST", target: "/graphql", ct: "application/json", body: jsonSpelling(rnd, env)})
	}
}

type policyRequest struct{ method, target, ct, body string }

func (r *policyRequest) request() *policy.Request {
	return conditionRequest(r.method, r.target, r.ct, r.body)
}

func (r *policyRequest) String() string {
	return fmt.Sprintf("%s %s %q", r.method, r.target, r.body)
}

func randText(rnd *rand.Rand, alphabet string, n int) string {
	chars := []rune(alphabet)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteRune(chars[rnd.IntN(len(chars))])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// pathCanonical encodes a path parameter: unreserved characters raw, every other byte encoded.
func pathCanonical(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isUnreserved(s[i]) {
			b.WriteByte(s[i])
		} else {
			fmt.Fprintf(&b, "%%%02X", s[i])
		}
	}
	return b.String()
}

// pathSpelling encodes a path parameter as the path reader accepts it: unreserved characters
// raw (encoding them is refused), sub-delimiters, ":" and "@" raw or encoded, the rest encoded,
// in either case.
func pathSpelling(rnd *rand.Rand, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c):
			b.WriteByte(c)
		case strings.IndexByte("!$&'()*+,=:@", c) >= 0 && rnd.IntN(2) == 0:
			b.WriteByte(c)
		case rnd.IntN(2) == 0:
			fmt.Fprintf(&b, "%%%02x", c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

type queryParam struct{ name, value string }

// queryString writes a query: canonically (rnd nil: unreserved raw, the rest encoded in upper
// case), or in a random spelling the query reader accepts.
func queryString(q []queryParam, rnd *rand.Rand) string {
	if len(q) == 0 {
		return ""
	}
	enc := func(s string, name bool) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case rnd == nil && isUnreserved(c):
				b.WriteByte(c)
			case rnd == nil:
				fmt.Fprintf(&b, "%%%02X", c)
			case c == ' ' && !name && rnd.IntN(2) == 0:
				b.WriteByte('+')
			case isQueryRaw(c) && rnd.IntN(2) == 0:
				b.WriteByte(c)
			case rnd.IntN(2) == 0:
				fmt.Fprintf(&b, "%%%02x", c)
			default:
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	parts := make([]string, len(q))
	for i, p := range q {
		parts[i] = enc(p.name, true) + "=" + enc(p.value, false)
	}
	return "?" + strings.Join(parts, "&")
}

// jsonInt and jsonFloat are numbers of a JSON document that jsonSpelling may respell.
type (
	jsonInt   int64
	jsonFloat float64
)

// jsonCanonical writes v with members sorted, no whitespace, strings escaped only where they
// must be, integers plain.
func jsonCanonical(v any) string {
	var b strings.Builder
	writeJSON(&b, v, nil)
	return b.String()
}

// jsonSpelling writes v in a random spelling strictjson accepts.
func jsonSpelling(rnd *rand.Rand, v any) string {
	var b strings.Builder
	writeJSON(&b, v, rnd)
	return b.String()
}

func writeJSON(b *strings.Builder, v any, rnd *rand.Rand) {
	space := func() {
		if rnd != nil {
			b.WriteString([]string{"", " ", "\n  ", "\t"}[rnd.IntN(4)])
		}
	}
	space()
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if rnd != nil {
			rnd.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			space()
			writeString(b, k, rnd)
			space()
			b.WriteByte(':')
			writeJSON(b, x[k], rnd)
		}
		space()
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, e, rnd)
		}
		b.WriteByte(']')
	case string:
		writeString(b, x, rnd)
	case jsonInt:
		b.WriteString(intSpelling(int64(x), rnd))
	case jsonFloat:
		b.WriteString(floatSpelling(float64(x), 64, rnd))
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case nil:
		b.WriteString("null")
	default:
		panic(fmt.Sprintf("writeJSON: %T", v))
	}
	space()
}

// writeString writes s as a JSON string: each character as itself or escaped (\u, and the
// short escapes), in a random spelling; canonically only what must be escaped.
func writeString(b *strings.Builder, s string, rnd *rand.Rand) {
	b.WriteByte('"')
	for _, r := range s {
		short := map[rune]string{'"': `\"`, '\\': `\\`, '\n': `\n`, '\t': `\t`, '/': `\/`}[r]
		must := r == '"' || r == '\\' || r < 0x20
		switch {
		case rnd == nil && must:
			b.WriteString(short)
		case rnd == nil || !must && rnd.IntN(3) > 0:
			b.WriteRune(r)
		case short != "" && rnd.IntN(2) == 0:
			b.WriteString(short)
		case r > 0xffff:
			r1, r2 := utf16Pair(r)
			fmt.Fprintf(b, `\u%04x\u%04X`, r1, r2)
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// intSpelling writes n as 1000, 1000.0, 1e3 or 10000e-1.
func intSpelling(n int64, rnd *rand.Rand) string {
	s := strconv.FormatInt(n, 10)
	if rnd == nil {
		return s
	}
	switch rnd.IntN(4) {
	case 1:
		return s + ".0"
	case 2:
		if t := strings.TrimRight(s, "0"); t != s && t != "" && t != "-" {
			return t + "e" + strconv.Itoa(len(s)-len(t))
		}
	case 3:
		if n != 0 { // 00e-1 is not JSON
			return s + "0e-1"
		}
		return "0e-1"
	}
	return s
}

// floatSpelling writes f (exactly a float of the given bits) as its shortest form, with an
// exponent, or with trailing zeros.
func floatSpelling(f float64, bits int, rnd *rand.Rand) string {
	s := strconv.FormatFloat(f, 'g', -1, bits)
	if rnd == nil {
		return s
	}
	switch rnd.IntN(3) {
	case 1:
		return strconv.FormatFloat(f, 'e', -1, bits)
	case 2:
		if !strings.ContainsAny(s, "eE") {
			if strings.Contains(s, ".") {
				return s + "00"
			}
			return s + ".000"
		}
	}
	return s
}

// payout is a random example.v1.Payout (pay.proto).
type payout struct {
	maxAmount int64
	kind      int32
	tags      []string
	note      string
	notify    *bool
	rate      float64
	ref       []byte
	limits    map[string]int64
	inner     *struct {
		big uint64
		f   float32
	}
	codes []int32
}

func randPayout(rnd *rand.Rand) *payout {
	p := &payout{}
	if rnd.IntN(4) > 0 {
		p.maxAmount = rnd.Int64N(3000) * []int64{1, 1000, 1 << 40}[rnd.IntN(3)] * []int64{1, -1}[rnd.IntN(2)]
	}
	p.kind = int32(rnd.IntN(4)) // 3 has no name
	for n := rnd.IntN(3); n > 0; n-- {
		p.tags = append(p.tags, randText(rnd, "urgentlaé ", 1+rnd.IntN(6)))
	}
	if rnd.IntN(2) == 0 {
		p.note = randText(rnd, "note \"/é😀", rnd.IntN(6))
	}
	if rnd.IntN(3) > 0 {
		v := rnd.IntN(2) == 0
		p.notify = &v
	}
	p.rate = []float64{0, 0.1, 2.5, 1e21, -3, 1.0 / 3}[rnd.IntN(6)]
	if rnd.IntN(2) == 0 {
		p.ref = make([]byte, rnd.IntN(7))
		for i := range p.ref {
			p.ref[i] = byte(rnd.IntN(256))
		}
	}
	if rnd.IntN(2) == 0 {
		p.limits = map[string]int64{}
		for n := 1 + rnd.IntN(3); n > 0; n-- {
			p.limits[randText(rnd, "abc", 2)] = rnd.Int64N(1 << 60)
		}
	}
	if rnd.IntN(2) == 0 {
		p.inner = &struct {
			big uint64
			f   float32
		}{big: rnd.Uint64() >> rnd.IntN(64), f: []float32{0, 0.1, 0.5, 3.25, 1e-3}[rnd.IntN(5)]}
	}
	for n := rnd.IntN(4); n > 0; n-- {
		p.codes = append(p.codes, int32(rnd.IntN(1000))-500)
	}
	return p
}

var kindNames = map[int32]string{0: "KIND_UNSPECIFIED", 1: "ACH", 2: "WIRE"}

// jsonCanonical writes p as protojson would with proto names: defaults left out, integers
// unquoted, enums by name, bytes in standard base64.
func (p *payout) jsonCanonical() string { return p.json(nil) }

// jsonSpelling writes p in a random spelling protojson accepts.
func (p *payout) jsonSpelling(rnd *rand.Rand) string { return p.json(rnd) }

func (p *payout) json(rnd *rand.Rand) string {
	type member struct{ proto, json, value string }
	var ms []member
	coin := func() bool { return rnd != nil && rnd.IntN(2) == 0 }
	quote := func(s string) string {
		if coin() {
			return `"` + s + `"`
		}
		return s
	}
	str := func(s string) string {
		var b strings.Builder
		writeString(&b, s, rnd)
		return b.String()
	}
	// unset adds a field left at its default: left out, or written as its default or null.
	unset := func(proto, json, def string) {
		if rnd == nil || rnd.IntN(3) == 0 {
			return
		}
		if rnd.IntN(2) == 0 {
			def = "null"
		}
		ms = append(ms, member{proto, json, def})
	}
	if p.maxAmount != 0 {
		ms = append(ms, member{"max_amount", "maxAmount", quote(intSpelling(p.maxAmount, rnd))})
	} else {
		unset("max_amount", "maxAmount", quote("0"))
	}
	if p.kind != 0 {
		v := `"` + kindNames[p.kind] + `"`
		if kindNames[p.kind] == "" || coin() {
			v = strconv.Itoa(int(p.kind))
		}
		ms = append(ms, member{"kind", "kind", v})
	} else {
		unset("kind", "kind", `"KIND_UNSPECIFIED"`)
	}
	if len(p.tags) > 0 {
		var items []string
		for _, s := range p.tags {
			items = append(items, str(s))
		}
		ms = append(ms, member{"note_tags", "noteTags", "[" + strings.Join(items, ",") + "]"})
	} else {
		unset("note_tags", "noteTags", "[]")
	}
	if p.note != "" {
		ms = append(ms, member{"secret_note", "secretNote", str(p.note)})
	} else {
		unset("secret_note", "secretNote", `""`)
	}
	if p.notify != nil { // presence: false is not null
		ms = append(ms, member{"notify", "notify", strconv.FormatBool(*p.notify)})
	}
	if p.rate != 0 {
		v := floatSpelling(p.rate, 64, rnd)
		ms = append(ms, member{"rate", "rate", quote(v)})
	} else {
		unset("rate", "rate", "0")
	}
	if len(p.ref) > 0 {
		enc := base64.StdEncoding
		if rnd != nil {
			enc = []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding}[rnd.IntN(4)]
		}
		ms = append(ms, member{"ref", "ref", `"` + enc.EncodeToString(p.ref) + `"`})
	} else {
		unset("ref", "ref", `""`)
	}
	if len(p.limits) > 0 {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range p.limits {
				if !yield(k) {
					return
				}
			}
		})
		if rnd != nil {
			rnd.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		}
		var items []string
		for _, k := range keys {
			items = append(items, str(k)+":"+quote(intSpelling(p.limits[k], rnd)))
		}
		ms = append(ms, member{"limits", "limits", "{" + strings.Join(items, ",") + "}"})
	} else {
		unset("limits", "limits", "{}")
	}
	if p.inner != nil {
		var items []string
		if p.inner.big != 0 {
			items = append(items, `"big":`+quote(strconv.FormatUint(p.inner.big, 10)))
		}
		if p.inner.f != 0 {
			items = append(items, `"f":`+quote(floatSpelling(float64(p.inner.f), 32, rnd)))
		}
		if rnd != nil {
			rnd.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		}
		ms = append(ms, member{"inner", "inner", "{" + strings.Join(items, ",") + "}"})
	} else if rnd != nil && rnd.IntN(2) == 0 {
		ms = append(ms, member{"inner", "inner", "null"})
	}
	if len(p.codes) > 0 {
		var items []string
		for _, c := range p.codes {
			items = append(items, quote(intSpelling(int64(c), rnd)))
		}
		ms = append(ms, member{"codes", "codes", "[" + strings.Join(items, ",") + "]"})
	} else {
		unset("codes", "codes", "[]")
	}
	if rnd != nil {
		rnd.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		name := m.proto
		if coin() {
			name = m.json
		}
		b.WriteString(`"` + name + `":` + m.value)
	}
	b.WriteByte('}')
	return b.String()
}

// wire encodes p in protobuf: canonically (rnd nil: field order, each field once, codes
// packed), or in a random encoding protobuf decoders read as the same message.
func (p *payout) wire(rnd *rand.Rand) []byte {
	var fields [][]byte
	add := func(b []byte) { fields = append(fields, b) }
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	// decoy is another value of a singular field, sent first: the last value counts.
	decoy := func(num protowire.Number) {
		if rnd != nil && rnd.IntN(4) == 0 {
			add(varint(num, uint64(rnd.IntN(9999))))
		}
	}
	if p.maxAmount != 0 {
		decoy(1)
		add(varint(1, uint64(p.maxAmount)))
	}
	if p.kind != 0 {
		decoy(2)
		add(varint(2, uint64(p.kind)))
	}
	for _, s := range p.tags {
		add(bytesField(3, []byte(s)))
	}
	if p.note != "" {
		add(bytesField(4, []byte(p.note)))
	}
	if p.notify != nil {
		add(varint(5, protowire.EncodeBool(*p.notify)))
	}
	if p.rate != 0 {
		add(protowire.AppendFixed64(protowire.AppendTag(nil, 6, protowire.Fixed64Type), math.Float64bits(p.rate)))
	}
	if len(p.ref) > 0 {
		add(bytesField(7, p.ref))
	}
	keys := make([]string, 0, len(p.limits))
	for k := range p.limits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if rnd != nil {
		rnd.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	}
	for _, k := range keys {
		entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), k)
		entry = protowire.AppendVarint(protowire.AppendTag(entry, 2, protowire.VarintType), uint64(p.limits[k]))
		add(bytesField(8, entry))
	}
	if p.inner != nil {
		var in []byte
		if p.inner.big != 0 {
			in = protowire.AppendVarint(protowire.AppendTag(in, 1, protowire.VarintType), p.inner.big)
		}
		if p.inner.f != 0 {
			in = protowire.AppendFixed32(protowire.AppendTag(in, 2, protowire.Fixed32Type), math.Float32bits(p.inner.f))
		}
		add(bytesField(9, in))
	}
	if len(p.codes) > 0 {
		if rnd != nil && rnd.IntN(2) == 0 {
			for _, c := range p.codes {
				add(varint(10, uint64(int64(c))))
			}
		} else {
			var packed []byte
			for _, c := range p.codes {
				packed = protowire.AppendVarint(packed, uint64(int64(c)))
			}
			add(bytesField(10, packed))
		}
	}
	if rnd != nil {
		// Any order that keeps each field's own values in order (repeated fields, and a
		// singular field's last value last).
		order := make([]int, len(fields))
		for i := range order {
			order[i] = i
		}
		num := func(b []byte) protowire.Number { n, _, _ := protowire.ConsumeTag(b); return n }
		for i := 1; i < len(order); i++ { // random insertion, never past a field of the same number
			for j := i; j > 0 && num(fields[order[j-1]]) != num(fields[order[j]]) && rnd.IntN(2) == 0; j-- {
				order[j-1], order[j] = order[j], order[j-1]
			}
		}
		out := []byte{}
		for _, i := range order {
			out = append(out, fields[i]...)
		}
		return out
	}
	return slices.Concat(fields...)
}

// TestGRPCFrameHelper: grpcFrame writes the length big-endian after a zero flag.
func TestGRPCFrameHelper(t *testing.T) {
	f := grpcFrame([]byte{1, 2, 3})
	if len(f) != 8 || f[0] != 0 || binary.BigEndian.Uint32([]byte(f[1:5])) != 3 || !utf8.ValidString(f[5:]) {
		t.Errorf("grpcFrame = %q", f)
	}
}
