package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// FuzzParse checks Parse against encoding/json and against independent checks:
//
//   - it never panics;
//   - what it accepts, encoding/json (UseNumber) reads as one value, deeply equal, and
//     re-encoding that value and parsing it again gives the same value;
//   - it refuses every input with a duplicate member name, as found by walking encoding/json's
//     token stream;
//   - Check accepts exactly what Parse accepts, and refuses it for the same reason;
//   - conversely, what encoding/json reads as one value, in valid UTF-8, without duplicate
//     names, lone surrogate escapes or nesting beyond the limit, it accepts.
//
// Seeds: every file under testdata/seed and every input of TestParse.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "seed", "*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/seed")
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range parseCases() {
		if tc.maxDepth == 0 && len(tc.in) < 4096 {
			f.Add([]byte(tc.in))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, depth := range []int{strictjson.DefaultMaxDepth, 3} {
			checkParse(t, data, depth)
			checkShared(t, data, depth)
		}
	})
}

func checkParse(t *testing.T, data []byte, maxDepth int) {
	orig := string(data)
	v, err := strictjson.Parse(data, maxDepth)
	cerr := strictjson.Check(data, maxDepth)
	if string(data) != orig {
		t.Fatalf("Parse or Check modified its input")
	}

	// Check agrees with Parse, error for error.
	if (err == nil) != (cerr == nil) {
		t.Fatalf("Parse(%q) = %v but Check = %v", data, err, cerr)
	}
	var pe *strictjson.Error
	if err != nil {
		var ce *strictjson.Error
		if !errors.As(err, &pe) || !errors.As(cerr, &ce) {
			t.Fatalf("errors are not *strictjson.Error: %#v, %#v", err, cerr)
		}
		if *pe != *ce {
			t.Fatalf("Parse(%q) error %#v, Check error %#v", data, pe, ce)
		}
		if v != nil {
			t.Fatalf("Parse(%q) returned %#v with error %v", data, v, err)
		}
	}

	walk := walkTokens(data)
	if walk.duplicate && err == nil {
		t.Fatalf("Parse(%q) accepted a duplicate member name", data)
	}
	if pe != nil && pe.Rule == "duplicate_key" && !walk.duplicate {
		t.Fatalf("Parse(%q) reports a duplicate (%v) that encoding/json's tokens do not hold", data, err)
	}
	if pe != nil && pe.Rule == "depth" && walk.maxDepth <= maxDepth {
		t.Fatalf("Parse(%q) reports depth > %d (%v), encoding/json's tokens nest %d", data, maxDepth, err, walk.maxDepth)
	}

	if err == nil {
		checkAgainstEncodingJSON(t, data, maxDepth)
		return
	}
	// What encoding/json reads as one plain value, Parse must accept.
	if walk.oneValue && utf8.Valid(data) && !walk.duplicate && walk.maxDepth <= maxDepth && !hasLoneSurrogate(data) {
		t.Fatalf("Parse(%q) refused (%v) what encoding/json reads as one value, in valid UTF-8, without duplicates, lone surrogates or nesting beyond %d",
			data, err, maxDepth)
	}
}

// checkAgainstEncodingJSON checks an input Parse accepts: encoding/json reads it to the same
// value, and Parse reads encoding/json's encoding of that value to it again.
func checkAgainstEncodingJSON(t testing.TB, data []byte, maxDepth int) {
	t.Helper()
	v, err := strictjson.Parse(data, maxDepth)
	if err != nil {
		t.Fatalf("Parse(%q): %v", data, err)
	}
	std, err := decodeStd(data)
	if err != nil {
		t.Fatalf("Parse accepts %q, encoding/json does not: %v", data, err)
	}
	if !reflect.DeepEqual(v, std) {
		t.Fatalf("Parse(%q) = %#v, encoding/json reads %#v", data, v, std)
	}
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding/json cannot encode Parse(%q) = %#v: %v", data, v, err)
	}
	again, err := strictjson.Parse(enc, maxDepth)
	if err != nil {
		t.Fatalf("Parse refuses encoding/json's encoding %q of Parse(%q): %v", enc, data, err)
	}
	if !reflect.DeepEqual(again, v) {
		t.Fatalf("Parse(%q) = %#v, but Parse of its encoding %q = %#v", data, v, enc, again)
	}
}

// decodeStd reads exactly one value with encoding/json, numbers as json.Number.
func decodeStd(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the value")
	}
	return v, nil
}

// tokenWalk is what an independent reading with encoding/json's token stream finds.
type tokenWalk struct {
	duplicate bool // some object holds a member name twice (names decoded by encoding/json)
	maxDepth  int  // the deepest nesting reached before the stream ended or failed
	oneValue  bool // the stream is exactly one value, then EOF, without error
}

func walkTokens(data []byte) tokenWalk {
	var w tokenWalk
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		names  map[string]bool
		name   bool // the next token of an object is a member name
	}
	var stack []*frame
	values := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			w.oneValue = values == 1 && len(stack) == 0
			return w
		}
		if err != nil {
			return w
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.name {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					values++
				}
				continue
			}
			name := tok.(string)
			if top.names[name] {
				w.duplicate = true
			}
			top.names[name] = true
			top.name = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.object {
				top.name = true
			}
			stack = append(stack, &frame{object: true, names: map[string]bool{}, name: true})
			w.maxDepth = max(w.maxDepth, len(stack))
		case json.Delim('['):
			if top != nil && top.object {
				top.name = true
			}
			stack = append(stack, &frame{})
			w.maxDepth = max(w.maxDepth, len(stack))
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				values++
			}
		default:
			if top == nil {
				values++
			} else if top.object {
				top.name = true
			}
		}
	}
}

// hasLoneSurrogate reports whether syntactically valid JSON text holds a \u escape of a UTF-16
// surrogate not paired with its other half. Backslashes occur only inside strings.
func hasLoneSurrogate(data []byte) bool {
	hex := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range data[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := hex(i)
		if !ok {
			i++ // a two-character escape
			continue
		}
		switch {
		case 0xd800 <= r && r <= 0xdbff:
			if lo, ok := hex(i + 6); ok && 0xdc00 <= lo && lo <= 0xdfff {
				i += 11
				continue
			}
			return true
		case 0xdc00 <= r && r <= 0xdfff:
			return true
		}
		i += 5
	}
	return false
}

// TestTokenWalk checks the fuzz oracle itself.
func TestTokenWalk(t *testing.T) {
	for _, tc := range []struct {
		in        string
		duplicate bool
		depth     int
		one       bool
	}{
		{`{"a":1,"a":2}`, true, 1, true},
		{`{"a":1,"\u0061":2}`, true, 1, true},
		{`{"a":{"b":1},"b":2}`, false, 2, true},
		{`{"a":{"b":1,"b":2}}`, true, 2, true},
		{`[{"a":1},{"a":1}]`, false, 2, true},
		{`{"a":[{"x":1}],"x":[]}`, false, 3, true},
		{`{"a":[],"a":[]}`, true, 2, true},
		{`[[[]]]`, false, 3, true},
		{`1 2`, false, 0, false},
		{`{} x`, false, 1, false},
		{``, false, 0, false},
		{`"x"`, false, 0, true},
	} {
		w := walkTokens([]byte(tc.in))
		if w.duplicate != tc.duplicate || w.maxDepth != tc.depth || w.oneValue != tc.one {
			t.Errorf("walkTokens(%q) = %+v, want duplicate=%v depth=%d one=%v", tc.in, w, tc.duplicate, tc.depth, tc.one)
		}
	}
	for in, want := range map[string]bool{
		`"\ud800"`: true, `"\udc00"`: true, `"\ud83d\ude00"`: false, `"\\ud800"`: false,
		`"\ud800\\"`: true, `"\uD83D\uDE00"`: false, `"\ud83d\u0041"`: true, `"a"`: false, `"\u00e9"`: false,
	} {
		if got := hasLoneSurrogate([]byte(in)); got != want {
			t.Errorf("hasLoneSurrogate(%s) = %v, want %v", in, got, want)
		}
	}
}

// checkShared: ParseShared reads exactly what Parse reads, and refuses exactly what it refuses.
func checkShared(t *testing.T, data []byte, depth int) {
	t.Helper()
	v, err := strictjson.Parse(data, depth)
	sv, serr := strictjson.ParseShared(data, depth)
	if (err == nil) != (serr == nil) || (err != nil && err.Error() != serr.Error()) {
		t.Fatalf("Parse: %v; ParseShared: %v", err, serr)
	}
	if !reflect.DeepEqual(v, sv) {
		t.Fatalf("Parse read %#v, ParseShared %#v", v, sv)
	}
}
