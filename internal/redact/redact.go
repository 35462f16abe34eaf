// Package redact hides the values of sensitive query parameters wherever agentauthz shows a
// request target: the decision log, the approvals agentauthz stores and everything that shows
// them (the approvals API, the web console, the CLI, Slack and webhook notifications, approval
// events). Every one of them goes through Query.Target, so that a name cannot be spelt past one
// of them.
//
// A parameter is redacted if any reader an upstream might use could read its name as one of the
// configured names:
//
//   - names match ASCII case-insensitively (and by Unicode simple case folding), with
//     surrounding spaces and a trailing [...] (PHP's token[]) ignored;
//   - a name matches as sent or percent-decoded, "+" as a space, once or repeatedly (double
//     encoding);
//   - parameters are separated by "&" and ";" (and "?" and "#" start new ones): a reader that
//     honours any of them finds no parameter this package did not look at. A redacted value runs
//     to the next "&", over any ";", "?" or "#", so that no reader sees a part of it;
//   - ";" parameters of path segments (/a;token=x/b) are redacted too;
//   - a parameter whose value or name, once decoded, holds a redacted parameter (a URL passed as
//     a parameter, an encoded separator) has its value, or the whole parameter, redacted.
//
// Redaction never fails and is idempotent: a target shown once redacted is shown the same way
// again.
package redact

import (
	"strings"
	"unicode/utf8"
)

// Marker replaces a redacted value.
const Marker = "[redacted]"

// maxDepth bounds how many times a name or value is decoded, and how deep values holding
// parameters are looked into.
const maxDepth = 4

// Query is a set of query parameter names whose values are never shown. The zero value and nil
// redact nothing. It is immutable and safe for concurrent use.
type Query struct {
	lower map[string]struct{} // ASCII-lowercased names
	names []string            // as configured, for Unicode case folding
	fold  bool                // some name is not ASCII
}

// NewQuery returns a Query redacting the named parameters. Names are trimmed of spaces; empty
// ones are ignored.
func NewQuery(names ...string) *Query {
	q := &Query{lower: map[string]struct{}{}}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, dup := q.lower[asciiLower(n)]; dup {
			continue
		}
		q.lower[asciiLower(n)] = struct{}{}
		q.names = append(q.names, n)
		q.fold = q.fold || !isASCII(n)
	}
	return q
}

// Names returns the configured names.
func (q *Query) Names() []string {
	if q == nil {
		return nil
	}
	return append([]string(nil), q.names...)
}

// Empty reports whether q redacts nothing.
func (q *Query) Empty() bool { return q == nil || len(q.names) == 0 }

// Target returns a request target (a raw path with its query, as sent) with the values of the
// redacted parameters replaced by Marker; everything else is kept as sent.
func (q *Query) Target(target string) string {
	if q.Empty() || !strings.ContainsAny(target, "?;#") {
		return target
	}
	out, _ := q.redact(target, false, 0)
	return out
}

// redact redacts s, a whole target (query false: its path first) or a query. changed reports
// whether anything was redacted.
func (q *Query) redact(s string, query bool, depth int) (out string, changed bool) {
	var b strings.Builder
	done := 0 // s[:done] is in b
	flush := func(upTo int, replacement string, next int) {
		if !changed {
			b.Grow(len(s))
			changed = true
		}
		b.WriteString(s[done:upTo])
		b.WriteString(replacement)
		done = next
	}
	i := 0
	if !query {
		// The path: ";" parameters of its segments, each ending at "/", ";" or the query.
		end := strings.IndexAny(s, "?#")
		if end < 0 {
			end = len(s)
		}
		for i < end {
			semi := strings.IndexByte(s[i:end], ';')
			if semi < 0 {
				break
			}
			start := i + semi + 1
			stop := start + indexAnyOrLen(s[start:end], "/;")
			if name, value, ok := strings.Cut(s[start:stop], "="); ok && value != "" && q.matches(name) {
				flush(start+len(name)+1, Marker, stop)
			}
			i = stop
		}
		if end == len(s) {
			return finish(&b, s, done, changed)
		}
		i = end + 1
	}
	// The query: parameters start after "?", "&", ";" or "#".
	for i <= len(s) {
		stop := i + indexAnyOrLen(s[i:], "&;?#")
		pair := s[i:stop]
		name, _, hasValue := strings.Cut(pair, "=")
		switch {
		case hasValue && q.matches(name):
			// The value runs to the next "&", over ";", "?" and "#": a reader that splits at "&"
			// only reads all of it as the value ("token=;secret" is ";secret" to it).
			stop = i + indexAnyOrLen(s[i:], "&")
			if stop > i+len(name)+1 {
				flush(i+len(name)+1, Marker, stop)
			}
		case depth < maxDepth && strings.ContainsAny(pair, "%+"):
			// Encoded: a reader that decodes before it splits, or a parameter carrying a URL. Such
			// a reader may read on over ";", "?" and "#" up to the next "&", so that is what is
			// looked into, and hidden.
			wide := i + indexAnyOrLen(s[i:], "&")
			if hasValue && !hasSeparator(decodeAll(name)) {
				if _, hid := q.redact(decode(s[i+len(name)+1:wide]), true, depth+1); hid {
					flush(i+len(name)+1, Marker, wide)
					stop = wide
				}
			} else if _, hid := q.redact(decode(s[i:wide]), true, depth+1); hid {
				flush(i, Marker, wide)
				stop = wide
			}
		}
		i = stop + 1
	}
	return finish(&b, s, done, changed)
}

func finish(b *strings.Builder, s string, done int, changed bool) (string, bool) {
	if !changed {
		return s, false
	}
	b.WriteString(s[done:])
	return b.String(), true
}

func indexAnyOrLen(s, chars string) int {
	if i := strings.IndexAny(s, chars); i >= 0 {
		return i
	}
	return len(s)
}

// hasSeparator reports whether a decoded name holds a byte some reader splits parameters at.
func hasSeparator(s string) bool { return strings.ContainsAny(s, "=&;?#") }

// matches reports whether a raw parameter name is a redacted one as any reader reads it: as sent
// or decoded, once or repeatedly.
func (q *Query) matches(raw string) bool {
	name := raw
	for range maxDepth {
		if q.is(name) {
			return true
		}
		dec := decode(name)
		if dec == name {
			return false
		}
		name = dec
	}
	return q.is(name)
}

// is reports whether a decoded name is a redacted one: case-insensitively, without surrounding
// spaces or a trailing [...].
func (q *Query) is(name string) bool {
	if i := strings.IndexByte(name, '['); i > 0 {
		name = name[:i]
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return false
	}
	if _, ok := q.lower[asciiLower(name)]; ok {
		return true
	}
	if q.fold || !isASCII(name) {
		for _, n := range q.names {
			if strings.EqualFold(n, name) {
				return true
			}
		}
	}
	return false
}

// decode percent-decodes s, and "+" as a space, as a query reader does; a malformed escape is
// kept as it is.
func decode(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// decodeAll decodes s until it no longer changes, at most maxDepth times.
func decodeAll(s string) string {
	for range maxDepth {
		dec := decode(s)
		if dec == s {
			break
		}
		s = dec
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
