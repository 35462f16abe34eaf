// Package target reads an HTTP request-target (the raw, undecoded path with its query) strictly.
//
// It does not normalise. Anything two HTTP stacks could read differently (dot segments, plain or
// percent-encoded; encoded "/" or "\"; empty segments; ";" parameters; "#"; control and
// non-ASCII bytes; percent-encoded unreserved characters; double encoding; malformed escapes) is
// refused, because a parser differential between the authorizer and the upstream is how
// authorization is bypassed.
package target

import (
	"strings"
	"unicode/utf8"
)

// MaxLen bounds the request-target; longer ones are refused.
const MaxLen = 8192

// Target is a request-target that passed every check, split at the first "?".
type Target struct {
	// Path is the raw path, starting with "/".
	Path string
	// Query is the raw query without its "?"; empty when there is none.
	Query string
}

// Error says why a request-target was refused. Part is "path" or "query".
type Error struct {
	Part    string // "path" or "query"
	Rule    string // short rule name: "dot_segment", "encoded_slash", "empty_segment", ...
	Message string // a few words: what is wrong
}

func (e *Error) Error() string { return "target: " + e.Part + ": " + e.Message }

func pathErr(rule, msg string) *Error  { return &Error{Part: "path", Rule: rule, Message: msg} }
func queryErr(rule, msg string) *Error { return &Error{Part: "query", Rule: rule, Message: msg} }

// Parse checks raw and splits it into path and query. It never allocates on success.
func Parse(raw string) (Target, error) {
	if raw == "" {
		return Target{}, pathErr("empty", "is empty")
	}
	if len(raw) > MaxLen {
		return Target{}, pathErr("too_long", "is longer than 8192 bytes")
	}
	if raw[0] != '/' {
		return Target{}, pathErr("not_origin_form", "must start with /")
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	if err := checkPath(path); err != nil {
		return Target{}, err
	}
	if hasQuery {
		if err := checkQuery(query); err != nil {
			return Target{}, err
		}
	}
	return Target{Path: path, Query: query}, nil
}

// pathOK and queryOK tell which bytes may appear unencoded: RFC 3986 pchar and "/" (and "?" in
// the query), without ";".
var (
	pathOK  = allowedBytes("")
	queryOK = allowedBytes("?")
)

func allowedBytes(extra string) (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,=:@/%" + extra {
		t[c] = true
	}
	return t
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// escapeAt decodes the escape s[i:i+3], which starts with '%'.
func escapeAt(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	return hi<<4 | lo, ok1 && ok2
}

// rawByteProblem explains a byte that may not appear unencoded.
func rawByteProblem(c byte) (rule, msg string) {
	switch {
	case c == 0:
		return "nul", "contains a NUL byte"
	case c == '#':
		return "fragment", "contains #"
	case c == ';':
		return "semicolon", "contains ; (path or query parameters are ambiguous)"
	case c == '\\':
		return "backslash", "contains \\"
	case c >= 0x80:
		return "non_ascii", "contains non-ASCII bytes"
	case c < 0x20 || c == 0x7f:
		return "control", "contains a control character"
	case c == ' ':
		return "space", "contains a space"
	}
	return "character", "contains " + string(rune(c)) + " unencoded"
}

func checkPath(p string) error {
	if p == "/" {
		return nil
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			c := p[i]
			if !pathOK[c] {
				rule, msg := rawByteProblem(c)
				return pathErr(rule, msg)
			}
			if c == '%' {
				if err := checkPathEscape(p, i); err != nil {
					return err
				}
				i += 2
			}
			continue
		}
		seg := p[segStart:i]
		switch seg {
		case "":
			return pathErr("empty_segment", "contains an empty segment (// or a trailing /)")
		case ".", "..":
			return pathErr("dot_segment", "contains a dot segment")
		}
		segStart = i + 1
	}
	return nil
}

func checkPathEscape(p string, i int) error {
	d, ok := escapeAt(p, i)
	switch {
	case !ok:
		return pathErr("bad_escape", "contains a malformed percent-escape")
	case d == '/':
		return pathErr("encoded_slash", "contains an encoded /")
	case d == '\\':
		return pathErr("encoded_backslash", "contains an encoded \\")
	case d == '.':
		return pathErr("encoded_dot", "contains an encoded dot")
	case isUnreserved(d):
		return pathErr("encoded_unreserved", "percent-encodes a character that needs no encoding")
	case d == '%':
		return pathErr("double_encoding", "contains an encoded % (double encoding)")
	case d == ';':
		return pathErr("semicolon", "contains an encoded ;")
	case d == 0:
		return pathErr("nul", "contains an encoded NUL byte")
	case d < 0x20 || d == 0x7f:
		return pathErr("control", "contains an encoded control character")
	case d >= 0x80:
		return pathErr("non_ascii", "contains encoded non-ASCII bytes")
	}
	return nil
}

func checkQuery(q string) error {
	if q == "" {
		return queryErr("empty", "is empty after ?")
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !queryOK[c] {
			rule, msg := rawByteProblem(c)
			return queryErr(rule, msg)
		}
		if c == '%' {
			if _, ok := escapeAt(q, i); !ok {
				return queryErr("bad_escape", "contains a malformed percent-escape")
			}
			i += 2
		}
	}
	for rest := q; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, value, _ := strings.Cut(pair, "=")
		if pair == "" {
			return queryErr("empty_pair", "contains an empty parameter (&& or a leading or trailing &)")
		}
		if key == "" {
			return queryErr("empty_name", "contains a parameter without a name")
		}
		if !keyDecodesClean(key) {
			return queryErr("bad_name", "contains a parameter name that is not printable ASCII once decoded")
		}
		if !valueDecodesClean(value) {
			return queryErr("bad_value", "contains a value with control characters or invalid UTF-8 once decoded")
		}
	}
	if strings.HasSuffix(q, "&") {
		return queryErr("empty_pair", "contains an empty parameter (&& or a leading or trailing &)")
	}
	return nil
}

// CheckForm checks an application/x-www-form-urlencoded body as Parse checks a query: the same
// bytes, escapes and pairs, refused for the same reasons (Part is "query").
func CheckForm(body string) error {
	if len(body) > 0 && len(body) <= MaxLen<<10 {
		return checkQuery(body)
	}
	if body == "" {
		return queryErr("empty", "is empty")
	}
	return queryErr("too_long", "is longer than 8 MiB")
}

// keyDecodesClean reports whether the decoded key is printable ASCII without "=" or "&".
func keyDecodesClean(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '%' {
			c, _ = escapeAt(k, i)
			i += 2
			if c == '=' || c == '&' || c == '%' {
				return false
			}
		} else if c == '+' {
			return false // a space or a plus, depending on who decodes it
		}
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// valueDecodesClean reports whether the decoded value is valid UTF-8 without control characters
// (C0, DEL, or C1 U+0080..U+009F). It decodes on the fly so that Parse does not allocate.
func valueDecodesClean(v string) bool {
	if strings.IndexByte(v, '%') < 0 {
		return true // raw bytes were already checked: printable ASCII
	}
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(v); {
		c, n := decodedByteAt(v, i)
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i += n
			continue
		}
		// Gather up to UTFMax decoded bytes and decode one rune from them.
		k := 0
		for j := i; j < len(v) && k < len(buf); k++ {
			b, m := decodedByteAt(v, j)
			buf[k] = b
			j += m
		}
		r, size := utf8.DecodeRune(buf[:k])
		if r == utf8.RuneError && size <= 1 {
			return false // invalid UTF-8: overlong, surrogate, truncated, stray continuation...
		}
		if r <= 0x9f {
			return false // C1 control character
		}
		for ; size > 0; size-- {
			_, m := decodedByteAt(v, i)
			i += m
		}
	}
	return true
}

// decodedByteAt decodes the byte at s[i] of a query component Parse has checked: a
// percent-escape (3 bytes), "+" as a space, or a literal byte. It returns the byte and the number
// of raw bytes it took.
func decodedByteAt(s string, i int) (byte, int) {
	switch s[i] {
	case '%':
		d, _ := escapeAt(s, i)
		return d, 3
	case '+':
		return ' ', 1
	}
	return s[i], 1
}

// Unescape decodes percent-escapes in a path segment or query component, and "+" as a space.
// It must only be given text that Parse accepted; it allocates only when there is something to
// decode.
func Unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			d, _ := escapeAt(s, i)
			b = append(b, d)
			i += 2
		case '+':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// UnescapePath decodes percent-escapes in a path segment; "+" stays "+".
func UnescapePath(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			d, _ := escapeAt(s, i)
			b = append(b, d)
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// NextSegment splits the next segment off a path that Parse accepted: for "/a/b" it returns
// "a" and "/b"; at the end it returns "", "", false.
func NextSegment(path string) (seg, rest string, ok bool) {
	if len(path) < 2 {
		return "", "", false
	}
	path = path[1:]
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i], path[i:], true
	}
	return path, "", true
}

// NextParam splits the next parameter off a query that Parse accepted, returning its raw
// (undecoded) name and value.
func NextParam(query string) (name, value, rest string, ok bool) {
	if query == "" {
		return "", "", "", false
	}
	pair, rest, _ := strings.Cut(query, "&")
	name, value, _ = strings.Cut(pair, "=")
	return name, value, rest, true
}
