package target_test

import (
	"bufio"
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/policy/target"
)

// hostileCase is a request-target Parse must refuse, with the expected Part and Rule.
type hostileCase struct {
	part, rule, raw string
	line            int
}

// acceptedCase is a request-target Parse must accept, with the expected split.
type acceptedCase struct {
	raw, path, query string
	line             int
}

// quotedFields splits a testdata line into its fields: bare words and Go double-quoted strings.
func quotedFields(t testing.TB, file string, n int, line string) []string {
	t.Helper()
	var out []string
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimSpace(rest) {
		if rest[0] == '"' {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("%s:%d: bad quoted string: %v", file, n, err)
			}
			s, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("%s:%d: bad quoted string: %v", file, n, err)
			}
			out = append(out, s)
			rest = rest[len(q):]
			continue
		}
		w, r, _ := strings.Cut(rest, " ")
		out = append(out, w)
		rest = r
	}
	return out
}

func readLines(t testing.TB, file string, fn func(n int, line string)) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(n, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func loadHostile(t testing.TB) []hostileCase {
	t.Helper()
	const file = "testdata/hostile.txt"
	var cases []hostileCase
	readLines(t, file, func(n int, line string) {
		f := quotedFields(t, file, n, line)
		if len(f) != 3 {
			t.Fatalf("%s:%d: want 3 fields (part rule \"target\"), got %d", file, n, len(f))
		}
		cases = append(cases, hostileCase{part: f[0], rule: f[1], raw: f[2], line: n})
	})
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return cases
}

func loadAccepted(t testing.TB) []acceptedCase {
	t.Helper()
	const file = "testdata/accepted.txt"
	var cases []acceptedCase
	readLines(t, file, func(n int, line string) {
		f := quotedFields(t, file, n, line)
		if len(f) != 3 {
			t.Fatalf("%s:%d: want 3 quoted fields (target path query), got %d", file, n, len(f))
		}
		cases = append(cases, acceptedCase{raw: f[0], path: f[1], query: f[2], line: n})
	})
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return cases
}

// generatedHostile are refused targets that are awkward to write in a text file.
func generatedHostile() []hostileCase {
	return []hostileCase{
		{part: "path", rule: "too_long", raw: "/" + strings.Repeat("a", target.MaxLen)},
		{part: "path", rule: "too_long", raw: "/a?q=" + strings.Repeat("b", target.MaxLen)},
		{part: "path", rule: "too_long", raw: strings.Repeat("x", target.MaxLen+1)},
	}
}

// controlCases covers every control byte, raw and encoded, in the path, a query value and a
// query name; every non-ASCII byte raw and encoded; every unreserved character encoded.
func controlCases() []hostileCase {
	var cs []hostileCase
	for c := 0; c < 0x20; c++ {
		rule := "control"
		if c == 0 {
			rule = "nul"
		}
		hex := strings.ToUpper(strconv.FormatInt(int64(c|0x100), 16)[1:])
		cs = append(cs,
			hostileCase{part: "path", rule: rule, raw: "/a" + string(rune(c)) + "b"},
			hostileCase{part: "path", rule: rule, raw: "/a%" + hex + "b"},
			hostileCase{part: "query", rule: rule, raw: "/a?q=" + string(rune(c))},
			hostileCase{part: "query", rule: "bad_value", raw: "/a?q=%" + hex},
			hostileCase{part: "query", rule: "bad_name", raw: "/a?%" + hex + "=1"},
		)
	}
	// Every raw byte >= 0x80 and every encoded byte >= 0x80 in the path.
	for c := 0x80; c <= 0xff; c++ {
		hex := strings.ToUpper(strconv.FormatInt(int64(c), 16))
		cs = append(cs,
			hostileCase{part: "path", rule: "non_ascii", raw: "/a" + string([]byte{byte(c)})},
			hostileCase{part: "path", rule: "non_ascii", raw: "/a%" + hex},
			hostileCase{part: "path", rule: "non_ascii", raw: "/a%" + strings.ToLower(hex)},
			hostileCase{part: "query", rule: "non_ascii", raw: "/a?q=" + string([]byte{byte(c)})},
		)
	}
	// Every unreserved character, percent-encoded in both cases, in the path.
	const unreserved = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~"
	for i := 0; i < len(unreserved); i++ {
		hex := strings.ToUpper(strconv.FormatInt(int64(unreserved[i]), 16))
		cs = append(cs,
			hostileCase{part: "path", rule: "encoded_unreserved", raw: "/v1/%" + hex},
			hostileCase{part: "path", rule: "encoded_unreserved", raw: "/v1/%" + strings.ToLower(hex) + "x"},
		)
	}
	return cs
}

func allHostile(t testing.TB) []hostileCase {
	cs := loadHostile(t)
	cs = append(cs, generatedHostile()...)
	return append(cs, controlCases()...)
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range allHostile(t) {
		name := strconv.Quote(tc.raw)
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			tg, err := target.Parse(tc.raw)
			if err == nil {
				t.Fatalf("line %d: Parse(%q) = %+v, want refusal %s/%s", tc.line, tc.raw, tg, tc.part, tc.rule)
			}
			if tg != (target.Target{}) {
				t.Errorf("Parse(%q) returned non-zero Target %+v with an error", tc.raw, tg)
			}
			var te *target.Error
			if !errors.As(err, &te) {
				t.Fatalf("Parse(%q) error %T is not *target.Error", tc.raw, err)
			}
			if te.Part != tc.part || te.Rule != tc.rule {
				t.Errorf("line %d: Parse(%q) refused as %s/%s (%v), want %s/%s",
					tc.line, tc.raw, te.Part, te.Rule, err, tc.part, tc.rule)
			}
			if te.Message == "" {
				t.Errorf("Parse(%q): empty Message", tc.raw)
			}
			if want := "target: " + te.Part + ": " + te.Message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	cases := loadAccepted(t)
	cases = append(cases,
		acceptedCase{raw: "/" + strings.Repeat("a", target.MaxLen-1), path: "/" + strings.Repeat("a", target.MaxLen-1)},
		acceptedCase{raw: "/a?q=" + strings.Repeat("b", target.MaxLen-5), path: "/a", query: "q=" + strings.Repeat("b", target.MaxLen-5)},
	)
	for _, tc := range cases {
		name := strconv.Quote(tc.raw)
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			tg, err := target.Parse(tc.raw)
			if err != nil {
				t.Fatalf("line %d: Parse(%q) refused: %v", tc.line, tc.raw, err)
			}
			if tg.Path != tc.path || tg.Query != tc.query {
				t.Errorf("Parse(%q) = {Path:%q Query:%q}, want {Path:%q Query:%q}", tc.raw, tg.Path, tg.Query, tc.path, tc.query)
			}
			checkAccepted(t, tc.raw, tg)
		})
	}
}

// TestParseSingleBytes checks that every byte of the pchar set (and "/", "?") is accepted
// between two letters in the path and in a query value, and every other byte is refused.
func TestParseSingleBytes(t *testing.T) {
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,=:@/?"
	for c := 0; c < 256; c++ {
		b := string([]byte{byte(c)})
		ok := strings.Contains(allowed, b)
		for _, raw := range []string{"/x" + b + "y", "/a?q=x" + b + "y"} {
			tg, err := target.Parse(raw)
			if ok != (err == nil) {
				t.Errorf("Parse(%q): err = %v, want accepted=%v", raw, err, ok)
			}
			if err == nil {
				checkAccepted(t, raw, tg)
			}
		}
	}
}

// TestParseQueryValueRunes checks every encoded rune boundary that matters for the value check.
func TestParseQueryValueRunes(t *testing.T) {
	enc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteString("%" + strings.ToUpper(strconv.FormatInt(int64(s[i])|0x100, 16)[1:]))
		}
		return b.String()
	}
	for _, tc := range []struct {
		r  rune
		ok bool
	}{
		{0x1f, false}, {0x20, true}, {0x7e, true}, {0x7f, false},
		{0x80, false}, {0x85, false}, {0x9f, false}, {0xa0, true}, {0xe9, true},
		{0x7ff, true}, {0x800, true}, {0xd7ff, true}, {0xe000, true}, {0xfffd, true},
		{0xffff, true}, {0x10000, true}, {0x10ffff, true},
	} {
		raw := "/a?q=x" + enc(string(tc.r)) + "y"
		_, err := target.Parse(raw)
		if tc.ok != (err == nil) {
			t.Errorf("Parse(%q) (U+%04X): err = %v, want accepted=%v", raw, tc.r, err, tc.ok)
		}
	}
	// Surrogates and beyond-range code points encoded as (invalid) UTF-8.
	for _, bad := range [][]byte{{0xed, 0xa0, 0x80}, {0xed, 0xbf, 0xbf}, {0xf4, 0x90, 0x80, 0x80}, {0xc1, 0xbf}, {0xe0, 0x9f, 0xbf}, {0xf0, 0x8f, 0xbf, 0xbf}} {
		raw := "/a?q=x" + enc(string(bad)) + "y"
		if _, err := target.Parse(raw); err == nil {
			t.Errorf("Parse(%q) accepted invalid UTF-8", raw)
		}
	}
}

func TestParseNoAllocs(t *testing.T) {
	targets := []string{
		"/", "/v1/tickets/4711", "/v1/tickets?status=open&limit=10", "/a/b%20c",
		"/a?q=hello+world", "/a?q=%C3%A9", "/a?q=%F0%9F%98%80&r=%E2%82%AC+x", "/a?x=", "/a?flag", "/a:b@c",
	}
	for _, tc := range loadAccepted(t) {
		targets = append(targets, tc.raw)
	}
	for _, raw := range targets {
		if _, err := target.Parse(raw); err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = target.Parse(raw) }); n != 0 {
			t.Errorf("Parse(%q) allocates %v times, want 0", raw, n)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"hello+world", "hello world"},
		{"+", " "},
		{"%41", "A"},
		{"%2B", "+"},
		{"%2b%2B", "++"},
		{"a%20b+c", "a b c"},
		{"%C3%A9", "é"},
		{"%c3%a9t%c3%a9", "été"},
		{"%25", "%"},
		{"%2541", "%41"},
		{"%26%3D", "&="},
		{"%F0%9F%98%80", "😀"},
		{"a/b?c", "a/b?c"},
	} {
		if got := target.Unescape(tc.in); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !strings.ContainsAny(tc.in, "%+") {
			if n := testing.AllocsPerRun(10, func() { _ = target.Unescape(tc.in) }); n != 0 {
				t.Errorf("Unescape(%q) allocates %v times with nothing to decode", tc.in, n)
			}
		}
	}
}

func TestUnescapePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"tickets", "tickets"},
		{"a+b", "a+b"},
		{"b%20c", "b c"},
		{"%2B", "+"},
		{"%3F%23", "?#"},
		{"%C3%A9", "é"},
		{"a+%20+b", "a+ +b"},
		{"%25", "%"},
	} {
		if got := target.UnescapePath(tc.in); got != tc.want {
			t.Errorf("UnescapePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !strings.Contains(tc.in, "%") {
			if n := testing.AllocsPerRun(10, func() { _ = target.UnescapePath(tc.in) }); n != 0 {
				t.Errorf("UnescapePath(%q) allocates %v times with nothing to decode", tc.in, n)
			}
		}
	}
}

// TestUnescapeMalformed: malformed percent-escapes never reach the decoders, because Parse
// refuses them wherever they stand (path segment, query name, query value) as bad_escape; and
// should one get through, the decoders neither panic nor read past the text (what they return
// is no longer than what they were given).
func TestUnescapeMalformed(t *testing.T) {
	for _, s := range []string{"%", "%2", "%zz", "a%", "a%4", "%%", "%%%", "%+1", "+%", "%4g", "%g4"} {
		for _, tc := range []struct{ part, raw string }{
			{"path", "/v1/" + s},
			{"path", "/v1/" + s + "/tickets"},
			{"query", "/v1?q=" + s},
			{"query", "/v1?" + s + "=1"},
			{"query", "/v1?a=1&q=" + s + "&b=2"},
		} {
			_, err := target.Parse(tc.raw)
			var te *target.Error
			if !errors.As(err, &te) || te.Part != tc.part || te.Rule != "bad_escape" {
				t.Errorf("Parse(%q) = %v, want a %s bad_escape refusal", tc.raw, err, tc.part)
			}
		}
		for name, unescape := range map[string]func(string) string{
			"Unescape": target.Unescape, "UnescapePath": target.UnescapePath,
		} {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s(%q) panicked: %v", name, s, p)
					}
				}()
				if got := unescape(s); len(got) > len(s) {
					t.Errorf("%s(%q) = %q, longer than its input", name, s, got)
				}
			}()
		}
	}
}

func TestNextSegment(t *testing.T) {
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"", nil},
		{"/", nil},
		{"/a", []string{"a"}},
		{"/v1/tickets/4711", []string{"v1", "tickets", "4711"}},
		{"/a/b%20c", []string{"a", "b%20c"}},
		{"/a:b@c/d", []string{"a:b@c", "d"}},
	} {
		var got []string
		rest := tc.path
		for {
			seg, r, ok := target.NextSegment(rest)
			if !ok {
				if seg != "" || r != "" {
					t.Errorf("NextSegment(%q) at end = %q, %q, false; want \"\", \"\", false", rest, seg, r)
				}
				break
			}
			if r != "" && r[0] != '/' {
				t.Errorf("NextSegment(%q) rest %q does not start with /", rest, r)
			}
			got = append(got, seg)
			rest = r
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("segments of %q = %q, want %q", tc.path, got, tc.want)
		}
	}
	seg, rest, ok := target.NextSegment("/v1/tickets")
	if seg != "v1" || rest != "/tickets" || !ok {
		t.Errorf(`NextSegment("/v1/tickets") = %q, %q, %v; want "v1", "/tickets", true`, seg, rest, ok)
	}
}

func TestNextParam(t *testing.T) {
	type param struct{ name, value string }
	for _, tc := range []struct {
		query string
		want  []param
	}{
		{"", nil},
		{"flag", []param{{"flag", ""}}},
		{"x=", []param{{"x", ""}}},
		{"status=open&limit=10", []param{{"status", "open"}, {"limit", "10"}}},
		{"q=hello+world", []param{{"q", "hello+world"}}},
		{"q=a=b&r", []param{{"q", "a=b"}, {"r", ""}}},
		{"a%2Bb=%C3%A9&c=?d", []param{{"a%2Bb", "%C3%A9"}, {"c", "?d"}}},
	} {
		var got []param
		for rest := tc.query; ; {
			name, value, r, ok := target.NextParam(rest)
			if !ok {
				if name != "" || value != "" || r != "" {
					t.Errorf("NextParam(%q) at end = %q, %q, %q, false", rest, name, value, r)
				}
				break
			}
			got = append(got, param{name, value})
			rest = r
		}
		if len(got) != len(tc.want) {
			t.Errorf("params of %q = %q, want %q", tc.query, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("params of %q = %q, want %q", tc.query, got, tc.want)
				break
			}
		}
	}
	name, value, rest, ok := target.NextParam("status=open&limit=10")
	if name != "status" || value != "open" || rest != "limit=10" || !ok {
		t.Errorf("NextParam = %q, %q, %q, %v", name, value, rest, ok)
	}
}

func TestErrorAs(t *testing.T) {
	_, err := target.Parse("/v1/../admin")
	var te *target.Error
	if !errors.As(err, &te) || te.Part != "path" || te.Rule != "dot_segment" {
		t.Fatalf("Parse: err = %#v", err)
	}
	if err.Error() != "target: path: contains a dot segment" {
		t.Errorf("Error() = %q", err.Error())
	}
}

// refusedByte reports whether c may never appear raw in an accepted target.
func refusedByte(c byte) bool {
	if c < 0x21 || c >= 0x7f {
		return true // NUL, controls, space, DEL, non-ASCII
	}
	return strings.IndexByte("#;\\\"<>[]^`{|}", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// checkAccepted asserts every invariant an accepted target must satisfy. It is shared by the
// table tests and FuzzParse.
func checkAccepted(t testing.TB, raw string, tg target.Target) {
	t.Helper()

	// The split itself.
	if len(raw) > target.MaxLen || raw == "" || raw[0] != '/' {
		t.Fatalf("accepted %q: length or origin-form", raw)
	}
	if want := tg.Path + "?" + tg.Query; raw != tg.Path && raw != want {
		t.Fatalf("accepted %q: Path %q + Query %q do not reproduce it", raw, tg.Path, tg.Query)
	}
	if strings.Contains(tg.Path, "?") || tg.Path == "" || tg.Path[0] != '/' {
		t.Fatalf("accepted %q: bad Path %q", raw, tg.Path)
	}
	if raw != tg.Path && tg.Query == "" {
		t.Fatalf("accepted %q with an empty query", raw)
	}

	// (a) No refused raw byte, and every "%" starts a well-formed escape.
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if refusedByte(c) {
			t.Fatalf("accepted %q: contains refused byte %q at %d", raw, c, i)
		}
		if c == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				t.Fatalf("accepted %q: malformed escape at %d", raw, i)
			}
		}
	}

	// (b) Segments: never empty or a dot segment, decoded never containing anything dangerous;
	// joined they give Path back.
	var segs, decoded []string
	for rest := tg.Path; ; {
		seg, r, ok := target.NextSegment(rest)
		if !ok {
			break
		}
		switch seg {
		case "", ".", "..":
			t.Fatalf("accepted %q: segment %q", raw, seg)
		}
		for i := 0; i+2 < len(seg); i++ {
			if seg[i] == '%' {
				d := unhexPair(seg[i+1], seg[i+2])
				if isUnreserved(d) {
					t.Fatalf("accepted %q: segment %q percent-encodes unreserved %q", raw, seg, d)
				}
			}
		}
		d := target.UnescapePath(seg)
		if d == "." || d == ".." {
			t.Fatalf("accepted %q: segment %q decodes to a dot segment", raw, seg)
		}
		for i := 0; i < len(d); i++ {
			c := d[i]
			if c == '/' || c == '\\' || c == ';' || c == '%' || c < 0x20 || c == 0x7f || c >= 0x80 {
				t.Fatalf("accepted %q: segment %q decodes to %q containing %q", raw, seg, d, c)
			}
		}
		segs = append(segs, seg)
		decoded = append(decoded, d)
		rest = r
	}
	if got := "/" + strings.Join(segs, "/"); got != tg.Path {
		t.Fatalf("accepted %q: segments %q re-join to %q, want %q", raw, segs, got, tg.Path)
	}

	// (c) Path round-trips through net/url, which decodes it the same way we do.
	up, err := url.PathUnescape(tg.Path)
	if err != nil {
		t.Fatalf("accepted %q: url.PathUnescape(%q): %v", raw, tg.Path, err)
	}
	if want := "/" + strings.Join(decoded, "/"); up != want {
		t.Fatalf("accepted %q: url.PathUnescape = %q, segment-wise UnescapePath = %q", raw, up, want)
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		t.Fatalf("accepted %q: url.ParseRequestURI: %v", raw, err)
	}
	if u.Path != up || u.EscapedPath() != tg.Path || u.RawQuery != tg.Query || u.Fragment != "" || u.Host != "" || u.Scheme != "" || u.Opaque != "" {
		t.Fatalf("accepted %q: net/url reads Path=%q EscapedPath=%q RawQuery=%q Fragment=%q Host=%q; we read Path=%q Query=%q",
			raw, u.Path, u.EscapedPath(), u.RawQuery, u.Fragment, u.Host, tg.Path, tg.Query)
	}

	// (d) Parameters: non-empty names; re-joined they give Query back; names and values decode
	// cleanly; net/url decodes them to the same thing.
	if tg.Query == "" {
		return
	}
	uq, err := url.ParseQuery(tg.Query)
	if err != nil {
		t.Fatalf("accepted %q: url.ParseQuery(%q): %v", raw, tg.Query, err)
	}
	var pieces []string
	ours := url.Values{}
	for rest := tg.Query; ; {
		name, value, r, ok := target.NextParam(rest)
		if !ok {
			break
		}
		if name == "" {
			t.Fatalf("accepted %q: empty parameter name", raw)
		}
		pair := rest[:len(rest)-len(r)]
		if r != "" {
			pair = strings.TrimSuffix(pair, "&")
		}
		piece := name
		if len(pair) > len(name) { // the pair had "="
			piece += "=" + value
		}
		if piece != pair {
			t.Fatalf("accepted %q: NextParam(%q) = %q, %q, %q does not describe pair %q", raw, rest, name, value, r, pair)
		}
		pieces = append(pieces, piece)
		if strings.Contains(name, "+") {
			t.Fatalf("accepted %q: name %q contains +", raw, name)
		}
		dn := target.Unescape(name)
		for i := 0; i < len(dn); i++ {
			if c := dn[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("accepted %q: name %q decodes to non-printable %q", raw, name, dn)
			}
		}
		for _, enc := range []string{"%3d", "%26", "%25"} {
			if strings.Contains(strings.ToLower(name), enc) {
				t.Fatalf("accepted %q: name %q contains %s", raw, name, enc)
			}
		}
		dv := target.Unescape(value)
		if !utf8.ValidString(dv) {
			t.Fatalf("accepted %q: value %q decodes to invalid UTF-8", raw, value)
		}
		for _, r := range dv {
			if r < 0x20 || 0x7f <= r && r <= 0x9f {
				t.Fatalf("accepted %q: value %q decodes to control U+%04X", raw, value, r)
			}
		}
		ours.Add(dn, dv)
		rest = r
	}
	if got := strings.Join(pieces, "&"); got != tg.Query {
		t.Fatalf("accepted %q: params re-join to %q, want %q", raw, got, tg.Query)
	}
	if ours.Encode() != uq.Encode() {
		t.Fatalf("accepted %q: we decode the query to %v, net/url to %v", raw, ours, uq)
	}
}

func unhexPair(hi, lo byte) byte {
	h, _ := strconv.ParseUint(string([]byte{hi, lo}), 16, 8)
	return byte(h)
}
