package strictjson_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

type parseCase struct {
	name     string
	in       string
	maxDepth int    // 0: DefaultMaxDepth
	rule     string // "" when accepted
	pointer  string // checked when rule is set and pointer is not "-"
	want     any    // the value, when accepted
}

type obj = map[string]any
type arr = []any
type num = json.Number

func nest(open, close string, n int, inner string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func parseCases() []parseCase {
	d := strictjson.DefaultMaxDepth
	return []parseCase{
		// Accepted, with the value Parse returns.
		{name: "empty object", in: `{}`, want: obj{}},
		{name: "empty array", in: `[]`, want: arr{}},
		{name: "every kind", in: " \t\r\n{\"s\" : \"x\", \"n\": -1.5e3, \"a\": [true, false, null, {}], \"o\": {\"k\": []}} \n",
			want: obj{"s": "x", "n": num("-1.5e3"), "a": arr{true, false, nil, obj{}}, "o": obj{"k": arr{}}}},
		{name: "top-level string", in: `"x"`, want: "x"},
		{name: "top-level null", in: `null`, want: nil},
		{name: "escaped NUL is text", in: `"a\u0000b"`, want: "a\x00b"},
		{name: "escapes", in: `"\"\\\/\b\f\n\r\t\u00e9"`, want: "\"\\/\b\f\n\r\té"},
		{name: "surrogate pair", in: `"\ud83d\ude00"`, want: "😀"},
		{name: "raw UTF-8", in: `"é😀"`, want: "é😀"},
		// Noncharacters are Unicode scalar values every decoder reads the same way: no ambiguity.
		{name: "noncharacter escaped", in: `"\uffff"`, want: "\uffff"},
		{name: "noncharacter raw", in: "\"\xef\xbf\xbf\"", want: "\uffff"},
		{name: "DEL raw", in: "\"\x7f\"", want: "\x7f"},

		// Numbers are kept exactly as written.
		{name: "1e400", in: `1e400`, want: num("1e400")},
		{name: "-0", in: `-0`, want: num("-0")},
		{name: "0.1", in: `0.1`, want: num("0.1")},
		{name: "1E+2", in: `[1E+2]`, want: arr{num("1E+2")}},
		{name: "-0.0e-0", in: `{"n":-0.0e-0}`, want: obj{"n": num("-0.0e-0")}},
		{name: "beyond int64", in: `123456789012345678901234567890`, want: num("123456789012345678901234567890")},
		{name: "beyond float64 precision", in: `0.10000000000000000555`, want: num("0.10000000000000000555")},

		// Same name, different objects or different text.
		{name: "same name in sibling objects", in: `[{"a":1},{"a":1}]`, want: arr{obj{"a": num("1")}, obj{"a": num("1")}}},
		{name: "same name at each level", in: `{"a":{"a":{"a":1}}}`, want: obj{"a": obj{"a": obj{"a": num("1")}}}},
		{name: "names differ in case", in: `{"a":1,"A":2}`, want: obj{"a": num("1"), "A": num("2")}},
		{name: "NFC and NFD names differ", in: `{"é":1,"e\u0301":2}`, want: obj{"é": num("1"), "e\u0301": num("2")}},
		{name: "empty name", in: `{"":1}`, want: obj{"": num("1")}},

		// Duplicate member names, compared after unescaping.
		{name: "duplicate", in: `{"a":1,"a":2}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate same value", in: `{"a":1,"a":1}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate escaped", in: `{"a":1,"\u0061":2}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate escaped first", in: `{"\u0061":1,"a":2}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate escaped slash", in: `{"\/":1,"/":2}`, rule: "duplicate_key", pointer: "/~1"},
		{name: "duplicate escaped non-ASCII", in: `{"é":1,"\u00e9":2}`, rule: "duplicate_key", pointer: "/é"},
		{name: "duplicate escaped surrogate pair", in: `{"😀":1,"\ud83d\ude00":2}`, rule: "duplicate_key", pointer: "/😀"},
		{name: "duplicate not adjacent", in: `{"a":1,"b":2,"a":3}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate after a nested object", in: `{"a":{"b":1},"a":2}`, rule: "duplicate_key", pointer: "/a"},
		{name: "duplicate empty name", in: `{"":1,"":2}`, rule: "duplicate_key", pointer: "/"},
		{name: "duplicate nested", in: `{"x":{"a":1,"a":2}}`, rule: "duplicate_key", pointer: "/x/a"},
		{name: "duplicate in array", in: `[{"a":1,"b":{"c":1,"c":2}}]`, rule: "duplicate_key", pointer: "/0/b/c"},
		{name: "duplicate deep", in: nest(`{"a":`, `}`, 10, `{"z":1,"z":2}`), rule: "duplicate_key", pointer: strings.Repeat("/a", 10) + "/z"},

		// Data after the value.
		{name: "two numbers", in: `1 2`, rule: "trailing_data"},
		{name: "two objects", in: `{"a":1}{"a":2}`, rule: "trailing_data"},
		{name: "two strings", in: `"a""b"`, rule: "trailing_data"},
		{name: "garbage", in: `{} x`, rule: "trailing_data"},
		{name: "closing bracket", in: `{}]`, rule: "trailing_data"},
		{name: "comma", in: `[] ,`, rule: "trailing_data"},
		{name: "comment", in: `{} // c`, rule: "trailing_data"},
		{name: "NUL after", in: "{}\x00", rule: "trailing_data"},
		{name: "leading zero", in: `01`, rule: "trailing_data"}, // 0, then 1

		// Invalid UTF-8, in values and in member names; lone surrogates (I-JSON, RFC 7493 2.1).
		{name: "invalid byte", in: "\"\xff\"", rule: "invalid_utf8"},
		{name: "invalid byte in name", in: "{\"\xff\":1}", rule: "invalid_utf8"},
		{name: "invalid byte nested", in: "{\"a\":[\"ok\",\"\xfe\"]}", rule: "invalid_utf8", pointer: "/a/1"},
		{name: "overlong slash", in: "\"\xc0\xaf\"", rule: "invalid_utf8"},
		{name: "encoded surrogate", in: "\"\xed\xa0\x80\"", rule: "invalid_utf8"},
		{name: "cut multibyte", in: "\"\xe2\x82\"", rule: "invalid_utf8"},
		{name: "beyond U+10FFFF", in: "\"\xf4\x90\x80\x80\"", rule: "invalid_utf8"},
		{name: "lone high surrogate", in: `"\ud800"`, rule: "invalid_utf8"},
		{name: "lone low surrogate", in: `"\udc00"`, rule: "invalid_utf8"},
		{name: "high surrogate then letter", in: `"\ud800\u0041"`, rule: "invalid_utf8"},
		{name: "two high surrogates", in: `"\ud800\ud800"`, rule: "invalid_utf8"},
		{name: "swapped pair", in: `"\ude00\ud83d"`, rule: "invalid_utf8"},
		{name: "lone surrogate in name", in: `{"\udfff":1}`, rule: "invalid_utf8"},
		{name: "lone surrogate upper case", in: `["\uD800"]`, rule: "invalid_utf8", pointer: "/0"},

		// Nesting: exactly at the limit is fine, one more is not.
		{name: "arrays at the limit", in: nest("[", "]", d, ""), want: nestedArrays(d)},
		{name: "arrays above the limit", in: nest("[", "]", d+1, ""), rule: "depth", pointer: strings.Repeat("/0", d)},
		{name: "objects at the limit", in: nest(`{"a":`, "}", d-1, "{}"), want: nestedObjects(d)},
		{name: "objects above the limit", in: nest(`{"a":`, "}", d, "{}"), rule: "depth", pointer: strings.Repeat("/a", d)},
		{name: "mixed at the limit", in: nest(`[{"a":`, "}]", d/2, "1"), want: nestedMixed(d / 2)},
		{name: "mixed above the limit", in: nest(`[{"a":`, "}]", d/2, "[]"), rule: "depth"},
		{name: "scalar in the deepest array", in: nest("[", "]", d, "1"), want: nestedArrays(d, num("1"))},
		{name: "depth 1", in: `[1,"x",null]`, maxDepth: 1, want: arr{num("1"), "x", nil}},
		{name: "depth 1 exceeded by array", in: `[[]]`, maxDepth: 1, rule: "depth", pointer: "/0"},
		{name: "depth 1 exceeded by object", in: `{"a":{}}`, maxDepth: 1, rule: "depth", pointer: "/a"},
		{name: "depth 1 scalar", in: `7`, maxDepth: 1, want: num("7")},
		{name: "negative depth is the default", in: nest("[", "]", d+1, ""), maxDepth: -1, rule: "depth"},
		{name: "large limit", in: nest("[", "]", 500, ""), maxDepth: 500, want: nestedArrays(500)},
		{name: "deep refused before the end", in: nest("[", "", 100000, ""), rule: "depth"},

		// Empty bodies.
		{name: "empty", in: ``, rule: "empty"},
		{name: "spaces", in: "   ", rule: "empty"},
		{name: "JSON whitespace", in: " \t\r\n", rule: "empty"},
		// Not JSON whitespace: a syntax error, not an empty body.
		{name: "form feed", in: "\f", rule: "syntax"},
		{name: "vertical tab", in: "\v{}", rule: "syntax"},
		{name: "no-break space", in: "\u00a0{}", rule: "syntax"},
		{name: "NEL", in: "\u0085", rule: "syntax"},

		// Syntax.
		{name: "BOM", in: "\ufeff{}", rule: "syntax"},
		{name: "BOM alone", in: "\ufeff", rule: "syntax"},
		{name: "NUL", in: "\x00", rule: "syntax"},
		{name: "NUL before", in: "\x00{}", rule: "syntax"},
		{name: "NUL in string", in: "\"a\x00b\"", rule: "syntax"},
		{name: "NUL in name", in: "{\"a\x00\":1}", rule: "syntax"},
		{name: "NUL in array", in: "[1,\x00]", rule: "syntax"},
		{name: "tab in string", in: "\"\t\"", rule: "syntax"},
		{name: "newline in string", in: "\"\n\"", rule: "syntax"},
		{name: "trailing comma in array", in: `[1,]`, rule: "syntax"},
		{name: "trailing comma in object", in: `{"a":1,}`, rule: "syntax"},
		{name: "single quotes", in: `{'a':1}`, rule: "syntax"},
		{name: "bare name", in: `{a:1}`, rule: "syntax"},
		{name: "number as name", in: `{1:1}`, rule: "syntax"},
		{name: "name without value", in: `{"a"}`, rule: "syntax"},
		{name: "NaN", in: `NaN`, rule: "syntax"},
		{name: "Infinity", in: `[Infinity]`, rule: "syntax"},
		{name: "plus sign", in: `+1`, rule: "syntax"},
		{name: "leading dot", in: `.5`, rule: "syntax"},
		{name: "trailing dot", in: `1.`, rule: "syntax"},
		{name: "hex", in: `0x10`, rule: "trailing_data"}, // 0, then x10
		{name: "leading zero in array", in: `[01]`, rule: "syntax"},
		{name: "bad escape", in: `"\x"`, rule: "syntax"},
		{name: "short unicode escape", in: `"\u12"`, rule: "syntax"},
		{name: "TRUE", in: `TRUE`, rule: "syntax"},
		{name: "nul", in: `nul`, rule: "syntax"},
		{name: "unterminated string", in: `"abc`, rule: "syntax"},
		{name: "unclosed array", in: `[`, rule: "syntax"},
		{name: "unclosed object", in: `{"a":1`, rule: "syntax"},
		{name: "block comment", in: `/* c */ {}`, rule: "syntax"},
		{name: "closing first", in: `]`, rule: "syntax"},
	}
}

func nestedArrays(n int, inner ...any) any {
	var v any = arr(inner)
	if len(inner) == 0 {
		v = arr{}
	}
	for i := 1; i < n; i++ {
		v = arr{v}
	}
	return v
}

func nestedObjects(n int) any {
	var v any = obj{}
	for i := 1; i < n; i++ {
		v = obj{"a": v}
	}
	return v
}

func nestedMixed(n int) any {
	var v any = num("1")
	for i := 0; i < n; i++ {
		v = arr{obj{"a": v}}
	}
	return v
}

func TestParse(t *testing.T) {
	names := map[string]bool{}
	for _, tc := range parseCases() {
		if names[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			got, err := strictjson.Parse([]byte(tc.in), tc.maxDepth)
			cerr := strictjson.Check([]byte(tc.in), tc.maxDepth)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("Parse(%q): %v; want it accepted", tc.in, err)
				}
				if cerr != nil {
					t.Errorf("Check(%q): %v; Parse accepts it", tc.in, cerr)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Parse(%q) = %#v, want %#v", tc.in, got, tc.want)
				}
				return
			}
			if got != nil {
				t.Errorf("Parse(%q) returned %#v with its error", tc.in, got)
			}
			var e *strictjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error = %#v, want a *strictjson.Error with rule %s", tc.in, err, tc.rule)
			}
			if e.Rule != tc.rule {
				t.Errorf("Parse(%q): rule %s (%v), want %s", tc.in, e.Rule, e, tc.rule)
			}
			if tc.pointer != "" && e.Pointer != tc.pointer {
				t.Errorf("Parse(%q): pointer %q, want %q", tc.in, e.Pointer, tc.pointer)
			}
			if e.Message == "" || !strings.HasPrefix(e.Error(), "strictjson: ") {
				t.Errorf("Parse(%q): error %q has no message", tc.in, e.Error())
			}
			if e.Offset < 0 || e.Offset > int64(len(tc.in)) {
				t.Errorf("Parse(%q): offset %d outside the input", tc.in, e.Offset)
			}
			var ce *strictjson.Error
			if !errors.As(cerr, &ce) || *ce != *e {
				t.Errorf("Check(%q) = %#v, want the same error as Parse, %#v", tc.in, cerr, e)
			}
		})
	}
}

// TestParseOffsets pins where errors are reported.
func TestParseOffsets(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int64
	}{
		{`{"a":1,"a":2}`, 7},     // at the second name
		{`{} x`, 2},              // right after the value
		{`[1,2]  [3]`, 5},        // right after the value
		{"[\"ok\",\"\xff\"]", 7}, // at the invalid byte
		{`[1,]`, 2},              // at the comma
	} {
		_, err := strictjson.Parse([]byte(tc.in), 0)
		var e *strictjson.Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q) = %v, want an error", tc.in, err)
		}
		if e.Offset != tc.offset {
			t.Errorf("Parse(%q): offset %d, want %d (%v)", tc.in, e.Offset, tc.offset, e)
		}
	}
}

// TestParseInputUnchanged: Parse neither keeps nor modifies its input.
func TestParseInputUnchanged(t *testing.T) {
	in := []byte(`{"k\u0061":"v\n","n":[1.50,"s"]}`)
	orig := string(in)
	v, err := strictjson.Parse(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(in) != orig {
		t.Fatalf("input changed to %q", in)
	}
	for i := range in {
		in[i] = 'x'
	}
	want := obj{"ka": "v\n", "n": arr{num("1.50"), "s"}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("value changed with the input: %#v", v)
	}
}

// TestParseAgreesWithEncodingJSON: what Parse accepts, encoding/json reads to the same value.
func TestParseAgreesWithEncodingJSON(t *testing.T) {
	for _, tc := range parseCases() {
		if tc.rule != "" {
			continue
		}
		checkAgainstEncodingJSON(t, []byte(tc.in), tc.maxDepth)
	}
}

// benchDoc builds a JSON document of about n bytes: an array of records like an API's.
func benchDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n-120; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item \u00e9 %d","price":%s,"tags":["a","b\n"],"ok":true,"note":null}`,
			i, i, strconv.FormatFloat(float64(i)*1.25, 'f', 2, 64))
	}
	b.WriteString(`],"next":null}`)
	return []byte(b.String())
}

var benchSizes = []struct {
	name string
	n    int
}{{"1KB", 1 << 10}, {"16KB", 16 << 10}, {"256KB", 256 << 10}}

func BenchmarkParse(b *testing.B) {
	for _, sz := range benchSizes {
		doc := benchDoc(sz.n)
		if _, err := strictjson.Parse(doc, 0); err != nil {
			b.Fatal(err)
		}
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := strictjson.Parse(doc, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, sz := range benchSizes {
		doc := benchDoc(sz.n)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if err := strictjson.Check(doc, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodingJSON is the baseline: encoding/json with UseNumber, which checks none of
// what strictjson does.
func BenchmarkEncodingJSON(b *testing.B) {
	for _, sz := range benchSizes {
		doc := benchDoc(sz.n)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeStd(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
